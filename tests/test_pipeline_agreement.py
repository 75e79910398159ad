"""ftkit's NER predictions on raw text agree with transformers' own `pipeline(..., aggregation_strategy="first")`
on the same checkpoint: the same entities at the same character offsets with the same types.

The one documented difference (see `ftkit.tasks.ner.WORD_PATTERN`): ftkit keeps a word with an inner
hyphen or apostrophe ("New-York", "O'Neil") whole, where BERT's pre-tokenizer splits it into three
words, so such a word can get one tag from ftkit and several from the pipeline. Sentences with such
words are counted and compared separately.
"""

from __future__ import annotations

import pytest
import torch

from ftkit.engine.adapters import save_checkpoint
from ftkit.engine.inference import Predictor
from ftkit.engine.models import build_model, default_model_dir, load_tokenizer
from ftkit.tasks.loading import load_source
from ftkit.tasks.ner import WORD_PATTERN

from .conftest import CONLL_DIR

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """The default encoder with a seeded random head: it tags all kinds of spans, B- and I- mixed."""
    torch.manual_seed(3)
    source = str(default_model_dir())
    model = build_model(source, "ner", LABELS)
    with torch.no_grad():
        model.classifier.weight.normal_(0, 2.0)
        model.classifier.bias.copy_(torch.tensor([1.5] + [0.0] * (len(LABELS) - 1)))
    return save_checkpoint(model, load_tokenizer(source), tmp_path_factory.mktemp("ner-checkpoint"))


def spans(entities, start="start", end="end", label="label"):
    return [(e[start], e[end], e[label]) for e in entities]


def test_entities_match_the_token_classification_pipeline_on_200_conll_sentences(checkpoint):
    from transformers import pipeline

    sentences = [" ".join(tokens) for tokens in load_source(CONLL_DIR / "test.txt", "ner")["tokens"][:200]]
    ours = Predictor.from_checkpoint(checkpoint).predict(sentences)
    theirs = pipeline("token-classification", model=str(checkpoint), aggregation_strategy="first", device="cpu")(sentences)
    split_words = [i for i, text in enumerate(sentences) if any(len(w) > 1 and ("-" in w or "'" in w)
                                                               for w in WORD_PATTERN.findall(text))]
    compared = [i for i in range(len(sentences)) if i not in split_words]
    assert len(compared) >= 150 and sum(len(ours[i]) for i in compared) > 300  # a real comparison
    for i in compared:
        assert spans(ours[i]) == spans(theirs[i], label="entity_group"), sentences[i]
    for i in compared[:50]:
        for mine, pipe in zip(ours[i], theirs[i]):
            assert mine["score"] == pytest.approx(float(pipe["score"]), abs=1e-4)
