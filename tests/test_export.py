"""`ftkit export`: a checkpoint written as GGUF (tiny llama) or ONNX (tiny BERT), read back by an independent
reader (transformers' GGUF loader, ONNX Runtime) and verified against the fine-tuned model; a corrupted export
fails verification, and push refuses it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from ftkit.config import load_config
from ftkit.engine.export import MODELFILE, export_checkpoint
from ftkit.engine.gguf_export import OLLAMA_CHATML_TEMPLATE, default_system_prompt, write_gguf
from ftkit.errors import FtkitError
from ftkit.exports import check_publishable, find_export
from ftkit.runs import Run
from ftkit.runstore import RunStore
from tests.conftest import write_conll
from tests.sft_fixtures import (chat_records, default_causal_dir, smollm2_tokenizer, tiny_llama,  # noqa: F401
                                tiny_llama_dir, write_chat_jsonl)

pytestmark = pytest.mark.slow


def _run_with_checkpoint(store: RunStore, config: dict, save) -> Run:
    """A finished-looking run whose checkpoint-3 is what ``save(folder)`` writes."""
    run_id = store.create_run(load_config(config))
    folder = store.run_dir(run_id) / "checkpoint-3"
    save(folder)
    store.append_event(run_id, {"type": "checkpoint", "step": 3, "checkpoint": folder.name, "size": 1,
                                "adapter_only": False, "metrics": {}})
    return Run(run_id, store)


@pytest.fixture
def sft_run(runs_dir, tmp_path, tiny_llama_dir) -> Run:
    """An sft run of the tiny llama, its weights scaled up tenfold: a random model at its initial scale answers
    every prompt with the same newlines (agreement would be trivial); scaled, each prompt gets its own answer,
    decided by margins that float16 rounding does not flip."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def save(folder: Path) -> None:
        model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
        with torch.no_grad():
            for name, weights in model.named_parameters():
                if "norm" not in name:
                    weights.mul_(10)
        model.save_pretrained(folder)
        AutoTokenizer.from_pretrained(tiny_llama_dir).save_pretrained(folder)

    data = {"train": str(write_chat_jsonl(tmp_path / "train.jsonl", chat_records(8))),
            "test": str(write_chat_jsonl(tmp_path / "test.jsonl", chat_records(12, offset=8)))}
    return _run_with_checkpoint(RunStore(), {"task": "sft", "model": str(tiny_llama_dir), "data": data,
                                             "training": {"max_new_tokens": 6}}, save)


def _encoder_run(runs_dir, tmp_path, tiny_model_dir, task: str) -> Run:
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

    if task == "ner":
        labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
        data = {"train": str(write_conll(tmp_path / "train.txt", 8, 1)), "test": str(write_conll(tmp_path / "test.txt", 20, 3))}
        head = AutoModelForTokenClassification
    else:
        labels = ["negative", "positive"]
        rows = [f"{'good' if i % 2 else 'bad'} film number {i}\t{labels[i % 2]}" for i in range(20)]
        (tmp_path / "train.tsv").write_text("text\tlabel\n" + "\n".join(rows[:8]) + "\n")
        (tmp_path / "test.tsv").write_text("text\tlabel\n" + "\n".join(rows) + "\n")
        data = {"train": str(tmp_path / "train.tsv"), "test": str(tmp_path / "test.tsv")}
        head = AutoModelForSequenceClassification

    def save(folder: Path) -> None:
        torch.manual_seed(1)
        head.from_pretrained(tiny_model_dir, num_labels=len(labels), id2label=dict(enumerate(labels)),
                             label2id={label: i for i, label in enumerate(labels)}).save_pretrained(folder)
        AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)

    return _run_with_checkpoint(RunStore(), {"task": task, "model": str(tiny_model_dir), "data": data}, save)


def test_a_tiny_llama_exports_to_gguf_that_answers_as_the_model_did(sft_run):
    record = export_checkpoint(sft_run.store, sft_run.id, quant="f16", ollama=True)
    folder = Path(record["path"]).parent
    assert folder == sft_run.dir / "exports" / "checkpoint-3-gguf-f16"
    check = record["verification"]
    assert check["passed"] and check["agreement"] == 1.0 and check["examples"] == 12 and check["split"] == "test"
    assert check["model"]["exact_match"] == check["export"]["exact_match"]
    assert len(set(json.dumps(a) for a in _answers(sft_run, 4))) > 1  # answers differ per prompt: agreement means something
    assert sorted(p.name for p in folder.iterdir()) == sorted([record["file"], "export.json", "README.md", MODELFILE])
    assert json.loads((folder / "export.json").read_text()) == record
    assert "passed" in (folder / "README.md").read_text() and "ollama create" in (folder / "README.md").read_text()
    assert not list(folder.parent.glob(".ftkit-export-*"))  # the staging folder is gone
    exports = sft_run.store.get(sft_run.id)["checkpoints"][0]["exports"]
    assert [(e["state"], e["verification"]["agreement"]) for e in exports] == [("completed", 1.0)]


