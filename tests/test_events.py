"""The one fold of a run's event stream (ftkit.runstore.events.RunState), and the three readers that use it."""

from __future__ import annotations

from types import SimpleNamespace

from ftkit.config import load_config
from ftkit.runstore.events import PHASES, RunState, phase_text
from ftkit.runstore import RunStore

STREAM = [
    {"t": 1.0, "type": "status", "status": "running", "pid": 123},
    {"t": 1.5, "type": "phase", "name": "tokenising", "message": "tokenising 64/64"},
    {"t": 2.0, "type": "log", "step": 5, "epoch": 0.25, "loss": 1.5, "learning_rate": 5e-5, "grad_norm": 3.0},
    {"t": 2.0, "type": "progress", "step": 5, "total_steps": 20, "epoch": 0.25, "loss": 1.5, "samples_per_second": 10.0,
     "eta_seconds": 30.0},
    {"t": 3.0, "type": "eval", "split": "validation", "step": 10, "epoch": 0.5, "best_metric_name": "loss",
     "metrics": {"loss": 0.9, "f1": 0.4, "note": "text"}},
    {"t": 3.1, "type": "checkpoint", "step": 10, "checkpoint": "checkpoint-10", "size": 7, "metrics": {"loss": 0.9},
     "kept": [10]},
    {"t": 4.0, "type": "log", "step": 10, "epoch": 0.5, "loss": 1.0, "learning_rate": 4e-5, "grad_norm": None},
    {"t": 4.0, "type": "progress", "step": 10, "total_steps": 20, "epoch": 0.5, "loss": 1.0},
    {"t": 5.0, "type": "eval", "split": "validation", "step": 20, "epoch": 1.0, "best_metric_name": "loss",
     "metrics": {"loss": 1.2, "f1": 0.5}},  # a worse loss: the best stays at 0.9
    {"t": 5.1, "type": "checkpoint", "step": 20, "path": "/an/old/store/run/checkpoint-20", "metrics": {"loss": 1.2},
     "kept": [10, 20]},
    {"t": 5.5, "type": "log", "step": 8, "loss": 1.1, "learning_rate": 4.5e-5},  # resumed from an earlier step
    {"t": 5.5, "type": "progress", "step": 8, "total_steps": 20, "loss": 1.1},
    {"t": 6.0, "type": "log", "message": "stop requested"},
    {"t": 7.0, "type": "status", "status": "stopped"},
]


def test_the_fold_gives_status_progress_metrics_best_and_checkpoints():
    state = RunState.from_events(STREAM)
    assert state.status == "stopped" and state.finished and state.pid is None
    assert (state.started, state.ended, state.updated) == (1.0, 7.0, 7.0)
    assert state.phase is None  # training started (and the run ended): no phase is under way
    assert state.progress["step"] == 8 and state.progress["total_steps"] == 20 and state.progress["eta_seconds"] is None
    assert state.metrics == {"validation": {"loss": 1.2, "f1": 0.5}}  # the latest numbers per split
    assert [e["metrics"]["loss"] for e in state.evaluations] == [0.9, 1.2]
    assert state.best_metric == {"name": "validation_loss", "value": 0.9}  # lower is better for a loss
    assert {s: c["name"] for s, c in state.checkpoints.items()} == {10: "checkpoint-10", 20: "checkpoint-20"}
    assert state.last_checkpoint == 20
    # each curve holds the values logged at their steps, evaluations as <split>_<metric>; the resumed
    # attempt's step-8 point replaces the first attempt's from step 8 on, so a curve is what the latest
    # attempt did (as `compare` draws it)
    assert state.curves == {"loss": [(5, 1.5), (8, 1.1)], "learning_rate": [(5, 5e-5), (8, 4.5e-5)],
                            "grad_norm": [(5, 3.0)], "validation_loss": [(10, 0.9), (20, 1.2)],
                            "validation_f1": [(10, 0.4), (20, 0.5)]}
    assert len(state.evaluations) == 2


