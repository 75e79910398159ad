"""RunMonitor follows a run's event stream: progress, the logged curves, evaluation table, generated
answers, stop and the result in its place, why a plot is empty, errors, re-attach."""

from __future__ import annotations

import json
import os
import time
from xml.etree import ElementTree

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

import ftkit.rendering
import ftkit.runs
from ftkit.config import Config, load_config
from ftkit.runs import Run
from ftkit.runstore import RunStore
from ftkit.notebook.widgets import register_run_formatter
from ftkit.notebook.display import eval_table_html
from ftkit.notebook.widgets.monitor import RunMonitor, show_run


@pytest.fixture
def store(runs_dir) -> RunStore:
    return RunStore()


@pytest.fixture
def run(store) -> Run:
    run_id = store.create_run(Config(name="monitored"))
    store.set_status(run_id, "running", pid=os.getpid())
    return Run(run_id, store)


def progress(store: RunStore, run: Run, step: int, total: int = 100, loss: float | None = 0.5) -> None:
    store.append_event(run.id, {"type": "progress", "step": step, "total_steps": total, "epoch": step / 50,
                                "samples_per_second": 64.0, "eta_seconds": (total - step) * 0.5, "loss": loss})


# (step, loss, learning rate, gradient norm) as a 30-step run logging every 5 steps reports them
LOGGED = [(5, 1.31, 5.0e-5, 4.2), (10, 1.02, 4.2e-5, 3.3), (15, 0.87, 3.3e-5, 2.9), (20, 0.74, 2.5e-5, 2.1),
          (25, 0.658, 1.7e-5, 1.8), (30, 0.4435, 0.8e-5, 1.2)]


def train(store: RunStore, run: Run, logged=LOGGED, total: int = 30) -> None:
    """Write what the worker's EventCallback writes: at each logging step a progress event that still
    carries the loss logged before it, the log event, then a progress event with the new loss."""
    last = None
    for step, loss, rate, norm in logged:
        progress(store, run, step, total, loss=last)
        store.append_event(run.id, {"type": "log", "step": step, "epoch": step / total, "loss": loss,
                                    "learning_rate": rate, "grad_norm": norm})
        progress(store, run, step, total, loss=loss)
        last = loss


def evaluation(store: RunStore, run: Run, step: int, f1: float, split: str = "validation") -> None:
    store.append_event(run.id, {"type": "eval", "split": split, "step": step, "epoch": step / 50,
                                "best_metric_name": "f1",
                                "metrics": {"loss": 0.4, "precision": 0.7, "recall": 0.8, "f1": f1,
                                            "PER_precision": 0.9, "PER_recall": 0.85, "PER_f1": 0.87,
                                            "LOC_precision": 0.6, "LOC_recall": 0.5, "LOC_f1": 0.55}})


def curve(monitor: RunMonitor, name: str) -> list[tuple[int, float]]:
    data = monitor.curve_sources[name].data
    return list(zip(data["step"], data["value"]))


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the monitor did not catch up in time"
        time.sleep(0.05)


def test_the_curves_are_the_logged_values_at_their_steps_up_to_the_last(store, run):
    train(store, run)
    monitor = RunMonitor(run, follow=False)
    assert curve(monitor, "loss") == [(step, loss) for step, loss, _, _ in LOGGED]
    assert curve(monitor, "learning_rate") == [(step, rate) for step, _, rate, _ in LOGGED]
    assert curve(monitor, "grad_norm") == [(step, norm) for step, _, _, norm in LOGGED]
    assert "loss 0.4435" in monitor.progress_label.value  # the label and the curve's end agree
    assert monitor.optimizer_figure.x_range is monitor.figure.x_range  # zooming one zooms both


