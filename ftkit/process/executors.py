"""Where a run's supervisor runs (``resources.executor``): a process of its own here, or a job sent through
submitit (the library research labs send their training to Slurm with).

- ``local`` (default): ``python -m ftkit.process.supervisor RUN_DIR`` in a session of its own (`ftkit.runs`).
- ``slurm``: a Slurm job of ``resources.nodes`` nodes, one task per node, ``resources.gpus_per_node`` GPUs
  each. Task 0 runs the supervisor (which runs torchrun for its node's GPUs, as on a workstation);
  task r joins as node r of the same torchrun rendezvous, at the job's first node. The run store must be
  on a file system the nodes share; the run's status, progress and the panel read it as for a local run.
- ``submitit-local``: the same job through submitit's local executor, on this machine (one node): a cluster
  config tried without a cluster, and what the tests run.

The job skips the device queue: the cluster placed it on the GPUs it allocated.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import EXECUTORS  # noqa: F401 (API)
from ..errors import ConfigError, FtkitError
from ..runstore.layout import CONFIG_FILE, LOG_FILE, SUBMITIT_DIR
from ..runstore.liveness import host_identity, process_alive, process_start_time

if TYPE_CHECKING:
    from ..config import Config

LOCAL = "local"
SUBMITIT_MISSING = "resources.executor: {} sends runs through submitit: pip install submitit (or 'ftkit[cluster]')"


def submit(run_dir: Path, config: "Config", resume: bool) -> dict[str, Any]:
    """Send the run's supervisor as a job; returns the job's record for run.json (``job``)."""
    submitit = _submitit(config.resources.executor)
    r = config.resources
    slurm = r.executor == "slurm"
    try:
        executor = submitit.AutoExecutor(folder=run_dir / SUBMITIT_DIR, cluster="slurm" if slurm else "local")
    except RuntimeError as exc:  # no srun here
        raise FtkitError(f"resources.executor: slurm, but this machine cannot submit Slurm jobs ({exc}); start the "
                         "run from a login node, or try the config here with resources.executor: submitit-local") from None
    parameters: dict[str, Any] = {"name": f"ftkit-{config.run_name}", "nodes": r.nodes, "tasks_per_node": 1,
                                  "timeout_min": r.time_limit, "gpus_per_node": gpus_per_node(config)}
    if r.cpus_per_task:
        parameters["cpus_per_task"] = r.cpus_per_task
    if r.mem_gb:
        parameters["mem_gb"] = r.mem_gb
    if slurm:
        parameters.update({f"slurm_{key}": value for key, value in
                           (("partition", r.partition), ("account", r.account), ("setup", r.job_setup),
                            ("additional_parameters", r.slurm_options)) if value})
    elif r.job_setup:
        parameters["local_setup"] = list(r.job_setup)
    executor.update_parameters(**parameters)
    try:
        job = executor.submit(run_job, str(run_dir), resume)
    except Exception as exc:  # noqa: BLE001 - sbatch refused it (a partition, an account, a limit): its words
        raise FtkitError(f"{r.executor} refused the job: {exc}") from None
    record = {"executor": r.executor, "job_id": str(job.job_id), "folder": str(run_dir / SUBMITIT_DIR)}
    if not slurm:  # a local job is its controller process: known by its pid and start time, on this machine
        pid = int(job.job_id)
        record.update(pid=pid, pid_started=process_start_time(pid), host=host_identity()["host"])
    return record


def gpus_per_node(config: "Config") -> int:
    """The GPUs a job asks each node for: ``resources.gpus_per_node``, else one per training process; none on CPU."""
    r = config.resources
    if r.gpus_per_node is not None:
        return r.gpus_per_node
    if config.training.device == "cpu":
        return 0
    if r.devices == "auto":
        raise ConfigError("a cluster job asks for a number of GPUs: set resources.gpus_per_node (or resources.devices)")
    return int(r.devices)


def cancel(job: dict[str, Any]) -> None:
    """Cancel a job (scancel for Slurm; a local job's processes are ended, children first)."""
    if job["executor"] == "slurm":
        submitit = _submitit("slurm")
        submitit.SlurmJob(folder=job["folder"], job_id=job["job_id"]).cancel(check=False)
        return
    import psutil

    if job.get("host") != host_identity()["host"] or not process_alive(job.get("pid"), job.get("pid_started")):
        return
    controller = psutil.Process(job["pid"])
    family = controller.children(recursive=True) + [controller]
    for process in family:
        try:
            process.terminate()
        except psutil.Error:
            pass
    psutil.wait_procs(family, timeout=10)


def run_job(run_dir: str, resume: bool) -> int:
    """What each task of the job runs: task 0 supervises the run; task r starts node r's processes."""
    import submitit

    from ..config import load_config
    from . import supervisor, torchrun

    folder = Path(run_dir)
    config = load_config(folder / CONFIG_FILE)
    environment = submitit.JobEnvironment()
    main_address = environment.hostnames[0] if config.resources.nodes > 1 else None
    if environment.global_rank == 0:
        with open(folder / LOG_FILE, "ab") as log:  # the supervisor's and worker's output where a local run's goes
            os.dup2(log.fileno(), sys.stdout.fileno())
            os.dup2(log.fileno(), sys.stderr.fileno())
        return supervisor.supervise(folder, resume, main_address=main_address)
    options = ["--node-rank", str(environment.global_rank), "--main-address", main_address or ""]
    return torchrun.main([run_dir, *options, *(["--resume"] if resume else [])])


def _submitit(executor: str) -> Any:
    try:
        import submitit
    except ImportError:
        raise FtkitError(SUBMITIT_MISSING.format(executor)) from None
    return submitit


__all__ = ["EXECUTORS", "LOCAL", "cancel", "gpus_per_node", "run_job", "submit"]
