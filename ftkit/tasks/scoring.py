"""Scoring helpers the tasks share: seqeval entity scores, per-class scores, report tables, predictions files,
and where a model goes wrong (entity span decisions, confusion matrices).

Which metrics a task computes, how its report ends and which predictions file it writes are the
task's own (its module in ``ftkit.tasks``); the helpers they call live here, below the engine, so
that tasks never import the engine. NER is scored on words, not subwords: only positions whose
label is not -100 (the first subword of each word) count. Entity scores follow seqeval on IOB2 tags, in its default (conlleval)
mode unless ``mode="strict"`` is asked for.
"""

from __future__ import annotations

import html
import json
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..errors import ConfigError

IGNORE_INDEX = -100
SCHEME = "IOB2"
_SPLIT_PREFIXES = ("eval_", "test_", "validation_")


def int_keys(id2label: Mapping[Any, str]) -> dict[int, str]:
    return {int(k): v for k, v in id2label.items()}


def class_ids(predictions: Any) -> np.ndarray:
    predictions = np.asarray(predictions[0] if isinstance(predictions, tuple) else predictions)
    return predictions.argmax(-1) if predictions.ndim == 2 else predictions


def tag_sequences(predictions: Any, label_ids: Any, id2label: dict[int, str]) -> tuple[list[list[str]], list[list[str]]]:
    """Word-level tag sequences from token-level ids, keeping only positions whose label is not -100."""
    predictions = np.asarray(predictions[0] if isinstance(predictions, tuple) else predictions)
    if predictions.ndim == 3:
        predictions = predictions.argmax(-1)
    true_tags, pred_tags = [], []
    for pred_row, label_row in zip(predictions, np.asarray(label_ids)):
        keep = label_row != IGNORE_INDEX
        true_tags.append([id2label[int(i)] for i in label_row[keep]])
        pred_tags.append([id2label.get(int(i), "O") for i in pred_row[keep]])
    return true_tags, pred_tags


def ner_report(true_tags: list[list[str]], pred_tags: list[list[str]], mode: str | None = None) -> dict[str, Any]:
    """Entity-level precision/recall/F1 (micro, plus macro_f1), per entity type, and token accuracy."""
    from seqeval.metrics import accuracy_score, classification_report
    from seqeval.scheme import IOB2

    if mode not in (None, "default", "strict"):
        raise ConfigError(f"seqeval mode must be 'default' or 'strict'; got {mode!r}")
    strict = mode == "strict"
    with warnings.catch_warnings():  # seqeval averages an empty list when no entity occurs at all
        warnings.simplefilter("ignore", RuntimeWarning)
        report = classification_report(true_tags, pred_tags, output_dict=True, zero_division=0,
                                       mode="strict" if strict else None, scheme=IOB2 if strict else None)
    micro = report.pop("micro avg")
    for key in ("macro avg", "weighted avg", "samples avg"):
        report.pop(key, None)
    type_f1 = [scores["f1-score"] for scores in report.values()]
    metrics: dict[str, Any] = {
        "precision": float(micro["precision"]), "recall": float(micro["recall"]), "f1": float(micro["f1-score"]),
        "macro_f1": float(np.mean(type_f1)) if type_f1 else 0.0, "accuracy": float(accuracy_score(true_tags, pred_tags)),
    }
    for entity_type, scores in sorted(report.items()):
        metrics[f"{entity_type}_precision"] = float(scores["precision"])
        metrics[f"{entity_type}_recall"] = float(scores["recall"])
        metrics[f"{entity_type}_f1"] = float(scores["f1-score"])
        metrics[f"{entity_type}_support"] = int(scores["support"])
    metrics["scheme"], metrics["mode"] = SCHEME, "strict" if strict else "default"
    return metrics