def test_monitor_shows_progress_curves_and_an_evaluation_table_from_events(store, run):
    train(store, run, total=100)
    evaluation(store, run, 30, f1=0.61)
    monitor = RunMonitor(run, follow=False)

    assert (monitor.progress_bar.value, monitor.progress_bar.max) == (30, 100)
    label = monitor.progress_label.value
    assert "step 30/100" in label and "64.0 samples/s" in label and "ETA 0:35" in label
    assert "running" in monitor.status_badge.value
    assert monitor.eval_source.data["metric"] == [0.61]
    assert monitor.plot.layout.display is None and monitor.plot_note.value == ""


def test_the_evaluation_table_puts_entity_types_in_rows_inside_a_scrolling_box():
    """Columns per entity type made the table wider than the output; rows keep it as wide as the scores."""
    kinds = ["PER", "LOC", "ORG", "MISC", "DATE", "EVENT", "PRODUCT", "WORK_OF_ART"]
    def scores(f1):
        return {"loss": 0.4, "f1": f1, **{f"{k}_{name}": 0.5 for k in kinds for name in ("precision", "recall", "f1")},
                "PER_f1": f1}
    table = ElementTree.fromstring(eval_table_html([
        {"split": "validation", "step": 10, "epoch": 0.5, "metrics": scores(0.4)},
        {"split": "validation", "step": 20, "epoch": 1.0, "metrics": scores(0.6)},
        {"split": "test", "step": 20, "epoch": 1.0, "metrics": scores(0.55)},
    ]))
    assert table.get("class") == "ftkit-eval" and "overflow-x:auto" in table.get("style")
    overall, *by_entity = table.findall(".//table")
    assert [th.text for th in overall.iter("th")] == ["split", "epoch", "step", "loss", "f1"]
    assert [[td.text for td in row.iter("td")][:4] for row in overall.find("tbody")] == [
        ["validation", "0.50", "10", "0.4000"], ["validation", "1.00", "20", "0.4000"], ["test", "1.00", "20", "0.4000"]]
    # one table per split, for its latest evaluation: a row per entity type
    titles = [box.find("div").text for box in table.findall("div[@class='ftkit-eval-entities']")]
    assert titles == ["validation by entity type, step 20", "test by entity type, step 20"]
    validation = by_entity[0]
    assert [th.text for th in validation.iter("th")] == ["type", "precision", "recall", "f1"]  # no support given
    rows = {row[0].text: [td.text for td in row][1:4] for row in validation.find("tbody")}
    assert sorted(rows) == sorted(kinds) and rows["PER"] == ["0.5000", "0.5000", "0.6000"]


def test_an_empty_plot_gives_way_to_a_line_saying_why(store, run):
    store.append_event(run.id, {"type": "phase", "phase": "loading model", "detail": "default"})
    monitor = RunMonitor(run, follow=False)
    assert monitor.plot.layout.display == "none"
    assert "No curves yet (loading model default); the first training loss is logged at step 10" \
        in monitor.plot_note.value  # Config's logging_steps
    progress(store, run, 3, loss=None)
    monitor.poll()
    assert "training has started; the first training loss is logged at step 10" in monitor.plot_note.value
    train(store, run, logged=LOGGED[:1])
    monitor.poll()
    assert monitor.plot.layout.display is None and monitor.plot_note.value == ""


def test_a_run_that_failed_before_logging_says_so_in_place_of_the_plot(store, run):
    progress(store, run, 2, loss=None)
    store.set_status(run.id, "failed", error="RuntimeError: CUDA out of memory")
    monitor = RunMonitor(run, follow=False)
    assert monitor.plot.layout.display == "none"
    assert "No curves: the run failed before it logged a training loss (logged every 10 steps)." in monitor.plot_note.value


