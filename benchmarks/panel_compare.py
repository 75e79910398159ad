"""Benchmark: the side panel's comparison of 20 runs with 500 logged points each.

Through a real JupyterLab server on 127.0.0.1 and headless chromium: the runs of one sweep are
ticked in the panel, then the time from the click on "Compare" to the comparison drawn (its table
and every run's line in every chart on screen, after the next animation frame) — target < 1 s —
over several openings; and the ``GET /ftkit/api/compare`` request alone, for its share.

    .venv/bin/python benchmarks/panel_compare.py [--runs 20] [--points 500] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

from panel_api import CHROMIUM, start_lab

from ftkit.config import Config
from ftkit.runstore.layout import EVENTS_FILE
from ftkit.runstore import RunStore

EVAL_EVERY = 50


def build_store(root: Path, runs: int, points: int) -> tuple[RunStore, list[str]]:
    """A finished sweep written as workers write it (events.jsonl), then indexed in one pass: a loss
    and a learning rate at every step, a validation F1 every 50 steps; the learning rates differ."""
    store = RunStore(root)
    ids = []
    start = time.time() - runs * 3600
    for i in range(runs):
        learning_rate = 1e-5 * (i + 1)
        config = Config.from_dict({"name": f"lr-{learning_rate:.0e}", "task": "ner", "adapter": {"kind": "lora"},
                                   "training": {"learning_rate": learning_rate}, "output": {"sweep": "bench"}})
        run_id = store.create_run(config)
        t = start + i * 3600
        events = [{"t": t, "type": "status", "status": "running", "pid": 1}]
        for step in range(1, points + 1):
            events.append({"t": t + step, "type": "log", "step": step, "loss": 2.0 / (1 + step * (i + 1) / 100),
                           "learning_rate": learning_rate * (1 - step / points)})
            if step % EVAL_EVERY == 0:
                events.append({"t": t + step, "type": "eval", "split": "validation", "step": step,
                               "metrics": {"f1": 0.5 + 0.4 * step / points - i / 1000}, "best_metric_name": "f1"})
        events.append({"t": t + points + 1, "type": "status", "status": "completed"})
        (store.run_dir(run_id) / EVENTS_FILE).write_text("".join(json.dumps(e) + "\n" for e in events))
        ids.append(run_id)
    store.rebuild_index()
    return store, ids


def measure_route(base: str, token: str, ids: list[str], requests: int = 20) -> float:
    """Median ms of the comparison request alone."""
    url = f"{base}/ftkit/api/compare?ids={','.join(ids)}"
    headers = {"Authorization": f"token {token}"}
    times = []
    for i in range(requests + 2):
        start = time.perf_counter()
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as response:
            response.read()
        if i >= 2:
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def measure_open(base: str, token: str, runs: int, repeats: int) -> list[float]:
    """Seconds from the click on Compare to the comparison drawn, once per repeat (the view closed between)."""
    from playwright.sync_api import sync_playwright

    drawn_js = (
        "n => { const v = document.querySelector('.ftkit-Compare'); if (!v) return false;"
        " const charts = [...v.querySelectorAll('.ftkit-Chart')];"
        " return v.querySelectorAll('.ftkit-CompareTable tbody tr').length === n && charts.length >= 3"
        " && charts.every(c => c.querySelectorAll('path.ftkit-Chart-line').length === n); }"
    )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(f"{base}/lab?token={token}&reset")
        page.locator('.jp-SideBar [data-id="ftkit-runs"]').click(timeout=90_000)
        page.locator('.ftkit-Sweep[data-sweep="bench"] .ftkit-Sweep-check').check(timeout=30_000)
        button = page.locator(".ftkit-CompareButton")
        # the click's own timestamp, taken in the page, so the figure is the browser's and not Playwright's
        page.evaluate("b => b.addEventListener('click', () => { window.__ftkit_t0 = performance.now(); }, true)",
                      button.element_handle())
        seconds = []
        for _ in range(repeats):
            button.click()
            page.wait_for_function(drawn_js, arg=runs, timeout=30_000, polling="raf")
            seconds.append(page.evaluate("new Promise(r => requestAnimationFrame(() => r(performance.now() - window.__ftkit_t0)))") / 1000)
            page.locator(".lm-DockPanel .lm-TabBar-tab.lm-mod-current .lm-TabBar-tabCloseIcon").click()
            page.locator(".ftkit-Compare").wait_for(state="detached")
        browser.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--points", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        (home / "settings" / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
        (home / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings").write_text(
            '{"fetchNews": "false"}')
        store, ids = build_store(Path(tmp) / "runs", args.runs, args.points)
        process, base, token = start_lab(store.root, home)
        try:
            route = measure_route(base, token, ids)
            seconds = measure_open(base, token, args.runs, args.repeats)
        finally:
            process.terminate()
            process.wait(timeout=10)
    print(f"{args.runs} runs x {args.points} points ({os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f})")
    print(f"GET /ftkit/api/compare: median {route:.1f} ms")
    print(f"click on Compare to the comparison drawn: median {statistics.median(seconds):.3f} s, "
          f"max {max(seconds):.3f} s over {len(seconds)} openings (target < 1 s)")


if __name__ == "__main__":
    main()
