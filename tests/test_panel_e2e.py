"""The side panel in a real browser: JupyterLab on 127.0.0.1, Debian's chromium driven by Playwright
(`tests/browser.py`). The test writes to the store while the page is open, as a training worker would,
and watches the panel.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from ftkit.config import Config
from ftkit.runstore import RunStore
from ftkit.runstore.layout import STOP_FILE
from ftkit.runstore.liveness import process_start_time
from .browser import OUTPUT_DIR, chromium, jupyter_lab
from .test_routes import add_run

HOSTILE_NAME = '<img src=x onerror="window.__ftkit_xss=1">'


@pytest.fixture
def lab(tmp_path, sleeper):
    """JupyterLab with the ftkit extension over a store holding a running, a finished and a failed run."""
    store = RunStore(tmp_path / "runs")
    ids = {
        "completed": add_run(store, "ner-lora-completed", "completed", checkpoints=3, f1=0.91, step=100),
        "failed": add_run(store, HOSTILE_NAME, "failed", step=5),
        "running": add_run(store, "ner-full-running", "running", pid=sleeper.pid, checkpoints=1, f1=0.5, step=10),
    }
    with jupyter_lab(tmp_path, store.root) as server:
        yield {"url": f"{server['base']}/lab?token={server['token']}&reset", "store": store, "ids": ids,
               "log": server["log"]}


@pytest.fixture
def browser():
    with chromium() as browser:
        yield browser


@pytest.mark.slow
def test_panel_lists_runs_follows_progress_stops_a_run_and_deletes_a_checkpoint(lab, browser):
    store, ids = lab["store"], lab["ids"]
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(lab["url"])
    page.locator('.jp-SideBar [data-id="ftkit-runs"]').click(timeout=60_000)
    panel = page.locator("#ftkit-runs")
    panel.locator(".ftkit-Run").first.wait_for(timeout=15_000)

    # every run is listed, the hostile name as plain text
    assert panel.locator(".ftkit-Run").count() == 3
    assert panel.locator(".ftkit-Count").inner_text() == "1–3 of 3 runs"
    assert panel.locator(".ftkit-Run-name", has_text=HOSTILE_NAME).count() == 1
    assert page.evaluate("window.__ftkit_xss") is None
    assert panel.locator(f'[data-run-id="{ids["failed"]}"] .ftkit-Run-error').inner_text() == "CUDA out of memory"
    completed = panel.locator(f'[data-run-id="{ids["completed"]}"]')
    assert "validation_f1 0.9100" in completed.locator(".ftkit-Run-metric").inner_text()

    # progress written to the store shows up live, within a second
    running = panel.locator(f'[data-run-id="{ids["running"]}"]')
    progress = running.locator(".ftkit-Progress")
    assert progress.get_attribute("aria-valuenow") == "10"
    store.append_event(ids["running"], {"type": "progress", "step": 37, "total_steps": 100, "epoch": 0.7})
    written = time.monotonic()
    page.wait_for_function(
        """id => document.querySelector(`[data-run-id="${id}"] .ftkit-Progress`)?.getAttribute('aria-valuenow') === '37'""",
        arg=ids["running"], timeout=5_000, polling=50,
    )
    latency = time.monotonic() - written
    assert latency < 1.5, f"the panel took {latency:.2f}s to show new progress"
    assert running.locator(".ftkit-Progress-label").inner_text() == "37/100"

    # checkpoints: step, metric, size, and under them what each holds
    completed.locator(".ftkit-Run-toggle").click()
    checkpoints = completed.locator(".ftkit-Checkpoint")
    checkpoints.first.wait_for(timeout=5_000)
    assert checkpoints.count() == 3
    assert checkpoints.nth(0).inner_text().split("\t")[:3] == ["10", "f1 0.5100", "100 B"]
    assert completed.locator(".ftkit-Checkpoint-holds").all_inner_texts()[:2] == ["adapter weights only", "weights only"]

    OUTPUT_DIR.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT_DIR / "ftkit-panel.png"))

    # stop through the UI: the request reaches the store as the STOP file the worker looks for
    running.locator(".ftkit-Run-stop").click()
    stop_file = store.run_dir(ids["running"]) / STOP_FILE
    deadline = time.monotonic() + 5
    while not stop_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stop_file.exists(), f"the stop request never reached the store:\n{lab['log'].read_text()[-2000:]}"
    running.locator(".ftkit-Run-stopping").wait_for(timeout=5_000)

    # the config opens in the editor (the store is inside the server root here)
    completed.locator(".ftkit-Run-config").click()
    page.locator('.lm-DockPanel .lm-TabBar-tab', has_text="config.yaml").wait_for(timeout=10_000)

    # delete a checkpoint, confirming the dialog
    checkpoints.nth(1).locator(".ftkit-Checkpoint-delete").click()
    page.locator(".jp-Dialog .jp-mod-warn").click()
    page.wait_for_function(
        """id => document.querySelectorAll(`[data-run-id="${id}"] .ftkit-Checkpoint`).length === 2""",
        arg=ids["completed"], timeout=5_000,
    )
    assert not (store.run_dir(ids["completed"]) / "checkpoint-20").exists()
    assert (store.run_dir(ids["completed"]) / "checkpoint-10").exists()
    page.screenshot(path=str(OUTPUT_DIR / "ftkit-panel-after-actions.png"))


def palette_item(page, label: str):
    """The command palette's item for ``label``, the palette opened and filtered as a person does."""
    search = page.locator(".lm-CommandPalette-input")
    for _ in range(3):  # the shortcut toggles the palette, and a busy page may take a press late: ask until it shows
        page.keyboard.press("Control+Shift+C")
        try:
            search.wait_for(state="visible", timeout=5_000)
            break
        except PlaywrightTimeout:
            continue
    search.fill(label)
    return page.locator(".lm-CommandPalette-item", has_text=label).first


