"""The notebook monitor in a real browser: a notebook in JupyterLab displays monitors of runs whose
events the test writes through the store, as a worker would (no training), and the rendered page is
measured: what the curves hold, where the legends stand, what fits, what a finished run shows.
"""

from __future__ import annotations

import os
import time

import nbformat
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from ftkit.config import Config
from ftkit.runstore import RunStore
from .browser import OUTPUT_DIR, chromium, jupyter_lab

# (step, loss, learning rate, gradient norm): a 30-step run logging every 5 steps
LOGGED = [(5, 1.31, 5.0e-5, 4.2), (10, 1.02, 4.2e-5, 3.3), (15, 0.87, 3.3e-5, 2.9), (20, 0.74, 2.5e-5, 2.1),
          (25, 0.658, 1.7e-5, 1.8), (30, 0.4435, 0.8e-5, 1.2)]
ENTITY_TYPES = ["PERSON", "LOCATION", "ORGANIZATION", "MISCELLANEOUS", "DATE", "EVENT", "PRODUCT", "WORK_OF_ART",
                "LANGUAGE", "NATIONALITY"]

# The monitor's Bokeh root (found by the element it renders into), its figures and the curves they draw.
PLOTS_OF = """monitor => {
  const root = window.Bokeh.index.roots.find(view => monitor.contains(view.el));
  if (!root) return null;
  const figures = root.child_views.map(view => ({
    name: view.model.name,
    x_end: view.model.x_range.end,
    frame: (({x0, y0, x1, y1}) => ({x0, y0, x1, y1}))(view.frame.bbox),
    legends: [...view.renderer_views.values()].filter(r => r.model.type === "Legend")
      .map(r => (({x0, y0, x1, y1}) => ({x0, y0, x1, y1}))(r.bbox)),
  }));
  const curve = name => {
    const data = root.model.document.get_model_by_name(`ftkit-${name}`).data;
    const column = key => [...(data instanceof Map ? data.get(key) : data[key])];
    const steps = column("step"), values = column("value");
    return steps.map((step, i) => [step, values[i]]);
  };
  const evaluated = (() => {
    const source = root.model.document.all_models ? [...root.model.document.all_models] : [];
    const data = source.find(model => model.data && (model.data instanceof Map ? model.data.has("eval_loss")
                                                                                : "eval_loss" in model.data))?.data;
    return data ? [...(data instanceof Map ? data.get("step") : data.step)] : [];
  })();
  return {figures, evaluated, loss: curve("loss"), learning_rate: curve("learning_rate"), grad_norm: curve("grad_norm")};
}"""
FITS = "el => el.scrollWidth <= el.clientWidth + 1"


def write_training(store: RunStore, run_id: str, logged=LOGGED) -> None:
    """What the worker's EventCallback writes: progress carrying the previous loss, the log, progress again."""
    last = None
    for step, loss, rate, norm in logged:
        store.append_event(run_id, {"type": "progress", "step": step, "total_steps": 30, "loss": last})
        store.append_event(run_id, {"type": "log", "step": step, "loss": loss, "learning_rate": rate, "grad_norm": norm})
        store.append_event(run_id, {"type": "progress", "step": step, "total_steps": 30, "loss": loss})
        last = loss


@pytest.fixture
def notebook(tmp_path, sleeper):
    """A finished run with a wide evaluation, a run that has just started, and a notebook showing both."""
    store = RunStore(tmp_path / "runs")
    finished = store.create_run(Config(name="finished-run"))
    store.set_status(finished, "running", pid=os.getpid())
    write_training(store, finished)
    per_entity = {f"{kind}_{score}": 0.5 for kind in ENTITY_TYPES for score in ("precision", "recall", "f1")}
    store.append_event(finished, {"type": "eval", "split": "validation", "step": 30, "epoch": 1.0,
                                  "best_metric_name": "f1", "metrics": {"loss": 0.5, "f1": 0.61, **per_entity}})
    store.append_event(finished, {"type": "checkpoint", "step": 30, "checkpoint": "checkpoint-30", "kept": [30]})
    store.set_status(finished, "completed")
    started = store.create_run(Config(name="started-run"))
    store.set_status(started, "running", pid=sleeper.pid)
    store.append_event(started, {"type": "phase", "phase": "loading model", "detail": "default"})
    code = "from ftkit.notebook.widgets import RunMonitor\n" + "".join(
        f"{name} = RunMonitor({run_id!r}, poll_interval=0.2).show()\n"
        for name, run_id in (("finished", finished), ("started", started)))
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells.append(nbformat.v4.new_code_cell(code))
    nbformat.write(nb, tmp_path / "monitor.ipynb")
    with jupyter_lab(tmp_path, store.root) as server:
        yield {"url": f"{server['base']}/lab/tree/monitor.ipynb?token={server['token']}&reset", "store": store,
               "finished": finished, "started": started, "log": server["log"]}