def test_each_update_says_what_changed():
    state = RunState()
    running = state.apply(STREAM[0])
    assert running.summary == {"status": "running", "updated": 1.0, "error": None, "started": 1.0, "pid": 123,
                               "ended": None}
    logged = state.apply(STREAM[2])
    assert logged.curve_points == {"loss": (5, 1.5), "learning_rate": (5, 5e-5), "grad_norm": (5, 3.0)}
    progress = state.apply(STREAM[3])
    assert progress.curve_points == {} and progress.summary["step"] == 5  # progress repeats a loss; it draws none
    evaluation = state.apply(STREAM[4])
    assert [m["name"] for m in evaluation.metrics] == ["loss", "f1"]  # text values are not metrics
    assert evaluation.summary["best_metric"] == 0.9 and evaluation.evaluation["split"] == "validation"
    checkpoint = state.apply(STREAM[5])
    assert checkpoint.checkpoint["name"] == "checkpoint-10" and checkpoint.kept == [10]
    assert state.apply({"type": "log", "message": "hello", "t": 9}).message == "hello"
    resumed = state.apply({"type": "log", "step": 5, "loss": 1.4, "t": 9.5})  # back to an earlier checkpoint
    assert resumed.rewound_curves == {"loss"} and state.curves["loss"] == [(5, 1.4)]
    assert state.apply({"type": "checkpoint_deleted", "step": 10, "t": 10}).deleted_step == 10
    assert state.checkpoints == {}


def test_the_best_metric_ranks_validation_scores_only_and_rotation_forgets_checkpoints():
    state = RunState()
    state.apply({"type": "eval", "split": "validation", "metrics": {"f1": 0.9}, "best_metric_name": "f1"})
    test = state.apply({"type": "eval", "split": "test", "metrics": {"f1": 0.95}, "best_metric_name": "f1"})
    state.apply({"type": "eval", "split": "validation", "metrics": {"f1": 0.8}, "best_metric_name": "f1"})
    assert state.best_metric == {"name": "validation_f1", "value": 0.9}  # neither the test score nor a worse one
    assert "best_metric" not in test.summary and state.metrics["test"] == {"f1": 0.95}
    for step in (1, 2, 3):
        state.apply({"type": "checkpoint", "step": step, "checkpoint": f"checkpoint-{step}", "kept": [max(1, step - 1), step]})
    assert sorted(state.checkpoints) == [2, 3]


def test_unknown_and_malformed_events_change_nothing():
    state = RunState()
    for event in ({"type": "mystery"}, {"type": "eval"}, {"type": "status", "status": "sleeping"},
                  {"type": "checkpoint", "step": "x"}, {}, {"type": "progress", "step": None, "loss": None},
                  {"type": "log", "step": None, "loss": 1.0}, {"type": "log", "step": 4, "loss": float("nan")}):
        state.apply(event)
    assert state.status == "queued" and state.metrics == {} and state.checkpoints == {} \
        and state.curves == {"loss": [], "learning_rate": [], "grad_norm": []}


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


def followed_run(run_id: str, name: str, status: str, stream: list) -> SimpleNamespace:
    """A run as `follow_in_terminal` reads it: no summary yet, then ``stream`` as it is written."""
    return SimpleNamespace(id=run_id, name=name, status=status, error=None, follow=lambda offset: iter(stream),
                           store=SimpleNamespace(read_state=lambda _: (RunState(), 0)))


def test_the_cli_follow_prints_from_the_fold(capsys):
    from ftkit.terminal import follow_in_terminal

    run = followed_run("r1", "folded", "stopped", STREAM)
    assert follow_in_terminal(run, quiet=False) == 0
    err = capsys.readouterr()
    shown = err.err + err.out
    assert "validation @ step 10: f1 0.4000" in shown and "stop requested" in shown and "tokenising 64/64" in shown
    assert "run r1 stopped" in err.out


