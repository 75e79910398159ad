"""NER tag schemes: detect IOB1 / IOB2 / BIOES, convert to IOB2, find violations and entity spans.

Pure Python on lists of tag strings, so loaders, statistics and tests share one definition of
what an entity is (conlleval's chunk rules: the same entities whatever the scheme).
"""

from __future__ import annotations

from typing import Iterable, Sequence

SCHEMES = ("iob1", "iob2", "bioes")
TAG_SCHEMES = ("auto", *SCHEMES)  # the data.tag_scheme choices: "auto" detects one of SCHEMES
_PREFIXES = {"iob1": "BI", "iob2": "BI", "bioes": "BIES"}


def split_tag(tag: str) -> tuple[str, str | None]:
    """``"B-PER"`` -> ``("B", "PER")``; ``"O"`` -> ``("O", None)``. Raises ValueError on anything else."""
    if tag == "O":
        return "O", None
    if len(tag) > 2 and tag[1] == "-" and tag[0] in "BIES":
        return tag[0], tag[2:]
    raise ValueError(f"'{tag}' is not an NER tag: expected O or a prefixed type such as B-{tag} / I-{tag}")


def detect_scheme(tag_sequences: Iterable[Sequence[str]]) -> str:
    """``"bioes"`` if any S-/E- tag occurs, ``"iob1"`` if any entity begins with I-, else ``"iob2"``.

    An entity begins with I- when I-X opens a sentence or follows O or another type; IOB2 forbids
    that, IOB1 (the original CoNLL-2003 release) does it for almost every entity.
    """
    looks_iob1 = False
    for tags in tag_sequences:
        previous_type = None
        for tag in tags:
            prefix, kind = split_tag(tag)
            if prefix in "SE":
                return "bioes"
            if prefix == "I" and kind != previous_type:
                looks_iob1 = True
            previous_type = kind
    return "iob1" if looks_iob1 else "iob2"


def to_iob2(tags: Sequence[str], scheme: str) -> list[str]:
    """The same entities in IOB2: every entity starts with B-, continues with I-.

    IOB1 (and IOB2 with I- at an entity start) gets B- wherever an entity begins with I-;
    BIOES maps S- to B- and E- to I-.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown tag scheme '{scheme}'; expected one of {', '.join(SCHEMES)}")
    converted = []
    previous_type = None
    for tag in tags:
        prefix, kind = split_tag(tag)
        if prefix in "SE" and scheme != "bioes":
            raise ValueError(f"'{tag}' is a BIOES tag, not {scheme.upper()}")
        if prefix == "O":
            converted.append("O")
        elif prefix in "BS" or kind != previous_type:
            converted.append(f"B-{kind}")
        else:
            converted.append(f"I-{kind}")
        # After S-X or E-X the entity is closed: a following I-X starts a new one.
        previous_type = kind if prefix in "BI" else None
    return converted


def scheme_violations(tags: Sequence[str], scheme: str = "iob2") -> list[tuple[int, str]]:
    """Positions where ``tags`` break ``scheme``, as ``(index, description)``.

    IOB2: I-X not preceded by B-X/I-X. IOB1: B-X not directly after an X entity (B- only separates
    adjacent entities of one type). BIOES: I-/E- without an open entity, B-/I- left unclosed.
    """
    allowed = _PREFIXES[scheme]
    found = []
    parsed = []
    for index, tag in enumerate(tags):
        try:
            parsed.append(split_tag(tag))
        except ValueError:
            parsed.append(("?", None))
            found.append((index, f"'{tag}' is not a tag of the {scheme.upper()} scheme"))
    for index, (prefix, kind) in enumerate(parsed):
        previous = parsed[index - 1] if index else ("O", None)
        following = parsed[index + 1] if index + 1 < len(parsed) else ("O", None)
        after = "sentence start" if not index else tags[index - 1]
        if prefix not in allowed and prefix not in "O?":
            found.append((index, f"'{tags[index]}' is not a tag of the {scheme.upper()} scheme"))
        elif scheme == "iob2" and prefix == "I" and previous != ("B", kind) and previous != ("I", kind):
            found.append((index, f"{tags[index]} after {after}"))
        elif scheme == "iob1" and prefix == "B" and previous[1] != kind:
            found.append((index, f"{tags[index]} after {after} (IOB1 uses B- only between adjacent {kind} entities)"))
        elif scheme == "bioes":
            if prefix in "IE" and previous not in (("B", kind), ("I", kind)):
                found.append((index, f"{tags[index]} after {after}"))
            if prefix in "BI" and following not in (("I", kind), ("E", kind)):
                found.append((index, f"{tags[index]} is not closed by I-{kind}/E-{kind}"))
    return sorted(found)


def entity_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Entities as ``(type, start, end)`` with ``end`` exclusive, by conlleval's chunk rules.

    Works for IOB1, IOB2 and BIOES alike: a chunk starts at B-/S-, or at I-/E- after O, another
    type, or a closed chunk (E-/S-); it ends before O, a new start, or after E-/S-.
    """
    spans = []
    start = kind = None
    previous_prefix = "O"
    for index, tag in enumerate(tags):
        prefix, tag_type = split_tag(tag)
        continues = (
            kind is not None and tag_type == kind and prefix in "IE" and previous_prefix in "BI"
        )
        if not continues:
            if kind is not None:
                spans.append((kind, start, index))
            start, kind = (index, tag_type) if prefix != "O" else (None, None)
        if prefix in "ES" and kind is not None:
            spans.append((kind, start, index + 1))
            start = kind = None
        previous_prefix = prefix
    if kind is not None:
        spans.append((kind, start, len(tags)))
    return spans