@pytest.mark.slow
def test_panel_shows_whole_names_what_checkpoints_hold_and_offers_only_what_a_run_allows(lab, browser):
    """What a new user met (issue 30): names cut to "ner…", "queued" for a run already reading its data,
    checkpoints that said nothing of what they hold, an errors button on a run without saved predictions
    and a Delete command enabled for a running run."""
    store, ids = lab["store"], lab["ids"]
    folder = store.run_dir(ids["completed"])
    for step in (10, 20):  # the last checkpoint of a completed run is the weights alone
        (folder / f"checkpoint-{step}" / "optimizer.pt").write_bytes(b"\0" * 50)
    (folder / "predictions").mkdir()
    (folder / "predictions" / "test.jsonl").write_text(json.dumps(
        {"id": 0, "tokens": ["Paris"], "tags": ["B-LOC"], "predicted": ["O"]}) + "\n")
    names = ["ner-conll2003-lora-r16-lr1e-4", "ner-conll2003-lora-r16-lr3e-4", "sft-chat-lora-without-test-split"]
    alike = {name: add_run(store, name, "completed", task=name.split("-")[0]) for name in names}
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(lab["url"])
    page.locator('.jp-SideBar [data-id="ftkit-runs"]').click(timeout=60_000)
    panel = page.locator("#ftkit-runs")
    panel.locator(".ftkit-Run").first.wait_for(timeout=15_000)

    # at the panel's default width every name is whole: runs that differ at their ends can be told apart
    for name, run_id in alike.items():
        shown = panel.locator(f'[data-run-id="{run_id}"] .ftkit-Run-name')
        assert shown.inner_text() == name and shown.get_attribute("title") == f"{name} ({run_id})"
        assert shown.evaluate("e => e.scrollWidth <= e.clientWidth && e.getBoundingClientRect().right"
                              " <= e.closest('.ftkit-Run').getBoundingClientRect().right")

    # queued in the store, but its worker reads its data: "starting"; one waiting for a device stays queued
    starting, waiting = add_run(store, "ner-starting", "queued"), add_run(store, "ner-waiting", "queued")
    store.append_event(starting, {"type": "phase", "phase": "reading data", "done": 0, "total": 2, "detail": "train"})
    store.append_event(waiting, {"type": "phase", "phase": "waiting for device", "detail": "1 run ahead"})
    panel.locator(f'[data-run-id="{starting}"] .ftkit-Run-header .ftkit-Badge', has_text="starting").wait_for(timeout=5_000)
    assert panel.locator(f'[data-run-id="{starting}"] .ftkit-Phase').get_attribute("data-phase") == "reading data"
    assert panel.locator(f'[data-run-id="{waiting}"] .ftkit-Run-header .ftkit-Badge').inner_text() == "queued"
    assert panel.locator('.ftkit-StatusChip[data-status="queued"]').inner_text().startswith("queued/starting")

    # the errors button only where there are saved predictions to read
    assert panel.locator(f'[data-run-id="{ids["completed"]}"] .ftkit-Run-errors').count() == 1
    assert panel.locator(f'[data-run-id="{alike[names[2]]}"] .ftkit-Run-errors').count() == 0

    # Delete in the command palette is enabled exactly where the row shows its button
    running = panel.locator(f'[data-run-id="{ids["running"]}"]')
    assert running.locator(".ftkit-Run-delete").count() == 0
    running.locator(".ftkit-Run-name").click()
    assert "lm-mod-disabled" in palette_item(page, "Delete Fine-tuning Run").get_attribute("class")
    page.keyboard.press("Escape")
    completed = panel.locator(f'[data-run-id="{ids["completed"]}"]')
    assert completed.locator(".ftkit-Run-delete").count() == 1
    completed.locator(".ftkit-Run-name").click()
    assert "lm-mod-disabled" not in palette_item(page, "Delete Fine-tuning Run").get_attribute("class")
    page.keyboard.press("Escape")

    # each checkpoint says whether it is the best or the last, and what it holds (from what is on disk)
    completed.locator(".ftkit-Run-toggle").click()
    checkpoints = completed.locator(".ftkit-Checkpoint")
    checkpoints.first.wait_for(timeout=5_000)
    assert completed.locator(".ftkit-Checkpoint-holds").all_inner_texts() == [
        "adapter weights + optimizer state: can resume", "weights + optimizer state: can resume", "adapter weights only"]
    assert completed.locator('.ftkit-Checkpoint[data-step="30"] .ftkit-Checkpoint-roles').inner_text().strip() == "best · last"
    OUTPUT_DIR.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT_DIR / "ftkit-panel-names.png"))
    completed.screenshot(path=str(OUTPUT_DIR / "ftkit-panel-checkpoints.png"))