def _answers(run: Run, n: int) -> list[str]:
    return [run.predict(m[0]["content"]) for m in (r["messages"] for r in chat_records(n, offset=8))]


def test_the_gguf_file_carries_the_tokenizer_special_tokens_and_chat_template(sft_run, smollm2_tokenizer):
    from transformers import AutoTokenizer

    record = export_checkpoint(sft_run.store, sft_run.id, examples=2)
    read_back = AutoTokenizer.from_pretrained(Path(record["path"]).parent, gguf_file=record["file"])
    conversation = [{"role": "user", "content": "Is the film good?"}]
    assert read_back.chat_template == smollm2_tokenizer.chat_template
    assert read_back.apply_chat_template(conversation, add_generation_prompt=True) == \
        smollm2_tokenizer.apply_chat_template(conversation, add_generation_prompt=True)
    assert (read_back.eos_token, read_back.pad_token) == (smollm2_tokenizer.eos_token, smollm2_tokenizer.pad_token)


def test_a_gguf_tensor_changed_after_writing_fails_verification_and_push_refuses_it(sft_run, tmp_path, monkeypatch):
    """The fault: the output head's weights (the tied embedding table) scrambled in the written file."""
    import gguf

    import ftkit.engine.gguf_export as gguf_export

    def corrupting(folder, out, *args, **kwargs):
        path = write_gguf(folder, out, *args, **kwargs)
        reader = gguf.GGUFReader(path, "r+")
        table = next(t for t in reader.tensors if t.name == "token_embd.weight")
        table.data[:] = np.random.default_rng(0).permutation(np.asarray(table.data).reshape(-1)).reshape(table.data.shape)
        reader.data.flush()
        return path

    monkeypatch.setattr(gguf_export, "write_gguf", corrupting)
    record = export_checkpoint(sft_run.store, sft_run.id)
    assert not record["verification"]["passed"] and record["verification"]["agreement"] < 0.5
    assert record["verification"]["disagreements"]
    assert Path(record["path"]).is_file()  # kept, marked
    folder, found = find_export(sft_run, "checkpoint-3-gguf-f16")
    assert found == record and "FAILED" in (folder / "README.md").read_text()
    with pytest.raises(FtkitError, match="failed verification.*--allow-unverified"):
        check_publishable(found)
    check_publishable(found, allow_unverified=True)


@pytest.mark.parametrize("task", ["ner", "classification"])
def test_a_tiny_bert_exports_to_onnx_that_onnxruntime_runs_with_the_same_labels(runs_dir, tmp_path, tiny_model_dir, task,
                                                                              monkeypatch, capsys):
    run = _encoder_run(runs_dir, tmp_path, tiny_model_dir, task)
    record = export_checkpoint(run.store, run.id)
    folder = Path(record["path"]).parent
    check = record["verification"]
    assert check["passed"] and check["agreement"] == 1.0 and check["examples"] == 20
    assert check["max_logit_difference"] < 1e-4
    assert {"model.onnx", "config.json", "tokenizer.json", "export.json", "README.md"} <= {p.name for p in folder.iterdir()}
    import onnxruntime
    from transformers import AutoTokenizer

    # What the card tells a user: onnxruntime and the tokenizer alone, any batch size and length.
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    for texts in (["john lives in paris"], ["a", "the movie was good and said on thursday it was great"]):
        encoded = tokenizer(texts, padding=True, return_tensors="np")
        logits = session.run(["logits"], {i.name: encoded[i.name] for i in session.get_inputs()})[0]
        assert logits.shape[:1] == (len(texts),)
    snippet = re.search(r"```python\n(.*?)```", (folder / "README.md").read_text(), re.S).group(1)
    monkeypatch.chdir(folder)  # the card's code, exactly as written, run in the export's folder
    exec(compile(snippet, "README.md", "exec"), {})
    printed = set(re.findall(r"[\w-]+", capsys.readouterr().out))
    assert printed & set(json.loads((folder / "config.json").read_text())["id2label"].values())


def test_an_onnx_initializer_changed_after_writing_fails_verification(runs_dir, tmp_path, tiny_model_dir, monkeypatch):
    import onnx

    import ftkit.engine.onnx_export as onnx_export

    original = onnx_export.write_onnx

    def corrupting(model, tokenizer, out_dir):
        path = original(model, tokenizer, out_dir)
        graph = onnx.load(path)
        head = max(graph.graph.initializer, key=lambda t: ("classifier" in t.name, len(t.dims) == 2))
        weights = onnx.numpy_helper.to_array(head)
        head.CopyFrom(onnx.numpy_helper.from_array(-weights, head.name))
        onnx.save(graph, path)
        return path

    monkeypatch.setattr(onnx_export, "write_onnx", corrupting)
    run = _encoder_run(runs_dir, tmp_path, tiny_model_dir, "classification")
    check = export_checkpoint(run.store, run.id)["verification"]
    assert not check["passed"] and check["max_logit_difference"] > 1e-3