PHASE_STREAM = [
    {"t": 0.1, "type": "phase", "phase": "starting"},
    {"t": 0.5, "type": "status", "status": "running", "pid": 7},
    {"t": 1.0, "type": "phase", "phase": "reading data", "done": 0, "total": 2, "detail": "train.txt"},
    {"t": 1.2, "type": "phase", "phase": "tokenising", "done": 1000, "total": 4000, "detail": "train"},
    {"t": 1.4, "type": "phase", "phase": "tokenising", "done": 200, "total": 200, "detail": "validation", "cached": True},
    {"t": 1.6, "type": "phase", "phase": "loading model", "detail": "default"},
    {"t": 2.0, "type": "progress", "step": 0, "total_steps": 10},
    {"t": 2.1, "type": "phase", "phase": "first step"},
]


def test_phases_fold_into_a_current_phase_with_its_count_and_end_with_the_first_step():
    state = RunState()
    texts = [state.apply(event).message for event in PHASE_STREAM]
    assert texts[0] == "starting" and texts[2] == "reading data train.txt 0/2"
    assert texts[3] == "tokenising train 1,000/4,000"
    assert texts[4] == "tokenising validation (cached) 200/200"
    assert state.phase == "first step" and state.phase_info == {"name": "first step", "done": None, "total": None,
                                                                  "detail": None}
    update = state.apply({"t": 3.0, "type": "progress", "step": 1, "total_steps": 10, "loss": 2.0})
    assert state.phase is None and update.summary["phase"] is None
    assert phase_text(None) == "" and PHASES[:2] == ("waiting for device", "starting") and PHASES[-1] == "first step"


def test_a_final_status_ends_the_phase_and_a_phase_update_names_its_columns():
    state = RunState()
    update = state.apply(PHASE_STREAM[3])
    assert update.summary == {"phase": "tokenising", "phase_done": 1000, "phase_total": 4000, "phase_detail": "train",
                              "updated": 1.2}
    state.apply({"t": 2.0, "type": "status", "status": "failed", "error": "boom"})
    assert state.phase is None
    assert state.apply({"type": "phase", "phase": 3}).summary == {}  # a malformed phase changes nothing


def test_the_index_row_carries_the_current_phase(tmp_path):
    store = RunStore(tmp_path / "runs")
    run_id = store.create_run(load_config(name="phased"))
    store.append_event(run_id, {"type": "phase", "phase": "starting"})
    assert store.list_runs()[0][0]["phase"] == {"name": "starting", "done": None, "total": None, "detail": None}
    token = store.change_token()
    store.append_event(run_id, {"type": "phase", "phase": "tokenising", "done": 5, "total": 9, "detail": "train"})
    assert store.change_token() != token  # the live channel wakes for a phase
    assert store.get(run_id)["phase"] == {"name": "tokenising", "done": 5, "total": 9, "detail": "train"}
    store.append_event(run_id, {"type": "progress", "step": 1, "total_steps": 9})
    assert store.get(run_id)["phase"] is None
    store.append_event(run_id, {"type": "phase", "phase": "tokenising", "done": 9, "total": 9, "detail": "train"})
    store.rebuild_index()
    assert store.get(run_id)["phase"]["done"] == 9


def test_the_cli_follow_shows_each_phase(capsys):
    from ftkit.terminal import follow_in_terminal

    stream = [*PHASE_STREAM, {"t": 3.0, "type": "progress", "step": 10, "total_steps": 10},
              {"t": 4.0, "type": "status", "status": "completed"}]
    run = followed_run("r2", "phased", "completed", stream)
    assert follow_in_terminal(run, quiet=False) == 0
    captured = capsys.readouterr()
    shown = captured.err + captured.out
    for text in ("starting", "reading data train.txt 0/2", "tokenising train 1,000/4,000",
                 "tokenising validation (cached) 200/200", "loading model default", "first step"):
        assert text in shown, text


