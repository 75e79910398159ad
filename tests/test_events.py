"""The one fold of a run's event stream (ftkit.events.RunState), and the three readers that use it."""

from __future__ import annotations

from types import SimpleNamespace

from ftkit.config import load_config
from ftkit.events import RunState
from ftkit.store import RunStore

STREAM = [
    {"t": 1.0, "type": "status", "status": "running", "pid": 123},
    {"t": 1.5, "type": "phase", "name": "tokenising", "message": "tokenising 64/64"},
    {"t": 2.0, "type": "progress", "step": 5, "total_steps": 20, "epoch": 0.25, "loss": 1.5, "samples_per_second": 10.0,
     "eta_seconds": 30.0},
    {"t": 3.0, "type": "eval", "split": "validation", "step": 10, "epoch": 0.5, "best_metric_name": "loss",
     "metrics": {"loss": 0.9, "f1": 0.4, "note": "text"}},
    {"t": 3.1, "type": "checkpoint", "step": 10, "checkpoint": "checkpoint-10", "size": 7, "metrics": {"loss": 0.9},
     "kept": [10]},
    {"t": 4.0, "type": "progress", "step": 10, "total_steps": 20, "epoch": 0.5, "loss": 1.0},
    {"t": 5.0, "type": "eval", "split": "validation", "step": 20, "epoch": 1.0, "best_metric_name": "loss",
     "metrics": {"loss": 1.2, "f1": 0.5}},  # a worse loss: the best stays at 0.9
    {"t": 5.1, "type": "checkpoint", "step": 20, "path": "/an/old/store/run/checkpoint-20", "metrics": {"loss": 1.2},
     "kept": [10, 20]},
    {"t": 5.5, "type": "progress", "step": 8, "total_steps": 20, "loss": 1.1},  # resumed from an earlier step
    {"t": 6.0, "type": "log", "message": "stop requested"},
    {"t": 7.0, "type": "status", "status": "stopped"},
]


def test_the_fold_gives_status_progress_metrics_best_and_checkpoints():
    state = RunState.from_events(STREAM)
    assert state.status == "stopped" and state.finished and state.pid is None
    assert (state.started, state.ended, state.updated) == (1.0, 7.0, 7.0)
    assert state.phase == "tokenising"
    assert state.progress["step"] == 8 and state.progress["total_steps"] == 20 and state.progress["eta_seconds"] is None
    assert state.metrics == {"validation": {"loss": 1.2, "f1": 0.5}}  # the latest numbers per split
    assert [m["value"] for m in state.metric_history if m["name"] == "loss"] == [0.9, 1.2]
    assert state.best_metric == {"name": "validation_loss", "value": 0.9}  # lower is better for a loss
    assert {s: c["name"] for s, c in state.checkpoints.items()} == {10: "checkpoint-10", 20: "checkpoint-20"}
    assert state.last_checkpoint == 20
    assert state.loss_curve == [(5, 1.5), (10, 1.0)]  # no point goes back in steps
    assert len(state.evaluations) == 2


def test_each_update_says_what_changed():
    state = RunState()
    running = state.apply(STREAM[0])
    assert running.summary == {"status": "running", "updated": 1.0, "error": None, "started": 1.0, "pid": 123,
                               "ended": None}
    progress = state.apply(STREAM[2])
    assert progress.loss_point == (5, 1.5) and progress.summary["step"] == 5
    evaluation = state.apply(STREAM[3])
    assert [m["name"] for m in evaluation.metrics] == ["loss", "f1"]  # text values are not metrics
    assert evaluation.summary["best_metric"] == 0.9 and evaluation.evaluation["split"] == "validation"
    checkpoint = state.apply(STREAM[4])
    assert checkpoint.checkpoint["name"] == "checkpoint-10" and checkpoint.kept == [10]
    assert state.apply({"type": "log", "message": "hello", "t": 9}).message == "hello"
    assert state.apply({"type": "checkpoint_deleted", "step": 10, "t": 10}).deleted_step == 10
    assert state.checkpoints == {}


def test_a_test_score_is_the_final_word_and_rotation_forgets_checkpoints():
    state = RunState()
    state.apply({"type": "eval", "split": "validation", "metrics": {"f1": 0.9}, "best_metric_name": "f1"})
    state.apply({"type": "eval", "split": "test", "metrics": {"f1": 0.7}, "best_metric_name": "f1"})
    assert state.best_metric == {"name": "test_f1", "value": 0.7}
    for step in (1, 2, 3):
        state.apply({"type": "checkpoint", "step": step, "checkpoint": f"checkpoint-{step}", "kept": [max(1, step - 1), step]})
    assert sorted(state.checkpoints) == [2, 3]


def test_unknown_and_malformed_events_change_nothing():
    state = RunState()
    for event in ({"type": "mystery"}, {"type": "eval"}, {"type": "status", "status": "sleeping"},
                  {"type": "checkpoint", "step": "x"}, {}, {"type": "progress", "step": None, "loss": None}):
        state.apply(event)
    assert state.status == "queued" and state.metrics == {} and state.checkpoints == {} and state.loss_curve == []


def test_the_store_index_says_what_the_fold_says(tmp_path):
    store = RunStore(tmp_path / "runs")
    run_id = store.create_run(load_config(name="folded", training={"metric_for_best_model": "loss"}))
    for event in STREAM:
        store.append_event(run_id, event)
    events, _ = store.read_events(run_id)
    state = RunState.from_events(events)
    detail = store.get(run_id)
    assert detail["status"] == state.status
    assert {k: v for k, v in detail["progress"].items() if v is not None} == \
        {k: v for k, v in state.progress.items() if v is not None}
    assert detail["metrics"] == state.metrics
    assert detail["best_metric"] == state.best_metric
    assert [(c["step"], c["name"]) for c in detail["checkpoints"]] == \
        [(s, c["name"]) for s, c in sorted(state.checkpoints.items())]
    assert all(c["path"] == str(store.run_dir(run_id) / c["name"]) for c in detail["checkpoints"])
    store.rebuild_index()
    assert store.get(run_id)["best_metric"] == state.best_metric


def test_the_cli_follow_prints_from_the_fold(capsys):
    from ftkit.cli import _follow

    run = SimpleNamespace(id="r1", name="folded", status="stopped", error=None, follow=lambda poll: iter(STREAM))
    assert _follow(run, quiet=False) == 0
    err = capsys.readouterr()
    shown = err.err + err.out
    assert "validation @ step 10: f1 0.4000" in shown and "stop requested" in shown and "tokenising 64/64" in shown
    assert "run r1 stopped" in err.out
