"""The words of a byte-level BPE vocabulary (GPT-2, Llama 3, SmolLM2): ``Ġparis`` shown as ``paris``.

Byte-level BPE stores tokens as printable stand-ins for bytes: ``Ġ`` is the space before a word,
``Ċ`` a newline, ``Ã©`` the two bytes of "é". A static space of such a vocabulary would show
those stand-ins, and half of it is pieces (``ing``), punctuation runs and partial UTF-8 bytes.
Here each token is decoded to its text; a token that begins with a space and is a word after
that (letters, with digits, apostrophes or hyphens inside) becomes that word. A token without the
leading space is a piece of a longer word; it is kept only with ``subwords=True``, and only when
no word-initial token decodes to the same text: a word's vector is the row the model reads for
that word in running text (``Ġparis``), not the row of the same letters inside a longer word.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any, Iterable

_WORD = re.compile(r"(?=.*[^\W\d_])[\w'’-]+")  # at least one letter; no spaces, punctuation runs or U+FFFD


def is_byte_level(tokenizer: Any) -> bool:
    """Whether a fast tokenizer decodes with the byte-level decoder (``Ġ`` for a space)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return False
    decoder = json.loads(backend.to_str()).get("decoder") or {}
    return "ByteLevel" in json.dumps(decoder)


def byte_level_words(vocabulary: Iterable[tuple[str, int]], skip: set[str],
                     subwords: bool = False) -> list[tuple[str, int]]:
    """(word, token id) pairs of a byte-level vocabulary, in token-id order, one per word.

    ``vocabulary`` is ``tokenizer.get_vocab().items()`` (limited to the embedding table's rows);
    tokens in ``skip`` (special tokens) are left out.
    """
    initial: dict[str, int] = {}
    pieces: dict[str, int] = {}
    for token, index in sorted(vocabulary, key=lambda item: item[1]):
        if token in skip:
            continue
        text = decode_token(token)
        if text is None:
            continue
        word = text[1:] if text.startswith(" ") else text
        if not _WORD.fullmatch(word):
            continue
        target = initial if text.startswith(" ") else pieces
        target.setdefault(word, index)  # the lower id: BPE merges frequent forms first
    if subwords:
        for word, index in pieces.items():
            initial.setdefault(word, index)
    return sorted(initial.items(), key=lambda item: item[1])


def decode_token(token: str) -> str | None:
    """A byte-level token's text ("Ġparis" -> " paris"); None for a token that is not valid UTF-8 alone."""
    table = _unicode_to_byte()
    try:
        return bytes(table[char] for char in token).decode("utf-8")
    except (KeyError, UnicodeDecodeError):
        return None


@lru_cache(maxsize=1)
def _unicode_to_byte() -> dict[str, int]:
    """The inverse of GPT-2's byte-to-printable-character table, which every byte-level BPE uses."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return {chr(code): byte for byte, code in zip(printable, codes)}


__all__ = ["byte_level_words", "decode_token", "is_byte_level"]
