"""What is in a dataset, before training on it: sizes, label counts, lengths, and tagging problems.

What is counted per split, and what rows and labels are called, is the task's (``ftkit.tasks``).
Statistics read NER tags as written (not converted to IOB2), so scheme violations in the source
are reported against the scheme it uses; entities are counted as spans (conlleval's rules), which
gives the published CoNLL-2003 counts whatever the scheme.
"""

from __future__ import annotations

import html
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping

from ..errors import FtkitError
from ..rendering import clipped, shortened
from . import DEFAULT_TASK, get_task
from .base import DEFAULT_MAX_SEQ_LENGTH, Task

_SHOWN_VIOLATIONS = 10
_ANSWER_CHARACTERS = 60  # a free-text answer's width in the answers table (the whole answer in the tooltip)


@dataclass
class SplitStats:
    """One split: examples, words, label counts (entity spans per type for NER), length percentiles."""

    examples: int
    tokens: int
    label_counts: dict[str, int]
    lengths: dict[str, int]  # p50, p90, p99, max, in words
    unique_labels: int  # distinct tags (NER) or labels (classification)
    violations: list[dict[str, Any]] = field(default_factory=list)  # split, sentence, position, tag, message
    extra: dict[str, Any] = field(default_factory=dict)  # the task's own counts (SFT: turns, token lengths, truncated)

    @property
    def labelled(self) -> int:
        """Entities (NER) or labelled examples (classification)."""
        return sum(self.label_counts.values())

    @classmethod
    def of(cls, examples: int, lengths: list[int], counts: Mapping[str, int], unique_labels: int,
           violations: Iterable[dict[str, Any]] = ()) -> "SplitStats":
        """From per-example lengths in words and label counts: totals, percentiles and sorted counts."""
        return cls(
            examples=examples, tokens=sum(lengths), label_counts=dict(sorted(counts.items())),
            lengths={f"p{q}": _percentile(lengths, q) for q in (50, 90, 99)} | {"max": max(lengths, default=0)},
            unique_labels=unique_labels, violations=list(violations),
        )