def test_the_monitor_sends_each_changed_curve_whole_once_per_poll(store, run):
    """Whole columns, not streamed increments: a view that hears a message twice (a plot shown twice
    on the page) still draws each point once."""
    train(store, run, logged=LOGGED[:1])
    monitor = RunMonitor(run, follow=False)
    changes = []
    monitor.figure.document.on_change(changes.append)  # what jupyter_bokeh sends to the browser
    train(store, run, logged=LOGGED[1:3])
    monitor.poll()
    monitor.poll()  # nothing new: nothing sent
    assert [type(change).__name__ for change in changes] == ["ColumnDataChangedEvent"] * 3
    assert {change.model.name for change in changes} == {"ftkit-loss", "ftkit-learning_rate", "ftkit-grad_norm"}
    assert monitor.curve_sources["loss"].data == {"step": [5, 10, 15], "value": [1.31, 1.02, 0.87]}
    assert monitor.curve_sources["grad_norm"].data == {"step": [5, 10, 15], "value": [4.2, 3.3, 2.9]}


def test_a_resumed_attempt_redraws_the_curves_from_its_checkpoints_step_on(store, run):
    train(store, run, logged=LOGGED[:4])  # the first attempt logged to step 20, its checkpoint was at step 10
    monitor = RunMonitor(run, follow=False)
    resumed = [(15, 0.9, 3.4e-5, 2.8), (20, 0.8, 2.6e-5, 2.2), (25, 0.7, 1.8e-5, 1.9)]
    train(store, run, logged=resumed)
    monitor.poll()
    assert curve(monitor, "loss") == [(5, 1.31), (10, 1.02), (15, 0.9), (20, 0.8), (25, 0.7)]
    assert curve(monitor, "grad_norm") == [(5, 4.2), (10, 3.3), (15, 2.8), (20, 2.2), (25, 1.9)]
    assert curve(RunMonitor(run, follow=False), "loss") == curve(monitor, "loss")  # a new view draws the same


def test_the_monitor_and_compare_draw_the_same_curves_for_a_resumed_run(store, run):
    """One fold of the event stream: after a resume rewinds to step 10, the monitor's training and
    validation curves are exactly the ones `compare` returns for the run, the latest attempt's."""
    from ftkit.comparison import comparison

    train(store, run, logged=LOGGED[:4])
    for step, f1 in ((10, 0.40), (20, 0.50)):
        evaluation(store, run, step, f1=f1)
    monitor = RunMonitor(run, follow=False)
    train(store, run, logged=[(15, 0.9, 3.4e-5, 2.8), (20, 0.8, 2.6e-5, 2.2)])  # resumed from checkpoint 10
    evaluation(store, run, 20, f1=0.65)
    monitor.poll()
    other = Run(store.create_run(Config(name="other")), store)
    train(store, other, logged=LOGGED[:1])
    compared = comparison([run, other])["curves"]
    for name in ("loss", "learning_rate", "grad_norm"):
        assert [list(point) for point in curve(monitor, name)] == compared[name][run.id]
    drawn = monitor.eval_source.data
    assert [[s, v] for s, v in zip(drawn["step"], drawn["metric"])] == compared["validation_f1"][run.id] == [[10, 0.4], [20, 0.65]]
    assert [[s, v] for s, v in zip(drawn["step"], drawn["eval_loss"])] == compared["validation_loss"][run.id]


def test_stop_button_asks_the_worker_to_stop(run):
    monitor = RunMonitor(run, follow=False)
    monitor.stop_button.click()
    assert (run.dir / "STOP").exists()
    assert monitor.stop_button.disabled and monitor.stop_button.description == "Stopping…"
    assert monitor.stop_button.layout.width == "auto"  # never cut off to "Stopp…"


@pytest.mark.parametrize("status", ["completed", "stopped", "failed"])
def test_a_finished_run_shows_its_result_in_place_of_the_stop_button(store, run, status):
    train(store, run)
    evaluation(store, run, 30, f1=0.61)
    store.append_event(run.id, {"type": "checkpoint", "step": 30, "checkpoint": "checkpoint-30", "kept": [30]})
    store.set_status(run.id, status, error="boom" if status == "failed" else None)
    monitor = RunMonitor(run, follow=False)
    assert monitor.stop_button.layout.display == "none"
    assert monitor.outcome.layout.display is None
    text = monitor.outcome.value
    assert f"{status}: 30/30 steps in " in text
    assert "final train loss 0.4435 · best validation_f1 0.6100 · best and last checkpoint at step 30" in text


