"""Benchmark: the side panel with 1,000 runs x 20 checkpoints.

Measures, through a real JupyterLab server on 127.0.0.1:
- list latency of ``GET /ftkit/api/runs`` (a page of 50; default sort, a status filter, a text
  search, sort by best metric, a deep page) as p50/p99 over many requests — target p99 < 100 ms;
- the time for the panel to show the first page in headless chromium after its tab is clicked
  (JupyterLab already loaded) — target < 1 s — and from opening the page to rows on screen.

    .venv/bin/python benchmarks/panel_api.py [--runs 1000] [--checkpoints 20] [--requests 200]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from ftkit.config import Config
from ftkit.runstore.layout import EVENTS_FILE
from ftkit.runstore import RunStore

CHROMIUM = "/usr/bin/chromium"
PAGE_SIZE = 50


def build_store(root: Path, runs: int, checkpoints: int) -> RunStore:
    """Runs written as workers write them (events.jsonl, the truth), then indexed in one pass.

    Appending ~24,000 events one transaction at a time takes minutes; writing the event files and
    letting ``rebuild_index`` replay them gives the same index in seconds.
    """
    store = RunStore(root)
    config = Config.from_dict({"name": "bench", "task": "ner", "adapter": {"kind": "lora"}})
    t0 = time.time() - runs * 60
    for i in range(runs):
        run_id = store.create_run(config.replace({"name": f"ner-lora-{i:04d}"}))
        start = t0 + i * 60
        status = ("completed", "failed", "stopped", "completed")[i % 4]
        events = [{"t": start, "type": "status", "status": "running", "pid": 1}]
        for k in range(1, checkpoints + 1):
            step = k * 50
            f1 = 0.5 + 0.4 * k / checkpoints * ((i % 97) / 97)
            events.append({"t": start + k, "type": "progress", "step": step, "total_steps": checkpoints * 50,
                           "epoch": k / 4, "samples_per_second": 30.0, "loss": 1 / k})
            events.append({"t": start + k, "type": "eval", "split": "validation", "step": step, "epoch": k / 4,
                           "metrics": {"f1": f1, "precision": f1, "recall": f1, "loss": 1 / k}, "best_metric_name": "f1"})
            events.append({"t": start + k, "type": "checkpoint", "step": step, "path": f"checkpoint-{step}",
                           "size": 3_000_000, "adapter_only": True, "metrics": {"f1": f1}})
        events.append({"t": start + checkpoints + 1, "type": "status", "status": status})
        with open(store.run_dir(run_id) / EVENTS_FILE, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(e) + "\n" for e in events)
        store.set_record_fields(run_id, status=status, started=start, ended=start + checkpoints + 1, pid=None)
    store.rebuild_index()
    return store


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(runs_dir: Path, home: Path) -> tuple[subprocess.Popen, str, str]:
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "FTKIT_RUNS_DIR": str(runs_dir), "JUPYTER_CONFIG_DIR": str(home / "config"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
           "JUPYTERLAB_SETTINGS_DIR": str(home / "settings")}
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={home}", "--ServerApp.open_browser=False"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=home,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2).close()
            return process, base, token
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise SystemExit("JupyterLab did not start")
            time.sleep(0.3)


def measure_list(base: str, token: str, query: str, requests: int) -> tuple[float, float, int]:
    """p50 and p99 in ms of one list request, and the run count it reported."""
    url = f"{base}/ftkit/api/runs?limit={PAGE_SIZE}&{query}"
    headers = {"Authorization": f"token {token}"}
    times, total = [], 0
    for i in range(requests + 5):
        start = time.perf_counter()
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as response:
            total = json.loads(response.read())["total"]
        if i >= 5:  # the first few warm caches and connections
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), percentile(times, 99), total


def measure_panel(base: str, token: str, runs: int) -> tuple[float, float]:
    """Seconds from opening JupyterLab to the first page of runs, and from clicking the tab to it."""
    from playwright.sync_api import sync_playwright

    shown_js = (
        "(() => { const p = document.querySelector('#ftkit-runs');"
        " return !!p && p.offsetParent !== null"
        f" && p.querySelectorAll('.ftkit-Run').length === {min(PAGE_SIZE, runs)}"
        f" && p.querySelector('.ftkit-Count')?.textContent === {json.dumps(f'1–{min(PAGE_SIZE, runs)} of {runs} runs')}; }})()"
    )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        tab = page.locator('.jp-SideBar [data-id="ftkit-runs"]')
        opened = time.perf_counter()
        page.goto(f"{base}/lab?token={token}&reset")
        tab.click(timeout=90_000)
        page.wait_for_function(shown_js, timeout=30_000, polling="raf")
        cold = time.perf_counter() - opened
        # the panel's own cost: a fresh, settled JupyterLab, then a click on the tab
        page.goto(f"{base}/lab?token={token}&reset")
        tab.wait_for(timeout=90_000)
        page.wait_for_timeout(1500)
        clicked = time.perf_counter()
        tab.click()
        page.wait_for_function(shown_js, timeout=30_000, polling="raf")
        shown = time.perf_counter() - clicked
        browser.close()
    return cold, shown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--checkpoints", type=int, default=20)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--no-browser", action="store_true", help="skip the chromium measurement")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ftkit-bench-") as tmp:
        home = Path(tmp)
        start = time.perf_counter()
        store = build_store(home / "runs", args.runs, args.checkpoints)
        print(f"store: {args.runs} runs x {args.checkpoints} checkpoints built in {time.perf_counter() - start:.1f}s")

        in_process = []
        for _ in range(50):
            t = time.perf_counter()
            store.list_runs(limit=PAGE_SIZE)
            in_process.append((time.perf_counter() - t) * 1000)
        print(f"RunStore.list_runs(limit=50), in process: p50 {statistics.median(in_process):.1f} ms, "
              f"p99 {percentile(in_process, 99):.1f} ms")

        process, base, token = start_lab(store.root, home)
        try:
            print(f"GET /ftkit/api/runs?limit={PAGE_SIZE} through JupyterLab ({args.requests} requests each):")
            worst = 0.0
            for label, query in [("newest first", ""), ("status=failed", "status=failed"),
                                 ("q=lora-09", "q=lora-09"), ("sort=best_metric", "sort=best_metric&order=desc"),
                                 ("page 20 (offset 950)", "offset=950")]:
                p50, p99, total = measure_list(base, token, query, args.requests)
                worst = max(worst, p99)
                print(f"  {label:<22} p50 {p50:6.1f} ms   p99 {p99:6.1f} ms   ({total} matching)")
            print(f"list p99 worst case: {worst:.1f} ms (target < 100 ms): {'OK' if worst < 100 else 'OVER'}")
            if not args.no_browser:
                cold, shown = measure_panel(base, token, args.runs)
                print(f"panel: JupyterLab opened -> first {PAGE_SIZE} runs on screen: {cold:.2f} s")
                print(f"panel: tab clicked -> first {PAGE_SIZE} runs and '1–{PAGE_SIZE} of {args.runs}' shown: "
                      f"{shown:.2f} s (target < 1 s): {'OK' if shown < 1 else 'OVER'}")
        finally:
            process.terminate()
            process.wait(timeout=10)


if __name__ == "__main__":
    main()
