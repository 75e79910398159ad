"""Metrics match seqeval's definitions, and predictions map back to words whatever the feature order."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from transformers import EvalPrediction

from ftkit.engine.evaluate import make_compute_metrics, make_preprocess_logits
from ftkit.tasks.scoring import (
    classification_report_dict,
    ner_report,
    report_html,
    report_table,
    save_predictions,
    word_predictions,
)

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
ID2LABEL = dict(enumerate(LABELS))
L = {label: i for i, label in enumerate(LABELS)}
X = -100


def ids(*tags):
    return [L[t] if t in L else X for t in tags]


def test_one_entity_right_and_one_wrong_scores_one_half():
    # Gold: PER (John Smith) and LOC (Paris); predicted: PER right, Paris tagged PER.
    labels = np.array([ids("B-PER", "I-PER", "O", "B-LOC")])
    predictions = np.array([ids("B-PER", "I-PER", "O", "B-PER")])
    metrics = make_compute_metrics("ner", ID2LABEL)(EvalPrediction(predictions=predictions, label_ids=labels))
    assert metrics["precision"] == metrics["recall"] == metrics["f1"] == 0.5
    assert metrics["PER_f1"] == pytest.approx(2 / 3) and metrics["PER_support"] == 1
    assert metrics["LOC_recall"] == 0 and metrics["LOC_support"] == 1
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 0) / 2)
    assert metrics["accuracy"] == 0.75
    assert all(not key.startswith("eval_") for key in metrics)


def test_positions_labelled_minus_100_are_ignored():
    # Subword and special/padding positions carry -100; whatever is predicted there must not count.
    labels = np.array([[X, L["B-PER"], X, L["I-PER"], X, X]])
    predictions = np.array([[L["B-LOC"], L["B-PER"], L["B-LOC"], L["I-PER"], L["I-LOC"], X]])
    metrics = make_compute_metrics("ner", ID2LABEL)(EvalPrediction(predictions=predictions, label_ids=labels))
    assert metrics["f1"] == 1.0 and metrics["accuracy"] == 1.0
    assert "LOC_support" not in metrics


def test_logits_are_accepted_as_well_as_predicted_ids():
    labels = np.array([ids("B-PER", "O")])
    logits = np.eye(len(LABELS))[ids("B-PER", "O")][None]
    metrics = make_compute_metrics("ner", ID2LABEL)(EvalPrediction(predictions=logits, label_ids=labels))
    assert metrics["f1"] == 1.0


def test_strict_mode_rejects_an_entity_that_starts_with_i_but_default_mode_accepts_it():
    true = [["B-PER", "I-PER", "O"]]
    pred = [["I-PER", "I-PER", "O"]]
    default, strict = ner_report(true, pred), ner_report(true, pred, mode="strict")
    assert default["f1"] == 1.0 and default["mode"] == "default" and default["scheme"] == "IOB2"
    assert strict["f1"] == 0.0 and strict["mode"] == "strict"
    labels, predictions = np.array([ids(*true[0])]), np.array([ids(*pred[0])])
    assert make_compute_metrics("ner", ID2LABEL, mode="strict")(EvalPrediction(predictions, labels))["f1"] == 0.0


def test_a_split_without_any_entity_scores_zero_not_nan():
    metrics = ner_report([["O", "O"]], [["O", "O"]])
    assert (metrics["f1"], metrics["macro_f1"], metrics["accuracy"]) == (0.0, 0.0, 1.0)


def test_preprocess_logits_keeps_only_the_argmax_on_the_device():
    logits = torch.tensor([[[0.1, 2.0, 0.3], [3.0, 0.0, 0.0]]])
    predicted = make_preprocess_logits("ner")(logits, None)
    assert predicted.tolist() == [[1, 0]] and predicted.dtype == torch.int64


def test_classification_keeps_every_labels_probability_and_its_metrics_take_the_argmax():
    probabilities = make_preprocess_logits("classification")((torch.tensor([[0.0, 2.0], [1.0, 1.0]]),), None)
    assert torch.allclose(probabilities.sum(-1), torch.ones(2)) and probabilities[0, 1] > 0.8
    prediction = EvalPrediction(probabilities.numpy(), np.array([1, 0]))
    assert make_compute_metrics("classification", {0: "neg", 1: "pos"})(prediction)["accuracy"] == 1.0


def test_classification_metrics_give_accuracy_macro_weighted_and_per_class_f1():
    id2label = {0: "negative", 1: "positive"}
    labels = np.array([0, 0, 0, 1])
    logits = np.array([[2.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, 2.0]])
    metrics = make_compute_metrics("classification", id2label)(EvalPrediction(predictions=logits, label_ids=labels))
    assert metrics["accuracy"] == 0.75
    assert metrics["negative_f1"] == pytest.approx(0.8) and metrics["positive_f1"] == pytest.approx(2 / 3)
    assert metrics["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert metrics["weighted_f1"] == pytest.approx((3 * 0.8 + 2 / 3) / 4)
    assert classification_report_dict(["a", "b"], ["a", "b"], ["a", "b"])["accuracy"] == 1.0


def windowed_features():
    """Two sentences; sentence 1 is split into two windows. Word 1 of every window has two subwords."""
    return [
        {"sentence_id": 0, "word_offset": 0, "word_ids": [-1, 0, 1, 1, 2, -1]},
        {"sentence_id": 1, "word_offset": 0, "word_ids": [-1, 0, 1, 1, -1]},
        {"sentence_id": 1, "word_offset": 2, "word_ids": [-1, 0, 1, 1, 2, -1]},
    ]


def windowed_predictions():
    o, bp, ip, bl, il = range(5)
    return [
        [o, bp, ip, o, o, o],       # sentence 0: B-PER I-PER O; the second subword's "O" is ignored
        [o, bl, il, bl, o, X],      # sentence 1 words 0-1: B-LOC I-LOC (row padded with -100)
        [o, o, bp, o, ip, o],       # sentence 1 words 2-4: O B-PER I-PER
    ]


def test_word_predictions_stitch_windows_back_into_sentences_in_any_feature_order():
    expected = {0: ["B-PER", "I-PER", "O"], 1: ["B-LOC", "I-LOC", "O", "B-PER", "I-PER"]}
    features, predictions = windowed_features(), windowed_predictions()
    for seed in range(5):
        order = list(range(len(features)))
        random.Random(seed).shuffle(order)
        width = max(len(p) for p in predictions)
        padded = np.array([predictions[i] + [X] * (width - len(predictions[i])) for i in order])
        assert word_predictions([features[i] for i in order], padded, ID2LABEL) == expected


def test_report_table_lists_entity_types_and_averages_under_a_header_naming_scheme_and_mode():
    metrics = ner_report([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "B-PER"]], mode="strict")
    table = report_table({f"eval_{k}": v for k, v in metrics.items()}, "ner")
    assert "scheme IOB2" in table and "mode strict" in table
    lines = table.splitlines()
    assert any(line.startswith("PER") and "0.5000" in line and line.rstrip().endswith("1") for line in lines)
    assert any(line.startswith("micro avg") and line.count("0.5000") == 3 for line in lines)
    assert any(line.startswith("macro avg") for line in lines)


def test_report_html_escapes_class_names():
    metrics = classification_report_dict(["<b>", "x"], ["<b>", "x"], ["<b>", "x"])
    page = report_html(metrics, "classification")
    assert "&lt;b&gt;" in page and "<b>" not in page
    assert "accuracy" in report_table(metrics, "classification")


def test_save_predictions_writes_one_json_line_per_example_in_order(tmp_path):
    path = save_predictions(tmp_path / "p" / "test.jsonl", [["John", "runs"], ["Paris"]],
                            [["B-PER", "O"], ["B-LOC"]], [["B-PER", "O"], ["O"]])
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows == [{"id": 0, "tokens": ["John", "runs"], "tags": ["B-PER", "O"], "predicted": ["B-PER", "O"]},
                    {"id": 1, "tokens": ["Paris"], "tags": ["B-LOC"], "predicted": ["O"]}]

    path = save_predictions(tmp_path / "c.jsonl", ["good film"], ["positive"], ["negative"],
                            scores=[{"negative": 0.6, "positive": 0.4}])
    assert json.loads(path.read_text()) == {"id": 0, "text": "good film", "label": "positive",
                                            "predicted": "negative", "scores": {"negative": 0.6, "positive": 0.4}}