def test_the_monitor_says_which_checkpoint_is_the_best_and_which_the_last(store, run):
    train(store, run)
    for step, f1 in ((10, 0.7), (20, 0.6)):
        evaluation(store, run, step, f1=f1)
        store.append_event(run.id, {"type": "checkpoint", "step": step, "checkpoint": f"checkpoint-{step}",
                                    "metrics": {"f1": f1}, "kept": [10, step]})
    monitor = RunMonitor(run, follow=False)
    assert "best checkpoint at step 10 · last at step 20" in monitor.progress_label.value
    store.set_status(run.id, "completed")
    monitor.poll()
    assert "best checkpoint at step 10 · last at step 20" in monitor.outcome.value


def test_a_stop_recorded_elsewhere_reaches_the_monitor_within_a_poll(store, run):
    """The panel or the CLI asks for the stop, the worker records it: the monitor follows both."""
    train(store, run, logged=LOGGED[:2])
    monitor = RunMonitor(run, poll_interval=0.05)
    try:
        store.request_stop(run.id)  # what the panel's stop button does
        wait_until(lambda: monitor.stop_button.description == "Stopping…", timeout=2)
        assert monitor.stop_button.disabled
        store.append_event(run.id, {"type": "checkpoint", "step": 10, "checkpoint": "checkpoint-10"})
        store.set_status(run.id, "stopped")  # what the worker writes once it has saved
        wait_until(lambda: monitor.stop_button.layout.display == "none", timeout=2)
        assert "stopped: 10/30 steps" in monitor.outcome.value and "checkpoint at step 10" in monitor.outcome.value
    finally:
        monitor.close()


def test_failed_run_shows_its_error_and_the_log_tail(store, run):
    (run.dir / "train.log").write_text("loading data\nTraceback ...\nRuntimeError: out of memory\n")
    store.set_status(run.id, "failed", error="RuntimeError: out of memory")
    monitor = RunMonitor(run, follow=False)
    assert monitor.finished and "failed" in monitor.status_badge.value
    assert monitor.error_box.layout.display != "none"
    assert "RuntimeError: out of memory" in monitor.error_box.value and "loading data" in monitor.error_box.value
    assert monitor.stop_button.layout.display == "none" and "failed: 0 steps" in monitor.outcome.value
    assert monitor.progress_bar.bar_style == "danger"


def test_monitor_follows_events_written_while_it_is_shown(store, run):
    monitor = RunMonitor(run, poll_interval=0.05)
    try:
        progress(store, run, 40)
        wait_until(lambda: monitor.progress_bar.value == 40)
        evaluation(store, run, 40, f1=0.7)
        store.set_status(run.id, "completed")
        wait_until(lambda: monitor.finished)
        assert monitor.eval_source.data["step"] == [40]
        assert monitor.progress_bar.bar_style == "success"
        monitor._thread.join(timeout=5)
        assert not monitor._thread.is_alive()  # the follower ends with the run
    finally:
        monitor.close()


def test_a_new_monitor_on_a_running_run_replays_its_history(store, run):
    """After a kernel restart, `ftkit.runs.get(ID)` and a fresh monitor show everything so far."""
    train(store, run, logged=LOGGED[:2])
    evaluation(store, run, 10, f1=0.5)
    reattached = ftkit.runs.get(run.id)
    monitor = RunMonitor(reattached, poll_interval=0.05)
    try:
        assert curve(monitor, "loss") == [(5, 1.31), (10, 1.02)]
        assert monitor.eval_source.data["metric"] == [0.5]
        train(store, run, logged=LOGGED[2:3])
        wait_until(lambda: curve(monitor, "loss") == [(5, 1.31), (10, 1.02), (15, 0.87)])
    finally:
        monitor.close()


