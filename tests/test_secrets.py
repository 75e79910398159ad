"""Secrets never leave the machine: a token in a config is refused before a run exists (so no config.yaml,
server answer or card can hold it), a model card names no folder of this machine, a push uploads the model's
files alone, privately unless asked, and says what first; run folders and the index are their owner's."""

from __future__ import annotations

import stat
import sys
import types

import pytest

import ftkit
from ftkit.cli import main
from ftkit.config import Config, load_config
from ftkit.errors import ConfigError
from ftkit.exports import push_to_hub
from ftkit.runs import Run
from ftkit.runstore import RunStore
from ftkit.secrets import find_secret, mask

TOKEN = "hf_" + "aBcDeFgHiJkLmNoPqRsTuVwXyZ012345"


@pytest.mark.parametrize("config", [
    {"training": {"trainer_args": {"hub_token": TOKEN}}},
    {"training": {"trainer_args": {"hub_token": "not-even-token-shaped"}}},
    {"resources": {"slurm_options": {"api_key": "abc"}}},
    {"data": {"split_names": {"validation": f"https://x:{TOKEN}@example.com"}}},
    {"model": TOKEN},
])
def test_a_secret_in_a_config_is_refused_without_repeating_it(config):
    with pytest.raises(ConfigError, match="holds a secret") as refused:
        load_config(config)
    assert TOKEN not in str(refused.value) and "hf auth login" in str(refused.value)


def test_the_trainers_hub_arguments_are_ftkits_to_refuse():
    with pytest.raises(ConfigError, match="push_to_hub.*ftkit push RUN REPO"):
        load_config({"training": {"trainer_args": {"push_to_hub": True}}})


def test_ordinary_keys_that_mention_tokens_are_not_secrets():
    assert find_secret({"data": {"tokens_column": "words"}, "training": {"max_new_tokens": 64}}) is None
    assert find_secret({"trainer_args": {"push_to_hub_token": None}}) is None  # empty: nothing to keep
    assert mask(f"loaded with {TOKEN}.") == "loaded with ***."


def test_no_run_folder_is_written_for_a_config_with_a_token(runs_dir, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(f"task: ner\ndata:\n  train: t.conll\ntraining:\n  trainer_args:\n    hub_token: {TOKEN}\n")
    assert main(["train", str(config)]) == 2
    assert "holds a secret" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        ftkit.train({"task": "ner", "data": {"train": "t.conll"}}, training__trainer_args={"hub_token": TOKEN})
    assert not runs_dir.exists() or not RunStore(runs_dir).list_runs()[0]


def test_a_model_card_names_no_folder_of_this_machine(tmp_path):
    from ftkit.engine.card import model_card

    home = tmp_path / "home" / "alice"
    config = Config.from_dict({"task": "ner", "model": str(home / "models" / "minilm"),
                               "data": {"train": str(home / "data" / "train.conll"), "test": "~/data/test.conll"},
                               "output": {"dir": str(home / "runs")}})
    card = str(model_card(config, {"test": {"f1": 0.9}}, adapter_only=False))
    assert "alice" not in card and str(tmp_path) not in card and "~/" not in card
    assert "train.conll" in card and "minilm" in card


class FakeHub:
    """`huggingface_hub.HfApi` as a push meets it: what was created and what would be uploaded."""

    calls: list = []

    def create_repo(self, repo_id, private, exist_ok):
        FakeHub.calls.append(("create", repo_id, private))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, folder_path, repo_id, allow_patterns, commit_message):
        FakeHub.calls.append(("upload", sorted(allow_patterns)))


def test_a_push_uploads_the_model_files_alone_privately_and_says_so_first(runs_dir, monkeypatch):
    store = RunStore(runs_dir)
    run = Run(store.create_run(Config(name="pushed")), store)
    folder = run.dir / "checkpoint-4"
    folder.mkdir()
    for name in ("README.md", "config.json", "model.safetensors", "tokenizer.json", "optimizer.pt",
                 "training_args.bin", "trainer_state.json", "ftkit_checkpoint.json", "rng_state.pth"):
        (folder / name).write_text("x")
    store.append_event(run.id, {"type": "checkpoint", "step": 4, "checkpoint": "checkpoint-4", "metrics": {}})
    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(HfApi=FakeHub))
    FakeHub.calls = []
    heard = []
    push_to_hub(run, "me/model", announce=lambda where, files: heard.append((where, files, list(FakeHub.calls))))
    model_files = ["README.md", "config.json", "model.safetensors", "tokenizer.json"]
    assert heard == [(folder, model_files, [])]  # said before anything was created or uploaded
    assert FakeHub.calls == [("create", "me/model", True), ("upload", model_files)]
    FakeHub.calls = []
    push_to_hub(run, "me/model", private=False)
    assert FakeHub.calls[0] == ("create", "me/model", False)


def test_run_folders_and_the_index_are_their_owners_unless_the_store_is_shared(runs_dir, monkeypatch):
    store = RunStore(runs_dir)
    folder = store.run_dir(store.create_run(Config(name="mine")))
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.index_path.stat().st_mode) == 0o600
    monkeypatch.setenv("FTKIT_SHARED_STORE", "1")
    shared = RunStore(runs_dir.parent / "team")
    assert stat.S_IMODE(shared.run_dir(shared.create_run(Config(name="ours"))).stat().st_mode) == 0o750
    assert stat.S_IMODE(shared.index_path.stat().st_mode) == 0o640
