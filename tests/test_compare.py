"""Comparing runs: differing config keys, final metrics, curves at their logged steps; the DataFrame,
the CLI, the magic, the overlaid curves and the panel's route, from runs written through the store."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import tornado.httpclient
from IPython.utils.capture import capture_output

import ftkit
from ftkit.cli import main
from ftkit.comparison import comparison
from ftkit.config import Config
from ftkit.runstore.layout import EVENTS_FILE
from ftkit.runs import Run
from ftkit.runstore import RunStore
from tests.test_cli_light import cli_without_torch

pytest_plugins = ["pytest_jupyter.jupyter_server"]

CONTRACT = {"runs", "differing", "metrics", "curves", "primary"}


def add_run(store: RunStore, name: str, *, status: str = "completed", logs=(), evals=(), sweep: str | None = None,
            snapshot: bool = False, **settings) -> Run:
    """A run as its worker leaves it: ``logs`` are (step, loss) points, ``evals`` (split, step, metrics)."""
    config = Config.from_dict({"name": name, "task": "ner", "output": {"sweep": sweep}}).replace(settings)
    # in-memory data is snapshotted into the run's own folder, so its path differs from run to run
    prepare = (lambda folder: config.replace({"data.train": str(folder / "data" / "train.parquet")})) if snapshot else None
    run_id = store.create_run(config, prepare)
    if status != "queued":
        store.set_status(run_id, "running", pid=1)
    for step, loss in logs:
        store.append_event(run_id, {"type": "progress", "step": step + 1, "total_steps": 100, "loss": 99.0})
        store.append_event(run_id, {"type": "log", "step": step, "epoch": step / 100, "loss": loss,
                                    "learning_rate": 1e-3 / step, "grad_norm": 2.0})
    for split, step, metrics in evals:
        store.append_event(run_id, {"type": "eval", "split": split, "step": step, "epoch": 1.0, "metrics": metrics,
                                    "best_metric_name": "f1"})
    if status not in ("queued", "running"):
        store.set_status(run_id, status)
    return Run(run_id, store)


@pytest.fixture
def store(runs_dir) -> RunStore:
    return RunStore()


@pytest.fixture
def pair(store) -> tuple[Run, Run]:
    first = add_run(store, "slow-lr", logs=[(10, 1.0), (20, 0.8)], snapshot=True,
                    evals=[("validation", 10, {"f1": 0.5, "loss": 0.9}), ("validation", 20, {"f1": 0.7, "loss": 0.6,
                                                                                          "runtime": 3.2}),
                           ("test", 20, {"f1": 0.66})],
                    **{"training.learning_rate": 1e-4, "adapter.r": 8})
    second = add_run(store, "fast-lr", logs=[(10, 0.9), (20, 0.5), (30, 0.4)], snapshot=True,
                     evals=[("validation", 30, {"f1": 0.8, "loss": 0.5})],
                     **{"training.learning_rate": 2e-4, "adapter.r": 8})
    return first, second


def test_differing_lists_only_the_config_keys_whose_values_differ(pair):
    data = comparison(pair)
    assert set(data) == CONTRACT
    # the name is each run's own column; data.train differs only by the run's folder; adapter.r is the same
    assert data["differing"] == [{"key": "training.learning_rate", "values": [1e-4, 2e-4]}]
    assert [(r["id"], r["name"], r["status"], r["task"], r["sweep"]) for r in data["runs"]] == [
        (pair[0].id, "slow-lr", "completed", "ner", None), (pair[1].id, "fast-lr", "completed", "ner", None)]


def test_metrics_are_the_last_evaluation_per_split_the_main_ones_first_and_null_where_absent(pair):
    metrics = {m["name"]: m["values"] for m in comparison(pair)["metrics"]}
    # the main metric on validation and test first, then validation's others; the Trainer's runtime is left out
    assert list(metrics) == ["validation_f1", "test_f1", "validation_loss"]
    assert metrics["validation_f1"] == [0.7, 0.8]
    assert metrics["test_f1"] == [0.66, None]


def test_curves_are_the_logged_values_at_their_steps_not_the_loss_progress_carries(pair):
    first, second = pair
    curves = comparison(pair)["curves"]
    assert curves["loss"] == {first.id: [[10, 1.0], [20, 0.8]], second.id: [[10, 0.9], [20, 0.5], [30, 0.4]]}
    assert curves["learning_rate"][first.id] == [[10, 1e-4], [20, 5e-5]]
    assert curves["validation_f1"] == {first.id: [[10, 0.5], [20, 0.7]], second.id: [[30, 0.8]]}


def test_a_value_evaluated_once_is_a_metric_not_a_chart_and_a_curve_without_points_is_none(pair):
    data = comparison(pair)
    assert "test_f1" not in data["curves"]  # one point per run: the table holds it
    assert {m["name"]: m["values"] for m in data["metrics"]}["test_f1"] == [0.66, None]
    assert all(any(points for points in by_run.values()) for by_run in data["curves"].values())


@pytest.mark.parametrize(("task", "chosen", "expected"), [
    ("ner", None, ["loss", "validation_f1", "test_f1"]),
    ("classification", None, ["loss", "validation_accuracy", "test_accuracy"]),
    ("sft", None, ["loss", "validation_loss", "test_loss"]),
    ("ner", "eval_precision", ["loss", "validation_precision", "test_precision"]),
])
def test_the_training_loss_and_the_metric_that_picks_the_best_checkpoint_come_first(store, task, chosen, expected):
    """What both the panel's compare view and the notebook's curves show first, decided here once."""
    runs = [add_run(store, f"{task}-{i}", task=task, **{"training.metric_for_best_model": chosen}) for i in (1, 2)]
    assert comparison(runs)["primary"] == expected


def test_runs_of_two_tasks_put_each_main_metric_first(store, pair):
    classifier = add_run(store, "sst2", task="classification")
    assert comparison([pair[0], classifier])["primary"] == [
        "loss", "validation_f1", "validation_accuracy", "test_f1", "test_accuracy"]


def test_a_resumed_run_curve_is_its_latest_attempt_from_the_checkpoint_on(store, pair):
    resumed = add_run(store, "resumed", logs=[(10, 1.0), (20, 0.9), (30, 0.8), (20, 0.7), (25, 0.6)])
    assert comparison([pair[0], resumed])["curves"]["loss"][resumed.id] == [[10, 1.0], [20, 0.7], [25, 0.6]]


def test_values_json_cannot_carry_are_left_out_so_the_browser_can_parse_it(store, pair):
    broken = add_run(store, "diverged", logs=[(10, float("nan")), (20, 0.5)],
                     evals=[("validation", 20, {"f1": float("inf"), "loss": 0.4})])
    data = comparison([pair[0], broken])
    json.dumps(data, allow_nan=False)  # raises on NaN or infinity
    assert data["curves"]["loss"][broken.id] == [[20, 0.5]]
    assert {m["name"]: m["values"] for m in data["metrics"]}["validation_f1"] == [0.7, None]


def test_a_torn_last_line_and_unknown_events_are_skipped(store, pair):
    with open(pair[1].dir / EVENTS_FILE, "a", encoding="utf-8") as f:
        f.write('{"type": "something new", "step": 40, "loss": 1}\n{"type": "log", "step": 40, "lo')
    assert comparison(pair)["curves"]["loss"][pair[1].id][-1] == [30, 0.4]


def test_comparing_needs_two_different_runs(pair):
    with pytest.raises(ftkit.errors.FtkitError, match="two or more runs"):
        comparison(pair[:1])
    with pytest.raises(ftkit.errors.FtkitError, match="given twice"):
        comparison([pair[0], pair[0]])


def test_twenty_runs_of_500_logged_points_compare_well_within_the_panel_budget(store):
    """The panel's target: the view open in under 1 s, so the server's part is well under 0.2 s (margin for CI)."""
    runs = []
    for i in range(20):
        run_id = store.create_run(Config.from_dict({"name": f"bench-{i}", "training": {"learning_rate": (i + 1) / 1e4}}))
        events = []
        for k in range(1, 501):
            events.append({"t": k, "type": "progress", "step": k * 10, "total_steps": 5000, "loss": 1 / k})
            events.append({"t": k, "type": "log", "step": k * 10, "loss": 1 / k, "learning_rate": 1e-4, "grad_norm": 1.0})
            if k % 25 == 0:
                events.append({"t": k, "type": "eval", "split": "validation", "step": k * 10, "best_metric_name": "f1",
                               "metrics": {"f1": k / 600, "loss": 1 / k, "precision": 0.5, "recall": 0.5}})
        (store.run_dir(run_id) / EVENTS_FILE).write_text("".join(json.dumps(e) + "\n" for e in events))
        runs.append(Run(run_id, store))
    best = math.inf
    for _ in range(3):
        started = time.perf_counter()
        data = comparison(runs)
        best = min(best, time.perf_counter() - started)
    assert all(len(points) == 500 for points in data["curves"]["loss"].values())
    assert best < 0.4, f"comparing 20 runs of 500 points took {best:.3f} s"


def test_ftkit_compare_returns_one_row_per_run_from_runs_names_or_a_sweep(store, pair):
    frame = ftkit.compare(pair[0], "fast-lr")
    assert list(frame.index) == [pair[0].id, pair[1].id]
    assert list(frame.columns) == ["name", "status", "training.learning_rate", "validation_f1", "test_f1",
                                   "validation_loss"]
    assert frame.loc[pair[1].id, "validation_f1"] == 0.8
    assert math.isnan(frame.loc[pair[1].id, "test_f1"])  # pandas writes a missing value as NaN

    tagged = [add_run(store, f"s-{i}", sweep="lr-sweep", **{"training.learning_rate": lr})
              for i, lr in enumerate((1e-4, 3e-4), 1)]
    by_sweep = ftkit.compare(sweep="lr-sweep")
    assert list(by_sweep.index) == [run.id for run in tagged]
    assert list(by_sweep["sweep"]) == ["lr-sweep", "lr-sweep"]


def test_comparing_an_unknown_sweep_says_so(store, pair):
    with pytest.raises(ftkit.errors.FtkitError, match="no runs of sweep 'nope'"):
        ftkit.compare(sweep="nope")


def test_cli_compare_json_prints_the_comparison_and_never_imports_torch(store, pair, tmp_path):
    root = str(store.root)
    report = cli_without_torch(["--runs-dir", root, "compare", pair[0].id, "fast-lr", "--json"],
                               ["--runs-dir", root, "compare", pair[0].id, pair[1].id], cwd=tmp_path)
    assert [r["code"] for r in report["results"]] == [0, 0] and report["loaded"] == []
    as_json, as_text = (r["stdout"] for r in report["results"])
    assert json.loads(as_json) == json.loads(json.dumps(comparison(pair)))
    header, first, second = as_text.splitlines()
    assert header.split() == ["id", "name", "status", "training.learning_rate", "validation_f1", "test_f1",
                              "validation_loss"]
    assert first.split()[1:] == ["slow-lr", "completed", "1.000e-04", "0.7000", "0.6600", "0.6000"]
    assert second.split()[-2:] == ["-", "0.5000"]  # no test_f1


def test_cli_compare_of_a_single_run_is_a_one_line_error(store, pair, capsys):
    assert main(["--runs-dir", str(store.root), "compare", pair[0].id]) == 2
    assert capsys.readouterr().err.strip() == "ftkit: compare two or more runs"


def test_magic_compare_shows_and_stores_the_table(shell, pair):
    with capture_output() as captured:
        result = shell.run_cell(f"%ftkit compare {pair[0].id} fast-lr -o frame")
    assert result.success, result.error_in_exec
    frame = shell.user_ns["frame"]
    assert list(frame["name"]) == ["slow-lr", "fast-lr"]
    assert "training.learning_rate" in captured.outputs[0].data["text/html"]


def test_overlaid_curves_put_the_legend_beside_the_plots_and_stream_new_points(store, pair):
    from bokeh.models import Legend

    from ftkit.notebook.widgets.compare import CompareCurves

    running = add_run(store, "still-training", status="running", logs=[(10, 1.2)],
                      evals=[("validation", 10, {"f1": 0.4})])
    curves = CompareCurves([pair[0], running], follow=False)
    try:
        assert curves.metric == "validation_f1" and curves.active  # comparison's primary: loss, validation_f1
        assert curves.loss_sources[pair[0].id].data == {"step": [10, 20], "value": [1.0, 0.8]}
        for figure in (curves.loss_figure, curves.metric_figure):
            legend = next(item for item in figure.right if isinstance(item, Legend))
            assert [item.label.value for item in legend.items] == ["slow-lr", "still-training"]
        store.append_event(running.id, {"type": "log", "step": 20, "loss": 1.1})
        store.append_event(running.id, {"type": "eval", "split": "validation", "step": 20, "metrics": {"f1": 0.45}})
        assert curves.refresh()  # still running
        assert curves.loss_sources[running.id].data == {"step": [10, 20], "value": [1.2, 1.1]}
        assert curves.metric_sources[running.id].data == {"step": [10, 20], "value": [0.4, 0.45]}
        store.set_status(running.id, "completed")
        assert not curves.refresh()
        assert 'data-root-id' in curves._repr_mimebundle_()["text/html"]  # the picture where widgets do not render
    finally:
        curves.close()


def test_overlaid_curves_show_the_main_metric_and_the_rest_behind_the_more_curves_toggle(store):
    """A DPO run's main metric is its validation loss (shown first); its own values are behind "more curves":
    picking one redraws the second figure, a curve first logged after the widget was made joins the
    choices, and turning the toggle off shows the main metric again."""
    from ftkit.notebook.widgets.compare import CompareCurves

    def preference(name: str, margins: list[float], status: str) -> Run:
        run = add_run(store, name, status=status, logs=[(10, 0.7)], task="dpo",
                      evals=[("validation", 10, {"loss": 0.6, "rewards/accuracies": 0.75})])
        for step, margin in zip((10, 20), margins):
            store.append_event(run.id, {"type": "log", "step": step, "loss": 0.7,
                                        "values": {"rewards/margins": margin, "rewards/accuracies": 0.5 + margin}})
        return run

    first, second = preference("beta-0.1", [0.1, 0.3], "completed"), preference("beta-0.5", [0.2], "running")
    curves = CompareCurves([first, second], follow=False)
    try:
        assert curves.metric == curves.curve_picker.value == "validation_loss"
        assert curves.curve_picker.layout.display == "none" and not curves.more.value
        # logged once per run, the validation rewards and the learning rate are the table's, not charts
        assert list(curves.curve_picker.options) == ["validation_loss", "rewards/accuracies", "rewards/margins"]
        curves.more.value = True
        assert curves.curve_picker.layout.display is None
        curves.curve_picker.value = "rewards/margins"
        assert curves.metric == "rewards/margins" and curves.metric_figure.title.text == "rewards/margins"
        assert curves.metric_sources[first.id].data == {"step": [10, 20], "value": [0.1, 0.3]}
        assert curves.metric_sources[second.id].data == {"step": [10], "value": [0.2]}
        assert curves.loss_sources[second.id].data == {"step": [10], "value": [0.7]}  # the loss stays beside

        store.append_event(second.id, {"type": "log", "step": 20, "loss": 0.6,
                                       "values": {"rewards/margins": 0.4, "logps/chosen": -90.0}})
        store.append_event(second.id, {"type": "log", "step": 30, "loss": 0.5, "values": {"logps/chosen": -80.0}})
        assert curves.refresh()
        assert curves.metric_sources[second.id].data == {"step": [10, 20], "value": [0.2, 0.4]}
        assert "logps/chosen" in curves.curve_picker.options
        assert curves.curve_picker.value == curves.metric == "rewards/margins"  # new choices keep the pick
        assert curves.metric_sources[first.id].data == {"step": [10, 20], "value": [0.1, 0.3]}
        curves.more.value = False
        assert curves.metric == "validation_loss" and curves.curve_picker.layout.display == "none"
    finally:
        curves.close()


# ----- the side panel's route -------------------------------------------------------------------------


@pytest.fixture
def jp_server_config(store):
    return {"ServerApp": {"jpserver_extensions": {"ftkit": True}}, "FtkitApp": {"runs_dir": str(store.root)}}


@pytest.fixture
def compare_api(jp_fetch):
    async def call(ids: str | None, headers: dict | None = None):
        try:
            response = await jp_fetch("ftkit", "api", "compare", params={"ids": ids} if ids is not None else {},
                                      headers=headers)
        except tornado.httpclient.HTTPClientError as exc:
            response = exc.response
        return response.code, json.loads(response.body or b"null")

    return call


async def test_route_returns_the_comparison_json(compare_api, pair):
    code, data = await compare_api(f"{pair[0].id},{pair[1].id}")
    assert code == 200
    assert data == json.loads(json.dumps(comparison(pair)))


@pytest.mark.parametrize("ids", [None, "", "ONE"])
async def test_route_refuses_fewer_than_two_runs(compare_api, pair, ids):
    code, error = await compare_api(ids.replace("ONE", pair[0].id) if ids else ids)
    assert code == 400 and error["code"] == "invalid_ids" and "2 to 50 runs" in error["message"]


@pytest.mark.parametrize("unknown", ["20990101-000000-abcdef", "fast-lr", "../outside", Path("/tmp").as_posix()])
async def test_route_refuses_unknown_ids_names_and_paths(compare_api, pair, unknown):
    code, error = await compare_api(f"{pair[0].id},{unknown}")
    assert code == 400 and error["code"] == "unknown_run" and unknown in error["message"]


async def test_route_requires_the_token(compare_api, pair):
    code, _ = await compare_api(f"{pair[0].id},{pair[1].id}", headers={"Authorization": ""})
    assert code == 403


def test_every_curve_the_runs_report_is_compared_and_only_evaluations_are_metrics(store, pair):
    """A preference trainer's own values (logged under "values") are curves across runs; a run that
    never logged one is left out of it; the metrics table stays the evaluations'."""
    def preference(name: str, margins: list[float]) -> Run:
        run = add_run(store, name, evals=[("validation", 20, {"loss": 0.5, "rewards/accuracies": 0.8})])
        for step, margin in zip((10, 20), margins):
            store.append_event(run.id, {"type": "log", "step": step, "loss": 0.7,
                                        "values": {"rewards/margins": margin, "logps/chosen": -100.0 - step}})
        return run

    first, second = preference("beta-0.1", [0.1, 0.3]), preference("beta-0.5", [0.2])
    data = comparison([first, second, pair[0]])
    json.dumps(data, allow_nan=False)
    curves = data["curves"]
    assert curves["rewards/margins"] == {first.id: [[10, 0.1], [20, 0.3]], second.id: [[10, 0.2]]}
    assert curves["logps/chosen"][first.id] == [[10, -110.0], [20, -120.0]]
    assert "validation_rewards/accuracies" not in curves  # evaluated once per run: a metric
    metrics = {m["name"]: m["values"] for m in data["metrics"]}
    assert metrics["validation_rewards/accuracies"] == [0.8, 0.8, None]
    assert not any(name.startswith(("rewards/", "logps/")) for name in metrics)


