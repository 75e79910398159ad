"""Distributed runs: launched through torchrun, followed like any run, written by rank 0 only.

The slow tests train a tiny BERT on two CPU processes (gloo), the same launch path GPUs take.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import ftkit
from ftkit.config import load_config
from ftkit.engine.rank import rank_error_file
from ftkit.process.torchrun import node_commands, rank_failure, torchrun_command
from ftkit.runs import start

from .conftest import wait_for


def test_more_than_one_device_is_launched_through_torchrun_on_one_node(tmp_path):
    config = load_config(resources={"devices": 2})
    command = torchrun_command(config, tmp_path / "run")
    assert command[1:3] == ["-m", "torch.distributed.run"]
    assert "--nproc-per-node=2" in command and "--standalone" in command  # a free port: runs side by side never collide
    assert command[-3:] == ["-m", "ftkit.engine.rank", str((tmp_path / "run").resolve())]
    assert torchrun_command(config, tmp_path / "run", resume=True)[-1] == "--resume"


def test_a_multi_node_run_meets_at_the_main_address_and_prints_each_other_nodes_command(tmp_path):
    config = load_config(resources={"devices": 4, "nodes": 3, "main_address": "gpu-01", "main_port": 29600})
    command = torchrun_command(config, tmp_path / "run", node_rank=2)
    assert {"--nnodes=3", "--node-rank=2", "--master-addr=gpu-01", "--master-port=29600", "--nproc-per-node=4"} <= set(command)
    assert "--standalone" not in command
    commands = node_commands(config, tmp_path / "run")
    assert sorted(commands) == [1, 2]
    assert commands[2] == f"python -m ftkit.process.torchrun {(tmp_path / 'run').resolve()} --node-rank 2"


def test_devices_auto_means_one_process_on_a_cpu_only_machine():
    from ftkit.process.torchrun import devices_per_node, is_distributed

    config = load_config(resources={"devices": "auto"}, training={"device": "cpu"})
    assert devices_per_node(config) == 1 and not is_distributed(config)


def test_the_run_error_is_the_first_error_a_rank_recorded(tmp_path):
    assert rank_failure(tmp_path) is None
    rank_error_file(tmp_path, 1).write_text("DataError: bad.txt:2: a tag is missing\n\nTraceback ...")
    time.sleep(0.02)
    rank_error_file(tmp_path, 0).write_text("RuntimeError: Connection closed by peer\n\nTraceback ...")
    assert rank_failure(tmp_path) == "rank 1: DataError: bad.txt:2: a tag is missing"


TORCHRUN_REPORT = """\
Root Cause (first observed failure):
[0]:
  time      : 2026-11-28_16:16:43
  host      : localhost
  rank      : {rank} (local_rank: {rank})
  exitcode  : -9 (pid: 976)  (SIGKILL)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 976
"""


def test_torchruns_report_names_the_rank_that_failed_first_even_when_it_was_killed(tmp_path):
    rank_error_file(tmp_path, 0).write_text("RuntimeError: Connection closed by peer\n\nTraceback ...")
    assert rank_failure(tmp_path, TORCHRUN_REPORT.format(rank=1)) == "rank 1: Signal 9 (SIGKILL) received by PID 976"
    # ...and the rank's own summary says more when it could write one
    assert rank_failure(tmp_path, TORCHRUN_REPORT.format(rank=0)) == "rank 0: RuntimeError: Connection closed by peer"


@pytest.mark.spawns
def test_ftkit_train_with_several_nodes_prints_the_command_each_other_node_runs(tiny_config, tmp_path, runs_dir):
    import yaml

    tiny_config["training"].update(max_steps=1)
    path = tmp_path / "multi.yaml"
    path.write_text(yaml.safe_dump(tiny_config))
    env = {**os.environ, "FTKIT_RUNS_DIR": str(runs_dir)}
    joined = subprocess.run([sys.executable, "-m", "ftkit.cli", "train", str(path), "--nodes", "2", "--node-rank", "1",
                             "--main-address", "127.0.0.1"], capture_output=True, text=True, env=env, timeout=60)
    assert joined.returncode == 0, joined.stderr
    assert "python -m ftkit.process.torchrun" in joined.stdout and "--node-rank 1" in joined.stdout
    assert not runs_dir.exists() or not any(p.is_dir() for p in runs_dir.iterdir())  # node 1 starts no run


def _losses(run) -> dict[int, float]:
    events, _ = run.events()
    return {e["step"]: e["loss"] for e in events if e["type"] == "log" and "loss" in e}


@pytest.mark.slow
def test_two_processes_train_like_one_with_the_same_global_batch_and_only_rank_0_writes(tiny_config):
    tiny_config["training"].update(epochs=1, batch_size=4, group_by_length=False, logging_steps=2)
    tiny_config["resources"] = {"devices": 2}
    distributed = start({**tiny_config, "name": "two"}).wait(timeout=300)
    assert distributed.status == "completed", distributed.log_tail()
    single_config = {**tiny_config, "name": "one", "resources": {"devices": 1},
                     "training": {**tiny_config["training"], "batch_size": 8}}
    single = start(single_config).wait(timeout=300)
    assert single.status == "completed", single.log_tail()

    two, one = _losses(distributed), _losses(single)
    assert sorted(two) == sorted(one) and len(two) >= 3  # the same number of optimiser steps
    for step in one:  # same global batches; only dropout masks differ
        assert two[step] == pytest.approx(one[step], rel=0.05), (step, two, one)

    events, _ = distributed.events()
    statuses = [e["status"] for e in events if e["type"] == "status"]
    assert statuses == ["running", "completed"]
    assert len([e for e in events if e["type"] == "eval" and e["split"] == "validation"]) == 1
    assert [e["step"] for e in events if e["type"] == "checkpoint"] == [single.progress["step"]]
    assert any("distributed: 2 processes" in (e.get("message") or "") for e in events)
    assert not list(distributed.dir.glob("rank-*.err"))
    # Evaluation was sharded too, and its predictions still line up with the test sentences.
    test_sentences = ftkit.load_data(tiny_config["data"]["test"])["train"]["tokens"]
    predictions = [json.loads(line) for line in (distributed.dir / "predictions" / "test.jsonl").read_text().splitlines()]
    assert [p["tokens"] for p in predictions] == test_sentences


SHARD_SCRIPT = """
import json, sys
from pathlib import Path
from ftkit.config import load_config
from ftkit.engine.training import build_trainer, prepare

