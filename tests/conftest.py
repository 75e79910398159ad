"""Shared fixtures: tiny randomly initialised BERT models built from a config (seconds, offline)."""

from __future__ import annotations

import os
import random
import string
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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


@pytest.fixture(autouse=True)
def _keep_runs_dir_variable(monkeypatch):
    """A Jupyter server with the ftkit extension sets FTKIT_RUNS_DIR in its process (for its kernels);
    in-process test servers must not leave it to the tests after them."""
    value = os.environ.get("FTKIT_RUNS_DIR")
    if value is None:
        monkeypatch.delenv("FTKIT_RUNS_DIR", raising=False)
    else:
        monkeypatch.setenv("FTKIT_RUNS_DIR", value)


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


def python_hook(tmp_path: Path, monkeypatch, name: str, code: str) -> None:
    """Run ``code`` first thing in every Python process this test starts (a ``sitecustomize`` on PYTHONPATH):
    how a test puts a fake worker or a fault into the processes a run spawns."""
    hook = tmp_path / name
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(code)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")])))


@pytest.fixture
def sleeper():
    """A live process whose pid stands in for a training worker."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield process
    process.kill()
    process.wait()


# ----- runs on synthetic CoNLL data with the tiny model ------------------------------------------

PEOPLE = ["John", "Mary", "Peter", "Xylophonist", "Anna"]
PLACES = ["Paris", "London", "Brussels", "Germany"]
FILLER = ["the", "movie", "was", "good", "and", "said", "on", "thursday", "it"]


def write_conll(path: Path, sentences: int, seed: int) -> Path:
    """Synthetic IOB1 CoNLL with learnable PER/LOC entities and some long sentences."""
    rng = random.Random(seed)
    lines = ["-DOCSTART- -X- O O", ""]
    for i in range(sentences):
        words = []
        for _ in range(rng.randint(3, 12 if i % 10 else 40)):
            choice = rng.random()
            if choice < 0.15:
                words += [(w, "I-PER") for w in rng.choice(PEOPLE).split()] + [(rng.choice(["Smith", "Blackburn"]), "I-PER")]
            elif choice < 0.3:
                words.append((rng.choice(PLACES), "I-LOC"))
            else:
                words.append((rng.choice(FILLER), "O"))
        lines += [f"{w} NNP I-NP {t}" for w, t in words] + [""]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def tiny_config(tiny_model_dir, tmp_path, runs_dir):
    data = tmp_path / "data"
    data.mkdir()
    return {
        "name": "tiny",
        "task": "ner",
        "model": str(tiny_model_dir),
        "data": {"train": str(write_conll(data / "train.txt", 64, 1)),
                 "validation": str(write_conll(data / "valid.txt", 16, 2)),
                 "test": str(write_conll(data / "test.txt", 24, 3))},
        "training": {"epochs": 2, "batch_size": 8, "logging_steps": 2, "max_seq_length": 32,
                     "learning_rate": 5e-3},
        "output": {"dir": str(runs_dir)},
    }


# ----- the fast tier starts no training process -------------------------------------------------
# `make test-fast` sets FTKIT_TEST_TIER=fast and deselects the tests marked slow or spawns. A test
# that starts a worker, supervisor, sweep, CLI or torchrun process anyway (a command line with
# `-m ftkit...`, the ftkit script or torchrun), itself or through a process it started, fails with
# the marker it needs: the start is refused (tests/fast_tier/spawn_guard.py) and the phase it came
# from (setup, call, teardown) fails, also when it happened in a thread or a module-scoped fixture.

FAST_TIER = os.environ.get("FTKIT_TEST_TIER") == "fast"
GUARD_DIR = Path(__file__).resolve().parent / "fast_tier"
_running: dict[str, Any] = {"item": None, "refused": {}, "notes": None}


def pytest_configure(config):
    if not FAST_TIER:
        return
    sys.path.insert(0, str(GUARD_DIR))
    import spawn_guard

    def refuse(found: str) -> None:
        item = _running["item"]
        if item is None or any(item.get_closest_marker(marker) for marker in ("spawns", "slow")):
            return
        _running["refused"].setdefault(item.nodeid, []).append(f"`{found}`")
        raise spawn_guard.SpawnRefused(f"the fast tier starts no training process: {item.nodeid} ran `{found}`")

    spawn_guard.install(refuse)
    import tempfile

    notes = Path(tempfile.mkstemp(prefix="ftkit-refused-spawns-")[1])
    _running["notes"] = notes
    os.environ["FTKIT_TEST_REFUSALS"] = str(notes)  # children note what they were refused here
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(GUARD_DIR), os.environ.get("PYTHONPATH")]))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _running["item"] = item
    yield
    _running["item"] = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    refused = _running["refused"].pop(item.nodeid, [])
    notes = _running["notes"]
    if notes is not None and notes.stat().st_size:
        refused += notes.read_text(encoding="utf-8").splitlines()
        notes.write_text("", encoding="utf-8")
    if refused:
        report.outcome = "failed"
        report.longrepr = (f"{item.nodeid} starts a training process ({'; '.join(refused)}), which `make test-fast` "
                           "(FTKIT_TEST_TIER=fast) forbids: mark it @pytest.mark.spawns (or slow if it takes long)")


def pytest_terminal_summary(terminalreporter):
    """Say which real file system each full-disk test filled (a skipped one says why it could not)."""
    ran = [f"{report.nodeid}: {value}" for reports in terminalreporter.stats.values() for report in reports
           if getattr(report, "when", None) == "call"
           for name, value in getattr(report, "user_properties", ()) if name == "small disk"]
    if ran:
        terminalreporter.write_sep("-", "full-disk tests ran on")
        for line in ran:
            terminalreporter.write_line(line)


def wait_for(condition, timeout: float = 120, poll: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError("condition not met in time")


@pytest.fixture
def shell(runs_dir, monkeypatch):
    """IPython with ftkit loaded and the text monitor; the names a test's cells define go afterwards."""
    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.setenv("FTKIT_MONITOR", "text")
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "ftkit")
    before = set(ip.user_ns)
    yield ip
    for name in set(ip.user_ns) - before:
        ip.user_ns.pop(name, None)
