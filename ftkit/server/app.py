"""The Jupyter server extension: serves the run store to the side panel (routes in ``ftkit.routes``).

Enabled on install by ``jupyter-config/server-config/ftkit.json``. The store folder is
``--FtkitApp.runs_dir`` when given, else ``$FTKIT_RUNS_DIR`` or ``./ftkit-runs`` (as everywhere).
"""

from __future__ import annotations

from jupyter_server.extension.application import ExtensionApp
from traitlets import Unicode

from ..store import RunStore


class FtkitApp(ExtensionApp):
    """Adds the ``/ftkit/api/`` routes to the running Jupyter server."""

    name = "ftkit"
    load_other_extensions = True

    runs_dir = Unicode(
        None, allow_none=True, config=True,
        help="Run store folder shown in the side panel (default: $FTKIT_RUNS_DIR, else ./ftkit-runs).",
    )

    _store: RunStore | None = None

    @property
    def store(self) -> RunStore:
        """Opened on first use, so starting the server never creates a runs folder by itself."""
        if self._store is None:
            self._store = RunStore(self.runs_dir)
        return self._store

    def initialize_handlers(self) -> None:
        from .routes import handlers

        self.handlers.extend(handlers)


def _load_jupyter_server_extension(server_app: object) -> FtkitApp:
    """The hook ``ftkit._jupyter_server_extension_points`` names: link, configure and load FtkitApp."""
    return FtkitApp._load_jupyter_server_extension(server_app)
