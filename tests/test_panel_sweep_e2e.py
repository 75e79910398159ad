"""A sweep's view in a real browser (`tests/browser.py`): opened from its group's header in the panel, a row
per trial with the pruned one marked, a plot of the metric per searched setting, Compare on two ticked runs;
a working grid's Stop, and its table following the runs as they end."""

from __future__ import annotations

import pytest

from ftkit.runstore import RunStore
from .browser import OUTPUT_DIR, chromium, jupyter_lab
from .test_server_sweeps import GRID, LR, R, SEARCH, add_grid, add_search


@pytest.fixture
def lab(tmp_path, sleeper):
    store = RunStore(tmp_path / "runs")
    ids = {"grid": add_grid(store, running_pid=sleeper.pid), "search": add_search(store)}
    with jupyter_lab(tmp_path, store.root) as server:
        yield {"url": f"{server['base']}/lab?token={server['token']}&reset", "store": store, "ids": ids}


@pytest.fixture
def browser():
    with chromium() as browser:
        yield browser


def open_sweep(page, url: str, sweep: str):
    """Open the panel, then the sweep's view from its group's header: the view in the main area."""
    page.goto(url)
    page.locator('.jp-SideBar [data-id="ftkit-runs"]').click(timeout=60_000)
    group = page.locator(f'#ftkit-runs .ftkit-Sweep[data-sweep="{sweep}"]')
    group.wait_for(timeout=15_000)
    group.locator(".ftkit-Sweep-open").click()
    view = page.locator(f'.jp-MainAreaWidget:not(.lm-mod-hidden) .ftkit-SweepView[data-sweep="{sweep}"]')
    view.wait_for(timeout=15_000)
    return view


@pytest.mark.slow
def test_a_searchs_view_lists_its_trials_marks_the_pruned_one_plots_each_setting_and_compares(lab, browser):
    ids = lab["ids"]["search"]
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    view = open_sweep(page, lab["url"], SEARCH)
    rows = view.locator("tr[data-run-id]")
    rows.first.wait_for(timeout=10_000)
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.runId)") == [ids[0], ids[1], ids[2]]
    assert "finished · 4 of 5 trials done · 2 at a time · median pruner" in view.locator(".ftkit-SweepView-state").inner_text()
    assert view.locator(".ftkit-SweepView-best").inner_text() == f"best: {SEARCH}-1 (validation_f1 0.8000)"
    # the pruned trial reads "pruned" and is marked; the best is starred; the failed trial without a run is listed
    pruned = view.locator(f'tr[data-run-id="{ids[1]}"]')
    assert pruned.get_attribute("data-status") == "pruned" and "ftkit-Sweep-pruned" in pruned.get_attribute("class")
    assert pruned.locator(".ftkit-SweepRow-status").inner_text() == "pruned"
    assert view.locator("tr.ftkit-Sweep-pruned").count() == 1
    assert view.locator(f'tr[data-run-id="{ids[0]}"] [aria-label="best"]').count() == 1
    failed = view.locator('tr[data-trial="4"]')
    assert failed.get_attribute("data-status") == "failed" and failed.locator("input").is_disabled()
    assert view.locator("th.ftkit-Compare-key").evaluate_all("ths => ths.map(th => th.dataset.key)") == [LR, R]
    assert pruned.locator("td.ftkit-Compare-key").all_inner_texts() == ["0.005", "16"]
    # a plot per searched setting, a point per scored run, the pruned one hollow
    plots = view.locator(".ftkit-SweepPlot")
    assert plots.evaluate_all("fs => fs.map(f => f.dataset.key)") == [LR, R]
    for key in (LR, R):
        plot = view.locator(f'.ftkit-SweepPlot[data-key="{key}"]')
        assert plot.locator("circle.ftkit-SweepPlot-point").count() == 3
        assert plot.locator(f'circle.ftkit-mod-pruned[data-run-id="{ids[1]}"]').count() == 1
    assert "1 without a score" in view.locator(f'.ftkit-SweepPlot[data-key="{LR}"] figcaption').inner_text()
    assert view.locator(".ftkit-SweepView-stop").count() == 0  # nothing at work: nothing to stop
    OUTPUT_DIR.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT_DIR / "ftkit-sweep.png"))

    compare = view.locator(".ftkit-SweepView-compare")
    assert compare.is_disabled()
    view.locator(f'tr[data-run-id="{ids[0]}"] input[type="checkbox"]').check()
    assert compare.is_disabled()  # one run is no comparison
    view.locator(f'tr[data-run-id="{ids[1]}"] input[type="checkbox"]').check()
    assert compare.inner_text() == "Compare selected (2)" and compare.is_enabled()
    compare.click()
    compared = page.locator(".jp-MainAreaWidget:not(.lm-mod-hidden) .ftkit-Compare")
    compared.wait_for(timeout=10_000)
    assert compared.locator("tbody tr").evaluate_all("rs => rs.map(r => r.dataset.runId)") == [ids[0], ids[1]]
    assert sorted(compared.locator("th.ftkit-Compare-key").evaluate_all("ths => ths.map(th => th.dataset.key)")) == [R, LR]


@pytest.mark.slow
def test_a_working_grid_can_be_stopped_and_its_table_follows_its_runs(lab, browser):
    store, ids = lab["store"], lab["ids"]["grid"]
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    view = open_sweep(page, lab["url"], GRID)
    running = view.locator(f'tr[data-run-id="{ids[3]}"]')
    running.wait_for(timeout=10_000)
    assert running.get_attribute("data-status") == "running"
    assert view.locator(".ftkit-SweepView-state").inner_text() == "grid · 3 runs, 2 ended"
    assert view.locator(".ftkit-SweepPlot").evaluate_all("fs => fs.map(f => f.dataset.key)") == [R]

    view.locator(".ftkit-SweepView-stop").click()
    view.locator(".ftkit-SweepView-stopping").wait_for(timeout=10_000)
    assert store.stop_requested(ids[3])
    # the worker saves a checkpoint and stops, with a score: the view sees it on its own, and rests
    store.append_event(ids[3], {"type": "eval", "split": "validation", "step": 20, "best_metric_name": "f1",
                                "metrics": {"f1": 0.9}})
    store.set_status(ids[3], "stopped")
    page.wait_for_function(
        """id => document.querySelector(`.ftkit-SweepView tr[data-run-id="${id}"]`)?.dataset.status === 'stopped'""",
        arg=ids[3], timeout=15_000)
    assert view.locator(".ftkit-SweepView-stop").count() == 0 and view.locator(".ftkit-SweepView-stopping").count() == 0
    assert view.locator(".ftkit-SweepView-best").inner_text() == f"best: {GRID}-3 (validation_f1 0.9000)"
    assert view.locator(f'.ftkit-SweepPlot[data-key="{R}"] circle').count() == 3
