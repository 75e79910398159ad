"""What the real-browser tests share: JupyterLab on 127.0.0.1 over a run store, and Debian's chromium
driven by Playwright (a test tool's own browser download does not work here).

Needs the installed extension (`make setup`) and /usr/bin/chromium (the Makefile installs it).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"]
OUTPUT_DIR = Path(__file__).resolve().parents[1] / "test-output"  # screenshots, for people to look at


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_server(url: str, process: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"JupyterLab exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"JupyterLab did not answer within {timeout}s:\n{log.read_text()[-3000:]}")


@contextmanager
def jupyter_lab(root: Path, runs_dir: Path) -> Iterator[dict[str, Any]]:
    """JupyterLab serving ``root``, its kernels and the ftkit extension on the store at ``runs_dir``.

    Yields ``{"base", "token", "log"}``: open ``f"{base}/lab?token={token}&reset"``. Its settings live
    under ``root/home``, so no test sees another's (or the user's) workspace.
    """
    port, token = free_port(), secrets.token_hex(16)
    home = root / "home"
    env = {**os.environ, "FTKIT_RUNS_DIR": str(runs_dir), "JUPYTER_CONFIG_DIR": str(home / "config"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
           "JUPYTERLAB_SETTINGS_DIR": str(home / "settings")}
    news = home / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false"}')  # no "get news?" toast over the page
    log = root / "lab.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
             f"--ServerApp.root_dir={root}", "--LabApp.news_url=", "--ServerApp.open_browser=False"],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=root,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_server(f"{base}/api/status?token={token}", process, log)
        yield {"base": base, "token": token, "log": log}
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Playwright browser on Debian's chromium; a clear failure when it is missing."""
    if not (Path(CHROMIUM).exists() and shutil.which(CHROMIUM)):
        pytest.fail(f"{CHROMIUM} is missing: the browser test needs Debian's chromium "
                    "(`apt-get install -y chromium`, which `make setup` runs)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
