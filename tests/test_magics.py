"""`%finetune`, `%%finetune` and `%ftkit`: flags map onto config keys, errors are one line, commands delegate."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import types

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

import ftkit
import ftkit.runs
from ftkit.config import Config, load_config, schema_fields
from ftkit.errors import DataError
from ftkit.notebook.magics import FtkitMagics, config_flags
from ftkit.runs import Run
from ftkit.runstore import RunStore


@pytest.fixture
def launched(monkeypatch):
    """Replace `ftkit.runs.start` with one that records the run but spawns no worker."""
    configs: list[Config] = []

    def start(config):
        configs.append(config)
        store = RunStore(config.runs_dir)
        return Run(store.create_run(config), store)

    monkeypatch.setattr(ftkit.runs, "start", start)
    return configs


def run_cell(ip, text):
    with capture_output() as captured:
        result = ip.run_cell(text)
    return result, captured


def dotted(config: Config, key: str):
    value = config.to_dict()
    for part in key.split("."):
        value = value[part]
    return value


@pytest.mark.parametrize("flags, key, expected", [
    ("--lr 5e-5", "training.learning_rate", 5e-5),
    ("--learning-rate 0.001", "training.learning_rate", 0.001),
    ("--lora-r 8", "adapter.r", 8),
    ("--adapter lora", "adapter.kind", "lora"),
    ("--epochs 2", "training.epochs", 2.0),
    ("--batch-size 16", "training.batch_size", 16),
    ("--batch-size auto", "training.batch_size", "auto"),
    ("--data train.txt", "data.train", "train.txt"),
    ("--name my-run", "name", "my-run"),
    ("--task classification", "task", "classification"),
    ("--model /models/bert", "model", "/models/bert"),
    ("--max-steps 30", "training.max_steps", 30),
    ("--no-group-by-length", "training.group_by_length", False),
    ("--lora-target-modules query,value", "adapter.target_modules", ["query", "value"]),
    ("--set training.seed=7", "training.seed", 7),
])
def test_finetune_flags_set_the_config_key_they_name(shell, flags, key, expected):
    result, _ = run_cell(shell, f"%finetune --dry-run -o cfg {flags}")
    assert result.success
    assert dotted(shell.user_ns["cfg"], key) == expected


def test_every_config_field_has_a_flag_documented_with_its_help_text(shell):
    help_text = FtkitMagics.finetune.__doc__
    for (key, _, field), options in zip(schema_fields(), config_flags().values()):
        assert options[0] in help_text
        assert f"[{key}]" in help_text
    assert "Fine-tune a model in a separate process" in help_text


def test_finetune_builds_the_same_config_as_load_config(shell):
    run_cell(shell, "%finetune --dry-run -o cfg --data /d/train.txt --task ner --adapter lora --lora-r 8 "
                    "--epochs 3 --lr 5e-5 --batch-size 32 --name quick")
    expected = load_config({"task": "ner", "name": "quick", "data": {"train": "/d/train.txt"},
                            "adapter": {"kind": "lora", "r": 8},
                            "training": {"epochs": 3, "learning_rate": 5e-5, "batch_size": 32}})
    assert shell.user_ns["cfg"].to_dict() == expected.to_dict()


def test_cell_magic_reads_a_yaml_body_and_first_line_flags_override_it(shell):
    result, _ = run_cell(shell, "%%finetune --dry-run -o cfg --epochs 1\n"
                                "task: classification\ndata:\n  train: /d/train.tsv\ntraining:\n  epochs: 5\n  seed: 3\n")
    assert result.success
    config = shell.user_ns["cfg"]
    assert (config.task, config.data.train, config.training.epochs, config.training.seed) == \
        ("classification", "/d/train.tsv", 1.0, 3)


def test_finetune_starts_from_a_config_file(shell, tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("task: ner\ntraining:\n  epochs: 4\n")
    run_cell(shell, f"%finetune --dry-run -o cfg --config {path} --lr 1e-4")
    assert (shell.user_ns["cfg"].training.epochs, shell.user_ns["cfg"].training.learning_rate) == (4.0, 1e-4)


@pytest.mark.parametrize("line, expected", [
    ("%finetune --lerning-rate 1", "Did you mean --learning-rate?"),
    ("%finetune --epochs -1", "'training.epochs' (--epochs) must be a positive number"),
    ("%finetune --task nr", "Did you mean 'ner'?"),
    ("%finetune --set training.epochs", "key.path=value"),
    ("%%finetune\ntask: [ner\n", "not valid YAML"),
    ("%ftkit rnus", "Did you mean 'runs'?"),
])
def test_mistakes_show_one_short_message_and_no_traceback(shell, launched, line, expected):
    result, captured = run_cell(shell, line)
    assert isinstance(result.error_in_exec, UsageError)
    assert expected in captured.stderr
    assert "Traceback" not in captured.stderr + captured.stdout
    assert len(captured.stderr.strip().splitlines()) <= 2  # the message (a YAML hint may wrap once)
    assert launched == []


def test_finetune_launches_a_run_shows_it_and_stores_the_handle(shell, launched):
    result, captured = run_cell(shell, "%finetune --data /d/train.txt --adapter lora --name magic-run -o run")
    assert result.success
    run = shell.user_ns["run"]
    assert isinstance(run, Run) and run.name == "magic-run"
    assert launched[0].adapter.kind == "lora"
    assert f"magic-run ({run.id}): queued" in captured.stdout  # the text monitor of a plain shell


def make_run(store: RunStore, name: str, status: str | None = None, task: str = "ner") -> Run:
    run_id = store.create_run(Config(name=name, task=task))
    if status:
        store.set_status(run_id, status, pid=os.getpid())
    return Run(run_id, store)


def test_ftkit_runs_shows_a_table_of_runs(shell):
    store = RunStore()
    make_run(store, "first")
    make_run(store, "second", "running")
    result, captured = run_cell(shell, "%ftkit runs -o rows")
    assert result.success
    assert [row["name"] for row in shell.user_ns["rows"]] == ["second", "first"]
    html = captured.outputs[0].data["text/html"]
    assert "first" in html and "second" in html and "running" in html


def test_ftkit_show_displays_the_run_by_name(shell):
    run = make_run(RunStore(), "shown")
    _, captured = run_cell(shell, "%ftkit show shown")
    assert f"shown ({run.id})" in captured.stdout


def test_ftkit_stop_asks_the_worker_to_stop(shell):
    run = make_run(RunStore(), "busy", "running")
    _, captured = run_cell(shell, f"%ftkit stop {run.id}")
    assert (run.dir / "STOP").exists()
    assert "Asked busy" in captured.stdout


def test_ftkit_resume_relaunches_a_stopped_run(shell, monkeypatch):
    spawned = []
    monkeypatch.setattr(ftkit.runs, "_spawn", lambda store, run_id, resume: spawned.append((run_id, resume)))
    store = RunStore()
    run = make_run(store, "paused", "running")
    store.append_event(run.id, {"type": "checkpoint", "step": 10, "path": str(run.dir / "checkpoint-10")})
    store.set_status(run.id, "stopped")
    result, _ = run_cell(shell, "%ftkit resume paused")
    assert result.success
    assert spawned == [(run.id, True)]
    assert run.status == "queued"


def test_ftkit_with_an_unknown_run_says_so(shell):
    result, captured = run_cell(shell, "%ftkit show nosuchrun")
    assert isinstance(result.error_in_exec, UsageError)
    assert "no run 'nosuchrun'" in captured.stderr


@pytest.fixture
def fake_module(monkeypatch):
    """Install a stand-in for another helper's module (ftkit.engine.inference, ftkit.embeddings)."""

    def install(name: str, **functions):
        module = types.ModuleType(f"ftkit.{name}")
        module.__dict__.update(functions)
        monkeypatch.setitem(sys.modules, f"ftkit.{name}", module)
        parent_name, _, leaf = f"ftkit.{name}".rpartition(".")
        monkeypatch.setattr(importlib.import_module(parent_name), leaf, module, raising=False)
        return module

    return install


