"""Text classification: one label per text, scored by accuracy and macro/weighted F1 (scikit-learn).

Canonical rows are ``text: str`` and ``label: str``; labels stay strings ("0", "positive") and are
ordered numbers first ("2" before "10"), then words.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from .base import ReportRow, Task

if TYPE_CHECKING:
    import datasets

    from ..config import DataConfig
    from ..data.formats import Table
    from .stats import SplitStats

TEXT_COLUMNS = ("text", "sentence", "review", "content", "document")
LABEL_COLUMNS = ("label", "labels", "category", "class", "target")
UNLABELLED = "(unlabelled)"  # how statistics and previews show a test row without a label
IGNORE_INDEX = -100  # the label id the loss and the metrics skip


class ClassificationTask(Task):
    name = "classification"
    columns = ("text", "label")
    label_column = "label"
    form_fields = ("data.text_column", "data.label_column")
    file_suffixes = (".tsv", ".csv")
    pipeline_task = "text-classification"
    example_input = "A gripping, beautifully acted film."
    default_metric = "accuracy"
    peft_task_type = "SEQ_CLS"
    architecture_suffix = "ForSequenceClassification"
    supports_packing = False  # the head pools one vector per row: packed texts would share it
    # LoRA at the encoders' 2e-3 collapsed to one class on two SST-2 seeds of three; 5e-4 and 1e-3 tie on
    # validation accuracy (0.856, 0.855) and 5e-4 has the smaller spread (benchmarks/RESULTS.md).
    default_learning_rates = MappingProxyType({**Task.default_learning_rates, "lora": 5e-4})

    # ----- data ---------------------------------------------------------------------------------------
    def features(self) -> "datasets.Features":
        import datasets

        return datasets.Features({"text": datasets.Value("string"), "label": datasets.Value("string")})

    def canonical(self, table: "Table", options: "DataConfig") -> "Table":
        from ..data.formats import Table
        from ..data.sources import class_names, pick_column

        text_name = pick_column(table, options.text_column, TEXT_COLUMNS, "text", "text_column")
        label_name = pick_column(table, options.label_column, LABEL_COLUMNS, "label", "label_column")
        names = class_names(table.features, label_name)
        texts, labels = [], []
        for index, (text, label) in enumerate(zip(table.columns[text_name], table.columns[label_name])):
            if not isinstance(text, str):
                raise table.error(index, f"'{text_name}' must be text; this row has {text!r}")
            texts.append(text)
            labels.append(_label_name(label, names, table, index, label_name))
        return Table({"text": texts, "label": labels}, table.source, table.path, table.lines)

    def label_list(self, splits: Iterable["datasets.Dataset"], given: Sequence[str] | None = None) -> list[str]:
        """The labels seen in any split, sorted naturally; ``given`` as is."""
        if given:
            return list(dict.fromkeys(given))
        return sorted({label for split in splits for label in split["label"] if label is not None}, key=_natural_key)

    def labels_in(self, row_labels: Any) -> set[str]:
        return set() if row_labels is None else {row_labels}

    def model_labels_in(self, row_labels: Any) -> Iterable[str]:
        return [] if row_labels is None else [row_labels]

    # ----- statistics and preview --------------------------------------------------------------------
    def split_stats(self, name: str, dataset: "datasets.Dataset", scheme: str | None) -> "SplitStats":
        from collections import Counter

        from .stats import SplitStats

        lengths = [len(text.split()) for text in dataset["text"]]
        counts = Counter(UNLABELLED if label is None else label for label in dataset["label"])
        return SplitStats.of(len(dataset), lengths, counts, len(counts))

    def preview_html(self, rows: Iterable[Mapping[str, Any]]) -> str:
        import html

        from .preview import CHIP_STYLE, MARK_STYLE, colour_of

        rows = list(rows)
        rows = [{**row, "label": UNLABELLED if row["label"] is None else row["label"]} for row in rows]
        labels = sorted({row["label"] for row in rows})
        return "".join(
            f'<div class="ftkit-example"><span style="{MARK_STYLE.format(colour=colour_of(row["label"], labels))}">'
            f'<span style="{CHIP_STYLE}">{html.escape(row["label"])}</span></span> {html.escape(row["text"])}</div>'
            for row in rows
        )

    # ----- model, tokenisation, batches and loss -----------------------------------------------------
    def model_class(self) -> type:
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification

    def encoder(self, tokenizer: Any, label2id: Mapping[str, int], max_length: int) -> Callable[..., dict[str, list]]:
        return _ClassificationEncoder(tokenizer, label2id, max_length)

    def collator(self, tokenizer: Any, pad_to_multiple_of: int | None) -> Any:
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer, pad_to_multiple_of=pad_to_multiple_of)

    def loss_function(self) -> Callable[..., Any]:
        from .losses import label_weighted_loss

        return label_weighted_loss

    # ----- evaluation and predictions --------------------------------------------------------------
    def compute_metrics(self, id2label: Mapping[int, str], mode: str | None = None) -> Callable[[Any], dict]:
        from .scoring import class_ids, classification_report_dict, int_keys

        id2label = int_keys(id2label)

        def compute_classification(prediction: Any) -> dict[str, float]:
            import numpy as np

            predicted, gold = class_ids(prediction.predictions), np.asarray(prediction.label_ids)
            labelled = gold != IGNORE_INDEX  # unlabelled test rows (GLUE's -1) are predicted, not scored
            if not labelled.any():
                return {"unlabelled_examples": int(len(gold))}
            labels = [id2label[i] for i in sorted(id2label)]
            metrics = classification_report_dict([id2label[int(i)] for i in gold[labelled]],
                                                  [id2label[int(i)] for i in predicted[labelled]], labels)
            if not labelled.all():
                metrics["unlabelled_examples"] = int((~labelled).sum())
            return metrics

        return compute_classification

    def report_summary(self, metrics: Mapping[str, Any], support: int) -> tuple[str, list[ReportRow]]:
        m = metrics
        unlabelled = m.get("unlabelled_examples")
        title = "classification scores" + (f" ({int(unlabelled)} unlabelled examples predicted, not scored)"
                                           if unlabelled else "")
        return title, [("accuracy", None, None, m.get("accuracy"), support),
                                         ("macro avg", None, None, m.get("macro_f1"), support),
                                         ("weighted avg", None, None, m.get("weighted_f1"), support)]

    def reduce_logits(self, logits: Any) -> Any:
        """Every label's probability (one short row per text): the predictions file keeps them all."""
        return logits.float().softmax(dim=-1)

    def save_predictions(self, prepared: Any, split: str, predictions: Any, path: Path) -> None:
        """``{"id", "text", "label", "predicted", "scores"}`` per text, in the split's order; ``scores`` are
        every label's probability (``reduce_logits``)."""
        from .scoring import save_predictions

        raw, features = prepared.raw[split], prepared.features[split]
        order = features["sentence_id"] if "sentence_id" in features.column_names else range(len(features))
        by_text = {int(sentence): {label: float(p) for label, p in zip(prepared.labels, probabilities)}
                   for probabilities, sentence in zip(predictions, order)}
        scores = [by_text[i] for i in range(len(raw))]
        save_predictions(path, raw["text"], raw["label"], [max(s, key=s.get) for s in scores], scores)

    # ----- where the model goes wrong ----------------------------------------------------------------
    def error_report(self, rows: Sequence[Mapping[str, Any]], limit: int | None = None) -> dict[str, Any]:
        """Per-class precision/recall/F1, the confusion matrix, and the mistakes, most confident first
        (confidence: the predicted label's probability; None in files saved without probabilities,
        whose mistakes come in the split's order)."""
        from .scoring import confusion_matrix, precision_recall_f1

        labelled = [row for row in rows if row.get("label") is not None]
        labels = sorted({row[key] for row in labelled for key in ("label", "predicted")}, key=_natural_key)
        matrix = confusion_matrix(((row["label"], row["predicted"]) for row in labelled), labels)
        table = []
        for i, label in enumerate(labels):
            support = sum(matrix[i])
            table.append([label, *precision_recall_f1(matrix[i][i], sum(r[i] for r in matrix), support), support])
        correct = sum(row["label"] == row["predicted"] for row in labelled)
        summary = {"examples": len(labelled), "correct": correct, "mistakes": len(labelled) - correct,
                   "accuracy": correct / len(labelled) if labelled else 0.0}
        if len(labelled) < len(rows):
            summary["unlabelled"] = len(rows) - len(labelled)
        mistakes = sorted((_example(row) for row in labelled if row["label"] != row["predicted"]),
                          key=lambda e: (e["confidence"] is None, -(e["confidence"] or 0.0), e["id"]))
        return {
            "summary": summary,
            "table": {"title": "per class", "columns": ["label", "precision", "recall", "f1", "support"],
                      "rows": table},
            "confusion": {"title": "gold (rows) by predicted (columns)", "labels": labels, "matrix": matrix},
            "examples": mistakes[:limit],
        }

    def error_rows(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """One record per text: id, text, label, predicted, confidence, correct (None when unlabelled)."""
        return [{**_example(row), "correct": None if row.get("label") is None else row["label"] == row["predicted"]}
                for row in rows]

    def error_facets(self, example: Mapping[str, Any]) -> list[tuple[str, str | None]]:
        """A mistake is found under its gold label and under the label it was mistaken for."""
        return [("mistake", example["label"]), ("mistake", example["predicted"])]

    def error_example_html(self, example: Mapping[str, Any], labels: Sequence[str]) -> str:
        import html

        from .preview import CHIP_STYLE, MARK_STYLE, colour_of
        from ..rendering import format_number

        def chip(side: str, label: str) -> str:
            return (f'<span style="{MARK_STYLE.format(colour=colour_of(label, list(labels)))}">{side}'
                    f'<span style="{CHIP_STYLE}">{html.escape(label)}</span></span>')

        confidence = "" if example["confidence"] is None else f" ({format_number(example['confidence'], 3)})"
        return (f'<div class="ftkit-error-example">{chip("gold", example["label"])} '
                f'{chip("predicted", example["predicted"])}{confidence} {html.escape(example["text"])}</div>')

    def training_example(self, row: Mapping[str, Any], predicted: Sequence[str] | None,
                         labels: Sequence[str]) -> dict[str, Any]:
        guess = predicted[0] if predicted else None
        example = {"text": row["text"], "label": row["label"], "predicted": guess or "", "confidence": None}
        return {"text": row["text"], "gold": row["label"], "predicted": guess,
                "html": self.error_example_html(example, labels)}

    def export_inputs(self, raw: "datasets.Dataset") -> tuple[list[str], list[str]]:
        return list(raw["text"]), list(raw["label"])

    def comparable(self, prediction: Mapping[str, Any]) -> str:
        return prediction["label"]

    def export_scores(self, predictions: Sequence[Mapping[str, Any]], references: Sequence[str]) -> dict[str, float]:
        return {"accuracy": sum(p["label"] == r for p, r in zip(predictions, references)) / max(1, len(references))}

    def predict(self, predictor: Any, texts: list[str], batch_size: int) -> list[dict[str, Any]]:
        """``{"label", "scores"}`` per text: the most probable label and every label's probability."""
        results = []
        for start in range(0, len(texts), batch_size):
            encoded = predictor.tokenizer(texts[start:start + batch_size], truncation=True,
                                          max_length=predictor.max_length, padding=True, return_tensors="pt")
            for probs in predictor.probabilities(encoded):
                scores = {predictor.id2label[i]: float(p) for i, p in enumerate(probs)}
                results.append({"label": max(scores, key=scores.get), "scores": scores})
        return results

    def prediction_display(self, text: str, prediction: Any) -> tuple[str, str]:
        from ..rendering import escape, format_number

        scores = prediction.get("scores") or {}
        bars = "".join(f"<div>{escape(label)}: {format_number(score)}</div>" for label, score in scores.items())
        page = (f"<div><b>{escape(prediction['label'])}</b> — <i>{escape(text)}</i>"
                f"<div style='font-size:12px;color:#6b7280'>{bars}</div></div>")
        return f"{prediction['label']}  {scores}", page


def _label_name(label: Any, names: list[str] | None, table: "Table", index: int, column: str) -> str | None:
    """The label's name; None for an unlabelled row (-1 under ClassLabel names, the `datasets`
    convention for GLUE-style test splits), which only a test split may have."""
    if label is None or (isinstance(label, float) and label != label):  # None, or NaN from pandas
        raise table.error(index, f"this row has no '{column}' value")
    if names is not None and label == -1 and not isinstance(label, bool):
        return None
    if isinstance(label, int) and not isinstance(label, bool) and names is not None:
        if not 0 <= label < len(names):
            raise table.error(index, f"label id {label} is outside the {len(names)} label names")
        return names[label]
    if isinstance(label, float) and label.is_integer():
        label = int(label)
    if isinstance(label, (list, dict)):
        raise table.error(index, f"'{column}' must be one label per row, got {label!r}")
    text = str(label).strip()
    if not text:
        raise table.error(index, f"this row has an empty '{column}'")
    return text


def _example(row: Mapping[str, Any]) -> dict[str, Any]:
    """A predictions-file row as a report example; confidence is the predicted label's probability."""
    confidence = (row.get("scores") or {}).get(row["predicted"])
    return {"id": row["id"], "text": row["text"], "label": row.get("label"), "predicted": row["predicted"],
            "confidence": confidence}


def _natural_key(label: str) -> tuple:
    """"2" before "10"; numbers before words."""
    return (0, int(label), "") if label.lstrip("-").isdigit() else (1, 0, label)


class _ClassificationEncoder:
    """Batched map function: texts -> truncated token ids and the label id."""

    def __init__(self, tokenizer: Any, label2id: Mapping[str, int], max_length: int):
        self.tokenizer, self.label2id, self.max_length = tokenizer, label2id, max_length

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        encoded = self.tokenizer(batch["text"], truncation=True, max_length=self.max_length)
        rows = dict(encoded)
        rows["labels"] = [IGNORE_INDEX if label is None else self.label2id[label] for label in batch["label"]]
        rows["length"] = [len(ids) for ids in encoded["input_ids"]]
        return rows