@pytest.mark.slow
def test_panel_shows_a_runs_parent_and_selects_it(lab, browser):
    """A run that starts from another run's checkpoint names it, in the list and in the expanded run;
    the name selects the parent, searching for it when the list does not show it."""
    store, parent = lab["store"], lab["ids"]["completed"]
    child = store.create_run(
        Config.from_dict({"name": "ner-dpo-child", "task": "dpo", "model": f"run:{parent}/checkpoint-10"}),
        parent={"run": parent, "name": "ner-lora-completed", "task": "ner", "checkpoint": "checkpoint-10"})
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(lab["url"])
    page.locator('.jp-SideBar [data-id="ftkit-runs"]').click(timeout=60_000)
    panel = page.locator("#ftkit-runs")
    row = panel.locator(f'.ftkit-Run[data-run-id="{child}"]')
    row.wait_for(timeout=15_000)
    assert row.locator(".ftkit-Run-parent").inner_text() == "↳ ner-lora-completed"

    panel.locator(".ftkit-Search").fill("dpo-child")  # the parent leaves the list
    page.wait_for_function("() => document.querySelectorAll('#ftkit-runs .ftkit-Run').length === 1", timeout=5_000)
    row.locator(".ftkit-Run-toggle").click()
    lineage = row.locator(".ftkit-Lineage")
    assert lineage.inner_text(timeout=5_000) == "from ner run ner-lora-completed · checkpoint-10 → this dpo run"
    lineage.locator(".ftkit-Lineage-parent").click()
    panel.locator(f'.ftkit-Run.jp-mod-selected[data-run-id="{parent}"]').wait_for(timeout=5_000)
    assert panel.locator(".ftkit-Search").input_value() == parent  # the search that found it, shown
    assert panel.locator(".ftkit-Run").count() == 2  # the parent and the run from it
    OUTPUT_DIR.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT_DIR / "ftkit-panel-lineage.png"))


def export_job(store: RunStore, run_id: str, export_id: str) -> subprocess.Popen:
    """A stand-in for an export job: it waits, and on SIGTERM records "stopped" as the worker does, then exits."""
    stopped = {"type": "export", "id": export_id, "state": "stopped", "checkpoint": "checkpoint-20", "format": "gguf",
               "quant": "q8_0"}
    code = (f"import signal, sys, time\nfrom ftkit.runstore import RunStore\n"
            f"def stop(*_):\n    RunStore({str(store.root)!r}).append_event({run_id!r}, {stopped!r})\n    sys.exit(0)\n"
            f"signal.signal(signal.SIGTERM, stop)\ntime.sleep(600)\n")
    return subprocess.Popen([sys.executable, "-c", code])


