"""Which checkpoint a run ends on: the one that scored best on validation when the validation split is big
enough to tell checkpoints apart, else the last (issue 31: 38 held-out tweets chose worse than the last
epoch); the choice reaches every reader, so what loads by default is what was tested."""

from __future__ import annotations

import os

import pytest

from ftkit.config import load_config
from ftkit.engine.arguments import MIN_EXAMPLES_TO_CHOOSE, keeps_best, training_arguments
from ftkit.runstore import RunStore
from ftkit.runstore.events import RunState
from ftkit.runstore.layout import best_checkpoint


@pytest.mark.parametrize("training, examples, kept", [
    ({}, MIN_EXAMPLES_TO_CHOOSE, "best"),
    ({}, MIN_EXAMPLES_TO_CHOOSE - 1, "last"),  # ftkit's 2% of a small train set
    ({}, None, "best"),  # no validation: nothing to choose by, nothing changes
    ({"final_checkpoint": "best"}, 38, "best"),
    ({"final_checkpoint": "last"}, 10_000, "last"),
    ({"early_stopping_patience": 2}, 38, "best"),  # stopping on the metric is choosing by it
    ({"metric_for_best_model": "loss"}, 38, "best"),  # and so is naming it
])
def test_the_best_checkpoint_is_chosen_only_on_a_validation_split_big_enough(tmp_path, training, examples, kept):
    config = load_config({"training": {"device": "cpu", **training}})
    assert keeps_best(config, examples) == (kept == "best")
    assert training_arguments(config, tmp_path, validation_examples=examples).load_best_model_at_end == (kept == "best")


def test_a_run_that_kept_its_last_checkpoint_loads_it_by_default_though_an_earlier_one_scored_higher(tmp_path):
    store = RunStore(tmp_path / "runs")
    run_id = store.create_run(load_config({"name": "kept-last"}))
    store.set_status(run_id, "running", pid=os.getpid())
    for step, f1 in ((10, 0.6), (20, 0.5)):
        store.append_event(run_id, {"type": "eval", "split": "validation", "step": step, "best_metric_name": "f1",
                                    "metrics": {"f1": f1}})
        store.append_event(run_id, {"type": "checkpoint", "step": step, "checkpoint": f"checkpoint-{step}",
                                    "metrics": {"f1": f1}, "kept": [10, step], "ranked": False})
        (store.run_dir(run_id) / f"checkpoint-{step}").mkdir()
    store.set_status(run_id, "completed")
    checkpoints = store.checkpoints(run_id)
    assert [c["ranked"] for c in checkpoints] == [False, False] and checkpoints[0]["metrics"] == {"f1": 0.6}
    assert best_checkpoint(checkpoints, "f1")["step"] == 20
    assert store.get(run_id)["best_checkpoint"] == 20
    assert RunState.from_events(store.read_events(run_id)[0]).best_checkpoint == 20
    from ftkit.runs import Run

    assert Run(run_id, store).checkpoint_path().name == "checkpoint-20"
    ranked = [{**c, "ranked": True} for c in checkpoints]
    assert best_checkpoint(ranked, "f1")["step"] == 10  # the same scores, chosen by: the best