def test_the_ollama_template_renders_conversations_as_the_chat_template_does(smollm2_tokenizer):
    """Ollama's Go template, rendered here for ChatML's constructs (range over messages, fields), with the
    Modelfile's SYSTEM put first as Ollama does, equals transformers' rendering of the same conversation."""
    system = default_system_prompt(smollm2_tokenizer)
    for conversation in ([{"role": "user", "content": "Hi"}],
                         [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                          {"role": "user", "content": "Is this review positive?"}],
                         [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "Hi"}]):
        messages = conversation if conversation[0]["role"] == "system" else [{"role": "system", "content": system}, *conversation]
        body = re.search(r"\{\{- range \.Messages \}\}(.*)\{\{ end \}\}(.*)", OLLAMA_CHATML_TEMPLATE, re.S)
        rendered = "".join(body.group(1).replace("{{ .Role }}", m["role"]).replace("{{ .Content }}", m["content"])
                           for m in messages) + body.group(2)
        assert rendered == smollm2_tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)


def test_an_unsupported_architecture_is_named_with_the_supported_ones(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(FtkitError, match="does not support GPT2LMHeadModel; it supports LlamaForCausalLM, Qwen2ForCausalLM"):
        write_gguf(tmp_path, tmp_path / "out.gguf")


def test_bad_requests_are_refused_before_any_work(sft_run, tmp_path):
    with pytest.raises(FtkitError, match="exports to gguf, not onnx"):
        export_checkpoint(sft_run.store, sft_run.id, format="onnx")
    with pytest.raises(FtkitError, match="--quant must be one of f16, q8_0, q4_0"):
        export_checkpoint(sft_run.store, sft_run.id, quant="q2_k")
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "README.md").write_text("my notes")
    with pytest.raises(FtkitError, match="already holds README.md that ftkit did not export"):
        export_checkpoint(sft_run.store, sft_run.id, output=theirs / "model.gguf")
    assert (theirs / "README.md").read_text() == "my notes" and sorted(p.name for p in theirs.iterdir()) == ["README.md"]
    with pytest.raises(FtkitError, match="no checkpoint"):
        export_checkpoint(sft_run.store, sft_run.id, checkpoint="99", export_id="abcd1234")
    failed = sft_run.store.exports(sft_run.id)  # the panel's export (named by id) ends in a failed event
    assert [(e["id"], e["state"]) for e in failed] == [("abcd1234", "failed")]


def test_a_stopped_export_removes_its_partial_files_and_records_stopped(sft_run, monkeypatch):
    import os
    import signal

    import ftkit.engine.gguf_export as gguf_export

    original = gguf_export.write_gguf

    def interrupted(folder, out, *args, **kwargs):
        original(folder, out, *args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)  # the panel's Stop: SIGTERM to the export job, mid-write

    monkeypatch.setattr(gguf_export, "write_gguf", interrupted)
    with pytest.raises(FtkitError, match="stopped"):
        export_checkpoint(sft_run.store, sft_run.id)
    assert not (sft_run.dir / "exports").exists() or not any((sft_run.dir / "exports").rglob("*.gguf"))
    assert [e["state"] for e in sft_run.store.exports(sft_run.id)] == ["stopped"]


@pytest.mark.spawns
def test_the_cli_exports_in_a_worker_and_push_takes_the_verified_export(runs_dir, tmp_path, tiny_model_dir, capsys):
    from ftkit.cli import main

    run = _encoder_run(runs_dir, tmp_path, tiny_model_dir, "classification")
    assert main(["export", run.id, "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["verification"]["passed"] and Path(record["path"]).is_file()
    # Past the verification check it goes to the hub, which is offline here: the message says where the files are.
    assert main(["push", run.id, "me/tiny", "--export", "checkpoint-3-onnx"]) == 2
    assert "offline" in capsys.readouterr().err


@pytest.mark.spawns
def test_percent_ftkit_export_prints_where_the_export_went_and_how_it_verified(shell, runs_dir, tmp_path,
                                                                              tiny_model_dir, capsys):
    run = _encoder_run(runs_dir, tmp_path, tiny_model_dir, "ner")
    shell.run_line_magic("ftkit", f"export {run.id} -o record")
    out = capsys.readouterr().out
    assert "ONNX export of checkpoint-3" in out and "verified: 100.0% agreement" in out
    assert shell.user_ns["record"]["verification"]["passed"]