class FakeStats:
    def _repr_html_(self):
        return "<table>STATS</table>"

    def to_dict(self):
        return {"splits": {"train": {"label_counts": {"PER": 2, "LOC": 1}}}}


def test_ftkit_data_shows_statistics_and_a_preview(shell, monkeypatch):
    calls = []
    monkeypatch.setattr(ftkit, "load_data",
                        lambda path, task="ner": calls.append(("load", path, task)) or {"train": ["rows"]})
    monkeypatch.setattr(ftkit, "data_stats", lambda dataset, task: FakeStats())
    monkeypatch.setattr(ftkit, "data_preview", lambda dataset, n=5, task="ner": f"<p>PREVIEW {n} {task}</p>")
    result, captured = run_cell(shell, "%ftkit data /d/train.tsv -n 3")
    assert result.success
    assert calls == [("load", "/d/train.tsv", "classification")]  # guessed from the suffix
    html = " ".join(output.data.get("text/html", "") for output in captured.outputs)
    assert "STATS" in html and "PREVIEW 3 classification" in html


def test_ftkit_data_error_names_file_and_line(shell, monkeypatch):
    def read(path, task="ner"):
        raise DataError("tag 'X-PER' is not IOB", path=path, line=7)

    monkeypatch.setattr(ftkit, "load_data", read)
    monkeypatch.setattr(ftkit, "data_stats", read)
    result, captured = run_cell(shell, "%ftkit data /d/bad.conll")
    assert isinstance(result.error_in_exec, UsageError)
    assert "/d/bad.conll:7: tag 'X-PER' is not IOB" in captured.stderr
    assert "Traceback" not in captured.stderr