def test_generative_runs_compare_their_exact_match_like_any_evaluation_score(store):
    """What the panel and the notebook's overlaid curves draw: validation_exact_match is an evaluation
    curve and metric of each run; how many answers an evaluation generated and in how long are neither."""
    from ftkit.notebook.widgets.compare import CompareCurves

    def generative(name: str, scores: list[float]) -> Run:
        run = add_run(store, name, logs=[(10, 1.0), (20, 0.8)])
        for step, score in zip((10, 20), scores):
            store.append_event(run.id, {
                "type": "eval", "split": "validation", "step": step, "best_metric_name": "loss",
                "metrics": {"loss": 0.5, "exact_match": score, "samples": 64, "generation_seconds": 9.4},
                "answers": [{"prompt": "2+2?", "reference": "4", "generation": "4", "match": True}]})
        return run

    first, second = generative("lr-1e-4", [0.5, 0.75]), generative("lr-1e-3", [0.25])
    data = comparison([first, second])
    assert data["curves"]["validation_exact_match"] == {first.id: [[10, 0.5], [20, 0.75]], second.id: [[10, 0.25]]}
    assert [m["name"] for m in data["metrics"]] == ["validation_loss", "validation_exact_match"]
    assert not {"validation_samples", "validation_generation_seconds"} & set(data["curves"])
    curves = CompareCurves([first, second], follow=False)
    try:
        assert "validation_exact_match" in curves.curve_picker.options
        curves.curve_picker.value = "validation_exact_match"
        assert curves.metric_sources[first.id].data == {"step": [10, 20], "value": [0.5, 0.75]}
    finally:
        curves.close()
