"""Shared fixtures: tiny randomly initialised BERT models built from a config (seconds, offline)."""

from __future__ import annotations

import os
import string
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CONLL_DIR = SHARED_DATA / "conll2003"
SST2_DIR = SHARED_DATA / "sst2"

# Whole words the tiny tokenizer knows; every other word splits into letter pieces (never [UNK]).
TINY_WORDS = """the a of to in and is was for on with by at from eu rejects german call boycott british
lamb peter blackburn brussels european commission said on thursday it disagreed with advice consumers
john smith lives new york works google london paris france germany good bad movie film great terrible""".split()


def build_tiny_model(folder: Path, hidden_size: int = 32, layers: int = 2) -> Path:
    """Save a tiny BERT encoder plus a fast WordPiece tokenizer into ``folder``."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    pieces = list(string.ascii_lowercase) + list(string.digits) + list(string.punctuation)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + TINY_WORDS + pieces + [f"##{p}" for p in pieces]
    vocab = list(dict.fromkeys(vocab))
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True)
    tokenizer.save_pretrained(folder)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden_size, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=hidden_size * 2, max_position_embeddings=128)
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture
def runs_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "runs"
    monkeypatch.setenv("FTKIT_RUNS_DIR", str(folder))
    return folder


@pytest.fixture
def conll_sample(tmp_path) -> Path:
    """A small CoNLL file in IOB1, with a -DOCSTART- line, a B- tag and multi-piece words."""
    path = tmp_path / "sample.conll"
    path.write_text(
        "-DOCSTART- -X- O O\n\n"
        "EU NNP I-NP I-ORG\nrejects VBZ I-VP O\nGerman JJ I-NP I-MISC\ncall NN I-NP O\n"
        "to TO I-VP O\nboycott VB I-VP O\nBritish JJ I-NP I-MISC\nlamb NN I-NP O\n. . O O\n\n"
        "Peter NNP I-NP I-PER\nBlackburn NNP I-NP I-PER\n\n"
        "Xylophonist NNP I-NP I-PER\nJohn NNP I-NP B-PER\nSmith NNP I-NP I-PER\nlives VBZ I-VP O\n"
        "in IN I-PP O\nNew NNP I-NP I-LOC\nYork NNP I-NP I-LOC\n. . O O\n\n"
    )
    return path
