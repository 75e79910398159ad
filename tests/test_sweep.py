"""Sweeps: grids checked against the schema and expanded, runs tagged with their sweep, the best run by
the validation metric (searches: tests/test_sweep_driver.py); the CLI and the magic; one real tiny sweep."""

from __future__ import annotations

import json
import sys

import pytest
from IPython.utils.capture import capture_output

import ftkit
import ftkit.runs
from ftkit.cli import main
from ftkit.comparison import comparison
from ftkit.config import load_config
from ftkit.errors import ConfigError, FtkitError
from ftkit.runs import Run
from ftkit.runstore import RunStore
from ftkit.sweeps import SearchSpace, Sweep, expand_grid, parse_grid, parse_search, start_sweep


@pytest.fixture
def started(runs_dir, monkeypatch) -> list[Run]:
    """`ftkit.runs.start` recording each run as queued, spawning no worker."""
    runs: list[Run] = []

    def start(config):
        store = RunStore(config.runs_dir)
        runs.append(Run(store.create_run(config), store))
        return runs[-1]

    monkeypatch.setattr(ftkit.runs, "start", start)
    return runs


def finish(run: Run, f1: float | None, test_f1: float = 0.99, status: str = "completed") -> None:
    """What a worker writes: a validation score (the best of two evaluations), a test score, the end."""
    store = run.store
    store.set_status(run.id, "running", pid=1)
    if f1 is not None:
        for step, value in ((10, f1 / 2), (20, f1)):
            store.append_event(run.id, {"type": "eval", "split": "validation", "step": step, "best_metric_name": "f1",
                                        "metrics": {"f1": value, "loss": 1 - value}})
    store.append_event(run.id, {"type": "eval", "split": "test", "step": 20, "best_metric_name": "f1",
                                "metrics": {"f1": test_f1}})
    store.set_status(run.id, status)


# ----- grids ---------------------------------------------------------------------------------------------


def test_grid_values_are_read_as_yaml_and_every_combination_runs_last_key_fastest():
    grid = parse_grid(["training.learning_rate=1e-4,2e-4", "adapter.r=8,16",
                       "adapter.target_modules=[q,v],[q, k, v]"])
    assert grid == {"training.learning_rate": [1e-4, 2e-4], "adapter.r": [8, 16],
                    "adapter.target_modules": [["q", "v"], ["q", "k", "v"]]}
    settings = expand_grid(grid)
    assert len(settings) == 8
    assert settings[:2] == [
        {"training.learning_rate": 1e-4, "adapter.r": 8, "adapter.target_modules": ["q", "v"]},
        {"training.learning_rate": 1e-4, "adapter.r": 8, "adapter.target_modules": ["q", "k", "v"]}]
    assert parse_grid({"training.epochs": [1, 2], "adapter.kind": "lora,full"}) == {
        "training.epochs": [1, 2], "adapter.kind": ["lora", "full"]}


@pytest.mark.parametrize(("items", "message"), [
    (["training.learnig_rate=1e-4,2e-4"], "--grid: unknown config key 'training.learnig_rate'. "
                                          "Did you mean 'training.learning_rate'?"),
    (["training=1,2"], "--grid training: 'training' is a section; name a key in it, e.g. training.epochs"),
    (["name=a,b"], "--grid name: the sweep sets it for each run"),
    (["output.sweep=a,b"], "--grid output.sweep: the sweep sets it for each run"),
    (["adapter.r=8", "adapter.r=16"], "--grid adapter.r is given twice; list its values once: adapter.r=A,B"),
    (["adapter.r"], "--grid 'adapter.r' must look like KEY=VALUES, e.g. --grid training.learning_rate=1e-4,2e-4"),
    (["adapter.r="], "--grid 'adapter.r=' must look like KEY=VALUES"),
    (["adapter.r=,"], "--grid adapter.r: give one or more values"),
])
def test_bad_grid_keys_are_one_line_errors_with_a_suggestion(items, message):
    with pytest.raises(ConfigError) as caught:
        parse_grid(items)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


@pytest.mark.parametrize(("grid", "message"), [
    (["training.learning_rate=1e-4,2"], "the setting training.learning_rate=2: 'training.learning_rate' must be "
                                        "between 0 and 1; got 2"),
    (["adapter.kind=lora,lorra"], "the setting adapter.kind=lorra: 'adapter.kind' must be one of full, head, lora; "
                                  "got 'lorra'. Did you mean 'lora'?"),
    (["adapter.r=eight"], "the setting adapter.r=eight: 'adapter.r' must be an integer; got 'eight'"),
])
def test_a_bad_value_is_refused_before_any_run_starts(started, grid, message):
    with pytest.raises(ConfigError) as caught:
        start_sweep(load_config(name="base"), grid, name="bad")
    assert str(caught.value).startswith(message)
    assert started == [] and RunStore().list_runs()[1] == 0


