"""The run folder's names and the one checkpoint policy (ftkit.runstore.layout), and everyone who asks it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from ftkit.runstore import layout
from ftkit.config import load_config
from ftkit.errors import FtkitError, RunError
from ftkit.runstore.layout import (best_checkpoint, checkpoint_name, checkpoint_of_event, checkpoint_step, choose_checkpoint,
                          higher_is_better, is_better)
from ftkit.runs import Run
from ftkit.runstore import RunStore


@pytest.mark.parametrize(("metric", "higher"), [
    ("f1", True), ("accuracy", True), ("macro_f1", True), ("PER_f1", True), ("precision", True),
    ("loss", False), ("eval_loss", False), ("validation_loss", False), ("perplexity", False), ("wer", False),
])
def test_loss_like_metrics_are_better_lower_and_scores_higher(metric, higher):
    assert higher_is_better(metric) is higher
    assert is_better(metric, 0.9, 0.1) is higher
    assert is_better(metric, 0.5, None)


def test_the_best_checkpoint_is_the_lowest_loss_or_the_highest_score_else_the_latest():
    checkpoints = [{"step": 10, "metrics": {"f1": 0.7, "loss": 0.9}}, {"step": 20, "metrics": {"f1": 0.6, "loss": 0.4}},
                   {"step": 30, "metrics": {}}]
    assert best_checkpoint(checkpoints, "f1")["step"] == 10
    assert best_checkpoint(checkpoints, "loss")["step"] == 20
    assert best_checkpoint(checkpoints, "accuracy")["step"] == 30  # nobody has it: the latest
    assert best_checkpoint([{"step": 1, "metrics": {"eval_f1": 0.5}}, {"step": 2, "metrics": {"eval_f1": 0.5}}],
                           "f1")["step"] == 2  # a tie goes to the later one; the Trainer's eval_ prefix is read
    with pytest.raises(RunError, match="no checkpoint"):
        best_checkpoint([], "f1")


def test_checkpoint_names_and_old_events_with_absolute_paths():
    assert checkpoint_name(40) == "checkpoint-40" and checkpoint_step("checkpoint-40") == 40
    assert checkpoint_step("/runs/x/checkpoint-7") == 7 and checkpoint_step("best") is None
    assert checkpoint_of_event({"checkpoint": "checkpoint-40", "step": 40}) == "checkpoint-40"
    assert checkpoint_of_event({"path": "/old/store/run/checkpoint-40", "step": 40}) == "checkpoint-40"


def test_choose_checkpoint_takes_the_one_asked_for_then_best_folder_then_best_scoring(tmp_path):
    for step in (10, 20):
        (tmp_path / checkpoint_name(step)).mkdir()
    checkpoints = [{"step": 10, "name": "checkpoint-10", "metrics": {"loss": 0.2}},
                   {"step": 20, "name": "checkpoint-20", "metrics": {"loss": 0.5}},
                   {"step": 30, "name": "checkpoint-30", "metrics": {"loss": 0.1}}]  # rotated away: not on disk
    assert choose_checkpoint(tmp_path, checkpoints, "loss") == tmp_path / "checkpoint-10"
    assert choose_checkpoint(tmp_path, checkpoints, "loss", requested=20) == tmp_path / "checkpoint-20"
    assert choose_checkpoint(tmp_path, checkpoints, "loss", requested="checkpoint-20") == tmp_path / "checkpoint-20"
    with pytest.raises(FtkitError, match="no checkpoint '30'"):
        choose_checkpoint(tmp_path, checkpoints, "loss", requested=30)
    (tmp_path / "best").mkdir()
    assert choose_checkpoint(tmp_path, checkpoints, "loss") == tmp_path / "best"


@pytest.mark.parametrize(("metric", "values", "best_step"), [
    ("loss", [0.9, 0.3, 0.5], 20),  # the index used to keep the highest value: the worst loss
    ("f1", [0.4, 0.8, 0.6], 20),
    ("loss", [0.3, 0.3, 0.5], 20),
])
def test_the_index_inference_and_the_trainer_agree_on_the_best_checkpoint(tmp_path, metric, values, best_step):
    store = RunStore(tmp_path / "runs")
    run_id = store.create_run(load_config(name="best", training={"metric_for_best_model": metric}))
    folder = store.run_dir(run_id)
    for step, value in zip((10, 20, 30), values):
        store.append_event(run_id, {"type": "eval", "split": "validation", "step": step,
                                    "metrics": {metric: value}, "best_metric_name": metric})
        (folder / checkpoint_name(step)).mkdir()
        store.append_event(run_id, {"type": "checkpoint", "step": step, "checkpoint": checkpoint_name(step),
                                    "metrics": {metric: value}})
    run = Run(run_id, store)
    expected = min(values) if metric == "loss" else max(values)
    assert run.info()["best_metric"] == {"name": f"validation_{metric}", "value": expected}
    assert run.checkpoint_path() == folder / checkpoint_name(best_step)

    from ftkit.engine.inference import checkpoint_path

    assert checkpoint_path(run) == folder / checkpoint_name(best_step)
    assert best_checkpoint(run.checkpoints, metric)["step"] == best_step


def test_training_arguments_take_greater_is_better_from_the_same_rule(tmp_path):
    from ftkit.engine.arguments import training_arguments

    for metric in ("loss", "f1"):
        config = load_config(training={"metric_for_best_model": metric, "device": "cpu"})
        args = training_arguments(config, tmp_path)
        assert args.metric_for_best_model == metric and args.greater_is_better is higher_is_better(metric)
    assert training_arguments(load_config(training={"metric_for_best_model": "loss", "device": "cpu"}),
                              tmp_path).greater_is_better is False


def test_inference_finds_checkpoints_recorded_by_name_or_by_an_old_absolute_path(tmp_path):
    from ftkit.engine.inference import checkpoint_path

    (tmp_path / "checkpoint-5").mkdir()
    (tmp_path / "checkpoint-9").mkdir()
    run = SimpleNamespace(id="r", dir=tmp_path, config=SimpleNamespace(best_metric="f1"), checkpoints=[
        {"step": 5, "path": "/a/store/that/moved/checkpoint-5", "metrics": {"f1": 0.9}},
        {"step": 9, "name": "checkpoint-9", "metrics": {"f1": 0.1}}])
    assert checkpoint_path(run) == tmp_path / "checkpoint-5"


def test_file_names_live_only_in_layout():
    """The modules that read or write run folders take their names from ftkit.runstore.layout."""
    import re

    package = Path(layout.__file__).parent
    literal = re.compile(r"""["'](config\.yaml|run\.json|events\.jsonl|train\.log|index\.sqlite|STOP)["']"""
                         r"""|f["']checkpoint-\{|endswith\(["']loss["']\)""")
    offenders = [f"{path.relative_to(package)}:{number}"
                 for path in package.rglob("*.py") if path.name != "layout.py"
                 for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if literal.search(line)]
    assert offenders == []