# What the worker writes for a TRL preference run: the well-known curves at the top level, every other
# number under "values"; the evaluation's metrics with "eval_" stripped, names with "/" included.
PREFERENCE_STREAM = [
    {"t": 1.0, "type": "log", "step": 5, "epoch": 0.1, "loss": 0.69, "learning_rate": 5e-6, "grad_norm": 8.0,
     "values": {"rewards/chosen": 0.01, "rewards/rejected": -0.02, "rewards/margins": 0.03,
                "rewards/accuracies": 0.5, "logps/chosen": -120.5, "logits/rejected": -1.5, "entropy": 2.0}},
    {"t": 2.0, "type": "eval", "split": "validation", "step": 10, "epoch": 0.2, "best_metric_name": "loss",
     "metrics": {"loss": 0.6, "rewards/accuracies": 0.7, "rewards/margins": 0.2, "runtime": 1.5}},
    {"t": 3.0, "type": "log", "step": 10, "epoch": 0.2, "loss": 0.6, "learning_rate": 4e-6, "grad_norm": None,
     "values": {"rewards/chosen": 0.05, "rewards/rejected": float("nan"), "rewards/margins": 0.2, "note": "text"}},
]


def test_every_number_a_log_event_carries_folds_into_a_curve_of_its_name():
    state = RunState()
    update = state.apply(PREFERENCE_STREAM[0])
    assert update.curve_points == {"loss": (5, 0.69), "learning_rate": (5, 5e-6), "grad_norm": (5, 8.0),
                                   "rewards/chosen": (5, 0.01), "rewards/rejected": (5, -0.02),
                                   "rewards/margins": (5, 0.03), "rewards/accuracies": (5, 0.5),
                                   "logps/chosen": (5, -120.5), "logits/rejected": (5, -1.5), "entropy": (5, 2.0)}
    for event in PREFERENCE_STREAM[1:]:
        state.apply(event)
    # the well-known curves first, then the others in the order they came; NaN and text are no points
    assert list(state.curves)[:3] == ["loss", "learning_rate", "grad_norm"]
    assert state.curves["rewards/chosen"] == [(5, 0.01), (10, 0.05)]
    assert state.curves["rewards/rejected"] == [(5, -0.02)] and "note" not in state.curves
    assert state.curves["validation_rewards/accuracies"] == [(10, 0.7)]
    # the evaluation's curves are the metrics; a training value never is one
    assert state.logged.metric_names == ["validation_loss", "validation_rewards/accuracies", "validation_rewards/margins"]
    assert state.logged.last_metrics() == {"validation_loss": 0.6, "validation_rewards/accuracies": 0.7,
                                           "validation_rewards/margins": 0.2}
    assert state.metrics["validation"]["rewards/accuracies"] == 0.7
    # a resumed attempt rewinds these curves as it rewinds the loss
    resumed = state.apply({"type": "log", "step": 5, "loss": 0.7, "values": {"rewards/chosen": 0.02}})
    assert resumed.rewound_curves == {"loss", "rewards/chosen"} and state.curves["rewards/chosen"] == [(5, 0.02)]
    assert state.curves["rewards/margins"] == [(5, 0.03), (10, 0.2)]  # not logged again: left as it was


def test_log_events_from_before_values_fold_as_they_always_did():
    old = RunState.from_events([{"type": "log", "step": 5, "epoch": 0.25, "loss": 1.5, "learning_rate": 5e-5,
                                 "grad_norm": 3.0, "t": 2.0}])
    assert old.curves == {"loss": [(5, 1.5)], "learning_rate": [(5, 5e-5)], "grad_norm": [(5, 3.0)]}
    assert RunState.from_events([{"type": "log", "step": 5, "loss": 1.0, "values": [1, 2]}]).curves["loss"] == [(5, 1.0)]


def test_curves_and_metrics_named_with_a_slash_reach_the_index_and_back(tmp_path):
    store = RunStore(tmp_path / "runs")
    run_id = store.create_run(load_config(name="preference", training={"metric_for_best_model": "loss"}))
    for event in PREFERENCE_STREAM:
        store.append_event(run_id, event)
    store.rebuild_index()
    detail = store.get(run_id)
    assert detail["metrics"] == RunState.from_events(PREFERENCE_STREAM).metrics
    assert detail["metrics"]["validation"]["rewards/accuracies"] == 0.7
    assert detail["best_metric"] == {"name": "validation_loss", "value": 0.6}


