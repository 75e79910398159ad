"""Who may do what through the REST API: the deployment's Authorizer decides, and a browser's cookie
needs its XSRF token (ftkit.server.routes against a real Jupyter server)."""

from __future__ import annotations

import json
import re
import urllib.parse
from http.cookies import SimpleCookie

import pytest
from jupyter_server.auth import AllowAllAuthorizer, Authorizer
from tornado.web import RequestHandler

from ftkit.server.routes import API_PREFIX, RUN_ID_PATTERN, handlers
from ftkit.runstore import RunStore

from .test_routes import add_run

pytest_plugins = ["pytest_jupyter.jupyter_server"]

VERBS = ("get", "post", "put", "patch", "delete")


class DenyAll(Authorizer):
    """A deployment that lets nobody near ftkit, however well they are logged in."""

    def is_authorized(self, handler, user, action, resource) -> bool:
        return False


class ReadOnly(Authorizer):
    """A deployment whose users may look at ftkit's runs but not stop or delete them."""

    def is_authorized(self, handler, user, action, resource) -> bool:
        return resource == "ftkit" and action == "read"


@pytest.fixture
def authorizer_class() -> type[Authorizer]:
    return AllowAllAuthorizer  # Jupyter's default: whoever is authenticated may do anything


@pytest.fixture
def store_and_ids(tmp_path, sleeper) -> tuple[RunStore, dict[str, str]]:
    store = RunStore(tmp_path / "runs")
    return store, {"running": add_run(store, "running", "running", pid=sleeper.pid, checkpoints=1),
                   "completed": add_run(store, "completed", "completed", checkpoints=2)}


@pytest.fixture
def jp_server_config(store_and_ids, authorizer_class):
    store, _ = store_and_ids
    return {"ServerApp": {"jpserver_extensions": {"ftkit": True}, "authorizer_class": authorizer_class},
            "FtkitApp": {"runs_dir": str(store.root)}}


@pytest.fixture
def call(http_server_client, jp_base_url, jp_serverapp):
    """A raw request to the server: (status, parsed body, response); the token header only if asked."""

    async def fetch(path: str, method: str = "GET", *, token: bool = True, headers: dict | None = None,
                    body: str | None = None, **kwargs):
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = f"token {jp_serverapp.identity_provider.token}"
        if body is None and method in ("POST", "PUT", "PATCH"):
            body = ""
        response = await http_server_client.fetch(jp_base_url.rstrip("/") + path, method=method, headers=headers,
                                                  body=body, raise_error=False, allow_nonstandard_methods=True,
                                                  follow_redirects=False, **kwargs)
        is_json = response.headers.get("Content-Type", "").startswith("application/json")
        return response.code, json.loads(response.body) if is_json and response.body else None, response

    return fetch


def every_route(ids: dict[str, str]) -> list[tuple[str, str]]:
    """(verb, path) for every verb every ftkit handler defines, its groups filled with a real run and
    checkpoint: new routes are covered without being listed here."""
    calls = []
    for pattern, handler in handlers:
        path = pattern.replace(f"({RUN_ID_PATTERN})", ids["completed"]).replace("/?", "").replace(".*", "no-such-route")
        path = re.sub(r"\([^()]*\)", "10", path)  # any other group: the completed run's first checkpoint step
        assert "(" not in path and "?" not in path, f"cannot fill in {pattern}"
        calls += [(verb.upper(), path) for verb in VERBS if getattr(handler, verb) is not getattr(RequestHandler, verb)]
    return calls


def assert_untouched(store: RunStore, ids: dict[str, str]) -> None:
    assert all(store.run_dir(run_id).exists() for run_id in ids.values())
    assert (store.run_dir(ids["completed"]) / "checkpoint-10").exists()
    assert (store.run_dir(ids["running"]) / "checkpoint-10").exists()
    assert not store.stop_requested(ids["running"])