def test_a_sweep_is_a_grid_or_a_search_and_needs_one(started):
    with pytest.raises(ConfigError, match="a grid .* or an optuna search .*not both"):
        start_sweep(load_config(), ["adapter.r=8,16"], ["training.learning_rate=1e-5:1e-3"], trials=2)
    with pytest.raises(ConfigError, match="give one or more --grid"):
        start_sweep(load_config(), [])
    with pytest.raises(ConfigError, match="--optuna takes the number of trials, 1 or more; got 0"):
        start_sweep(load_config(), search=["adapter.r=4:8"], trials=0)


def test_grid_runs_are_ordinary_runs_tagged_with_the_sweep_and_named_after_it(started):
    base = load_config(name="base", training={"epochs": 1})
    seen = []
    sweep = start_sweep(base, ["training.learning_rate=1e-4,2e-4", "adapter.r=8,16"], name="lr-r",
                        on_start=lambda run, setting: seen.append((run.name, setting)))
    assert [run.id for run in sweep.runs] == [run.id for run in started]
    assert seen[0] == ("lr-r-1", {"training.learning_rate": 1e-4, "adapter.r": 8})
    assert [name for name, _ in seen] == ["lr-r-1", "lr-r-2", "lr-r-3", "lr-r-4"]
    configs = [run.config for run in started]
    assert {c.output.sweep for c in configs} == {"lr-r"} and {c.training.epochs for c in configs} == {1.0}
    assert [(c.learning_rate, c.adapter.r) for c in configs] == [(1e-4, 8), (1e-4, 16), (2e-4, 8), (2e-4, 16)]
    listed, _ = RunStore().list_runs(sort="name", descending=False)
    assert [(r["name"], r["sweep"]) for r in listed] == [(f"lr-r-{i}", "lr-r") for i in range(1, 5)]
    with pytest.raises(ConfigError, match="sweep 'lr-r' already exists"):
        start_sweep(base, ["adapter.r=4,32"], name="lr-r")


def test_the_sweep_tag_survives_an_index_rebuild(started):
    start_sweep(load_config(), ["adapter.r=8,16"], name="kept")
    store = RunStore()
    store.index_path.unlink()
    store.rebuild_index()
    assert [r["sweep"] for r in store.list_runs()[0]] == ["kept", "kept"]


def test_summary_names_the_best_run_by_its_best_validation_score_not_the_test_score(started):
    sweep = start_sweep(load_config(), ["training.learning_rate=1e-4,2e-4,3e-4"], name="pick")
    first, second, third = started
    finish(first, 0.6, test_f1=0.99)  # the best test score does not count
    finish(second, 0.8, test_f1=0.1)
    finish(third, None, status="failed")
    summary = sweep.summary()
    assert summary["metric"] == "validation_f1" and summary["higher_is_better"] is True
    assert summary["best"]["id"] == second.id and summary["best"]["value"] == 0.8
    assert [(r["name"], r["status"], r["settings"], r["value"]) for r in summary["runs"]] == [
        ("pick-1", "completed", {"training.learning_rate": 1e-4}, 0.6),
        ("pick-2", "completed", {"training.learning_rate": 2e-4}, 0.8),
        ("pick-3", "failed", {"training.learning_rate": 3e-4}, None)]
    assert "<b>pick-2</b>" in sweep._repr_html_()


def test_summary_ranks_a_loss_lowest_first(started):
    sweep = start_sweep(load_config(training={"metric_for_best_model": "loss"}), ["adapter.r=8,16"], name="by-loss")
    for run, loss in zip(started, (0.3, 0.2)):
        run.store.set_status(run.id, "running", pid=1)
        run.store.append_event(run.id, {"type": "eval", "split": "validation", "step": 5, "best_metric_name": "loss",
                                        "metrics": {"loss": loss}})
    summary = sweep.summary()
    assert (summary["metric"], summary["higher_is_better"]) == ("validation_loss", False)
    assert summary["best"]["id"] == started[1].id


def test_a_sweep_reattaches_by_name_waits_for_its_runs_and_compares(started):
    start_sweep(load_config(), ["training.learning_rate=1e-4,2e-4"], name="again")
    for run in started:
        finish(run, 0.5)
    sweep = Sweep("again")
    assert sweep.wait(timeout=5) is sweep
    assert [r["id"] for r in comparison(sweep.runs)["runs"]] == [run.id for run in started]
    assert list(ftkit.compare(sweep).index) == [run.id for run in started]


# ----- optuna --------------------------------------------------------------------------------------------


def test_search_spaces_take_ranges_log_scales_whole_numbers_and_choices():
    spaces = parse_search(["training.learning_rate=1e-5:1e-3:log", "adapter.r=4:32", "adapter.kind=lora,full"],
                          load_config())
    assert spaces == [SearchSpace("training.learning_rate", 1e-5, 1e-3, log=True),
                      SearchSpace("adapter.r", 4, 32, integer=True),
                      SearchSpace("adapter.kind", choices=("lora", "full"))]


