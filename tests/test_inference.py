"""Predictor: entities whose offsets point into the input, windows for long texts, probabilities per class."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from ftkit.engine.adapters import save_checkpoint
from ftkit.errors import FtkitError
from ftkit.engine.inference import Predictor, checkpoint_path
from ftkit.tasks.ner import WORD_PATTERN, entities_html, group_entities
from ftkit.engine.models import build_model, load_tokenizer

NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
TRICKY_TEXTS = [
    "John  Smith,   lives in New-York (U.S.A.)!",
    "  O'Neil's café — déjà vu?\tYes... peter   blackburn",
    "",
    "   ",
]


def predictor_always_tagging(tiny_model_dir, tag: str) -> Predictor:
    """A tiny NER model whose head ignores its input and always predicts ``tag``."""
    model = build_model(str(tiny_model_dir), "ner", NER_LABELS)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([5.0 if label == tag else 0.0 for label in NER_LABELS]))
    return Predictor(model, load_tokenizer(str(tiny_model_dir)))


@pytest.fixture
def tag_every_word(tiny_model_dir):
    return predictor_always_tagging(tiny_model_dir, "B-PER")


def test_every_entity_text_is_the_input_slice_at_its_offsets(tag_every_word):
    for text, entities in zip(TRICKY_TEXTS, tag_every_word.predict(TRICKY_TEXTS)):
        assert all(e["text"] == text[e["start"]:e["end"]] for e in entities)
        assert [e["text"] for e in entities] == WORD_PATTERN.findall(text)
        assert all(e["label"] == "PER" and 0 < e["score"] <= 1 for e in entities)


def test_words_keep_hyphens_and_apostrophes_and_split_off_punctuation(tag_every_word):
    texts = [e["text"] for e in tag_every_word.predict("New-York, O'Neil's (test).")]
    assert texts == ["New-York", ",", "O'Neil's", "(", "test", ")", "."]


def test_an_i_run_becomes_one_entity_spanning_its_words(tiny_model_dir):
    predictor = predictor_always_tagging(tiny_model_dir, "I-LOC")
    [entity] = predictor.predict("  New   York  city ")
    assert (entity["text"], entity["label"], entity["start"], entity["end"]) == ("New   York  city", "LOC", 2, 18)


def test_a_text_longer_than_the_model_window_loses_no_word(tag_every_word):
    # The tiny model has 128 positions; most of these words split into several subwords.
    words = [f"xylophonist{i}" for i in range(300)]
    entities = tag_every_word.predict(" ".join(words))
    assert [e["text"] for e in entities] == words


def test_one_text_gives_its_list_and_a_list_gives_one_list_per_text(tag_every_word):
    assert isinstance(tag_every_word.predict("John"), list) and tag_every_word.predict("John")[0]["text"] == "John"
    assert [len(r) for r in tag_every_word.predict(["John", "John Smith", ""], batch_size=2)] == [1, 2, 0]


def test_group_entities_follows_b_and_i_tags_and_splits_on_type_changes():
    text = "Peter Blackburn met EU in Brussels"
    spans = [(0, 5), (6, 15), (16, 19), (20, 22), (23, 25), (26, 34)]
    tags = [("B-PER", 0.9), ("I-PER", 0.7), ("O", 1.0), ("B-ORG", 0.8), ("I-LOC", 0.6), ("I-LOC", 0.5)]
    entities = group_entities(text, spans, tags)
    assert [(e["text"], e["label"]) for e in entities] == [("Peter Blackburn", "PER"), ("EU", "ORG"), ("in Brussels", "LOC")]
    assert entities[0]["score"] == pytest.approx(0.8)


def test_classification_gives_a_label_and_probabilities_that_sum_to_one(tiny_model_dir):
    model = build_model(str(tiny_model_dir), "classification", ["negative", "positive"])
    predictor = Predictor(model, load_tokenizer(str(tiny_model_dir)))
    results = predictor.predict(["a great film", "terrible!", ""])
    for result in results:
        assert set(result["scores"]) == {"negative", "positive"}
        assert sum(result["scores"].values()) == pytest.approx(1.0)
        assert result["label"] == max(result["scores"], key=result["scores"].get)
    assert predictor.predict("good")["label"] in ("negative", "positive")


def test_entities_html_highlights_each_entity_and_escapes_the_text():
    text = "<b>Peter</b> & Paris"
    entities = [{"text": "Peter", "label": "PER", "start": 3, "end": 8, "score": 0.9},
                {"text": "Paris", "label": "LOC", "start": 15, "end": 20, "score": 0.8}]
    page = entities_html(text, entities)
    assert "&lt;b&gt;" in page and "&amp;" in page and "<b>" not in page
    assert page.count("<mark") == 2 and ">Peter<sub" in page and ">Paris<sub" in page


def fake_run(tmp_path, checkpoints, best_metric="f1"):
    return SimpleNamespace(id="run1", dir=tmp_path, checkpoints=checkpoints,
                           config=SimpleNamespace(best_metric=best_metric))


def test_a_run_predicts_with_its_best_folder_first_then_its_best_scoring_checkpoint(tmp_path):
    for name in ("checkpoint-10", "checkpoint-20", "checkpoint-30"):
        (tmp_path / name).mkdir()
    checkpoints = [{"step": 10, "path": str(tmp_path / "checkpoint-10"), "metrics": {"f1": 0.5}},
                   {"step": 20, "path": "checkpoint-20", "metrics": {"eval_f1": 0.9}},
                   {"step": 30, "path": str(tmp_path / "checkpoint-30"), "metrics": {"f1": 0.7}}]
    run = fake_run(tmp_path, checkpoints)
    assert checkpoint_path(run) == tmp_path / "checkpoint-20"
    assert checkpoint_path(fake_run(tmp_path, [{**c, "metrics": {}} for c in checkpoints])) == tmp_path / "checkpoint-30"
    assert checkpoint_path(run, 10) == tmp_path / "checkpoint-10"
    (tmp_path / "best").mkdir()
    assert checkpoint_path(run) == tmp_path / "best"
    with pytest.raises(FtkitError, match="no checkpoint '99'"):
        checkpoint_path(run, 99)


def test_a_run_without_any_saved_model_says_so(tmp_path):
    with pytest.raises(FtkitError, match="no saved model"):
        checkpoint_path(fake_run(tmp_path, []))


def test_predictor_from_run_loads_the_checkpoint(tiny_model_dir, tmp_path, tag_every_word):
    save_checkpoint(tag_every_word.model, tag_every_word.tokenizer, tmp_path / "best")
    predictor = Predictor.from_run(fake_run(tmp_path, []))
    assert predictor.task == "ner" and predictor.labels == NER_LABELS
    assert predictor.predict("John Smith") == tag_every_word.predict("John Smith")