@pytest.mark.parametrize("authorizer_class", [DenyAll])
async def test_a_deny_all_authorizer_forbids_every_verb_of_every_route(call, store_and_ids):
    store, ids = store_and_ids
    routes = every_route(ids)
    assert {verb for verb, _ in routes} >= {"GET", "POST", "DELETE"}
    for verb, path in routes:
        code, error, _ = await call(path, verb)
        assert code == 403, (verb, path)
        assert set(error) == {"code", "message"}, (verb, path)
    assert_untouched(store, ids)


@pytest.mark.parametrize("authorizer_class", [ReadOnly])
async def test_a_read_only_authorizer_allows_reads_and_forbids_stop_and_delete(call, store_and_ids):
    store, ids = store_and_ids
    run = f"{API_PREFIX}/runs/{ids['completed']}"
    for path in (f"{API_PREFIX}/runs", f"{API_PREFIX}/live?timeout=0", run, f"{run}/config", f"{run}/log",
                 f"{API_PREFIX}/sweeps"):
        code, _, _ = await call(path)
        assert code == 200, path
    for verb, path in [("POST", f"{API_PREFIX}/runs/{ids['running']}/stop"), ("DELETE", run),
                       ("DELETE", f"{run}/checkpoints/10"), ("DELETE", f"{API_PREFIX}/runs/{ids['running']}/checkpoints/10"),
                       ("POST", f"{API_PREFIX}/sweeps/any-sweep/stop")]:
        code, error, _ = await call(path, verb)
        assert code == 403 and "write" in error["message"], (verb, path)
    assert_untouched(store, ids)


async def test_the_default_authorizer_still_lets_an_authenticated_user_stop_and_delete(call, store_and_ids):
    store, ids = store_and_ids
    code, _, _ = await call(f"{API_PREFIX}/runs/{ids['running']}/stop", "POST")
    assert code == 202 and store.stop_requested(ids["running"])
    code, _, _ = await call(f"{API_PREFIX}/runs/{ids['completed']}/checkpoints/10", "DELETE")
    assert code == 200 and not (store.run_dir(ids["completed"]) / "checkpoint-10").exists()


def cookies_of(response) -> dict[str, str]:
    jar = SimpleCookie()
    for header in response.headers.get_list("Set-Cookie"):
        jar.load(header)
    return {name: morsel.value for name, morsel in jar.items() if morsel.value}


async def test_a_cookie_session_needs_the_xsrf_token_to_stop_a_run(call, store_and_ids, jp_serverapp):
    """Log in as a browser does (the login form with the server's token), then POST with only the cookie."""
    store, ids = store_and_ids
    code, _, page = await call("/login", token=False)
    xsrf = cookies_of(page)["_xsrf"]
    form = urllib.parse.urlencode({"password": jp_serverapp.identity_provider.token, "_xsrf": xsrf})
    code, _, login = await call("/login", "POST", token=False, body=form, headers={"Cookie": f"_xsrf={xsrf}"})
    session = {name: value for name, value in cookies_of(login).items() if name.startswith("username-")}
    assert code == 302 and len(session) == 1, "the token login gave no session cookie"
    session_cookie = "; ".join(f"{name}={value}" for name, value in session.items())
    stop = f"{API_PREFIX}/runs/{ids['running']}/stop"

    code, _, _ = await call(f"{API_PREFIX}/runs", token=False, headers={"Cookie": session_cookie})
    assert code == 200, "the session cookie does not authenticate"
    code, error, _ = await call(stop, "POST", token=False, headers={"Cookie": f"{session_cookie}; _xsrf={xsrf}"})
    assert code == 403 and "_xsrf" in error["message"] and not store.stop_requested(ids["running"])
    code, _, _ = await call(stop, "POST", token=False,
                            headers={"Cookie": f"{session_cookie}; _xsrf={xsrf}", "X-XSRFToken": xsrf})
    assert code == 202 and store.stop_requested(ids["running"])
