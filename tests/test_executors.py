"""Runs sent as jobs through submitit (`ftkit.process.executors`), on submitit's local executor: the code path a
Slurm job takes, on this machine. A job's run completes and is listed like any run; stop ends a running job
through the normal stop and cancels one still waiting to start; a search's trials run as jobs too."""

from __future__ import annotations

import os

import pytest

from ftkit.cli import main
from ftkit.config import load_config
from ftkit.errors import ConfigError, FtkitError
from ftkit.process.executors import gpus_per_node
from ftkit.runs import process_alive, start
from ftkit.runstore import RunStore
from ftkit.server.routes import list_page
from ftkit.sweeps import start_sweep

from .conftest import wait_for
from .test_sweep_driver import SEARCH, base, journal  # noqa: F401 (fixtures: the fake worker, its config)

pytestmark = pytest.mark.spawns


@pytest.fixture
def job_config(base):  # noqa: F811
    return base.replace({"resources.executor": "submitit-local", "resources.time_limit": 10})


def job_alive(run) -> bool:
    job = run.store.read_record(run.id)["job"]
    return process_alive(job["pid"], job["pid_started"])


def test_a_job_run_completes_and_is_listed_like_any_run(job_config, journal, capsys):
    run = start(job_config)
    job = run.store.read_record(run.id)["job"]
    assert job["executor"] == "submitit-local" and job["job_id"]
    run.wait(timeout=120)
    assert run.status == "completed" and run.metrics["validation"]["f1"] > 0
    wait_for(lambda: not job_alive(run), timeout=30)  # the job ends with its run
    assert main(["--runs-dir", str(run.store.root), "runs"]) == 0
    assert run.id in capsys.readouterr().out
    listed = list_page(run.store, {"status": None, "query": None, "sort": "created", "descending": True, "offset": 0,
                                   "limit": 50})  # what the panel's list route serves
    assert [row["status"] for row in listed["runs"] if row["id"] == run.id] == ["completed"]


def test_stop_ends_a_running_job_through_the_normal_stop(job_config, journal, monkeypatch):
    monkeypatch.setenv("FTKIT_TEST_STEPS", "200")
    run = start(job_config)
    wait_for(lambda: run.status == "running", timeout=60)
    run.stop(wait=True, timeout=60)
    assert run.status == "stopped"
    wait_for(lambda: not job_alive(run), timeout=30)


def test_stop_cancels_a_job_that_has_not_started(job_config, journal):
    run = start(job_config.replace({"resources.job_setup": ["sleep 60"]}))  # the job waits before its supervisor starts
    assert run.status == "queued"  # waiting for the cluster: never taken for dead
    run.stop()
    assert run.status == "stopped"
    wait_for(lambda: not job_alive(run), timeout=30)  # cancelled
    assert not journal() and not run.store.has_supervisor(run.id)


def test_a_search_sends_its_trials_as_jobs(job_config, journal):
    sweep = start_sweep(job_config, search=SEARCH, trials=2, name="jobs", pruner="none", seed=0).wait(timeout=180)
    assert [entry["status"] for entry in sweep.summary()["runs"]] == ["completed", "completed"]
    assert all(run.store.read_record(run.id)["job"]["executor"] == "submitit-local" for run in sweep.runs)


def test_cluster_settings_are_checked_before_a_job_is_sent():
    with pytest.raises(ConfigError, match="submitit-local runs one node"):
        load_config({"resources": {"executor": "submitit-local", "nodes": 2}})
    with pytest.raises(ConfigError, match="'resources.executor' must be one of local, slurm, submitit-local"):
        load_config({"resources": {"executor": "pbs"}})
    slurm = load_config({"resources": {"executor": "slurm", "nodes": 2, "devices": 4}})  # node 0's host: the job's
    assert gpus_per_node(slurm) == 4 and gpus_per_node(slurm.replace({"training.device": "cpu"})) == 0
    with pytest.raises(ConfigError, match="resources.gpus_per_node"):
        gpus_per_node(load_config({"resources": {"executor": "slurm", "devices": "auto"}}))


def test_the_slurm_example_is_a_valid_cluster_config_whose_data_is_found():
    from pathlib import Path

    example = load_config(Path(__file__).parents[1] / "examples" / "slurm" / "run.yaml").with_absolute_paths()
    assert example.resources.executor == "slurm" and gpus_per_node(example) == 4
    assert Path(example.data.train).is_file()


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """`sbatch` and `scancel` on PATH that only note what they were asked: Slurm's side of a submission."""
    bin_dir, calls = tmp_path / "slurm-bin", tmp_path / "slurm-calls.txt"
    bin_dir.mkdir()
    for name, reply in (("sbatch", "Submitted batch job 4242"), ("scancel", ""), ("srun", "")):
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\necho "{name} $*" >> {calls}\necho "{reply}"\n')
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return lambda: calls.read_text().splitlines() if calls.exists() else []


def test_a_slurm_run_is_an_sbatch_job_with_the_configs_resources_and_stop_cancels_it(base, fake_slurm):  # noqa: F811
    run = start(base.replace({"resources.executor": "slurm", "resources.partition": "gpu", "resources.account": "lab",
                              "resources.nodes": 2, "resources.devices": 4, "resources.time_limit": 90,
                              "resources.slurm_options": {"qos": "high"}, "training.device": "auto",
                              "resources.job_setup": ["source ~/venv/bin/activate"]}))
    job = run.store.read_record(run.id)["job"]
    assert job["executor"] == "slurm" and job["job_id"] == "4242"
    script = next((run.dir / "submitit").glob("*.sh")).read_text()
    for line in ("#SBATCH --partition=gpu", "#SBATCH --account=lab", "#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1",
                 "#SBATCH --gpus-per-node=4", "#SBATCH --time=90", "#SBATCH --qos=high", "source ~/venv/bin/activate"):
        assert line in script
    assert run.status == "queued"  # Slurm holds it: never taken for dead, however long it waits
    run.stop()
    assert run.status == "stopped" and "scancel 4242" in fake_slurm()


def test_a_machine_without_slurm_gets_a_clear_error_and_the_run_is_recorded_failed(base, monkeypatch, tmp_path):  # noqa: F811
    monkeypatch.setenv("PATH", str(tmp_path / "no-slurm-here"))
    with pytest.raises(FtkitError, match="this machine cannot submit Slurm jobs"):
        start(base.replace({"resources.executor": "slurm"}))
    (row,) = RunStore(base.runs_dir).list_runs()[0]
    assert row["status"] == "failed"