def test_monitor_marks_a_run_whose_worker_died_as_failed(store, runs_dir):
    run_id = store.create_run(Config(name="orphan"))
    store.set_status(run_id, "running", pid=2**22 + 12345)  # no such process
    monitor = RunMonitor(Run(run_id, store), follow=False)
    assert monitor.poll()
    assert monitor.status == "failed" and "died" in monitor.error_box.value


def test_displaying_a_run_shows_its_live_monitor(run, monkeypatch):
    monkeypatch.setenv("FTKIT_MONITOR", "widget")
    monkeypatch.setattr(ftkit.rendering, "_bokehjs_loaded", False)
    shell = InteractiveShell.instance()
    assert register_run_formatter(shell)
    with capture_output() as captured:
        shell.display_formatter.format(run)  # what display(run) and a cell ending in `run` do
    loader, monitor = captured.outputs  # BokehJS from the installed package, then the monitor
    assert "application/vnd.bokehjs_load.v0+json" in loader.data
    bundle = monitor.data
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "monitored" in bundle["text/html"]  # the static picture for front ends without widgets


def test_without_a_widget_front_end_a_run_shows_a_summary(store, run):
    progress(store, run, 50)
    with capture_output() as captured:
        show_run(run, mode="text")
    assert f"monitored ({run.id}): running — step 50/100" in captured.stdout
    store.set_status(run.id, "completed")
    with capture_output() as captured:
        show_run(run, mode="html")
    assert "completed: 50/100 steps" in captured.outputs[0].data["text/html"]


def test_a_view_created_later_starts_from_the_points_streamed_so_far(store, run):
    monitor = RunMonitor(run, follow=False)
    train(store, run, logged=[(10, 0.123456, 1e-5, 1.0)])
    monitor.poll()
    state = monitor.plot.get_state()  # what a reloaded page or a second display receives
    assert "0.123456" in state["render_bundle"]


def preference_log(store: RunStore, run: Run, step: int, chosen: float, rejected: float, **extra: float) -> None:
    """A TRL preference trainer's training log as the worker writes it: rewards/* under "values"."""
    store.append_event(run.id, {"type": "log", "step": step, "epoch": step / 30, "loss": 0.69 - step / 100,
                                "learning_rate": 5e-6, "grad_norm": 8.0,
                                "values": {"rewards/chosen": chosen, "rewards/rejected": rejected,
                                           "rewards/margins": chosen - rejected, **extra}})


def legend_labels(figure) -> list[str]:
    from bokeh.models import Legend

    return [item.label.value for item in figure.select_one(Legend).items if item.visible]