def test_ftkit_predict_highlights_entities_inline(shell, monkeypatch):
    make_run(RunStore(), "tagger")
    entities = [{"text": "John", "label": "PER", "start": 0, "end": 4, "score": 0.98}]
    monkeypatch.setattr(Run, "predict", lambda self, texts: [entities for _ in texts])
    result, captured = run_cell(shell, '%ftkit predict tagger "John <lives> in Paris" -o result')
    assert result.success
    assert shell.user_ns["result"] == entities
    page = captured.outputs[0].data["text/html"]
    assert "<mark" in page and "John<sub" in page and "&lt;lives&gt; in Paris" in page
    assert captured.outputs[0].data["text/plain"] == "PER: John (0.98)"


def test_ftkit_predict_shows_the_label_for_classification(shell, monkeypatch):
    make_run(RunStore(), "sentiment", task="classification")
    monkeypatch.setattr(Run, "predict", lambda self, texts: [{"label": "1", "scores": {"0": 0.1, "1": 0.9}}])
    _, captured = run_cell(shell, "%ftkit predict sentiment a great movie")
    assert "<b>1</b>" in captured.outputs[0].data["text/html"]
    assert "a great movie" in captured.outputs[0].data["text/html"]


class FakeGenerator:
    """Streams a fixed answer that ends on its end-of-turn token, or (``stopped=False``) is cut by the limit."""

    def __init__(self, asked: list, stopped: bool = True):
        self.asked, self.stopped = asked, stopped

    def stream(self, prompt, max_new_tokens, temperature):
        from ftkit.engine.generation import AnswerStream, Generation

        self.asked.append((prompt, max_new_tokens, temperature))
        answer = AnswerStream(iter(["Posi", "tive", " <b>!</b>"]))
        answer.generation = Generation("Positive <b>!</b>", [], self.stopped)
        return answer


def test_ftkit_chat_streams_an_sft_runs_answer_into_the_output_as_it_comes(shell, monkeypatch):
    make_run(RunStore(), "chatty", task="sft")
    asked = []
    monkeypatch.setattr(Run, "generator", lambda self, checkpoint=None: FakeGenerator(asked))
    result, captured = run_cell(shell, '%ftkit chat chatty "Is this good?" --max-new-tokens 8 -o answer')
    assert result.success and shell.user_ns.pop("answer") == "Positive <b>!</b>"
    assert asked == [("Is this good?", 8, 0.0)]
    pages = [output.data["text/html"] for output in captured.outputs]
    assert len(pages) == 5  # shown empty, one update per piece, then without the cursor
    assert "Posi▌" in pages[1] and pages[-1].endswith("Positive &lt;b&gt;!&lt;/b&gt;</div></div>")
    assert captured.outputs[-1].data["text/plain"] == "chatty: Positive <b>!</b>"
    assert not run_cell(shell, "%ftkit chat chatty")[0].success  # a run and a message are needed


def test_ftkit_chat_marks_an_answer_the_token_limit_cut(shell, monkeypatch):
    make_run(RunStore(), "chatty", task="sft")
    monkeypatch.setattr(Run, "generator", lambda self, checkpoint=None: FakeGenerator([], stopped=False))
    result, captured = run_cell(shell, '%ftkit chat chatty "Is this good?" --max-new-tokens 8 -o answer')
    assert result.success and shell.user_ns.pop("answer") == "Positive <b>!</b>"  # the answer itself, unmarked
    assert captured.outputs[-1].data["text/plain"] == "chatty: Positive <b>!</b> … (cut at 8 tokens)"
    assert captured.outputs[-1].data["text/html"].endswith("!&lt;/b&gt; … (cut at 8 tokens)</div></div>")


