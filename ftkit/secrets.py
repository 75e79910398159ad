"""Secrets (tokens, keys, passwords) never enter a run: found by their key's name or by the shape of known
tokens, refused where a config is built and masked in anything read back from an older run.

A token comes from the environment or the hub's own login (``hf auth login``, ``HF_TOKEN``), which the
libraries read themselves; ftkit never needs one in a config. Plain Python: imports nothing of ftkit.
"""

from __future__ import annotations

import re
from typing import Any, Iterator, Mapping

# A key that names a secret: a word of it (split at _ - .) is one of these.
SECRET_WORDS = ("token", "secret", "password", "passwd", "apikey", "credential", "credentials")
SECRET_PAIRS = (("api", "key"), ("access", "key"), ("private", "key"), ("secret", "key"), ("auth", "key"))
# The shapes of common tokens: Hugging Face, OpenAI, GitHub, AWS, Slack, Google, generic bearer JWTs.
TOKEN_SHAPES = re.compile(
    r"\b(hf_[A-Za-z0-9]{30,}|sk-(?:proj-)?[A-Za-z0-9_-]{20,}|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}"
    r"|AKIA[0-9A-Z]{16}|xox[abposr]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}"
    r"|eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,})\b")
MASK = "***"
HOW = "Log in with `hf auth login` or set HF_TOKEN (or the service's own variable): the libraries read it there"


def is_secret_key(key: str) -> bool:
    words = [word for word in re.split(r"[_\-.\s]+", str(key).lower()) if word]
    return any(word in SECRET_WORDS for word in words) or any(
        pair in zip(words, words[1:]) for pair in SECRET_PAIRS)


def find_secret(data: Any, path: str = "") -> str | None:
    """Where ``data`` (a config as a mapping, its lists and values) holds a secret: the dotted key, or None."""
    for key, value in _leaves(data, path):
        if (is_secret_key(key.rsplit(".", 1)[-1]) and value not in (None, "", False)) or (
                isinstance(value, str) and TOKEN_SHAPES.search(value)):
            return key
    return None


def mask(text: str) -> str:
    """``text`` with every token-shaped string replaced by ***."""
    return TOKEN_SHAPES.sub(MASK, text)


def _leaves(data: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(data, Mapping):
        for key, value in data.items():
            yield from _leaves(value, f"{path}.{key}" if path else str(key))
    elif isinstance(data, (list, tuple)):
        for i, value in enumerate(data):
            yield from _leaves(value, f"{path}[{i}]")
    else:
        yield path, data


__all__ = ["find_secret", "is_secret_key", "mask"]
