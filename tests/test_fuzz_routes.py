"""A fuzzing pass over the REST API against a real Jupyter server: no 500s, no path escapes, auth always, no HTML.

Hypothesis builds requests under ``/ftkit/api/`` (paths with run ids real and invented, encoded
dots and slashes, HTML and unicode; any verb; any query), sent with the token, with a wrong one
and with none. Every answer is JSON (``application/json``, ``{"code", "message"}`` on errors)
whose raw bytes hold no ``<``; nothing outside the store is ever touched.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote, urlencode

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ftkit.runstore import RunStore

from .test_routes import add_run

pytestmark = pytest.mark.slow

FUZZ = settings(max_examples=300, deadline=timedelta(seconds=10), derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
VERBS = ("GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS")


class Answer(NamedTuple):
    status_code: int
    headers: dict[str, str]
    content: bytes


class Server:
    """A Jupyter server with ftkit's extension over a store holding runs of every status."""

    def __init__(self, root: Path):
        self.token = secrets.token_hex(16)
        self.store = RunStore(root / "runs")
        self.sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(900)"])
        self.ids = {status: add_run(self.store, f"{status}-<b>run</b>", status, pid=self.sleeper.pid,
                                    checkpoints=2, f1=0.5, step=10)
                    for status in ("queued", "running", "completed", "failed", "stopped")}
        self.outside = root / "outside"
        self.outside.mkdir()
        (self.outside / "run.json").write_text('{"id": "outside"}')
        (self.outside / "config.yaml").write_text("secret: 1")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        (root / "notebooks").mkdir()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root", f"--port={self.port}",
             "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={self.token}",
             f"--ServerApp.root_dir={root / 'notebooks'}", "--ServerApp.jpserver_extensions={'ftkit': True}",
             f"--FtkitApp.runs_dir={self.store.root}"],
            stdout=subprocess.DEVNULL, stderr=open(root / "server.log", "wb"), env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/ftkit/api/runs", headers=self.auth, timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                time.sleep(0.2)
        raise RuntimeError((root / "server.log").read_text()[-2000:])

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def close(self) -> None:
        for process in (self.process, self.sleeper):
            process.terminate()
            process.wait(timeout=30)

    def nothing_lost(self) -> None:
        assert (self.outside / "run.json").exists() and (self.outside / "config.yaml").exists()
        assert all(self.store.run_dir(run_id).is_dir() for run_id in self.ids.values())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("fuzz-routes"))
    yield server
    server.close()


def send(server: "Server", method: str, path: str, params: dict | None = None, headers: dict | None = None) -> Answer:
    """One request with the path exactly as given (clients would fold ``..`` away; an attacker does not)."""
    target = f"/ftkit/api/{path}" + (f"?{urlencode(params)}" if params else "")
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request(method, target, headers=headers or {})
        response = connection.getresponse()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


def assert_json_answer(response: Answer, method: str) -> None:
    assert response.status_code < 500, (response.status_code, response.content[:300])
    assert b"<" not in response.content, response.content[:300]  # no reflected (or stored) HTML
    if method in ("HEAD", "OPTIONS") or response.status_code in (204, 304):
        return  # answered by Jupyter itself (CORS preflight) with no body
    assert response.headers["content-type"].split(";")[0] == "application/json", response.headers
    body = json.loads(response.content)
    if response.status_code >= 400:
        assert set(body) == {"code", "message"}, body