def classification_report_dict(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    """Accuracy, macro and weighted F1, and per-class precision/recall/F1/support."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    labels = list(labels)
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    total = max(int(np.sum(support)), 1)
    metrics: dict[str, float] = {
        "accuracy": float(accuracy_score(y_true, y_pred)) if len(y_true) else 0.0,
        "macro_f1": float(np.mean(f1)) if labels else 0.0,
        "weighted_f1": float(np.sum(f1 * support) / total),
    }
    for i, label in enumerate(labels):
        metrics[f"{label}_precision"] = float(precision[i])
        metrics[f"{label}_recall"] = float(recall[i])
        metrics[f"{label}_f1"] = float(f1[i])
        metrics[f"{label}_support"] = int(support[i])
    return metrics


def _task(name: str):
    from . import get_task  # the registry imports no task module at load time; this one is light too

    return get_task(name)


# ----- presentation -------------------------------------------------------------------------------


def _plain(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Metric names without the split prefix the Trainer adds ("eval_f1" -> "f1")."""
    plain = {}
    for key, value in metrics.items():
        for prefix in _SPLIT_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
                break
        plain[key] = value
    return plain


def _report_rows(metrics: Mapping[str, Any], task: str) -> tuple[str, list[tuple[str, ...]]]:
    """The title and the rows (name, P, R, F1, support) shared by the text and HTML tables: one row per
    class or entity type, then the task's summary rows (averages)."""
    m = _plain(metrics)
    classes = [key[: -len("_support")] for key in m if key.endswith("_support")]
    rows = [(name, _fmt(m.get(f"{name}_precision")), _fmt(m.get(f"{name}_recall")), _fmt(m.get(f"{name}_f1")),
             str(int(m[f"{name}_support"]))) for name in classes]
    support = sum(int(m[f"{name}_support"]) for name in classes)
    title, summary = _task(task).report_summary(m, support)
    rows += [(name, _fmt(p), _fmt(r), _fmt(f1), "" if n is None else str(n)) for name, p, r, f1, n in summary]
    return title, rows


def _fmt(value: Any) -> str:
    return "" if value is None else f"{float(value):.4f}"


_HEADER = ("", "precision", "recall", "f1", "support")


def report_table(metrics: Mapping[str, Any], task: str) -> str:
    """A plain-text table of per-type (or per-class) and averaged scores, for the terminal."""
    title, rows = _report_rows(metrics, task)
    widths = [max(len(row[i]) for row in [_HEADER, *rows]) for i in range(len(_HEADER))]
    lines = [title, ""]
    for row in [_HEADER, *rows]:
        lines.append("  ".join(cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)).rstrip())
    return "\n".join(lines)


