"""Which examples hurt: training dynamics recorded from the training passes, the data map and its
label-issue scores, and the cleaner child run (issue 26)."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

import ftkit
from ftkit.config import load_config
from ftkit.datamap import label_issue_report, measures, passes, read_records, read_relabels, read_rows
from ftkit.engine.dynamics import DynamicsRecorder, records_parquet
from ftkit.errors import ConfigError, DataError
from ftkit.runstore.layout import DYNAMICS_FILE
from ftkit.tasks import get_task
from ftkit.tasks.loading import corrected, run_splits
from tests.sft_fixtures import chat_records, default_causal_dir, smollm2_tokenizer, tiny_llama  # noqa: F401


def recorder(tmp_path, rows: int, **kwargs) -> DynamicsRecorder:
    return DynamicsRecorder(tmp_path, list(range(100, 100 + rows)), **kwargs)


# ----- recording from the training step ----------------------------------------------------------------------
def test_a_classification_batch_gives_each_example_its_gold_probability_and_whether_it_was_right(tmp_path):
    recording = recorder(tmp_path, 3)
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, -1.0]])
    recording.add_logits(torch.tensor([0, 2]), logits[[0, 2]], torch.tensor([0, 1]))
    first, second = recording.records
    assert recording.level == "example"
    assert (first["example"], second["example"]) == (100, 102)
    assert first["confidence"] == pytest.approx(torch.softmax(logits[0], -1)[0].item())
    assert second["confidence"] == pytest.approx(torch.softmax(logits[2], -1)[1].item())
    assert (first["correct"], second["correct"]) == (1.0, 0.0)
    assert list(second["predicted"]) == [0] and list(second["gold"]) == [1] and len(second["probs"][0]) == 2


def test_a_packed_row_is_split_at_each_example_start_and_ignored_positions_do_not_count(tmp_path):
    recording = recorder(tmp_path, 10)
    # two examples in one row: positions restart at 0; -100 marks the separator and special tokens
    position_ids = torch.tensor([[0, 1, 2, 0, 1]])
    labels = torch.tensor([[-100, 1, 1, -100, 0]])
    logits = torch.tensor([[[0.0, 0.0], [0.0, 5.0], [5.0, 0.0], [9.0, 9.0], [5.0, 0.0]]])
    recording.add_logits(torch.tensor([3, 7]), logits, labels, position_ids)
    first, second = recording.records
    assert recording.level == "token"
    assert (first["example"], list(first["gold"]), list(first["predicted"]), first["correct"]) == (103, [1, 1], [1, 0], 0.5)
    assert (second["example"], list(second["gold"]), second["correct"]) == (107, [0], 1.0)
    assert second["confidence"] == pytest.approx(torch.softmax(torch.tensor([5.0, 0.0]), -1)[0].item())


def rows_of(smollm2_tokenizer):
    from ftkit.tasks.sft_encoding import encode_conversation

    records = chat_records(3)
    records[1]["messages"][0]["content"] += " A much longer review, padded rows differ in length."
    return [encode_conversation(smollm2_tokenizer, r["messages"], "completion") for r in records]


@pytest.mark.parametrize("packed", [False, True])
def test_the_sparse_sft_loss_records_what_the_full_logits_record(tiny_llama, smollm2_tokenizer, tmp_path, packed):
    """A causal LM scores the token after each position: the trainer's sparse loss (logits of trained positions
    only) and the model's full logits give each example the same confidence."""
    from transformers import TrainingArguments

    from ftkit.engine.packing import packed_collator
    from ftkit.engine.trainer import FtkitTrainer
    from ftkit.tasks.sft_encoding import SFTCollator

    encoded = rows_of(smollm2_tokenizer)
    features = [{"input_ids": r.input_ids, "labels": r.labels} for r in encoded]
    batch = (packed_collator() if packed else SFTCollator(pad_token_id=smollm2_tokenizer.pad_token_id))(features)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    found = []
    for sparse in (True, False):
        trainer = FtkitTrainer(model=tiny_llama, args=args, sparse_lm_loss=sparse)
        trainer.dynamics = recorder(tmp_path, 3, next_token=True)
        trainer.compute_loss(tiny_llama, {**batch, "dynamics_row": torch.tensor([0, 1, 2])})
        found.append(trainer.dynamics.records)
    sparse_records, dense_records = found
    assert [r["example"] for r in sparse_records] == [100, 101, 102]
    for a, b, row in zip(sparse_records, dense_records, encoded):
        assert list(a["gold"]) == list(b["gold"]) == [t for t in row.labels if t != -100]
        assert a["confidence"] == pytest.approx(b["confidence"], rel=1e-4)
        assert 0 < a["confidence"] < 1 and a["probs"] is None