def generation_eval(step: int, exact_match: float, split: str = "validation", answers: bool = True) -> dict:
    """A validation evaluation that generated answers, as the engine writes it with ``generate_every``."""
    event = {"t": float(step), "type": "eval", "split": split, "step": step, "epoch": step / 64,
             "best_metric_name": "exact_match",
             "metrics": {"loss": 0.41, "perplexity": 1.5, "runtime": 3.1, "exact_match": exact_match,
                         "label_accuracy": 0.86, "stopped": 1.0, "samples": 64, "generation_seconds": 9.4}}
    if answers:
        event["answers"] = [{"prompt": f"Review {i}\nIs this review positive or negative?", "reference": "positive",
                             "generation": "positive" if i else "negative", "match": bool(i)} for i in range(8)]
    return event


def test_how_many_answers_were_generated_and_in_how_long_are_no_curves():
    state = RunState.from_events([generation_eval(20, 0.81), generation_eval(40, 0.9, split="test", answers=False)])
    assert state.curves["validation_exact_match"] == [(20, 0.81)] and state.curves["test_exact_match"] == [(40, 0.9)]
    assert state.logged.metric_names == ["validation_loss", "validation_perplexity", "validation_exact_match",
                                         "validation_label_accuracy", "validation_stopped", "test_loss",
                                         "test_perplexity", "test_exact_match", "test_label_accuracy", "test_stopped"]
    assert not any(name.endswith(("_samples", "_generation_seconds", "_runtime")) for name in state.curves)
    assert state.metrics["validation"]["generation_seconds"] == 9.4  # still a figure of the evaluation


def test_the_fold_keeps_the_answers_of_the_latest_validation_evaluation_alone():
    state = RunState()
    first = state.apply(generation_eval(20, 0.5))
    assert state.answered["step"] == 20 and state.answered["metrics"]["generation_seconds"] == 9.4
    assert [answer["match"] for answer in state.answered["answers"]] == [False] + [True] * 7
    later = generation_eval(40, 0.75)
    later["answers"][0]["generation"] = "positive"
    state.apply(later)
    state.apply({"type": "eval", "split": "validation", "step": 50, "metrics": {"loss": 0.3}})  # no generation
    state.apply({**generation_eval(60, 0.8, split="test"), "answers": [{"prompt": "a test answer"}]})
    assert state.answered["step"] == 40 and state.answered["answers"][0]["generation"] == "positive"
    # the answers of earlier evaluations are not kept: every evaluation is held without its answers
    assert [evaluation["step"] for evaluation in state.evaluations] == [20, 40, 50, 60]
    assert not any("answers" in evaluation for evaluation in (first.evaluation, *state.evaluations))
    assert RunState.from_events([generation_eval(20, 0.5, answers=False)]).answered is None


def test_a_queued_run_whose_processes_have_begun_reads_starting():
    from ftkit.runstore.events import shown_status

    assert shown_status("queued", None) == "queued"
    assert shown_status("queued", {"name": "waiting for device", "detail": "2 runs ahead"}) == "queued"
    assert shown_status("queued", {"name": "starting"}) == "starting"
    assert shown_status("queued", {"name": "reading data", "done": 1, "total": 2}) == "starting"
    assert shown_status("running", {"name": "tokenising"}) == "running"


def test_the_monitor_and_the_runs_table_show_a_starting_run_as_starting(tmp_path):
    from ftkit.notebook.display import runs_table_html
    from ftkit.notebook.widgets.monitor import RunMonitor
    from ftkit.runs import Run

    store = RunStore(tmp_path / "runs")
    run_id = store.create_run(load_config({"name": "importing"}))
    store.append_event(run_id, {"type": "phase", "phase": "starting"})
    monitor = RunMonitor(Run(run_id, store), follow=False)
    assert ">starting</span>" in monitor.status_badge.value
    monitor.close()
    assert ">starting</span>" in runs_table_html(store.list_runs()[0])
