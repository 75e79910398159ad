"""`training.trainer_args` and `training.report_to`: what ftkit hands to transformers' Trainer as written.

Keys the schema owns are refused with the key to use; other keys must be real TrainingArguments fields
("did you mean"), checked when a run starts without importing torch; values reach the arguments; a
missing tracker package names its pip install; TensorBoard and MLflow (local file store) receive a
real run's logs beside ftkit's own events.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ftkit.config import load_config
from ftkit.errors import ConfigError
from ftkit.runstore.layout import MLFLOW_DIR, TENSORBOARD_DIR
from ftkit.trainer_args import OWNED, check_launch, check_trackers_installed, trainer_argument_names


@pytest.mark.parametrize("key, instead", [
    ("learning_rate", "set training.learning_rate instead"),
    ("num_train_epochs", "set training.epochs instead"),
    ("per_device_train_batch_size", "set training.batch_size instead"),
    ("seed", "set training.seed instead"),
    ("report_to", "set training.report_to instead"),
    ("bf16", "set resources.mixed_precision instead"),
    ("eval_strategy", "set training.eval_steps instead"),
    ("output_dir", "set output.dir instead"),
])
def test_trainer_args_that_the_schema_owns_are_refused_with_the_key_to_use(key, instead):
    with pytest.raises(ConfigError, match=f"training.trainer_args.{key}' is ftkit's to set: {instead}"):
        load_config(training={"trainer_args": {key: 1}})


def test_every_owned_name_is_a_real_training_arguments_field():
    assert set(OWNED) <= trainer_argument_names()


def test_an_unknown_trainer_arg_fails_at_launch_with_did_you_mean(runs_dir):
    from ftkit.runs import start

    config = load_config(model="some/model", data={"train": "x.conll"}, training={"trainer_args": {"max_grad_nrom": 0.5}})
    with pytest.raises(ConfigError, match="'training.trainer_args.max_grad_nrom' is not a transformers "
                                          "TrainingArguments field. Did you mean 'max_grad_norm'?"):
        start(config)
    assert not runs_dir.exists() or not any(runs_dir.iterdir()), "no run is recorded for a config that cannot launch"


def test_field_names_are_the_real_dataclass_fields_read_without_importing_torch():
    code = ("import sys, json\nfor m in ('torch', 'transformers.training_args'):\n    sys.modules[m] = None\n"
            "from ftkit.trainer_args import trainer_argument_names\n"
            "print(json.dumps(sorted(trainer_argument_names())))\n"
            "assert not [m for m in sys.modules if m.split('.')[0] == 'torch' and sys.modules[m] is not None]")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    from transformers import TrainingArguments

    assert set(json.loads(out.stdout)) == {f.name for f in dataclasses.fields(TrainingArguments)}


def test_trainer_args_values_reach_the_training_arguments(tmp_path):
    from ftkit.engine.arguments import training_arguments

    passed = {"max_grad_norm": 0.5, "gradient_checkpointing": True, "optim": "adamw_torch",
              "label_smoothing_factor": 0.1, "adam_beta2": 0.98}
    config = load_config(training={"device": "cpu", "trainer_args": passed})
    check_launch(config)
    args = training_arguments(config, tmp_path / "run")
    assert {key: getattr(args, key) for key in passed} == passed
    assert training_arguments(load_config(training={"device": "cpu"}), tmp_path / "run").max_grad_norm == 1.0


def test_trainer_args_from_flags_and_set_overrides_are_read_as_yaml():
    config = load_config(overrides=["training.trainer_args={max_grad_norm: 0.5, optim: adafactor}",
                                    "training.trainer_args.label_smoothing_factor=0.1"])
    assert config.training.trainer_args == {"max_grad_norm": 0.5, "optim": "adafactor", "label_smoothing_factor": 0.1}
    assert load_config(training={"trainer_args": "{gradient_checkpointing: true}"}).training.trainer_args == {
        "gradient_checkpointing": True}
    with pytest.raises(ConfigError, match="'training.trainer_args' must be a mapping of names to values"):
        load_config(training={"trainer_args": [1, 2]})


def test_a_value_transformers_refuses_is_a_config_error_naming_trainer_args(tmp_path):
    from ftkit.engine.arguments import training_arguments

    config = load_config(training={"device": "cpu", "trainer_args": {"optim": "adamw_nonesuch"}})
    with pytest.raises(ConfigError, match="transformers refused training.trainer_args"):
        training_arguments(config, tmp_path / "run")


def test_report_to_defaults_to_no_tracker_and_reaches_the_trainer(tmp_path, monkeypatch):
    from ftkit.engine.arguments import training_arguments

    for name in ("TENSORBOARD_LOGGING_DIR", "MLFLOW_TRACKING_URI", "MLFLOW_ALLOW_FILE_STORE"):
        monkeypatch.delenv(name, raising=False)
    assert training_arguments(load_config(training={"device": "cpu"}), tmp_path / "run").report_to in ([], "none", ["none"])
    run_dir = tmp_path / "store" / "run-1"
    config = load_config(training={"device": "cpu", "report_to": ["tensorboard", "mlflow"]})
    args = training_arguments(config, run_dir)
    assert args.report_to == ["tensorboard", "mlflow"]
    assert os.environ["TENSORBOARD_LOGGING_DIR"] == str(run_dir / TENSORBOARD_DIR)
    assert os.environ["MLFLOW_TRACKING_URI"] == (tmp_path / "store" / MLFLOW_DIR).resolve().as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    training_arguments(config, run_dir)
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://tracking.example:5000", "a user's tracking URI is kept"


def test_report_to_names_are_checked_with_did_you_mean():
    assert load_config(training={"report_to": "tensorboard, mlflow"}).training.report_to == ["tensorboard", "mlflow"]
    with pytest.raises(ConfigError, match="unknown tracker 'tensorbord'.*Did you mean 'tensorboard'"):
        load_config(training={"report_to": ["tensorbord"]})


def test_a_missing_tracker_package_is_a_config_error_naming_the_pip_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(ConfigError, match="includes mlflow, but the mlflow package is not installed: "
                                          "pip install mlflow-skinny"):
        check_trackers_installed(["tensorboard", "mlflow"])
    with pytest.raises(ConfigError, match="pip install mlflow-skinny"):
        check_launch(load_config(training={"report_to": ["mlflow"]}))


@pytest.mark.slow
def test_a_run_reports_to_tensorboard_in_its_folder_and_to_a_local_mlflow_store(tiny_config, runs_dir, monkeypatch):
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    from ftkit.runs import start

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tiny_config["training"].update(max_steps=4, logging_steps=1, report_to=["tensorboard", "mlflow"],
                                   trainer_args={"max_grad_norm": 0.5})
    run = start(tiny_config).wait(timeout=300)
    assert run.status == "completed", run.log_tail()
    assert any(e["type"] == "progress" for e in run.events()[0]), "ftkit's own events still arrive"

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    event_files = list((run.dir / TENSORBOARD_DIR).rglob("events.out.tfevents.*"))
    assert event_files, f"no TensorBoard event file under {run.dir / TENSORBOARD_DIR}"
    tags = set()
    for path in event_files:
        accumulator = EventAccumulator(str(path))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
    assert "train/loss" in tags

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(runs_dir / MLFLOW_DIR).as_uri())
    found = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [r.info.run_name for r in found] == [run.name]
    assert "loss" in found[0].data.metrics and found[0].data.params["max_grad_norm"] == "0.5"
