"""A few examples as HTML: entities highlighted per type (NER) or texts with their label chips."""

from __future__ import annotations

import html
from typing import Any

from .tags import entity_spans

PALETTE = ("#ffd6a5", "#caffbf", "#9bf6ff", "#bdb2ff", "#ffc6ff", "#fdffb6", "#a0c4ff", "#ffadad")
_CHIP = "font-size:0.7em;font-weight:bold;padding:0 4px;margin-left:3px;border-radius:3px;background:rgba(0,0,0,0.12)"
_MARK = "padding:1px 3px;border-radius:4px;background:{colour}"


def colour_of(label: str, labels: list[str]) -> str:
    """The palette colour of ``label`` among the sorted ``labels`` (stable for one label set)."""
    return PALETTE[sorted(labels).index(label) % len(PALETTE)] if label in labels else PALETTE[0]


def preview_html(dataset: Any, n: int = 5, task: str = "ner") -> str:
    """The first ``n`` examples of a Dataset (or the train split of a DatasetDict) as HTML.

    Canonical rows are shown as they are; anything else goes through ``load_source`` first.

    Text is HTML-escaped; each entity type (or class label) gets one colour and a chip with its name.
    """
    canonical = {"tokens", "tags"} if task == "ner" else {"text", "label"}
    columns = getattr(dataset, "column_names", None)
    if isinstance(columns, dict):  # a DatasetDict: {split: [columns]}
        columns = next(iter(columns.values()), [])
    if not canonical <= set(columns or ()):  # raw rows, a path, a DataFrame ...
        from .sources import load_source

        dataset = load_source(dataset, task, convert_tags=False)
    if isinstance(dataset, dict):  # a DatasetDict: preview the training data
        dataset = dataset["train"] if "train" in dataset else next(iter(dataset.values()))
    rows = dataset.select(range(min(n, len(dataset))))
    if task == "ner":
        examples = [(row["tokens"], entity_spans(row["tags"])) for row in rows]
        labels = sorted({kind for _, spans in examples for kind, _, _ in spans})
        body = "".join(f'<div class="ftkit-example">{_sentence_html(tokens, spans, labels)}</div>'
                       for tokens, spans in examples)
    else:
        labels = sorted({row["label"] for row in rows})
        body = "".join(
            f'<div class="ftkit-example"><span style="{_MARK.format(colour=colour_of(row["label"], labels))}">'
            f'<span style="{_CHIP}">{html.escape(row["label"])}</span></span> {html.escape(row["text"])}</div>'
            for row in rows
        )
    return f'<div class="ftkit-preview" style="line-height:1.9">{body}</div>'


def _sentence_html(tokens: list[str], spans: list[tuple[str, int, int]], labels: list[str]) -> str:
    parts, position = [], 0
    for kind, start, end in spans:
        parts.extend(html.escape(token) for token in tokens[position:start])
        words = html.escape(" ".join(tokens[start:end]))
        parts.append(f'<mark class="ftkit-entity" style="{_MARK.format(colour=colour_of(kind, labels))}">'
                     f'{words}<span style="{_CHIP}">{html.escape(kind)}</span></mark>')
        position = end
    parts.extend(html.escape(token) for token in tokens[position:])
    return " ".join(parts)
