"""Launching a run on several processes and nodes with torchrun: the commands, and what went wrong.

One process trains in the supervisor's child. More than one (``resources.devices`` > 1 or
``resources.nodes`` > 1) is started through ``torchrun`` (``python -m torch.distributed.run``),
which starts one process per device, sets RANK / WORLD_SIZE / MASTER_ADDR, and tears the group
down when a process dies; the Trainer sets up DDP, FSDP or DeepSpeed from there. (``accelerate
launch`` calls the same torchrun code for GPUs, but on CPU it starts a single process unless MPI
is installed; torchrun works on both, so tests on CPU exercise the launch path used on GPUs.)

Every process runs `ftkit.engine.rank` (rank 0 is the run's one writer). A process that fails
writes its traceback to ``<run>/rank-<i>.err``; when the launcher exits without a final status, the
supervisor turns the first of those files into the run's error (:func:`rank_failure`).

``python -m ftkit.process.torchrun RUN_DIR --node-rank R`` is what each further node of a
multi-node run executes (``ftkit train ... --nodes M`` prints it; see examples/slurm/). No torch here:
GPUs are counted as the run queue counts them (`ftkit.runstore.queue.visible_devices`).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..runstore.layout import CONFIG_FILE, RANK_ERROR_GLOB, rank_of_error_file
from ..runstore.queue import visible_devices

if TYPE_CHECKING:
    from ..config import Config


def devices_per_node(config: "Config") -> int:
    """``resources.devices`` as a number: 'auto' means every visible GPU, or one process on CPU."""
    devices = config.resources.devices
    if devices != "auto":
        return int(devices)
    return sum(device.startswith("cuda:") for device in visible_devices(config)) or 1


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
    command += ["-m", "ftkit.engine.rank", str(Path(run_dir).resolve())]
    return command + (["--resume"] if resume else [])


def join_command(run_dir: Path | str, node_rank: int) -> str:
    """The shell command node ``node_rank`` runs to start its processes of the run in ``run_dir``."""
    return f"python -m ftkit.process.torchrun {shlex.quote(str(run_dir))} --node-rank {node_rank}"


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


def main(argv: list[str] | None = None) -> int:
    """A further node of a multi-node run: this node's torchrun replaces this process."""
    parser = argparse.ArgumentParser(prog="python -m ftkit.process.torchrun", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--node-rank", type=int, required=True, help="this machine's index (1 .. nodes-1)")
    parser.add_argument("--main-address", help="node 0's host (default: resources.main_address)")
    args = parser.parse_args(argv)
    from ..config import load_config

    config = load_config(args.run_dir / CONFIG_FILE)
    if args.main_address:
        config = config.replace({"resources.main_address": args.main_address})
    command = torchrun_command(config, args.run_dir, args.resume, node_rank=args.node_rank)
    os.execv(command[0], command)  # signals and the exit status go straight to this node's torchrun
    return 0  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
