"""One training process of a distributed run: what torchrun starts on every device
(``python -m ftkit.engine.rank RUN_DIR``; the command comes from `ftkit.process.torchrun`).

Rank 0 is the run's one writer: events, metrics, checkpoint records and the status. A process that
fails writes its traceback to ``<run>/rank-<i>.err``; the supervisor reports the first one.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from ..runstore.layout import rank_error_name
from .distributed import process_rank


def rank_error_file(run_dir: Path, rank: int) -> Path:
    return Path(run_dir) / rank_error_name(rank)


def failure_summary(exc: BaseException) -> str:
    """One line for the run's error: our own messages as they are, else the exception's type and first line."""
    from ..errors import FtkitError

    if isinstance(exc, FtkitError):
        return str(exc)
    message = str(exc).strip().splitlines()[0][:500] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {message}".rstrip(": ")


def train_rank(run_dir: Path, resume: bool) -> int:
    """One process of a distributed run. Failures go to ``rank-<i>.err`` (summary line, then traceback);
    the supervisor reports the first one, so no rank writes a failed status itself."""
    from ..runstore import RunStore

    run_dir = Path(run_dir).resolve()
    rank = process_rank()
    try:
        from .training import run_training

        # Only rank 0 opens the index: the others (on this node or another) write no events, and
        # SQLite's WAL index does not work across the machines of a shared file system.
        run_training(RunStore(run_dir.parent, index=rank == 0), run_dir.name, resume=resume)
    except BaseException as exc:  # noqa: BLE001 - every failure must reach the supervisor
        rank_error_file(run_dir, rank).write_text(f"{failure_summary(exc)}\n\n{traceback.format_exc()}", encoding="utf-8")
        traceback.print_exc()
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ftkit.engine.rank", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    return train_rank(args.run_dir, args.resume)


if __name__ == "__main__":
    sys.exit(main())
