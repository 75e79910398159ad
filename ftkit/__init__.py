"""ftkit: fine-tune transformer models from JupyterLab, a notebook or the terminal.

Kept light on purpose: the Jupyter server imports this package at start-up, so the training stack
(torch, transformers, datasets, peft) is imported only by the modules that need it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .config import Config
    from .runs import Run


def train(config: "Config | dict[str, Any] | str", **overrides: Any) -> "Run":
    """Start fine-tuning in a separate process and return its `Run` handle at once."""
    from .runs import start

    return start(config, **overrides)


def load_config(*args: Any, **kwargs: Any) -> "Config":
    """See `ftkit.config.load_config`."""
    from .config import load_config as _load

    return _load(*args, **kwargs)


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext ftkit`: registers `%finetune`, `%%finetune` and `%ftkit`."""
    from .notebook.magics import load_ipython_extension as _load

    _load(ipython)


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "ftkit.server.app"}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "ftkit"}]


def _show_runs_as_monitors_in_a_kernel() -> None:
    """In a notebook kernel, a `Run` (e.g. re-attached after a restart) displays as its live monitor."""
    import sys

    if "ipykernel" in sys.modules:
        from .notebook.widgets import register_run_formatter

        register_run_formatter()


_show_runs_as_monitors_in_a_kernel()


def __getattr__(name: str) -> Any:
    # `ftkit.runs`, `ftkit.data`, ... resolve on first use without importing them all up front.
    import importlib

    if name in {"config", "data", "runs", "store", "layout", "events", "tasks", "engine", "embeddings", "notebook",
                "errors"}:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'ftkit' has no attribute {name!r}")
