"""The side panel's comparison, error view, log and snippets in a real browser (JupyterLab and Debian's
chromium, `tests/browser.py`): what the panel shows is what the store says, live while a run trains.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from ftkit.config import Config
from ftkit.runstore import RunStore
from ftkit.tasks.scoring import save_predictions
from .browser import OUTPUT_DIR, chromium, jupyter_lab

HOSTILE = '<img src=x onerror="window.__ftkit_xss=1">'
NOTEBOOK = {"cells": [{"cell_type": "code", "execution_count": None, "id": "first", "metadata": {}, "outputs": [],
                       "source": "# the snippet goes below"}],
            "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
            "nbformat": 4, "nbformat_minor": 5}


def sweep_run(store: RunStore, name: str, learning_rate: float, *, pid: int | None = None, steps: int = 20,
              checkpoint_f1: tuple[float, ...] = ()) -> str:
    """A run of the sweep "lr" as its worker leaves it: log events (loss, learning rate), evaluations, checkpoints."""
    config = Config.from_dict({"name": name, "task": "ner", "adapter": {"kind": "lora"},
                               "training": {"learning_rate": learning_rate}, "output": {"sweep": "lr"}})
    run_id = store.create_run(config)
    store.set_status(run_id, "running", pid=pid or 1)
    for step in range(1, steps + 1):
        store.append_event(run_id, {"type": "log", "step": step, "loss": 2.0 / step + learning_rate * 1000,
                                    "learning_rate": learning_rate * (1 - step / 100)})
    store.append_event(run_id, {"type": "progress", "step": steps, "total_steps": 100, "epoch": 0.5,
                                "loss": 0.4321, "eta_seconds": 185.0})
    for i, f1 in enumerate(checkpoint_f1, start=1):
        store.append_event(run_id, {"type": "eval", "split": "validation", "step": i * 10, "epoch": i / 2,
                                    "metrics": {"f1": f1}, "best_metric_name": "f1"})
        (store.run_dir(run_id) / f"checkpoint-{i * 10}").mkdir()
        store.append_event(run_id, {"type": "checkpoint", "step": i * 10, "checkpoint": f"checkpoint-{i * 10}",
                                    "size": 100, "adapter_only": True, "metrics": {"f1": f1}})
    (store.run_dir(run_id) / "train.log").write_text(f"loading model\nstep {steps}\n{HOSTILE}\n")
    return run_id


@pytest.fixture
def lab(tmp_path, sleeper):
    """JupyterLab over a sweep of two NER runs (one finished with test predictions, one training), a lone
    failed run, and a notebook in the server root."""
    store = RunStore(tmp_path / "runs")
    done = sweep_run(store, "lr-1e-4", 1e-4, checkpoint_f1=(0.6, 0.8, 0.7))
    store.append_event(done, {"type": "eval", "split": "test", "step": 30, "metrics": {"f1": 0.95},
                              "best_metric_name": "f1"})
    save_predictions(store.run_dir(done) / "predictions" / "test.jsonl",
                     [["Peter", "visits", "Paris", "."], ["EU", "rejects", HOSTILE, "lamb"], ["Bonn", "is", "far"]],
                     [["B-PER", "O", "B-LOC", "O"], ["B-ORG", "O", "B-MISC", "O"], ["B-LOC", "O", "O"]],
                     [["B-PER", "O", "B-PER", "O"], ["B-ORG", "O", "O", "O"], ["B-LOC", "O", "O"]])
    store.set_status(done, "completed")
    training = sweep_run(store, "lr-3e-4", 3e-4, pid=sleeper.pid, steps=10)
    failed = store.create_run(Config.from_dict({"name": "broken", "task": "classification"}))
    store.set_status(failed, "running", pid=1)
    store.set_status(failed, "failed", error="CUDA out of memory")
    (tmp_path / "scratch.ipynb").write_text(json.dumps(NOTEBOOK))
    with jupyter_lab(tmp_path, store.root) as server:
        yield {"server": server, "store": store, "ids": {"done": done, "training": training, "failed": failed}}


@pytest.fixture
def browser():
    with chromium() as browser:
        yield browser


def open_panel(browser: Any, server: dict[str, Any], path: str = "lab", permissions: list[str] | None = None) -> Any:
    context = browser.new_context(viewport={"width": 1500, "height": 950}, permissions=permissions or [])
    page = context.new_page()
    page.goto(f"{server['base']}/{path}?token={server['token']}&reset")
    page.locator('.jp-SideBar [data-id="ftkit-runs"]').click(timeout=60_000)
    page.locator("#ftkit-runs .ftkit-Run").first.wait_for(timeout=15_000)
    return page


@pytest.mark.slow
def test_panel_counts_filters_and_describes_runs(lab, browser):
    store, ids = lab["store"], lab["ids"]
    page = open_panel(browser, lab["server"])
    panel = page.locator("#ftkit-runs")
    counts = {chip.get_attribute("data-status"): chip.locator(".ftkit-StatusChip-count").inner_text()
              for chip in panel.locator(".ftkit-StatusChip").all()}
    assert counts == {"queued": "0", "running": "1", "completed": "1", "failed": "1", "stopped": "0"}

    # the sweep's runs together under its name; each row says what it trains
    sweep = panel.locator('.ftkit-Sweep[data-sweep="lr"]')
    assert sweep.locator(".ftkit-Run").count() == 2
    done, training = panel.locator(f'[data-run-id="{ids["done"]}"]'), panel.locator(f'[data-run-id="{ids["training"]}"]')
    assert done.locator(".ftkit-Run-subtitle").inner_text() == "ner · default · lora"
    # ranked on validation only (the test score, 0.95, is reported elsewhere), and its checkpoint marked
    assert done.locator(".ftkit-Run-metric").inner_text() == "validation_f1 0.8000 · best checkpoint 20"
    assert training.locator(".ftkit-Run-live").inner_text() == "loss 0.4321 · ETA 3m 05s"
    store.append_event(ids["training"], {"type": "progress", "step": 11, "total_steps": 100, "loss": 0.25,
                                         "eta_seconds": 60.0})
    page.wait_for_function(
        """id => document.querySelector(`[data-run-id="${id}"] .ftkit-Run-live`)?.textContent === 'loss 0.2500 · ETA 1m 00s'""",
        arg=ids["training"], timeout=5_000)
    # details at the panel's size and contrast, not small and faint
    style = done.locator(".ftkit-Run-meta").evaluate(
        "e => [getComputedStyle(e).fontSize, getComputedStyle(e).color, getComputedStyle(e.closest('.ftkit-RunsPanel')).color]")
    assert float(style[0].removesuffix("px")) >= 12 and style[1] == style[2]

    done.locator(".ftkit-Run-toggle").click()
    best = done.locator(".ftkit-Checkpoint.ftkit-mod-best")
    best.wait_for(timeout=5_000)
    assert best.get_attribute("data-step") == "20" and best.locator('[aria-label="best"]').inner_text().strip() == "★"
    assert "validation_f1" in best.locator(".ftkit-Checkpoint-best").get_attribute("title")
    assert done.locator(".ftkit-Checkpoint").count() == 3

    # a status chip filters; a search without a match says so
    panel.locator('.ftkit-StatusChip[data-status="failed"]').click()
    page.wait_for_function("() => document.querySelectorAll('#ftkit-runs .ftkit-Run').length === 1")
    assert panel.locator(".ftkit-Run-name").inner_text() == "broken"
    panel.locator('.ftkit-StatusChip[data-status="failed"]').click()
    panel.locator(".ftkit-Search").fill("zebra")
    panel.locator(".ftkit-Count", has_text="No runs match “zebra”").wait_for(timeout=5_000)
    assert panel.locator(".ftkit-Run").count() == 0
    panel.locator(".ftkit-Search").fill("")
    done.wait_for(timeout=15_000)  # the list is fetched again: seconds on a loaded CI machine

    # train.log opens in the main area, as text, for a store outside the server root or not
    done.locator(".ftkit-Run-log").click()
    log = page.locator(".ftkit-LogText")
    log.wait_for(timeout=10_000)
    assert log.inner_text() == f"loading model\nstep 20\n{HOSTILE}"
    assert page.evaluate("window.__ftkit_xss") is None
    OUTPUT_DIR.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT_DIR / "ftkit-panel-details.png"))


@pytest.mark.slow
def test_compare_shows_differing_keys_and_live_curves_and_the_error_view_shows_mistakes(lab, browser):
    store, ids = lab["store"], lab["ids"]
    page = open_panel(browser, lab["server"])
    panel = page.locator("#ftkit-runs")
    panel.locator('.ftkit-Sweep[data-sweep="lr"] .ftkit-Sweep-check').check()
    assert panel.locator(".ftkit-CompareBar").inner_text().startswith("2 selected")
    panel.locator(".ftkit-CompareButton").click()
    view = page.locator(".ftkit-Compare")
    view.wait_for(timeout=10_000)

    assert view.locator("th.ftkit-Compare-key").evaluate_all("ths => ths.map(th => th.dataset.key)") == ["training.learning_rate"]
    # in the order they were ticked: the sweep's newest run first
    assert view.locator("td.ftkit-Compare-key").all_inner_texts() == ["0.0003", "0.0001"]
    # first the training loss and the main validation metric, as the notebook shows them; the rest behind a toggle
    charts = view.locator(".ftkit-Chart")
    assert charts.evaluate_all("fs => fs.map(f => f.dataset.curve)") == ["loss", "validation_f1"]
    assert view.locator("th.ftkit-Compare-metric").all_inner_texts() == ["validation_f1", "test_f1"]
    loss = view.locator('.ftkit-Chart[data-curve="loss"] path')
    assert loss.evaluate_all("ps => ps.map(p => p.dataset.runId)") == [ids["training"], ids["done"]]
    more = view.locator(".ftkit-Compare-more")
    assert more.inner_text() == "more curves and metrics (0 metrics, 1 curves)"
    more.click()
    assert charts.evaluate_all("fs => fs.map(f => f.dataset.curve)") == ["loss", "validation_f1", "learning_rate"]
    assert view.locator('.ftkit-Chart[data-curve="learning_rate"] path').count() == 2
    assert more.get_attribute("aria-pressed") == "true" and more.inner_text() == "fewer curves and metrics"

    # the training run's curve grows as it logs, without touching the view
    def points(run_id: str) -> int:
        return len(view.locator(f'.ftkit-Chart[data-curve="loss"] path[data-run-id="{run_id}"]').get_attribute("d").split("L"))

    assert points(ids["training"]) == 10
    for step in (11, 12, 13):
        store.append_event(ids["training"], {"type": "log", "step": step, "loss": 0.2, "learning_rate": 1e-4})
    store.append_event(ids["training"], {"type": "progress", "step": 13, "total_steps": 100, "loss": 0.2})
    page.wait_for_function(
        """id => document.querySelector(`.ftkit-Chart[data-curve="loss"] path[data-run-id="${id}"]`)?.getAttribute('d').split('L').length === 13""",
        arg=ids["training"], timeout=5_000)
    assert points(ids["done"]) == 20
    # a curve no list names (a preference trainer's rewards/margins) gets its chart once a run logs it
    for step, margin in ((14, 0.5), (15, 0.7)):
        store.append_event(ids["training"], {"type": "log", "step": step, "loss": 0.2, "values": {"rewards/margins": margin}})
    store.append_event(ids["training"], {"type": "progress", "step": 15, "total_steps": 100, "loss": 0.2})
    margins = view.locator('.ftkit-Chart[data-curve="rewards/margins"]')
    margins.locator(f'path[data-run-id="{ids["training"]}"]').wait_for(timeout=5_000)
    assert margins.locator(".ftkit-Chart-title").inner_text() == "rewards/margins"
    assert margins.locator(f'path[data-run-id="{ids["training"]}"]').get_attribute("d").count("L") == 1
    assert view.locator(".ftkit-Chart").evaluate_all("fs => fs.map(f => f.dataset.curve)")[-2:] == [
        "rewards/margins", "learning_rate"]
    OUTPUT_DIR.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT_DIR / "ftkit-compare.png"))

    # the finished run's errors: per-type table, confusion matrix, sentences filterable by kind and type
    panel.locator(f'[data-run-id="{ids["done"]}"] .ftkit-Run-errors').click()
    errors = page.locator(".ftkit-ErrorView")
    errors.wait_for(timeout=10_000)
    confusion = errors.locator(".ftkit-Confusion")
    assert confusion.locator("thead th").all_inner_texts()[1:] == ["LOC", "MISC", "ORG", "PER", "O"]
    loc_row = confusion.locator("tbody tr").nth(0).locator("td").all_inner_texts()
    assert loc_row == ["1", "0", "0", "1", "0"]  # Bonn right, Paris taken for a person
    assert errors.locator(".ftkit-ErrorTable tbody tr").count() == 4
    sentences = errors.locator(".ftkit-Sentence")
    assert sentences.count() == 2  # the sentence without a mistake is not listed
    assert errors.locator(".ftkit-Examples-count").inner_text() == "showing 2 of 2 sentences with errors"
    assert errors.locator('.ftkit-ErrorKind[data-kind="missed"]').inner_text() == "missed MISC"
    assert errors.locator('.ftkit-Entity.ftkit-mod-wrong[data-type="MISC"]').inner_text().startswith(HOSTILE)
    errors.locator(".ftkit-KindFilter").select_option("wrong_type")
    page.wait_for_function("() => document.querySelectorAll('.ftkit-Sentence').length === 1")
    assert sentences.first.locator(".ftkit-ErrorKind").inner_text() == "wrong type LOC"
    assert errors.locator(".ftkit-Examples-count").inner_text() == "showing 1 of 2 sentences with errors"
    assert "wrong_type" not in errors.inner_text()  # "wrong type" in the summary, the table and the filter alike
    errors.locator(".ftkit-KindFilter").select_option("")
    errors.locator(".ftkit-TypeFilter").select_option("MISC")
    page.wait_for_function("() => document.querySelectorAll('.ftkit-Sentence').length === 1")
    assert page.evaluate("window.__ftkit_xss") is None
    page.screenshot(path=str(OUTPUT_DIR / "ftkit-errors.png"))


@pytest.mark.slow
def test_copy_and_insert_snippet_put_the_load_code_in_a_notebook_cell(lab, browser):
    ids = lab["ids"]
    page = open_panel(browser, lab["server"], "lab/tree/scratch.ipynb", ["clipboard-read", "clipboard-write"])
    cells = page.locator(".jp-NotebookPanel .jp-Cell")
    cells.first.wait_for(timeout=30_000)
    cells.first.click()
    done = page.locator(f'#ftkit-runs [data-run-id="{ids["done"]}"]')
    done.locator(".ftkit-Run-toggle").click()
    checkpoint = done.locator('.ftkit-Checkpoint[data-step="20"]')
    checkpoint.wait_for(timeout=5_000)
    path = str(lab["store"].run_dir(ids["done"]) / "checkpoint-20")

    checkpoint.locator(".ftkit-Checkpoint-insert").click()
    page.wait_for_function("() => document.querySelectorAll('.jp-NotebookPanel .jp-Cell').length === 2", timeout=5_000)
    inserted = cells.nth(1).locator(".cm-content").inner_text()
    assert f"Predictor.from_checkpoint({path!r})" in inserted

    checkpoint.locator(".ftkit-Checkpoint-copy").click()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert f"Predictor.from_checkpoint({path!r})" in copied
    cells.nth(0).locator(".cm-content").click()
    page.keyboard.press("Control+End")
    page.keyboard.press("Enter")
    page.keyboard.press("Control+V")
    page.wait_for_function(
        "() => document.querySelector('.jp-NotebookPanel .jp-Cell .cm-content').innerText.includes('from_checkpoint')",
        timeout=5_000)
    assert cells.nth(0).locator(".cm-content").inner_text().startswith("# the snippet goes below")
    page.screenshot(path=str(OUTPUT_DIR / "ftkit-snippets.png"))
