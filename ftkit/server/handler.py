"""What every ftkit handler shares (`ftkit.server.routes`, `ftkit.server.sweep_routes`): the run store, a thread
pool for its blocking calls, and JSON answers, errors included (``{"code", "message"}``, no text that could read
as HTML)."""

from __future__ import annotations

import asyncio
import functools
import json
from http import HTTPStatus
from pathlib import Path
from typing import Any, Callable, TypeVar

import tornado.web
from jupyter_server.base.handlers import APIHandler

from ..errors import FtkitError, RunError
from ..runstore import RunStore

T = TypeVar("T")


class ApiError(tornado.web.HTTPError):
    """An error the client can act on: an HTTP status, a stable ``code`` and a readable message."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(status, reason=HTTPStatus(status).phrase)
        self.code, self.message = code, message


class FtkitHandler(APIHandler):
    """Base of every ftkit handler: the shared store, a thread pool for its calls, JSON errors."""

    auth_resource = "ftkit"  # what Jupyter's authorizer is asked about (`@authorized`)

    @property
    def store(self) -> RunStore:
        return self.settings["ftkit"].store

    async def in_thread(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking store call off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args, **kwargs))

    async def find_run(self, run_id: str) -> dict[str, Any]:
        """The run's detail; 404 unless ``run_id`` names a run in the index."""
        try:
            return await self.in_thread(self.store.get, run_id)
        except RunError:
            raise ApiError(404, "run_not_found", f"no run '{run_id}' in {self.store.root}") from None

    def server_path(self, path: Path) -> str | None:
        """``path`` relative to the server root, as JupyterLab opens files; None when it lies outside."""
        root_dir = getattr(self.contents_manager, "root_dir", None)  # absent on non-file contents managers
        resolved = path.resolve()
        inside = root_dir is not None and resolved.is_relative_to(Path(root_dir).resolve())
        return resolved.relative_to(Path(root_dir).resolve()).as_posix() if inside else None

    def reply(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json_text(data))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Every error is ``{"code", "message"}``; unexpected ones are logged, not shown."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ApiError):
            code, message = exc.code, exc.message
        elif isinstance(exc, FtkitError):
            status_code, code, message = 400, "invalid_request", str(exc)
            self.set_status(status_code)
        elif isinstance(exc, tornado.web.HTTPError):
            code = HTTPStatus(status_code).phrase.lower().replace(" ", "_")
            message = exc.log_message % exc.args if exc.log_message else HTTPStatus(status_code).phrase
        else:
            code, message = "internal_error", "the ftkit server extension failed; see the server log"
        self.set_header("Content-Type", "application/json")
        self.finish(json_text({"code": code, "message": message}))


def json_text(data: Any) -> str:
    """JSON with ``<``, ``>`` and ``&`` as \\u escapes: the same value, and no text (a run name, a log
    line, a rejected parameter) can ever read as HTML, whatever a browser guesses the type to be."""
    text = json.dumps(data, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