def test_a_resumed_run_keeps_the_records_of_the_steps_its_checkpoint_holds(tmp_path):
    records = [{"example": e, "offset": 0, "epoch": 0, "step": step, "confidence": 0.5, "correct": 1.0,
                "gold": [0], "predicted": [0], "probs": [[0.5, 0.5]]} for e, step in ((0, 1), (1, 2), (2, 3))]
    (tmp_path / DYNAMICS_FILE).write_bytes(records_parquet(records, "example"))
    resumed = recorder(tmp_path, 3)
    resumed.on_train_begin(None, SimpleNamespace(global_step=2, is_world_process_zero=True), None)
    assert [r["step"] for r in resumed.records] == [1, 2]
    resumed.add_logits(torch.tensor([2]), torch.tensor([[0.0, 1.0]]), torch.tensor([1]))
    resumed.write(SimpleNamespace(world_size=1))
    assert sorted(read_records(tmp_path)[0]["example"]) == [0, 1, 102]
    written = (tmp_path / DYNAMICS_FILE).stat().st_mtime_ns
    resumed.write(SimpleNamespace(world_size=1))  # the epoch's evaluation and checkpoint: nothing new to write
    assert (tmp_path / DYNAMICS_FILE).stat().st_mtime_ns == written


# ----- from records to the data map --------------------------------------------------------------------------------
def hand_made_records(mislabelled: int = 3, examples: int = 8, epochs: int = 3) -> pd.DataFrame:
    """Every example learnt quickly (gold probability rising to 0.95), except ``mislabelled``: the model
    keeps preferring the other class for it."""
    rows = []
    for epoch in range(epochs):
        for example in range(examples):
            gold = example % 2
            p_gold = 0.1 + 0.05 * epoch if example == mislabelled else 0.6 + 0.15 * epoch + 0.01 * example
            probs = [1 - p_gold, p_gold] if gold else [p_gold, 1 - p_gold]
            rows.append({"example": example, "offset": 0, "epoch": epoch, "step": epoch * 10, "confidence": p_gold,
                         "correct": float(p_gold > 0.5), "gold": [gold], "predicted": [int(np.argmax(probs))],
                         "probs": [probs]})
    return pd.DataFrame(rows)


def test_the_mislabelled_example_of_a_hand_made_set_scores_lowest_with_the_cartography_measures():
    frame = measures(passes(hand_made_records(mislabelled=3)), "example")
    assert frame["issue_score"].idxmin() == 3
    row = frame.loc[3]
    assert row["confidence"] == pytest.approx(0.15)
    assert row["variability"] == pytest.approx(np.std([0.1, 0.15, 0.2]))
    assert (row["correctness"], row["epochs"]) == (0.0, 3)
    assert (frame.loc[0, "confidence"], frame.loc[0, "correctness"]) == (pytest.approx(0.75), 1.0)


