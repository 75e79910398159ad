"""ftkit: fine-tune transformer models from JupyterLab, a notebook or the terminal.

Kept light on purpose: the Jupyter server imports this package at start-up, so the training stack
(torch, transformers, datasets, peft) is imported only by the modules that need it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    import datasets
    import pandas

    from .config import Config
    from .runs import Run
    from .sweeps import Sweep
    from .tasks.stats import DataStats


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
          parallel: int = 1, pruner: str = "median", storage: str | None = None, seed: int | None = None,
          **overrides: Any) -> "Sweep":
    """Train ``config`` at every setting of ``grid`` (``{"training.learning_rate": [1e-4, 2e-4]}``), each an
    ordinary run tagged with the sweep; or at ``trials`` settings an optuna search picks within ``search``
    (``{"training.learning_rate": "1e-5:1e-3:log", "adapter.r": "4:32"}``), ``parallel`` at a time, the
    unpromising ones stopped by ``pruner`` (median, hyperband, none), run by a driver process that outlives
    this kernel, its study in the run store (or the RDB URL ``storage``).
    Returns the `ftkit.sweeps.Sweep` at once: ``.runs``, ``.wait()``, ``.summary()``, ``.stop()``, ``.resume()``;
    ``ftkit.sweeps.get(name)`` finds it again after a restart.
    """
    from .config import load_config as _load
    from .sweeps import start_sweep

    return start_sweep(_load(config, **overrides), grid, search, trials, name, parallel=parallel, pruner=pruner,
                       storage=storage, seed=seed)


def load_config(*args: Any, **kwargs: Any) -> "Config":
    """See `ftkit.config.load_config`."""
    from .config import load_config as _load

    return _load(*args, **kwargs)


def load_data(source: Any, task: str = "ner", **options: Any) -> "datasets.DatasetDict":
    """Data as training reads it: ``ftkit.load_data("train.conll")`` -> a DatasetDict of the task's canonical
    columns (NER ``tokens``/``tags``, classification ``text``/``label``, sft ``messages``), checked, every
    mistake a DataError with file and line. ``options``: ``validation=``, ``test=``, ``format=``,
    ``validation_fraction=``, ``seed=`` and the ``data.*`` column options. See `ftkit.tasks.loading.load`.
    """
    from .tasks.loading import load

    return load(source, task, **options)


def data_stats(source: Any, task: str = "ner", *, model: str | None = None, tokenizer: Any = None,
               **options: Any) -> "DataStats":
    """Sizes, label counts, lengths and tagging problems of a source, per split (a table in a notebook).

    A task that counts in tokens (sft) uses ``tokenizer``, else that of ``model`` (default: the task's
    default model). ``options``: ``max_length=``, ``train_on=`` and the ``data.*`` column options.
    See `ftkit.tasks.stats.stats`.
    """
    from .engine.tokenizers import tokenizer_for
    from .tasks.stats import stats

    return stats(source, task, tokenizer=tokenizer_for(task, model, tokenizer), **options)


def data_preview(dataset: Any, n: int = 5, task: str = "ner", *, model: str | None = None, tokenizer: Any = None,
                 **options: Any) -> str:
    """The first ``n`` examples as HTML: entities highlighted per type, texts with their label, or (sft)
    the rendered chat with its trained tokens highlighted (by ``tokenizer``, else that of ``model``).
    ``options``: ``max_length=``, ``train_on=`` and the ``data.*`` column options (``prompt_template=``,
    ``chosen_column=``, ...). See `ftkit.tasks.preview.preview_html`.
    """
    from .engine.tokenizers import tokenizer_for
    from .tasks.preview import preview_html

    return preview_html(dataset, n, task, tokenizer=tokenizer_for(task, model, tokenizer), **options)


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
    # `ftkit.runs`, `ftkit.data`, ... and the notebook's entry-point widgets (`ftkit.ConfigForm`, `ftkit.ChatWidget`:
    # ipywidgets) resolve on first use without importing them all up front.
    import importlib

    if name in {"config", "data", "runs", "store", "layout", "events", "tasks", "engine", "embeddings", "notebook",
                "errors", "comparison", "sweeps"}:
        return importlib.import_module(f".{name}", __name__)
    if name in {"ChatWidget", "ConfigForm"}:
        return getattr(importlib.import_module(".notebook.widgets", __name__), name)
    raise AttributeError(f"module 'ftkit' has no attribute {name!r}")
