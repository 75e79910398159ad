"""The Jupyter server extension: serves the run store to the side panel (routes in ``ftkit.routes``).

Enabled on install by ``jupyter-config/server-config/ftkit.json``. The store folder is
``--FtkitApp.runs_dir`` when given, else ``$FTKIT_RUNS_DIR`` or ``./ftkit-runs`` in the folder the
server was started from (as everywhere), made absolute. The server hands that folder on to the
kernels and terminals it starts (``FTKIT_RUNS_DIR`` in their environment), so a notebook in any
subfolder starts its runs where the panel shows them.
"""

from __future__ import annotations

import os
from pathlib import Path

from jupyter_server.extension.application import ExtensionApp
from traitlets import Unicode

from ..runstore.layout import resolve_runs_dir
from ..runstore import RunStore


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
    def runs_root(self) -> Path:
        """The panel's runs folder, absolute: ``runs_dir``, else $FTKIT_RUNS_DIR, else ./ftkit-runs."""
        return resolve_runs_dir(self.runs_dir)

    @property
    def store(self) -> RunStore:
        """Opened on first use, so starting the server never creates a runs folder by itself."""
        if self._store is None:
            self._store = RunStore(self.runs_root)
        return self._store

    def initialize_settings(self) -> None:
        """Pass the runs folder on to kernels (and terminals) through the environment they inherit.

        jupyter_server starts a kernel with a copy of its own ``os.environ`` (SessionManager's
        ``get_kernel_env``), in the notebook's folder; without this, ``./ftkit-runs`` would be read
        there. Resolved once here, so every kernel gets the same absolute folder.
        """
        os.environ["FTKIT_RUNS_DIR"] = str(self.runs_root)

    def initialize_handlers(self) -> None:
        from .routes import handlers

        self.handlers.extend(handlers)


def _load_jupyter_server_extension(server_app: object) -> FtkitApp:
    """The hook ``ftkit._jupyter_server_extension_points`` names: link, configure and load FtkitApp."""
    return FtkitApp._load_jupyter_server_extension(server_app)