def test_a_group_of_other_curves_gets_its_figure_at_its_first_point_and_then_its_points(store, run):
    train(store, run, logged=LOGGED[:1])
    monitor = RunMonitor(run, follow=False)
    assert monitor.group_figures == {} and len(monitor.plot._model.children) == 2  # loss and optimizer only
    changes, sent = [], []
    monitor.figure.document.on_change(changes.append)
    monitor.plot.send = lambda content, buffers=None: sent.append(content["payload"])  # what reaches the browser
    preference_log(store, run, 10, 0.1, -0.1)
    monitor.poll()
    rewards = monitor.group_figures["rewards"]
    assert list(monitor.group_figures) == ["rewards"] and monitor.plot._model.children[-1] is rewards
    assert rewards.x_range is monitor.figure.x_range and rewards.yaxis[0].axis_label == "rewards"
    assert legend_labels(rewards) == ["chosen", "rejected", "margins"]
    assert curve(monitor, "rewards/margins") == [(10, 0.2)]
    # the new figure, its lines and their points cross as one patch of the plot's children
    patches = [json.loads(payload) for payload in sent if payload.startswith('{"events"')]
    # (then the loss, learning rate and gradient norm, whole)
    assert [[event["attr"] for event in patch["events"]] for patch in patches] == [["children"], *[["data"]] * 3]
    assert '"ftkit-rewards/margins"' in json.dumps(patches[0]) and "0.2" in json.dumps(patches[0])

    changes.clear()
    store.append_event(run.id, {"type": "eval", "split": "validation", "step": 10, "best_metric_name": "f1",
                                "metrics": {"loss": 0.5, "f1": 0.6, "precision": 0.7, "rewards/accuracies": 0.75}})
    preference_log(store, run, 15, 0.2, -0.3, **{"rewards/accuracies": 0.8})
    monitor.poll()
    assert legend_labels(rewards) == ["chosen", "rejected", "margins", "accuracies", "validation accuracies"]
    assert curve(monitor, "validation_rewards/accuracies") == [(10, 0.75)]
    sent = {change.model.name: change.model.data for change in changes if type(change).__name__ == "ColumnDataChangedEvent"}
    assert sent["ftkit-rewards/chosen"] == {"step": [10, 15], "value": [0.1, 0.2]}
    # the training curve and its validation curve share a colour; the validation one is dashed
    lines = {r.data_source.name: r.glyph for r in rewards.renderers if type(r.glyph).__name__ == "Line"}
    assert lines["ftkit-rewards/accuracies"].line_color == lines["ftkit-validation_rewards/accuracies"].line_color
    assert lines["ftkit-validation_rewards/accuracies"].line_dash == [6] and lines["ftkit-rewards/chosen"].line_dash == []
    # an evaluation score without a training curve of its name stays in the table
    assert "validation_precision" not in monitor.curve_sources and list(monitor.group_figures) == ["rewards"]
    assert curve(RunMonitor(run, follow=False), "rewards/chosen") == curve(monitor, "rewards/chosen")


def test_a_value_named_without_a_group_is_a_figure_of_its_own_with_its_validation_curve(store, run):
    store.append_event(run.id, {"type": "eval", "split": "validation", "step": 0, "best_metric_name": "loss",
                                "metrics": {"loss": 0.7, "entropy": 2.5}})  # an evaluation before any training log
    monitor = RunMonitor(run, follow=False)
    assert monitor.group_figures == {}
    store.append_event(run.id, {"type": "log", "step": 5, "loss": 0.6, "values": {"entropy": 2.4}})
    store.append_event(run.id, {"type": "log", "step": 10, "loss": 0.5, "values": {"entropy": 2.2}})
    monitor.poll()
    assert list(monitor.group_figures) == ["entropy"] and legend_labels(monitor.group_figures["entropy"]) == [
        "entropy", "validation entropy"]
    assert curve(monitor, "entropy") == [(5, 2.4), (10, 2.2)] and curve(monitor, "validation_entropy") == [(0, 2.5)]


def test_a_resumed_attempt_redraws_the_other_curves_too(store, run):
    for step in (5, 10, 15):
        preference_log(store, run, step, step / 100, -step / 100)
    monitor = RunMonitor(run, follow=False)
    preference_log(store, run, 10, 0.5, -0.5)  # resumed from checkpoint 5
    monitor.poll()
    assert curve(monitor, "rewards/chosen") == [(5, 0.05), (10, 0.5)]
    assert monitor.plot.layout.display is None


def test_a_run_that_logs_no_learning_rate_nor_gradient_norm_shows_no_optimizer_plot(store, run):
    store.append_event(run.id, {"type": "log", "step": 5, "loss": 0.6, "values": {"rewards/chosen": 0.1}})
    monitor = RunMonitor(run, follow=False)
    assert not monitor.optimizer_figure.visible and monitor.figure.visible
    train(store, run, logged=LOGGED[1:2])
    monitor.poll()
    assert monitor.optimizer_figure.visible


