"""ftkit: fine-tune transformer models from JupyterLab, a notebook or the terminal.

Kept light on purpose: the Jupyter server imports this package at start-up, so the training stack
(torch, transformers, datasets, peft) is imported only by the modules that need it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    import pandas

    from .config import Config
    from .runs import Run
    from .sweeps import Sweep


def train(config: "Config | dict[str, Any] | str", **overrides: Any) -> "Run":
    """Start fine-tuning in a separate process and return its `Run` handle at once."""
    from .runs import start

    return start(config, **overrides)


def compare(*runs: Any, sweep: str | None = None, runs_dir: str | None = None) -> "pandas.DataFrame":
    """Runs side by side: one row per run with the config keys that differ and the final metrics.

    ``runs`` are Runs, ids, names or Sweeps (or lists of them); ``sweep`` adds a sweep's runs by name.
    In a notebook it also shows their loss and main metric curves overlaid, live while any trains.
    """
    import sys

    from .comparison import comparison, comparison_frame
    from .sweeps import resolve_runs

    chosen = resolve_runs(runs, sweep, runs_dir)
    data = comparison(chosen)
    if "IPython" in sys.modules and sys.modules["IPython"].get_ipython() is not None:
        from .notebook.widgets.compare import show_comparison

        show_comparison(chosen, data)
    return comparison_frame(data)


def sweep(config: "Config | dict[str, Any] | str", grid: "dict[str, Any] | list[str] | None" = None,
          search: "dict[str, Any] | list[str] | None" = None, trials: int | None = None, name: str | None = None,
          **overrides: Any) -> "Sweep":
    """Train ``config`` at every setting of ``grid`` (``{"training.learning_rate": [1e-4, 2e-4]}``), each an
    ordinary run tagged with the sweep; or at ``trials`` settings an optuna search picks, one after
    another, within ``search`` (``{"training.learning_rate": "1e-5:1e-3:log", "adapter.r": "4:32"}``).
    Returns the `ftkit.sweeps.Sweep` at once: ``.runs``, ``.wait()``, ``.summary()``.
    """
    from .config import load_config as _load
    from .sweeps import start_sweep

    return start_sweep(_load(config, **overrides), grid, search, trials, name)


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
                "errors", "comparison", "sweeps"}:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'ftkit' has no attribute {name!r}")
