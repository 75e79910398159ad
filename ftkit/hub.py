"""The Hugging Face hub as ftkit meets it: whether we are offline, and the message when a hub id fails.

Plain Python, so the data readers and the engine share one wording without either importing the other.
"""

from __future__ import annotations

import os

from .errors import FtkitError


def is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def hub_error(what: str, name: str, exc: Exception) -> FtkitError:
    """The message for a hub id that could not be fetched (offline, typo, or private)."""
    return FtkitError(
        f"could not load {what} '{name}' from the Hugging Face hub ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). "
        f"Offline? Use model: default, or download it once and point at the local folder "
        f"(model: /path/to/folder saved with save_pretrained)."
    )