def evaluation_with_answers(store: RunStore, run: Run, step: int, exact_match: float, ranked_by: str = "loss",
                            **changed: float) -> None:
    """A validation evaluation that generated answers for 64 examples in 9.4 s, 8 of them shown."""
    answers = [{"prompt": "Review: a gorgeous film\nIs this review positive or negative?", "reference": "positive",
                "generation": "positive", "match": True},
               {"prompt": "Review: " + "long " * 40 + "\nIs this review positive or negative?",
                "reference": "negative", "generation": "<b>positive</b>", "match": False}] * 4
    store.append_event(run.id, {"type": "eval", "split": "validation", "step": step, "epoch": step / 64,
                                "best_metric_name": ranked_by,
                                "metrics": {"loss": 0.41, "perplexity": 1.5, "runtime": 3.1, "exact_match": exact_match,
                                            "label_accuracy": 0.86, "stopped": 1.0, "samples": 64,
                                            "generation_seconds": 9.4, **changed},
                                "answers": answers})


def test_exact_match_is_a_curve_of_its_own_beside_label_accuracy_on_a_zero_to_one_scale(store, run):
    train(store, run, logged=LOGGED[:4])
    monitor = RunMonitor(run, follow=False)
    evaluation_with_answers(store, run, 10, exact_match=0.5)
    evaluation_with_answers(store, run, 20, exact_match=0.81)
    monitor.poll()
    assert curve(monitor, "validation_exact_match") == [(10, 0.5), (20, 0.81)]
    assert curve(monitor, "validation_label_accuracy") == [(10, 0.86), (20, 0.86)]
    answers = monitor.group_figures["answers"]
    assert legend_labels(answers) == ["validation exact_match", "validation label_accuracy"]
    assert (answers.y_range.start, answers.y_range.end) == (0, 1.02) and answers.x_range is monitor.figure.x_range
    assert monitor.plot._model.children[-1] is answers
    # not on the loss axis, and what describes the evaluation (its examples, its seconds) is no curve at all
    assert not {monitor.curve_sources[name] for name in ("validation_exact_match", "validation_label_accuracy")} \
        & {renderer.data_source for renderer in monitor.figure.renderers}
    assert set(monitor.curve_sources) == {"loss", "learning_rate", "grad_norm", "validation_exact_match",
                                          "validation_label_accuracy"}
    assert curve(RunMonitor(run, follow=False), "validation_exact_match") == curve(monitor, "validation_exact_match")


def test_a_run_ranked_by_exact_match_draws_it_beside_the_loss_on_the_metric_axis(store, runs_dir):
    config = load_config(name="ranked", task="sft", training={"metric_for_best_model": "exact_match"})
    run = Run(store.create_run(config), store)
    evaluation_with_answers(store, run, 10, exact_match=0.5, ranked_by="exact_match")
    monitor = RunMonitor(run, follow=False)
    assert monitor.eval_source.data["metric"] == [0.5] and monitor.eval_source.data["eval_loss"] == [0.41]
    assert monitor.figure.extra_y_ranges["metric"].end == 1.02
    assert "validation exact_match" in legend_labels(monitor.figure)
    assert legend_labels(monitor.group_figures["answers"]) == ["validation label_accuracy"]  # drawn once


def test_the_latest_validation_answers_show_under_the_figures_with_what_generating_them_cost(store, run):
    train(store, run, logged=LOGGED[:2])
    store.append_event(run.id, {"type": "eval", "split": "validation", "step": 10, "best_metric_name": "loss",
                                "metrics": {"loss": 0.5, "perplexity": 1.6, "runtime": 3.0}})
    monitor = RunMonitor(run, follow=False)
    assert monitor.answers.value == "" and "answers" not in monitor.group_figures  # none generated yet: none of it
    assert "answers at step" not in monitor.summary_html()

    evaluation_with_answers(store, run, 20, exact_match=0.81)
    monitor.poll()
    title, cost, table = ElementTree.fromstring(monitor.answers.value)
    assert title.text == "validation answers at step 20"
    assert cost.text == "answers generated for 64 validation examples in 9.4 s per evaluation"
    assert [th.text for th in table.iter("th")] == ["prompt", "reference", "generation", "match"]
    rows = [[td for td in row] for row in table.find("tbody")]
    assert len(rows) == 8
    prompt, reference, generation, match = rows[1]
    assert prompt[0].text == "Review: " + "long " * 10 + "l…"  # on one line, cut to 60 characters
    assert 'title="Review: ' + "long " * 40 + '\nIs this review positive or negative?"' in monitor.answers.value
    assert (reference[0].text, generation[0].text, match.text) == ("negative", "<b>positive</b>", "✗")  # escaped
    assert [row[3].text for row in rows[:2]] == ["✓", "✗"]
    assert monitor.answers.value in monitor.summary_html()  # the picture where widgets do not render

    store.append_event(run.id, {"type": "eval", "split": "validation", "step": 30, "metrics": {"loss": 0.4}})
    monitor.poll()
    assert ElementTree.fromstring(monitor.answers.value)[0].text == "validation answers at step 20"
    evaluation_with_answers(store, run, 40, exact_match=0.9, generation_seconds=12.3)
    monitor.poll()
    title, cost, _ = ElementTree.fromstring(monitor.answers.value)
    assert title.text == "validation answers at step 40" and "in 12.3 s per evaluation" in cost.text


