"""Launching a run on several processes and nodes with torchrun, and the entry point of each process.

One process trains in the supervisor's child as before. More than one (``resources.devices`` > 1
or ``resources.nodes`` > 1) is started through ``torchrun`` (``python -m torch.distributed.run``),
which starts one process per device, sets RANK / WORLD_SIZE / MASTER_ADDR, and tears the group
down when a process dies; the Trainer sets up DDP, FSDP or DeepSpeed from there. (``accelerate
launch`` calls the same torchrun code for GPUs, but on CPU it starts a single process unless MPI
is installed; torchrun works on both, so tests on CPU exercise the launch path used on GPUs.)

Every process runs :func:`train_rank`. Rank 0 is the run's one writer: events, metrics,
checkpoint records and the status. A process that fails writes its traceback to
``<run>/rank-<i>.err``; when the launcher exits without a final status, the supervisor turns the
first of those files into the run's error (:func:`rank_failure`).

``python -m ftkit.engine.launch node RUN_DIR --node-rank R`` is what each further node of a multi-node
run executes (``ftkit train ... --nodes M`` prints it; see examples/slurm/).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from ..runstore.layout import CONFIG_FILE, RANK_ERROR_GLOB, rank_error_name, rank_of_error_file
from .distributed import process_rank

if TYPE_CHECKING:
    from ..config import Config


def rank_error_file(run_dir: Path, rank: int) -> Path:
    return Path(run_dir) / rank_error_name(rank)


def devices_per_node(config: "Config") -> int:
    """``resources.devices`` as a number: 'auto' means every visible GPU, or one process on CPU."""
    devices = config.resources.devices
    if devices != "auto":
        return int(devices)
    if config.training.device == "cpu":
        return 1
    import torch  # only for 'auto'; a number never loads torch in the supervisor

    return max(1, torch.cuda.device_count())


def is_distributed(config: "Config") -> bool:
    """Whether this run needs a launcher: more than one process in all."""
    return config.resources.nodes > 1 or devices_per_node(config) > 1


def torchrun_command(config: "Config", run_dir: Path, resume: bool = False, node_rank: int | None = None) -> list[str]:
    """The command that starts this node's processes of the run in ``run_dir``.

    A single node uses torchrun's standalone rendezvous (a free local port, so runs side by side
    never collide); several nodes meet at ``resources.main_address:main_port``.
    """
    r = config.resources
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={devices_per_node(config)}"]
    if r.nodes == 1:
        command.append("--standalone")
    else:
        rank = r.node_rank if node_rank is None else node_rank
        command += [f"--nnodes={r.nodes}", f"--node-rank={rank}", f"--master-addr={r.main_address}",
                    f"--master-port={r.main_port}"]
    command += ["-m", "ftkit.engine.launch", "rank", str(Path(run_dir).resolve())]
    return command + (["--resume"] if resume else [])


def join_command(run_dir: Path | str, node_rank: int) -> str:
    """The shell command node ``node_rank`` runs to start its processes of the run in ``run_dir``."""
    return f"python -m ftkit.engine.launch node {shlex.quote(str(run_dir))} --node-rank {node_rank}"


def node_commands(config: "Config", run_dir: Path) -> dict[int, str]:
    """For each node other than 0, the shell command it runs to join the run (the run folder must be shared)."""
    return {rank: join_command(Path(run_dir).resolve(), rank) for rank in range(1, config.resources.nodes)}


# torchrun's closing report names the process that failed first ("Root Cause (first observed failure)").
_ROOT_CAUSE = re.compile(r"Root Cause \(first observed failure\):.*?rank\s*:\s*(\d+).*?traceback\s*:\s*([^\n]*)", re.S)


def rank_failure(run_dir: Path, launcher_log: str = "") -> str | None:
    """The first failure of a process of this run, as ``rank <i>: <what happened>``; None if unknown.

    torchrun's report (in ``launcher_log``) says which rank failed first, and how when it was
    killed; the traceback summary that rank wrote to ``rank-<i>.err`` says more when it could
    write one. Without torchrun's report, the earliest ``rank-<i>.err`` is taken.
    """
    errors = {}
    for path in sorted(Path(run_dir).glob(RANK_ERROR_GLOB), key=lambda p: p.stat().st_mtime):
        lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        if lines:
            errors[rank_of_error_file(path)] = lines[0]
    causes = _ROOT_CAUSE.findall(launcher_log)
    if causes:
        rank, how = int(causes[-1][0]), causes[-1][1].strip()
        return f"rank {rank}: {errors.get(rank) or how}"
    if errors:
        rank = next(iter(errors))
        return f"rank {rank}: {errors[rank]}"
    return None


def clear_rank_errors(run_dir: Path) -> None:
    """Forget the previous attempt's rank errors (before a resume)."""
    for path in Path(run_dir).glob(RANK_ERROR_GLOB):
        path.unlink(missing_ok=True)


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
    parser = argparse.ArgumentParser(prog="python -m ftkit.engine.launch", description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("rank", "node"), help="rank: one training process (torchrun runs it); "
                        "node: start this node's processes of a multi-node run")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--node-rank", type=int, default=None, help="node mode: this machine's index (1 .. nodes-1)")
    args = parser.parse_args(argv)
    if args.mode == "rank":
        return train_rank(args.run_dir, args.resume)
    from ..config import load_config

    config = load_config(args.run_dir / CONFIG_FILE)
    command = torchrun_command(config, args.run_dir, args.resume, node_rank=args.node_rank)
    os.execv(command[0], command)  # this node's torchrun replaces us: signals and exit status go straight to it
    return 0  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