def report_html(metrics: Mapping[str, Any], task: str) -> str:
    """The same table as HTML, for notebooks."""
    title, rows = _report_rows(metrics, task)
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in _HEADER)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return (f'<table class="ftkit-report"><caption>{html.escape(title)}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def report_markdown(metrics: Mapping[str, Any], task: str) -> str:
    """The same table in Markdown, for model cards."""
    title, rows = _report_rows(metrics, task)
    lines = [f"**{title}**", "", "| " + " | ".join(_HEADER) + " |", "|" + "---|" * len(_HEADER)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# ----- predictions --------------------------------------------------------------------------------


def word_predictions(features: Iterable[Mapping[str, Any]], predictions: Any, id2label: Mapping[int, str]) -> dict[int, list[str]]:
    """Word tags per sentence from token-level prediction ids, one row per feature in the same order.

    Each feature carries its own ``sentence_id``, ``word_offset`` (its first word's index in the
    sentence) and ``word_ids`` (relative to the window, -1 for special tokens), so features may come
    in any order and long sentences split into windows are stitched back together. A word's tag is
    the prediction at its first subword. Words no window covered (never, unless truncated) are "O".
    """
    id2label = int_keys(id2label)
    predictions = np.asarray(predictions[0] if isinstance(predictions, tuple) else predictions)
    if predictions.ndim == 3:
        predictions = predictions.argmax(-1)
    words: dict[int, dict[int, str]] = {}
    for feature, row in zip(features, predictions):
        sentence = words.setdefault(int(feature["sentence_id"]), {})
        offset, previous = int(feature["word_offset"]), -1
        for position, word in enumerate(feature["word_ids"]):
            if word is not None and word >= 0 and word != previous:
                sentence[offset + word] = id2label.get(int(row[position]), "O")
            previous = word
    return {sid: [tags.get(i, "O") for i in range(max(tags) + 1)] if tags else []
            for sid, tags in sorted(words.items())}


def save_predictions(
    path: str | Path,
    sentences_tokens: Sequence[Any],
    gold_tags: Sequence[Any] | None,
    pred_tags: Sequence[Any],
    scores: Sequence[Mapping[str, float]] | None = None,
) -> Path:
    """Write one JSON line per example, in dataset order.

    NER (inputs are word lists): ``{"id", "tokens", "tags", "predicted"}``. Classification (inputs
    are strings): ``{"id", "text", "label", "predicted", "scores"}``. Gold may be None (unlabelled).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for i, example in enumerate(sentences_tokens):
            gold = gold_tags[i] if gold_tags is not None else None
            if isinstance(example, str):
                row = {"id": i, "text": example, "label": gold, "predicted": pred_tags[i],
                       "scores": dict(scores[i]) if scores is not None else None}
            else:
                row = {"id": i, "tokens": list(example), "tags": list(gold) if gold is not None else None,
                       "predicted": list(pred_tags[i])}
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


# ----- where a model goes wrong -------------------------------------------------------------------

Span = tuple[int, int, str]  # (start, end, type): words, end exclusive
ENTITY_ERROR_KINDS = ("correct", "wrong_type", "wrong_boundary", "missed", "spurious")


def tag_spans(tags: Sequence[str]) -> list[Span]:
    """A tag sequence's entities as ``(start, end, type)``, as seqeval's default mode reads IOB1/IOB2/BIOES."""
    from ..data.tags import entity_spans

    return [(start, end, kind) for kind, start, end in entity_spans(tags)]


def span_decisions(gold: Sequence[Span], predicted: Sequence[Span]) -> list[dict[str, Any]]:
    """Every gold and predicted entity of one sentence judged: ``{"kind", "type", "gold", "predicted"}``.

    Spans are ``(start, end, type)`` (words, end exclusive); the spans of one side never overlap.

    - ``correct``: a prediction with a gold span's boundaries and type (seqeval's true positive);
    - ``wrong_type``: a gold span's boundaries, another type;
    - ``wrong_boundary``: a prediction that overlaps gold without sharing a gold span's boundaries,
      paired with the gold span it overlaps most (the leftmost on a tie); a gold span that overlaps
      predictions all paired elsewhere gets one more, with the prediction it overlaps most. When the
      types differ too it is still a wrong boundary: both spans keep their types, and the confusion
      matrix shows the type error;
    - ``missed``: a gold span that no prediction overlaps;
    - ``spurious``: a prediction that overlaps no gold span.

    ``type`` is the gold span's (the prediction's for spurious); ``gold``/``predicted`` are
    ``[start, end, type]`` or None. Every prediction is judged once and every gold span at least
    once; where overlaps pair one to one, exactly once, so a type's correct,
    wrong_type, wrong_boundary and missed add up to its gold count. Sorted by position.
    """
    gold, predicted = sorted(gold), sorted(predicted)
    by_bounds = {span[:2]: span for span in gold}
    decisions, judged = [], set()

    def most_overlapping(span: Span, others: Sequence[Span]) -> Span | None:
        touching = [other for other in others if _overlap(span, other) > 0]
        return max(touching, key=lambda other: _overlap(span, other)) if touching else None  # first max: leftmost

    for guess in predicted:
        same = by_bounds.get(guess[:2])
        partner = same or most_overlapping(guess, gold)
        if same is not None:
            kind = "correct" if same[2] == guess[2] else "wrong_type"
        else:
            kind = "spurious" if partner is None else "wrong_boundary"
        decisions.append(_decision(kind, partner, guess))
        if partner is not None:
            judged.add(partner)
    for span in gold:
        if span not in judged:
            guess = most_overlapping(span, predicted)
            decisions.append(_decision("missed" if guess is None else "wrong_boundary", span, guess))
    return sorted(decisions, key=lambda d: (d["gold"] or d["predicted"])[:2])


def _overlap(a: Span, b: Span) -> int:
    return min(a[1], b[1]) - max(a[0], b[0])


def _decision(kind: str, gold: Span | None, predicted: Span | None) -> dict[str, Any]:
    return {"kind": kind, "type": (gold or predicted)[2], "gold": list(gold) if gold else None,
            "predicted": list(predicted) if predicted else None}


def confusion_matrix(pairs: Iterable[tuple[str, str]], labels: Sequence[str]) -> list[list[int]]:
    """Counts of (gold, predicted) pairs: rows gold, columns predicted, both in ``labels`` order."""
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for gold, predicted in pairs:
        matrix[index[gold]][index[predicted]] += 1
    return matrix


def precision_recall_f1(correct: int, predicted: int, gold: int) -> tuple[float, float, float]:
    """From counts; 0.0 where a denominator is 0 (as seqeval and scikit-learn with ``zero_division=0``)."""
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1
