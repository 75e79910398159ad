"""Notebook widgets: DataPicker, ConfigForm, RunMonitor, ChatWidget, ErrorBrowser, CompareCurves, SweepView (and NeighborBrowser from the embeddings work).

Importing this package teaches the running IPython shell to display a `ftkit.runs.Run` as its
live monitor; `ftkit.runs` itself never imports widgets. The classes load on first use, so the
import stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "RunMonitor": ".monitor",
    "show_run": ".monitor",
    "ConfigForm": ".config_form",
    "DataPicker": ".data_picker",
    "NeighborBrowser": ".neighbors",
    "ChatWidget": ".chat",
    "CompareCurves": ".compare",
    "ErrorBrowser": ".errors",
    "SweepView": ".sweep",
    "show_sweep": ".sweep",
}

__all__ = [*_EXPORTS, "register_run_formatter"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ftkit.widgets' has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)


def register_run_formatter(shell: Any = None) -> bool:
    """Make ``display(run)`` (and a run as a cell's result) show its monitor; False outside IPython."""
    if shell is None:
        from IPython import get_ipython

        shell = get_ipython()
    if shell is None:
        return False
    shell.display_formatter.ipython_display_formatter.for_type_by_name("ftkit.runs", "Run", _display_run)
    return True


def _display_run(run: Any) -> None:
    from .monitor import show_run

    show_run(run)


register_run_formatter()