def test_a_run_ranked_by_its_loss_draws_no_second_validation_loss_on_a_zero_to_one_axis(store, runs_dir):
    run = Run(store.create_run(load_config(name="by-loss", task="sft")), store)  # sft ranks by the loss
    monitor = RunMonitor(run, follow=False)
    assert not monitor.metric_axis.visible and legend_labels(monitor.figure) == ["train loss", "validation loss"]


def test_the_metric_axis_follows_what_the_evaluations_rank_by_not_a_guess_made_before_them(store, runs_dir):
    run = Run(store.create_run(load_config(name="guessed", task="ner")), store)  # the config says f1...
    monitor = RunMonitor(run, follow=False)
    assert monitor.metric_axis.visible and "validation f1" in legend_labels(monitor.figure)
    store.append_event(run.id, {"type": "eval", "split": "validation", "step": 5, "best_metric_name": "loss",
                                "metrics": {"loss": 1.5}})  # ...the run ranks by its loss
    monitor.poll()
    assert not monitor.metric_axis.visible and legend_labels(monitor.figure) == ["train loss", "validation loss"]
    assert not any(renderer.visible for renderer in monitor.metric_item.renderers)
    assert monitor.eval_source.data["eval_loss"] == [1.5]


def test_an_answer_cut_at_the_token_limit_says_so_in_the_monitor_and_the_errors_view():
    from ftkit.notebook.widgets.answers import answers_html
    from ftkit.tasks import get_task

    answers = [{"prompt": "Name a colour", "reference": "red", "generation": "red", "match": True, "stopped": True},
               {"prompt": "Count to 100", "reference": "1 2 3", "generation": "1 2 3 4 5 6", "match": False,
                "stopped": False}]
    shown = answers_html({"step": 10, "metrics": {}, "answers": answers})
    assert shown.count("cut at the token limit") == 1 and "✗ cut at the token limit" in shown
    task = get_task("sft")
    assert "cut at the token limit" in task.error_example_html(answers[1], [])
    assert "cut at the token limit" not in task.error_example_html(answers[0], [])


def test_a_new_view_computes_its_own_step_range_not_the_bounds_an_earlier_view_sent_back(store, run):
    train(store, run, logged=LOGGED[:2])
    monitor = RunMonitor(run, follow=False)
    monitor.figure.x_range.update(start=4.5, end=10.5)  # what the first view computed and wrote back
    bundle = json.loads(monitor.plot.get_state("render_bundle")["render_bundle"])

    def data_ranges(node):
        if isinstance(node, dict):
            if node.get("name") == "DataRange1d":
                yield node.get("attributes", {})
            for child in node.values():
                yield from data_ranges(child)
        elif isinstance(node, list):
            for child in node:
                yield from data_ranges(child)

    ranges = list(data_ranges(bundle))
    assert ranges and not any("start" in attributes or "end" in attributes for attributes in ranges)
    monitor.close()