def test_the_windows_of_a_long_sentence_join_in_word_order_weighted_by_their_words():
    def window(offset, gold, confidence, correct):
        return {"example": 5, "offset": offset, "epoch": 0, "step": 1, "confidence": confidence, "correct": correct,
                "gold": gold, "predicted": gold, "probs": [[0.2, 0.8]] * len(gold)}

    joined = passes(pd.DataFrame([window(3, [1], 0.2, 0.0), window(0, [0, 0, 0], 0.6, 1.0)]))
    assert len(joined) == 1
    assert list(joined.loc[0, "gold"]) == [0, 0, 0, 1]
    assert joined.loc[0, "confidence"] == pytest.approx((3 * 0.6 + 0.2) / 4)
    assert joined.loc[0, "correct"] == pytest.approx(0.75)


def test_a_sentence_with_one_wrongly_typed_entity_scores_lowest_by_its_worst_word():
    rows = []
    for example in range(4):
        probs = [[0.9, 0.05, 0.05]] * 3 + ([[0.05, 0.9, 0.05]] if example != 2 else [[0.05, 0.9, 0.05]])
        gold = [0, 0, 0, 1 if example != 2 else 2]  # example 2 says type 2 where the model is sure of type 1
        rows.append({"example": example, "offset": 0, "epoch": 0, "step": 1, "confidence": 0.8, "correct": 0.75,
                     "gold": gold, "predicted": [0, 0, 0, 1], "probs": probs})
    frame = measures(passes(pd.DataFrame(rows)), "token")
    assert frame["issue_score"].idxmin() == 2


def test_an_answer_without_a_label_set_is_scored_by_its_confidence():
    records = hand_made_records(mislabelled=1)
    records["probs"] = None
    frame = measures(passes(records), "generated")
    assert list(frame["issue_score"]) == pytest.approx(list(frame["confidence"]))


# ----- corrections and what people pass ----------------------------------------------------------------------------
def test_a_config_takes_excluded_rows_and_corrected_labels_as_yaml_and_flags_write_them():
    config = load_config({"data": {"exclude": "3, 5", "relabel": {12: "negative"}}})
    assert config.data.exclude == [3, 5] and config.data.relabel == {"12": "negative"}
    with pytest.raises(ConfigError, match="data.exclude"):
        load_config({"data": {"exclude": ["three"]}})


def test_corrections_name_a_row_outside_the_split_and_a_tag_list_of_the_wrong_length():
    import datasets

    ner = datasets.Dataset.from_dict({"tokens": [["EU", "rejects"], ["Peter"]], "tags": [["B-ORG", "O"], ["B-PER"]]})
    fixed = corrected(ner, get_task("ner"), [1], {"0": ["B-MISC", "O"]})
    assert fixed["tags"] == [["B-MISC", "O"]]
    with pytest.raises(DataError, match="row 7.*rows 0 to 1"):
        corrected(ner, get_task("ner"), [7], {})
    with pytest.raises(DataError, match="list of 2 tags"):
        corrected(ner, get_task("ner"), [], {0: "B-PER"})


def test_rows_and_labels_are_read_from_files_and_a_bad_line_names_file_and_line(tmp_path):
    (tmp_path / "rows.txt").write_text("# likely label errors\n12\n3\n\n12\n")
    assert read_rows(tmp_path / "rows.txt") == [3, 12]
    pd.DataFrame({"example": [4, 1], "issue_score": [0.1, 0.2]}).to_csv(tmp_path / "map.csv", index=False)
    assert read_rows(tmp_path / "map.csv") == [1, 4]
    (tmp_path / "bad.txt").write_text("3\nseven\n")
    with pytest.raises(DataError, match=r"bad.txt:2: 'seven'"):
        read_rows(tmp_path / "bad.txt")
    (tmp_path / "labels.yaml").write_text("12: negative\n3: positive\n")
    assert read_relabels(tmp_path / "labels.yaml") == {"12": "negative", "3": "positive"}