def test_ftkit_predict_shows_the_answer_of_an_sft_run(shell, monkeypatch):
    make_run(RunStore(), "answers", task="sft")
    monkeypatch.setattr(Run, "predict", lambda self, texts: ["positive"])
    _, captured = run_cell(shell, "%ftkit predict answers a great movie")
    assert "<b>assistant</b>: positive" in captured.outputs[0].data["text/html"]


def test_ftkit_neighbors_and_moved_delegate_to_the_embedding_explorer(shell, fake_module):
    run = make_run(RunStore(), "tuned")
    calls = []
    fake_module("embeddings",
                show_neighbors=lambda word, run=None, k=10, space="static": calls.append(("neighbors", word, run and run.id, k, space)),
                show_moved=lambda run, k=20: calls.append(("moved", run.id, k)))
    assert run_cell(shell, "%ftkit neighbors paris --run tuned --k 5")[0].success
    assert run_cell(shell, "%ftkit neighbors paris")[0].success
    assert run_cell(shell, "%ftkit moved --run tuned")[0].success
    assert calls == [("neighbors", "paris", run.id, 5, "static"), ("neighbors", "paris", None, 10, "static"),
                     ("moved", run.id, 20)]


def test_ftkit_help_lists_every_command(shell):
    help_text = FtkitMagics.ftkit.__doc__
    for command in ("runs", "show", "stop", "resume", "data", "predict", "neighbors", "moved"):
        assert f"%ftkit {command}" in help_text


def test_loading_the_extension_imports_no_training_or_plotting_library():
    code = ("from IPython.core.interactiveshell import InteractiveShell\n"
            "InteractiveShell.instance().run_line_magic('load_ext', 'ftkit')\n"
            "import sys\n"
            "print(sorted(m for m in ('torch', 'transformers', 'datasets', 'bokeh', 'ipywidgets') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "[]", result.stderr


def test_ftkit_commands_reach_a_run_launched_into_its_own_store_without_the_environment(
        shell, tmp_path, monkeypatch, tiny_model_dir):
    """`%finetune --runs-dir X` then `%ftkit show/stop/resume/predict`: the run's own store, no FTKIT_RUNS_DIR."""
    from transformers import AutoTokenizer, BertForTokenClassification

    monkeypatch.delenv("FTKIT_RUNS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # and no ./ftkit-runs: the default store does not exist
    monkeypatch.setattr(ftkit.runs, "_KNOWN_STORES", {})
    spawned = []
    monkeypatch.setattr(ftkit.runs, "_spawn", lambda store, run_id, resume: spawned.append((store.root, run_id, resume)))
    other = tmp_path / "other-store"
    result, _ = run_cell(shell, f"%finetune --runs-dir {other} --name elsewhere --model {tiny_model_dir} -o run")
    assert result.success, result.error_in_exec
    run = shell.user_ns["run"]
    assert run.store.root == other and spawned == [(other, run.id, False)]

    _, shown = run_cell(shell, f"%ftkit show {run.id}")  # by id: found in the store this kernel launched into
    assert f"elsewhere ({run.id})" in shown.stdout
    run.store.set_status(run.id, "running", pid=os.getpid())
    result, _ = run_cell(shell, "%ftkit stop elsewhere")  # by name
    assert result.success and (other / run.id / "STOP").exists()

    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    model = BertForTokenClassification.from_pretrained(tiny_model_dir, num_labels=len(labels),
                                                       id2label=dict(enumerate(labels)))
    model.save_pretrained(run.dir / "checkpoint-4")
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(run.dir / "checkpoint-4")
    run.store.append_event(run.id, {"type": "checkpoint", "step": 4, "checkpoint": "checkpoint-4"})
    run.store.set_status(run.id, "stopped")
    result, _ = run_cell(shell, '%ftkit predict run "John lives in Paris" -o result')  # a Run variable
    assert result.success, result.error_in_exec
    assert isinstance(shell.user_ns["result"], list)

    monkeypatch.setattr(ftkit.runs, "_KNOWN_STORES", {})  # as after a kernel restart
    missing, captured = run_cell(shell, f"%ftkit resume {run.id}")
    assert isinstance(missing.error_in_exec, UsageError) and "no run" in captured.stderr
    result, _ = run_cell(shell, f"%ftkit resume {run.id} --runs-dir {other}")
    assert result.success, result.error_in_exec
    assert spawned[-1] == (other, run.id, True) and run.status == "queued"
    assert not (tmp_path / "ftkit-runs").exists()