@pytest.mark.slow
def test_panel_exports_a_checkpoint_follows_the_job_shows_its_agreement_and_stops_it(lab, browser):
    store, ids = lab["store"], lab["ids"]
    sft = add_run(store, "sft-export", "completed", checkpoints=2, task="sft")
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    posted: list[tuple[str, dict]] = []

    def start_export(route):
        """The server's answer to POST .../exports, without starting a job: the test plays the job below."""
        if route.request.method != "POST":
            return route.continue_()
        run_id = route.request.url.split("/runs/")[1].split("/")[0]
        request = route.request.post_data_json
        posted.append((run_id, request))
        export = {"id": "e2e1" if run_id == sft else "onnx1", "run": run_id, "checkpoint": request["checkpoint"],
                  "format": "gguf" if run_id == sft else "onnx", "quant": request.get("quant"), "state": "started"}
        route.fulfill(status=202, content_type="application/json", body=json.dumps({"export": export}))

    # JupyterLab adds a cache-busting query to each request
    page.route(re.compile(r"/ftkit/api/runs/[^/?]+/exports(\?[^/]*)?$"), start_export)
    page.goto(lab["url"])
    page.locator('.jp-SideBar [data-id="ftkit-runs"]').click(timeout=60_000)
    panel = page.locator("#ftkit-runs")
    row = panel.locator(f'.ftkit-Run[data-run-id="{sft}"]')
    row.wait_for(timeout=15_000)
    row.locator(".ftkit-Run-toggle").click()

    # a GGUF run: the dialog chooses the weights (f16 first) and an Ollama Modelfile
    row.locator('.ftkit-ExportRow[data-step="20"] .ftkit-Checkpoint-export').click()
    dialog = page.locator(".jp-Dialog")
    assert dialog.locator("select").input_value().startswith("f16")
    dialog.locator("select").select_option(index=1)
    dialog.locator(".jp-Dialog-checkbox input").check()
    dialog.locator(".jp-mod-accept").click()
    exports = row.locator('.ftkit-ExportRow[data-step="20"]')
    exports.locator('.ftkit-Export[data-export-id="e2e1"][data-state="started"]').wait_for(timeout=5_000)
    assert posted == [(sft, {"checkpoint": "checkpoint-20", "quant": "q8_0", "ollama": True})]

    # the job reports through the run's events; the run ended long ago, and the panel follows the export anyway
    job = export_job(store, sft, "e2e1")
    try:
        fields = {"type": "export", "checkpoint": "checkpoint-20", "format": "gguf"}
        store.append_event(sft, {**fields, "id": "e2e1", "state": "started", "quant": "q8_0", "pid": job.pid,
                                 "pid_started": process_start_time(job.pid)})
        store.append_event(sft, {**fields, "id": "e2e1", "state": "progress", "detail": "writing tensors",
                                 "done": 12, "total": 272})
        for export_id, agreement in (("good", 0.995), ("bad", 0.8)):
            store.append_event(sft, {**fields, "id": export_id, "state": "started", "quant": "q4_0"})
            store.append_event(sft, {**fields, "id": export_id, "state": "completed", "quant": "q4_0", "size": 3 << 20,
                                     "path": f"/exports/{export_id}.gguf", "verification": {
                                         "passed": agreement >= 0.85, "agreement": agreement, "threshold": 0.85,
                                         "examples": 200, "split": "test"}})
        working = exports.locator('.ftkit-Export[data-export-id="e2e1"]')
        working.locator(".ftkit-Progress-label", has_text="writing tensors 12/272").wait_for(timeout=5_000)
        assert working.locator(".ftkit-Export-progress").get_attribute("aria-valuenow") == "12"
        good = exports.locator('.ftkit-Export[data-export-id="good"]')
        assert good.locator(".ftkit-Export-verification").inner_text() == "✓ agrees 99.5%"
        assert good.locator(".ftkit-Export-path").inner_text() == "/exports/good.gguf · 3.0 MB"
        bad = exports.locator('.ftkit-Export[data-export-id="bad"] .ftkit-Export-verification')
        assert bad.get_attribute("data-passed") == "false"
        assert bad.inner_text() == "✗ verification failed: agrees 80.0%, needs 85.0%"
        red = bad.evaluate("node => getComputedStyle(node).backgroundColor")
        green = good.locator(".ftkit-Export-verification").evaluate("node => getComputedStyle(node).backgroundColor")
        assert red != green, "a failed verification looks like a passed one"
        OUTPUT_DIR.mkdir(exist_ok=True)
        page.screenshot(path=str(OUTPUT_DIR / "ftkit-panel-exports.png"))

        # Stop goes to the server (DELETE .../exports/e2e1), which ends the job; the job records "stopped"
        working.locator(".ftkit-Export-stop").click()
        assert job.wait(timeout=10) == 0, f"the stop never reached the job:\n{lab['log'].read_text()[-2000:]}"
        exports.locator('.ftkit-Export[data-export-id="e2e1"][data-state="stopped"]').wait_for(timeout=5_000)
    finally:
        job.kill()
        job.wait()

    # an ONNX run: nothing to choose, a confirmation
    completed = panel.locator(f'.ftkit-Run[data-run-id="{ids["completed"]}"]')
    completed.locator(".ftkit-Run-toggle").click()
    completed.locator('.ftkit-ExportRow[data-step="10"] .ftkit-Checkpoint-export').click()
    assert dialog.locator("select").count() == 0
    dialog.locator(".jp-mod-accept").click()
    completed.locator('.ftkit-Export[data-export-id="onnx1"]').wait_for(timeout=5_000)
    assert posted[-1] == (ids["completed"], {"checkpoint": "checkpoint-10"})