@pytest.mark.slow
def test_the_monitor_draws_what_was_logged_and_fits_the_output(notebook):
    store, started_id = notebook["store"], notebook["started"]
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1100, "height": 1400})
        page.goto(notebook["url"])
        editor = page.locator(".jp-Cell .jp-InputArea-editor").first
        editor.wait_for(timeout=60_000)
        # a cell run before the kernel is connected is dropped: wait for its status first
        page.locator(".jp-StatusBar-TextItem", has_text="| Idle").wait_for(timeout=60_000)
        editor.click()
        page.keyboard.press("Shift+Enter")
        finished = page.locator(".ftkit-monitor", has_text="finished-run")
        started = page.locator(".ftkit-monitor", has_text="started-run")
        try:
            finished.locator(".bk-Figure").first.wait_for(timeout=60_000)
            started.wait_for(timeout=10_000)
        except PlaywrightTimeout:
            pytest.fail(f"no monitor showed up:\n{notebook['log'].read_text()[-3000:]}")
        page.wait_for_function(f"() => ({PLOTS_OF})(document.querySelector('.ftkit-monitor'))?.loss.length === 6",
                               timeout=15_000)

        # the curves are the logged values at their steps, the last logged loss included
        plots = finished.evaluate(PLOTS_OF)
        assert plots["loss"] == [[step, loss] for step, loss, _, _ in LOGGED]
        assert plots["loss"][-1] == [30, 0.4435]
        assert plots["learning_rate"] == [[step, rate] for step, _, rate, _ in LOGGED]
        assert plots["grad_norm"] == [[step, norm] for step, _, _, norm in LOGGED]
        # the learning-rate plot is drawn, and every legend stands beside its frame, never over the data
        assert [figure["name"] for figure in plots["figures"]] == ["ftkit-losses", "ftkit-optimizer"]
        for figure in plots["figures"]:
            frame = figure["frame"]
            assert frame["x1"] - frame["x0"] > 200 and frame["y1"] - frame["y0"] > 50, figure
            assert figure["legends"] and all(legend["x0"] >= frame["x1"] for legend in figure["legends"]), figure

        # a finished run: its result where the Stop button was, not a cut-off disabled button
        outcome = finished.locator(".ftkit-outcome")
        assert "completed: 30/30 steps" in outcome.inner_text()
        assert "final train loss 0.4435" in outcome.inner_text() and "checkpoint at step 30" in outcome.inner_text()
        assert outcome.evaluate(FITS)
        assert finished.locator("button.jupyter-button:visible").count() == 0

        # the evaluation table fits the output: entity types in rows, not one column each
        table = finished.locator(".ftkit-eval")
        assert table.evaluate(FITS), "the evaluation table is wider than its box"
        output = finished.locator("xpath=ancestor::div[contains(@class, 'jp-OutputArea-output')]")
        assert table.evaluate("el => el.getBoundingClientRect().right") <= \
            output.evaluate("el => el.getBoundingClientRect().right") + 1
        assert finished.locator(".ftkit-eval-entities tbody tr").count() == len(ENTITY_TYPES)

        # a run that has just started: a line saying why there are no curves, not a large empty plot
        note = started.locator(".ftkit-plot-note")
        assert "No curves yet (loading model default)" in note.inner_text()
        assert started.locator(".bk-Figure:visible").count() == 0
        stop = started.locator("button.jupyter-button", has_text="Stop")
        assert stop.is_visible() and stop.evaluate(FITS)
        OUTPUT_DIR.mkdir(exist_ok=True)
        page.screenshot(path=str(OUTPUT_DIR / "ftkit-monitor.png"), full_page=True)

        # its first logged loss brings the plot (drawn at full size although it was hidden until now)
        write_training(store, started_id, logged=[(10, 2.5, 5e-5, 9.0)])
        started.locator(".bk-Figure").first.wait_for(state="visible", timeout=5_000)
        page.wait_for_function(
            f"() => ({PLOTS_OF})(document.querySelectorAll('.ftkit-monitor')[1])?.loss.length === 1", timeout=5_000)
        plots = started.evaluate(PLOTS_OF)
        assert plots["loss"] == [[10, 2.5]]
        assert all(figure["frame"]["x1"] - figure["frame"]["x0"] > 200 for figure in plots["figures"]), plots
        assert note.inner_text() == ""

        # points logged while the page shows the run, here twice (the output shown again, as `%finetune`'s refresh
        # does), arrive once each in each view, and the axis reaches the last one
        page.keyboard.press("Escape")
        page.keyboard.press("b")  # a cell below that shows the same monitor again
        page.keyboard.press("Enter")
        page.keyboard.type("display(started)")
        page.keyboard.press("Shift+Enter")
        page.wait_for_function("() => document.querySelectorAll('.ftkit-monitor').length === 3", timeout=15_000)
        for step in range(11, 17):
            write_training(store, started_id, logged=[(step, 2.5 - step / 20, 5e-5, 9.0)])
            if step % 3 == 0:
                store.append_event(started_id, {"type": "eval", "split": "validation", "step": step,
                                                "best_metric_name": "f1", "metrics": {"loss": 2.0, "f1": step / 30}})
            time.sleep(0.15)  # the monitor polls every 0.2 s: some points come one by one, some together
        page.wait_for_function(
            f"() => ({PLOTS_OF})(document.querySelectorAll('.ftkit-monitor')[1])?.loss.length >= 7", timeout=5_000)
        time.sleep(1)  # whatever else the kernel would send
        for view in (started.first, started.nth(1)):
            plots = view.evaluate(PLOTS_OF)
            assert [step for step, _ in plots["loss"]] == list(range(10, 17))
            assert plots["evaluated"] == [12, 15]
            assert all(figure["x_end"] >= 16 for figure in plots["figures"]), plots["figures"]
        started = started.first

        # a trainer's own values (TRL's rewards/*) bring a figure of their group, live, with its legend whole
        store.append_event(started_id, {"type": "eval", "split": "validation", "step": 10, "best_metric_name": "f1",
                                        "metrics": {"loss": 2.4, "f1": 0.3, "rewards/accuracies": 0.6}})
        for step in (10, 15, 20):
            store.append_event(started_id, {"type": "log", "step": step, "loss": 2.4 - step / 100,
                                            "values": {"rewards/chosen": step / 100, "rewards/rejected": -step / 100,
                                                       "rewards/margins": step / 50, "rewards/accuracies": 0.5}})
        page.wait_for_function(f"() => ({PLOTS_OF})(document.querySelectorAll('.ftkit-monitor')[1])?.figures"
                               ".some(f => f.name === 'ftkit-rewards')", timeout=5_000)
        rewards = next(f for f in started.evaluate(PLOTS_OF)["figures"] if f["name"] == "ftkit-rewards")
        frame, (legend,) = rewards["frame"], rewards["legends"]
        assert frame["x1"] - frame["x0"] > 200 and frame["y1"] - frame["y0"] > 50, rewards
        assert legend["x0"] >= frame["x1"] and legend["y1"] - legend["y0"] <= frame["y1"] - frame["y0"] + 30, rewards
        started.screenshot(path=str(OUTPUT_DIR / "ftkit-monitor-rewards.png"))

        # a stop asked elsewhere (the panel, the CLI), then recorded by the worker, reaches the monitor
        store.request_stop(started_id)
        started.locator("button.jupyter-button", has_text="Stopping…").wait_for(timeout=5_000)
        store.set_status(started_id, "stopped")
        started.locator(".ftkit-outcome", has_text="stopped: 16/30 steps").wait_for(timeout=5_000)
        assert started.locator("button.jupyter-button:visible").count() == 0
        page.screenshot(path=str(OUTPUT_DIR / "ftkit-monitor-after-stop.png"), full_page=True)
