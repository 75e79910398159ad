"""A run's label issues in a real browser (`tests/browser.py`): opened from the expanded run, the likeliest
label errors worst first, narrowed to one label; a training run's table appears once an epoch is recorded."""

from __future__ import annotations

import pytest

from ftkit.runstore import RunStore
from ftkit.runstore.layout import DYNAMICS_FILE
from .browser import OUTPUT_DIR, chromium, jupyter_lab
from .test_server_label_issues import LABELS, MISLABELLED, TEXTS, add_classification_run, dynamics

NOT_RECORDED = "This run recorded no training dynamics (training.record_dynamics is off, or it has not finished an epoch yet)"


@pytest.fixture
def lab(tmp_path, sleeper):
    store = RunStore(tmp_path / "runs")
    ids = {"completed": add_classification_run(store, tmp_path, "sst-completed", "completed", epochs=3),
           "running": add_classification_run(store, tmp_path, "sst-running", "running", pid=sleeper.pid)}
    with jupyter_lab(tmp_path, store.root) as server:
        yield {"url": f"{server['base']}/lab?token={server['token']}&reset", "store": store, "ids": ids}


@pytest.fixture
def browser():
    with chromium() as browser:
        yield browser


def open_label_issues(page, run_id: str):
    """Expand the run in the panel and open its label issues: the view in the main area."""
    row = page.locator(f'#ftkit-runs .ftkit-Run[data-run-id="{run_id}"]')
    row.wait_for(timeout=15_000)
    row.locator(".ftkit-Run-toggle").click()
    row.locator(".ftkit-Run-labelIssues").click(timeout=5_000)
    return page.locator(".jp-MainAreaWidget:not(.lm-mod-hidden) .ftkit-LabelIssuesView")


@pytest.mark.slow
def test_label_issues_list_the_likeliest_errors_worst_first_and_narrow_to_a_label(lab, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(lab["url"])
    page.locator('.jp-SideBar [data-id="ftkit-runs"]').click(timeout=60_000)
    view = open_label_issues(page, lab["ids"]["completed"])
    rows = view.locator("tr[data-example]")
    rows.first.wait_for(timeout=15_000)
    assert rows.count() == len(TEXTS)
    assert rows.first.get_attribute("data-example") == str(MISLABELLED)
    cells = rows.first.locator("td")
    assert [cells.nth(i).inner_text() for i in range(4)] == [str(MISLABELLED), TEXTS[MISLABELLED], "negative", "positive"]
    assert view.locator("table b").count() == 0  # the example's "<b>" is text
    assert "8 of 8 examples, worst first · 3 epochs recorded" in view.locator(".ftkit-Examples-count").inner_text()

    view.locator(".ftkit-LabelFilter").select_option("positive")
    page.wait_for_function(
        "n => document.querySelectorAll('.ftkit-LabelIssuesView tr[data-example]').length === n",
        arg=LABELS.count("positive"), timeout=10_000)
    assert {rows.nth(i).locator(".ftkit-LabelIssue-gold").inner_text() for i in range(rows.count())} == {"positive"}
    OUTPUT_DIR.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT_DIR / "ftkit-label-issues.png"))


@pytest.mark.slow
def test_a_training_runs_label_issues_appear_once_it_records_an_epoch(lab, browser):
    store, run_id = lab["store"], lab["ids"]["running"]
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(lab["url"])
    page.locator('.jp-SideBar [data-id="ftkit-runs"]').click(timeout=60_000)
    view = open_label_issues(page, run_id)
    assert view.locator(".ftkit-LabelIssues-empty").inner_text(timeout=15_000) == NOT_RECORDED

    # the worker ends its first epoch: records, then progress into epoch 1, which the view follows
    (store.run_dir(run_id) / DYNAMICS_FILE).write_bytes(dynamics(1))
    store.append_event(run_id, {"type": "progress", "step": 3, "total_steps": 6, "epoch": 1.0})
    view.locator("tr[data-example]").first.wait_for(timeout=10_000)
    assert "1 epoch recorded" in view.locator(".ftkit-Examples-count").inner_text()
