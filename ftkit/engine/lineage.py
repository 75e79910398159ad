"""The model a run starts from when it names another run (``model: run:<id>``): that run's checkpoint,
made a whole model once when it holds LoRA weights (a new adapter trains on the merged model, which
is then also what the preference methods' reference is).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..config import load_config
from ..runstore import RunStore
from ..runstore.layout import CACHE_DIR, CONFIG_FILE, PARTIAL_PREFIX
from ..runstore.lineage import is_run_reference, parent_folder, pin_parent
from . import adapters, models

MERGED_CACHE = "merged"  # RUNS_DIR/.cache/merged/<run id>-<checkpoint>: LoRA parents made whole, once


def model_source(model: str, task: str, runs_dir: str | os.PathLike) -> str:
    """A local folder or hub id to load ``model`` from (`models.resolve_model_source`, plus run references)."""
    if not is_run_reference(model):
        return models.resolve_model_source(model, task)
    store = RunStore(runs_dir)
    folder = parent_folder(store, model)
    _, parent = pin_parent(store, model, load_config(folder / CONFIG_FILE).best_metric)
    checkpoint = folder / parent["checkpoint"]
    if not adapters.adapter_only(checkpoint):
        return str(checkpoint)
    merged = Path(runs_dir) / CACHE_DIR / MERGED_CACHE / f"{parent['run']}-{parent['checkpoint']}"
    if not (merged / adapters.MODEL_CONFIG_FILE).is_file():
        partial = merged.with_name(f"{PARTIAL_PREFIX}{merged.name}-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        adapters.merge_checkpoint(checkpoint, partial)
        try:
            os.replace(partial, merged)
        except OSError:  # another run merged it first
            shutil.rmtree(partial, ignore_errors=True)
    return str(merged)