trainer = build_trainer(prepare(load_config(sys.argv[1])), Path(sys.argv[2]))
batches = [list(b) for b in trainer.get_train_dataloader().batch_sampler]
Path(sys.argv[2], f"rank-{trainer.args.process_index}.json").write_text(
    json.dumps({"world_size": trainer.args.world_size, "rows": len(trainer.train_dataset), "batches": batches}))
"""


@pytest.mark.slow
def test_each_process_trains_on_its_own_shard_of_the_data(tiny_config, tmp_path):
    import yaml

    config_path, out = tmp_path / "shard.yaml", tmp_path / "out"
    config_path.write_text(yaml.safe_dump(tiny_config))
    (tmp_path / "shards.py").write_text(SHARD_SCRIPT)
    out.mkdir()
    launched = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                               str(tmp_path / "shards.py"), str(config_path), str(out)],
                              capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert launched.returncode == 0, launched.stderr[-3000:]
    ranks = [json.loads((out / f"rank-{i}.json").read_text()) for i in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    seen = [{i for batch in r["batches"] for i in batch} for r in ranks]
    batch_size = tiny_config["training"]["batch_size"]
    assert seen[0] | seen[1] == set(range(ranks[0]["rows"]))  # together they cover every row
    # ...each row once, except the few that fill up the last uneven batch
    assert len(seen[0] & seen[1]) < batch_size
    assert len(ranks[0]["batches"]) == len(ranks[1]["batches"])


def _process_with_rank(root_pid: int, rank: int):
    import psutil

    for child in psutil.Process(root_pid).children(recursive=True):
        try:
            if child.environ().get("RANK") == str(rank) and "ftkit.engine.rank" in " ".join(child.cmdline()):
                return child
        except psutil.Error:
            continue
    return None


@pytest.mark.slow
def test_killing_one_process_marks_the_distributed_run_failed_with_that_ranks_error(tiny_config):
    tiny_config["training"].update(max_steps=100000, batch_size=2)
    tiny_config["resources"] = {"devices": 2}
    run = start(tiny_config)
    wait_for(lambda: run.progress["step"] >= 2, timeout=180)
    supervisor = run.store.read_record(run.id)["supervisor_pid"]
    rank_1 = wait_for(lambda: _process_with_rank(supervisor, 1), timeout=10)
    os.kill(rank_1.pid, signal.SIGKILL)
    wait_for(lambda: run.status == "failed", timeout=90)
    assert "rank 1: Signal 9 (SIGKILL)" in run.error and "distributed launch exited with code" in run.error, run.error


@pytest.mark.slow
def test_two_nodes_on_one_machine_train_the_run_node_0_started(tiny_config, tmp_path, runs_dir):
    import shlex
    import socket

    import yaml

    from ftkit.runs import Run

    with socket.socket() as probe:  # a port nobody uses right now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    tiny_config["training"].update(epochs=1, batch_size=4)
    path = tmp_path / "two-nodes.yaml"
    path.write_text(yaml.safe_dump(tiny_config))
    env = {**os.environ, "FTKIT_RUNS_DIR": str(runs_dir), "OMP_NUM_THREADS": "1"}
    started = subprocess.run([sys.executable, "-m", "ftkit.cli", "train", str(path), "--nodes", "2", "--main-address",
                              "127.0.0.1", "--set", f"resources.main_port={port}", "--json"],
                             capture_output=True, text=True, env=env, timeout=60)
    assert started.returncode == 0, started.stderr
    info = json.loads(started.stdout)
    command = shlex.split(info["node_commands"]["1"])
    assert command[0] == "python"
    node_1 = subprocess.Popen([sys.executable, *command[1:]], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        run = Run(info["id"]).wait(timeout=300)
        assert run.status == "completed", run.log_tail()
        assert node_1.wait(timeout=60) == 0
    finally:
        node_1.kill()
    events, _ = run.events()
    assert any("distributed: 2 processes" in (e.get("message") or "") for e in events)
    assert [e["status"] for e in events if e["type"] == "status"] == ["running", "completed"]