# ----- a real run: recording, the data map, the widget and the child run ------------------------------------------------
WORDS = [(prefix, noun) for prefix in ("", "the ", "a ") for noun in ("movie", "film")]
GOOD = [f"{prefix}{adjective} {noun}" for prefix, noun in WORDS for adjective in ("good", "great")]
BAD = [f"{prefix}{adjective} {noun}" for prefix, noun in WORDS for adjective in ("bad", "terrible")]
MISLABELLED = "the good film"  # labelled negative
EPOCHS = 20


@pytest.fixture(scope="module")
def noisy_run(tmp_path_factory):
    from tests.conftest import build_tiny_model

    root = tmp_path_factory.mktemp("datamap")
    texts = [text for pair in zip(GOOD, BAD) for text in pair]
    labels = ["positive" if text in GOOD and text != MISLABELLED else "negative" for text in texts]
    train = root / "train.csv"
    pd.DataFrame({"text": texts, "label": labels}).to_csv(train, index=False)
    pd.DataFrame({"text": GOOD + BAD, "label": ["positive"] * 12 + ["negative"] * 12}).to_csv(root / "valid.csv", index=False)
    config = {"task": "classification", "model": str(build_tiny_model(root / "model")), "name": "noisy",
              "data": {"train": str(train), "validation": str(root / "valid.csv"), "test": str(root / "valid.csv")},
              "training": {"epochs": EPOCHS, "batch_size": 4, "learning_rate": 5e-3, "warmup": 0},
              "output": {"dir": str(root / "runs")}}
    run = ftkit.train(config).wait(300)
    assert run.status == "completed", run.log_tail()
    return SimpleNamespace(run=run, row=texts.index(MISLABELLED), train=train, size=len(texts), bytes=train.read_bytes())


@pytest.mark.spawns
def test_training_records_each_example_every_epoch_and_the_mislabelled_one_ranks_first(noisy_run):
    records, level = read_records(noisy_run.run.dir)
    assert level == "example"
    assert len(records) == noisy_run.size * EPOCHS and set(records["epoch"]) == set(range(EPOCHS))
    frame = noisy_run.run.data_map()
    assert list(frame["example"]) == list(range(noisy_run.size))
    worst = frame.sort_values("issue_score").iloc[0]
    assert (worst["example"], worst["text"], worst["gold"]) == (noisy_run.row, MISLABELLED, "negative")
    assert worst["predicted"] == "positive" and worst["correctness"] < 0.5
    report = label_issue_report(noisy_run.run.store, noisy_run.run.id, label="negative", limit=3)
    assert report["recorded"] and report["labels"] == ["negative", "positive"]
    assert report["rows"][0]["example"] == noisy_run.row and len(report["rows"]) == 3
    assert {row["gold"] for row in report["rows"]} == {"negative"}
    resources = noisy_run.run.store.read_record(noisy_run.run.id)["resources"]
    assert 0 < resources["dynamics_seconds"] < resources["train_runtime_seconds"]


@pytest.mark.spawns
def test_a_retrain_trains_on_the_parents_splits_copied_into_its_folder_less_the_excluded_rows(noisy_run):
    parent = noisy_run.run
    child = parent.retrain(exclude=[noisy_run.row], relabel={0: "negative"}, training__epochs=1).wait(300)
    assert child.status == "completed", child.log_tail()
    data = child.config.data
    assert (data.retrain_of, data.exclude, data.relabel) == (parent.id, [noisy_run.row], {"0": "negative"})
    assert data.train == str(child.dir / "data" / "train.parquet") and data.test == str(child.dir / "data" / "test.parquet")
    assert noisy_run.train.read_bytes() == noisy_run.bytes  # the user's file is never written
    splits = run_splits(child.config, "classification")
    given = pd.read_csv(noisy_run.train)
    assert splits["train"]["text"] == [text for i, text in enumerate(given["text"]) if i != noisy_run.row]
    assert splits["train"][0]["label"] == "negative" and given["label"][0] == "positive"
    table = ftkit.compare(parent, child)
    assert list(table.index) == [parent.id, child.id] and "data.retrain_of" in table.columns
    assert "test_accuracy" in table.columns