segment = st.one_of(
    st.sampled_from(["runs", "live", "config", "stop", "checkpoints", "sweeps", "10", "0", "999999999999", "-1", "..", ".",
                     "%2E%2E", "%2e%2e%2f", "..%2F..%2Foutside", "%252E%252E", "outside", "..%5C..", "%00",
                     "<script>alert(1)</script>", "%3Cimg%20src=x%3E", "run.json", "index.sqlite", "~root",
                     "%2Ftmp", "a" * 200, "null", "undefined", "'%20OR%201=1%20--", "%F0%9F%92%A5", "%ff%fe"]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=12)
    .map(lambda text: quote(text, safe="")),
)
query = st.dictionaries(
    st.sampled_from(["status", "q", "sort", "order", "limit", "offset", "etag", "timeout", "token", "x"]),
    st.one_of(st.sampled_from(["running", "completed,failed", "best_metric", "desc", "asc", "-1", "0", "501", "1e9",
                               "nan", "inf", "0.01", "<b>x</b>", "' OR 1=1", "%00", "x" * 300]),
              st.text(max_size=20)),
    max_size=4,
)


@FUZZ
@given(data=st.data(), method=st.sampled_from(VERBS), parts=st.lists(segment, min_size=0, max_size=4), params=query)
def test_any_request_gets_a_json_answer_below_500_and_touches_nothing_outside(server, data, method, parts, params):
    if parts[:1] == ["runs"] and len(parts) > 1 and data.draw(st.booleans(), label="real id"):
        status = data.draw(st.sampled_from(sorted(server.ids)), label="of status")
        parts[1] = server.ids[status]
        if method == "DELETE":
            method = "GET"  # deleting real runs is covered by test_routes; here they must survive
    if "timeout" in params:
        params["timeout"] = "0.1"  # the live channel would otherwise hold the request for seconds
    response = send(server, method, "/".join(parts), params, server.auth)
    assert_json_answer(response, method)
    server.nothing_lost()


@FUZZ
@given(method=st.sampled_from(VERBS), parts=st.lists(segment, min_size=0, max_size=3),
       credentials=st.sampled_from(["none", "wrong token", "empty token", "wrong query token", "basic"]))
def test_without_the_token_every_route_is_refused_and_changes_nothing(server, method, parts, credentials):
    if method in ("HEAD", "OPTIONS"):
        method = "GET"  # tornado answers those itself without running our handlers
    headers, params = {}, {}
    if credentials == "wrong token":
        headers["Authorization"] = f"token {secrets.token_hex(16)}"
    elif credentials == "empty token":
        headers["Authorization"] = "token "
    elif credentials == "wrong query token":
        params["token"] = secrets.token_hex(16)
    elif credentials == "basic":
        headers["Authorization"] = "Basic YWRtaW46YWRtaW4="
    response = send(server, method, "/".join(parts), params, headers)
    assert response.status_code == 403, (parts, response.status_code)
    assert_json_answer(response, method)
    server.nothing_lost()
    assert not server.store.stop_requested(server.ids["running"])


@pytest.mark.parametrize("status", ["queued", "running", "completed", "failed", "stopped"])
def test_every_real_route_of_every_run_refuses_a_stranger(server, status):
    run_id = server.ids[status]
    routes = [("GET", f"runs/{run_id}"), ("GET", f"runs/{run_id}/config"), ("POST", f"runs/{run_id}/stop"),
              ("DELETE", f"runs/{run_id}/checkpoints/10"), ("DELETE", f"runs/{run_id}"), ("GET", "runs"),
              ("GET", "live"), ("GET", "sweeps"), ("GET", "sweeps/any-sweep"), ("POST", "sweeps/any-sweep/stop")]
    for method, path in routes:
        response = send(server, method, path)
        assert response.status_code == 403, (method, path)
        assert_json_answer(response, method)
    server.nothing_lost()
    assert [c["step"] for c in server.store.checkpoints(run_id)] == ([] if status == "queued" else [10, 20])


def test_run_names_and_logs_holding_html_come_back_escaped_but_equal(server):
    response = send(server, "GET", f"runs/{server.ids['failed']}", headers=server.auth)
    assert_json_answer(response, "GET")
    detail = json.loads(response.content)
    assert detail["name"] == "failed-<b>run</b>" and detail["log_tail"].endswith("<b>not html</b>")
    assert b"\\u003cb\\u003e" in response.content