@dataclass
class DataStats:
    """Statistics per split plus labels of validation/test that train never shows."""

    task: str
    splits: dict[str, SplitStats]
    scheme: str | None = None  # the NER tag scheme the violations were checked against
    unseen_labels: dict[str, list[str]] = field(default_factory=dict)  # split -> labels (entity types) not in train

    @property
    def violations(self) -> list[dict[str, Any]]:
        return [v for split in self.splits.values() for v in split.violations]

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "scheme": self.scheme, "unseen_labels": self.unseen_labels,
                "splits": {name: asdict(split) for name, split in self.splits.items()}}

    def _labels(self) -> list[str]:
        return sorted({label for split in self.splits.values() for label in split.label_counts})

    def _notes(self) -> list[str]:
        notes = []
        for name, labels in self.unseen_labels.items():
            if labels:
                what = f"{get_task(self.task).label_noun}s"
                notes.append(f"{name} has {what} never seen in train: {', '.join(labels)}")
        violations = self.violations
        if violations:
            notes.append(f"{len(violations)} tag-scheme violation(s) ({(self.scheme or '').upper()}):")
            notes += [f"  {v['split']} sentence {v['sentence']}, word {v['position']}: {v['message']}"
                      for v in violations[:_SHOWN_VIOLATIONS]]
            if len(violations) > _SHOWN_VIOLATIONS:
                notes.append(f"  ... and {len(violations) - _SHOWN_VIOLATIONS} more (see .to_dict())")
        return notes

    def _rows(self) -> tuple[list[str], list[list[str]]]:
        task = get_task(self.task)
        labels = self._labels() if task.label_column else []  # a label set's names head columns; answers do not
        extras = list(dict.fromkeys(key for split in self.splits.values() for key in split.extra))
        header = ["split", task.example_noun, "words" if extras else "tokens", task.labelled_noun, *labels,
                  "length p50/p90/p99/max", "unique labels" if task.label_column else f"unique {task.label_noun}s", *extras,
                  "violations"]
        rows = []
        for name, split in self.splits.items():
            lengths = "/".join(str(split.lengths[key]) for key in ("p50", "p90", "p99", "max"))
            rows.append([name, f"{split.examples:,}", f"{split.tokens:,}", f"{split.labelled:,}",
                         *(f"{split.label_counts.get(label, 0):,}" for label in labels),
                         lengths, str(split.unique_labels), *(_cell(split.extra.get(key)) for key in extras),
                         str(len(split.violations))])
        return header, rows

    def _answer_rows(self) -> tuple[list[str], list[tuple[str, list[str]]]]:
        """A task without a label set counts its answers (when they form a small set) in a table of their own:
        a row per answer, most frequent first, a column per split. Empty for a label set (columns of `_rows`)."""
        task = get_task(self.task)
        if task.label_column:
            return [], []
        total = {label: sum(split.label_counts.get(label, 0) for split in self.splits.values()) for label in self._labels()}
        rows = [(label, [f"{split.label_counts.get(label, 0):,}" for split in self.splits.values()])
                for label in sorted(total, key=lambda label: -total[label])]
        return [task.label_noun, *self.splits], rows

    def __str__(self) -> str:
        header, answers = self._answer_rows()
        tables = [self._rows(), (header, [[shortened(answer, _ANSWER_CHARACTERS), *counts] for answer, counts in answers])]
        lines = [line for head, rows in tables if rows for line in _aligned([head, *rows])]
        title = f"{self.task} data" + (f" (tag scheme {self.scheme.upper()})" if self.scheme else "")
        return "\n".join([title, *lines, *self._notes()])

    def _repr_html_(self) -> str:
        header, rows = self._rows()
        head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
        notes = "".join(f"<li>{html.escape(note.strip())}</li>" for note in self._notes())
        title = html.escape(f"{self.task} data" + (f" (tag scheme {self.scheme.upper()})" if self.scheme else ""))
        return (f'<div class="ftkit-stats" style="max-width:100%;overflow-x:auto"><b>{title}</b><table><thead><tr>'
                f"{head}</tr></thead><tbody>{body}</tbody></table>{self._answers_html()}"
                f"{f'<ul>{notes}</ul>' if notes else ''}</div>")

    def _answers_html(self) -> str:
        header, answers = self._answer_rows()
        if not answers:
            return ""
        head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
        body = "".join(f'<tr><td style="text-align:left;white-space:normal;max-width:32em">'
                       f"{clipped(answer, _ANSWER_CHARACTERS)}</td>" + "".join(f"<td>{count}</td>" for count in counts)
                       + "</tr>" for answer, counts in answers)
        return (f"<b>{html.escape(get_task(self.task).distribution_title)}</b>"
                f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def stats(source: Any, task: str | Task = DEFAULT_TASK, *, tokenizer: Any = None, max_length: int | None = None,
          train_on: str | None = None, **column_options: Any) -> DataStats:
    """Statistics of a source (path, hub id, DataFrame, lists, Dataset or DatasetDict).

    ``column_options`` are those of ``load_source`` (tag_scheme, tokens_column, ...); NER tags
    are read as written and checked against ``tag_scheme`` (detected when "auto"). A task that
    counts in tokens (SFT: prompt and completion lengths, what ``max_length`` cuts) needs its
    ``tokenizer`` (``ftkit.data_stats`` loads that of ``model=``; this layer never loads a model).
    """
    from .loading import load_source  # loading needs `datasets`; keep this module light

    task = get_task(task)
    loaded = load_source(source, task, convert_tags=False, **column_options)
    splits = dict(loaded) if hasattr(loaded, "keys") else {"train": loaded}
    scheme = task.tag_scheme(splits, column_options.get("tag_scheme"))
    result = {name: task.split_stats(name, split, scheme) for name, split in splits.items()}
    if task.stats_use_tokenizer:
        tokenizer = needs_tokenizer(task, tokenizer)
        options = token_options(max_length, train_on)
        for name, split in splits.items():
            result[name].extra.update(task.token_stats(split, tokenizer, options))
    unseen = {}
    if "train" in result:
        seen = set(result["train"].label_counts)
        unseen = {name: sorted(set(split.label_counts) - seen) for name, split in result.items() if name != "train"}
    return DataStats(task.name, result, scheme, unseen)


def token_options(max_length: int | None = None, train_on: str | None = None) -> Any:
    """The training options a token count depends on (``max_seq_length``, ``train_on``), defaults filled in."""
    from types import SimpleNamespace

    return SimpleNamespace(max_seq_length=max_length or DEFAULT_MAX_SEQ_LENGTH, train_on=train_on)


def needs_tokenizer(task: Task, tokenizer: Any) -> Any:
    """``tokenizer``, which a task that counts in tokens cannot do without."""
    if tokenizer is None:
        raise FtkitError(f"{task.name} statistics and previews count tokens: pass tokenizer= "
                         "(ftkit.data_stats and ftkit.data_preview load that of model=)")
    return tokenizer


def _aligned(rows: list[list[str]]) -> list[str]:
    """Rows of cells as text lines in columns: the first left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
            for row in rows]


def _cell(value: Any) -> str:
    if isinstance(value, dict):  # percentiles
        return "/".join(str(value[key]) for key in ("p50", "p90", "max") if key in value)
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "" if value is None else str(value)


def _percentile(values: list[int], q: int) -> int:
    """Nearest-rank percentile: a length that actually occurs."""
    if not values:
        return 0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]