@pytest.mark.spawns
def test_the_datamap_widget_shows_the_likeliest_error_and_its_selection_reaches_retrain(noisy_run):
    from ftkit.notebook.widgets.datamap import DataMap

    widget = DataMap.for_run(noisy_run.run)
    document = json.dumps(widget.plot.render_bundle["docs_json"])
    assert all(tool in document for tool in ("LassoSelectTool", "TapTool", "HoverTool", '"@issue_score{0.000}"'))
    assert f"<td>{noisy_run.row}</td>" in widget.table.value.split("</tr>")[1]  # first row under the header
    widget.select(widget.likeliest(1 / noisy_run.size))
    assert widget.selected == [noisy_run.row] and MISLABELLED in widget.details.value
    assert widget.retrain_button.description == "Retrain without 1"
    child = widget.retrain(training__epochs=1)
    assert child.config.data.exclude == [noisy_run.row] and child.id in widget.status.value
    child.wait(300)


@pytest.mark.spawns
def test_the_magics_and_the_cli_retrain_without_the_likeliest_errors(noisy_run, tmp_path, monkeypatch):
    from ftkit.cli import main

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "ftkit")
    runs_dir = str(noisy_run.run.store.root)
    with capture_output() as shown:
        shell.run_line_magic("ftkit", f"datamap {noisy_run.run.id} --runs-dir {runs_dir} -o dm")
    assert shell.user_ns["dm"].selected == [] and shown.outputs
    with capture_output():
        shell.run_line_magic("ftkit", f"retrain {noisy_run.run.id} --runs-dir {runs_dir} --top {100 / noisy_run.size}% -o child")
    assert shell.user_ns["child"].config.data.exclude == [noisy_run.row]
    shell.user_ns["child"].stop()
    (tmp_path / "rows.txt").write_text(f"{noisy_run.row}\n0\n")
    monkeypatch.chdir(tmp_path)
    assert main(["--runs-dir", runs_dir, "train", "--from", noisy_run.run.id, "--exclude", "rows.txt",
                 "--set", "training.epochs=1", "--json"]) == 0
    child = ftkit.runs.get(f"{noisy_run.run.name}-retrain", runs_dir)
    assert child.config.data.exclude == [0, noisy_run.row]
    child.wait(300)


@pytest.mark.spawns
def test_a_run_with_record_dynamics_off_writes_none_and_its_data_map_is_empty(tiny_config):
    run = ftkit.train(tiny_config, training__record_dynamics=False, training__epochs=1).wait(300)
    assert run.status == "completed"
    assert not (run.dir / DYNAMICS_FILE).exists()
    assert run.data_map().empty and not label_issue_report(run.store, run.id)["recorded"]


def test_an_unknown_label_filter_is_refused_with_the_labels(runs_dir, tmp_path):
    from ftkit.config import Config
    from ftkit.runstore import RunStore

    store = RunStore()
    pd.DataFrame({"text": ["good", "bad"], "label": ["pos", "neg"]}).to_csv(tmp_path / "t.csv", index=False)
    run_id = store.create_run(Config.from_dict({"task": "classification", "data": {"train": str(tmp_path / "t.csv"),
                                                                                  "validation": str(tmp_path / "t.csv")}})
                              .with_absolute_paths())
    records = [{"example": e, "offset": 0, "epoch": 0, "step": 1, "confidence": 0.9, "correct": 1.0, "gold": [e],
                "predicted": [e], "probs": [[0.9, 0.1] if e == 0 else [0.1, 0.9]]} for e in (0, 1)]
    (store.run_dir(run_id) / DYNAMICS_FILE).write_bytes(records_parquet(records, "example"))
    with pytest.raises(ConfigError, match="no label 'maybe'.*neg, pos"):
        label_issue_report(store, run_id, label="maybe")
    assert math.isclose(label_issue_report(store, run_id)["rows"][0]["confidence"], 0.9, rel_tol=1e-6)