@pytest.mark.parametrize(("item", "message"), [
    ("training.learning_rate=1e-3:1e-5", "the low bound must be below the high one"),
    ("training.learning_rate=0:1e-3:log", "a log scale needs a low bound above 0"),
    ("training.learning_rate=1e-5:2", "'training.learning_rate' must be between 0 and 1; got 2"),
    ("training.learning_rate=1e-5:1e-3:lin", "write a range as LOW:HIGH or LOW:HIGH:log"),
    ("adapter.r=4.5:8", "'adapter.r' is a whole number; give whole bounds"),
    ("model=a:b", "a range's bounds are numbers"),
    ("task=1:2", "'task' is not a number; search it over choices"),
    ("training.learnin_rate=1:2", "Did you mean 'training.learning_rate'?"),
])
def test_bad_search_spaces_are_one_line_errors(item, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("?", r"\?")):
        parse_search([item], load_config())


def test_optuna_missing_names_the_package_to_install(started, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` raises ImportError
    with pytest.raises(FtkitError, match=r"pip install optuna"):
        start_sweep(load_config(), search=["training.learning_rate=1e-5:1e-3:log"], trials=2)
    assert started == []


# ----- the CLI and the magic -----------------------------------------------------------------------------


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "base.yaml"
    path.write_text("name: base\ntask: ner\ntraining:\n  epochs: 2\n")
    return path


def test_cli_sweep_starts_the_grid_and_prints_the_summary_as_json(started, config_file, capsys):
    code = main(["sweep", str(config_file), "--grid", "training.learning_rate=1e-4,2e-4", "--set", "training.epochs=1",
                 "--name", "cli", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["sweep"] == "cli" and summary["best"] is None
    assert [(r["name"], r["status"], r["settings"]) for r in summary["runs"]] == [
        ("cli-1", "queued", {"training.learning_rate": 1e-4}), ("cli-2", "queued", {"training.learning_rate": 2e-4})]
    assert {run.config.training.epochs for run in started} == {1.0}


def test_cli_sweep_prints_each_run_and_how_to_compare_them(started, config_file, capsys):
    assert main(["sweep", str(config_file), "--grid", "adapter.r=8,16", "--name", "plain"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"started run {started[0].id} (plain-1): adapter.r=8"
    assert out[-1] == "sweep plain: 2 runs; `ftkit compare --sweep plain` compares them"


def test_cli_sweep_with_a_bad_key_is_a_one_line_error(started, config_file, capsys):
    assert main(["sweep", str(config_file), "--grid", "adapter.rank=8,16"]) == 2
    assert capsys.readouterr().err.strip() == ("ftkit: --grid: unknown config key 'adapter.rank'. "
                                               "Did you mean 'adapter.r'?")


def test_cli_compare_takes_a_sweep(started, config_file, capsys):
    main(["sweep", str(config_file), "--grid", "adapter.r=8,16", "--name", "cmp"])
    capsys.readouterr()
    assert main(["compare", "--sweep", "cmp", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["differing"] == [{"key": "adapter.r", "values": [8, 16]}]
    assert [r["sweep"] for r in data["runs"]] == ["cmp", "cmp"]


def test_magic_sweep_starts_the_grid_and_stores_the_sweep(shell, started, config_file):
    with capture_output() as captured:
        result = shell.run_cell(f"%ftkit sweep {config_file} --grid training.learning_rate=1e-4,2e-4 --name nb -o sw")
    assert result.success, result.error_in_exec
    assert [run.name for run in shell.user_ns["sw"].runs] == ["nb-1", "nb-2"]
    assert "nb-1" in captured.stdout and "nb-2" in captured.stdout  # the sweep's view (as text in a terminal)
    with capture_output() as captured:
        result = shell.run_cell("%ftkit sweep nb -o again")  # a name re-attaches, after a restart too
    assert result.success and [run.name for run in shell.user_ns["again"].runs] == ["nb-1", "nb-2"]
    assert "nb-2" in captured.stdout
    with capture_output():
        result = shell.run_cell("%ftkit compare sw -o frame")  # a Sweep variable names its runs
    assert list(shell.user_ns["frame"]["name"]) == ["nb-1", "nb-2"]
    with capture_output() as captured:
        result = shell.run_cell(f"%ftkit sweep {config_file} --grid training.learnin_rate=1e-4")
    assert not result.success
    assert "Did you mean 'training.learning_rate'?" in str(result.error_in_exec)


# ----- one real sweep ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_real_two_setting_sweep_trains_both_and_names_the_best(tiny_config):
    tiny_config["training"].update(epochs=1, max_steps=4, logging_steps=1, eval_steps=2, save_steps=2)
    sweep = ftkit.sweep(tiny_config, grid={"training.learning_rate": [5e-3, 1e-2]}, name="tiny")
    sweep.wait(timeout=600)
    summary = sweep.summary()
    assert [r["status"] for r in summary["runs"]] == ["completed", "completed"]
    assert summary["best"] is not None and summary["best"]["value"] == max(r["value"] for r in summary["runs"])
    data = comparison(sweep.runs)
    assert data["differing"] == [{"key": "training.learning_rate", "values": [5e-3, 1e-2]}]
    assert all([p[0] for p in points] == [1, 2, 3, 4] for points in data["curves"]["loss"].values())
    assert all([p[0] for p in points] == [2, 4] for points in data["curves"]["validation_f1"].values())
