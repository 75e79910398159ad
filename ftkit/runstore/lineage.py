"""Runs that start from another run's model (``model: run:<id or name>``), and the lineage they record.

SFT then DPO is two runs: the second names the first as its model. At launch the reference is
pinned to the parent's id and its best checkpoint then (``run:<id>/checkpoint-<step>``), so the
run's config says exactly what it started from even if the parent trains on or is resumed, and the
new run's record holds ``parent``: ``{"run", "name", "task", "checkpoint"}``. `ftkit show`, the panel
and the run card read it. Plain Python: the engine merges a LoRA parent into a whole model.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import FtkitError
from .layout import choose_checkpoint

if TYPE_CHECKING:
    from .store import RunStore

RUN_PREFIX = "run:"


def is_run_reference(model: Any) -> bool:
    """Whether a config's ``model`` names a run (``run:<id or name>[/<checkpoint>]``)."""
    return isinstance(model, str) and model.startswith(RUN_PREFIX)


def split_reference(model: str) -> tuple[str, str | None]:
    """``run:<ref>[/<checkpoint>]`` -> (ref, checkpoint or None)."""
    ref, _, checkpoint = model[len(RUN_PREFIX):].strip().partition("/")
    if not ref:
        raise FtkitError(f"model '{model}' names no run: write run:<run id or name>, e.g. run:sft-smollm2")
    return ref, checkpoint or None


def pin_parent(store: "RunStore", model: str, best_metric: str) -> tuple[str, dict[str, Any]]:
    """The pinned reference (``run:<id>/checkpoint-<step>``) and the ``parent`` record for a new run.

    ``best_metric`` is the parent's (its Config's ``best_metric``), which picks its best checkpoint.
    """
    ref, requested = split_reference(model)
    run_id = store.resolve(ref)
    folder = store.run_dir(run_id)
    checkpoint = choose_checkpoint(folder, store.checkpoints(run_id), best_metric, requested, run_id)
    if checkpoint.parent != folder:
        raise FtkitError(f"model '{model}': {requested} is not a checkpoint of run {run_id}")
    record = store.read_record(run_id)
    parent = {"run": run_id, "name": record.get("name"), "task": record.get("task"), "checkpoint": checkpoint.name}
    return f"{RUN_PREFIX}{run_id}/{checkpoint.name}", parent


def parent_folder(store: "RunStore", model: str) -> Path:
    """The folder of the run a reference names (its config says how to read its checkpoints)."""
    return store.run_dir(store.resolve(split_reference(model)[0]))
