"""Where a model goes wrong: entity decisions, confusion matrices, worst-first examples, read from the
predictions file; classification's probabilities saved by a real tiny training run."""

from __future__ import annotations

import json

import pytest

from ftkit.config import Config, load_config
from ftkit.errors import ConfigError, RunError
from ftkit.runs import Run, error_report, read_predictions
from ftkit.runstore import RunStore
from ftkit.tasks import get_task
from ftkit.tasks.scoring import span_decisions

NER, CLASSIFICATION, SFT = get_task("ner"), get_task("classification"), get_task("sft")


def decisions(gold, predicted):
    return [(d["kind"], d["type"], d["gold"], d["predicted"]) for d in span_decisions(gold, predicted)]


# ----- NER: one span decision per kind --------------------------------------------------------------


def test_same_boundaries_and_type_is_correct():
    assert decisions([(0, 2, "PER")], [(0, 2, "PER")]) == [("correct", "PER", [0, 2, "PER"], [0, 2, "PER"])]


def test_same_boundaries_and_another_type_is_a_wrong_type_under_the_gold_type():
    assert decisions([(3, 4, "LOC")], [(3, 4, "ORG")]) == [("wrong_type", "LOC", [3, 4, "LOC"], [3, 4, "ORG"])]


def test_overlapping_spans_with_other_boundaries_are_a_wrong_boundary():
    assert decisions([(0, 2, "PER")], [(0, 1, "PER")]) == [("wrong_boundary", "PER", [0, 2, "PER"], [0, 1, "PER"])]


def test_a_wrong_boundary_with_another_type_too_stays_a_wrong_boundary_and_keeps_both_types():
    assert decisions([(4, 6, "LOC")], [(3, 6, "ORG")]) == [("wrong_boundary", "LOC", [4, 6, "LOC"], [3, 6, "ORG"])]


def test_a_gold_span_no_prediction_overlaps_is_missed():
    assert decisions([(1, 2, "MISC")], [(3, 4, "MISC")]) == [
        ("missed", "MISC", [1, 2, "MISC"], None), ("spurious", "MISC", None, [3, 4, "MISC"])]


def test_a_prediction_that_overlaps_no_gold_is_spurious_under_its_own_type():
    assert decisions([], [(0, 1, "PER")]) == [("spurious", "PER", None, [0, 1, "PER"])]


def test_a_gold_span_split_into_two_predictions_is_two_wrong_boundaries_and_nothing_spurious():
    assert decisions([(0, 3, "PER")], [(0, 1, "PER"), (2, 3, "PER")]) == [
        ("wrong_boundary", "PER", [0, 3, "PER"], [0, 1, "PER"]), ("wrong_boundary", "PER", [0, 3, "PER"], [2, 3, "PER"])]


def test_a_prediction_over_two_gold_spans_pairs_with_each_and_misses_neither():
    assert decisions([(0, 1, "PER"), (2, 3, "LOC")], [(0, 3, "PER")]) == [
        ("wrong_boundary", "PER", [0, 1, "PER"], [0, 3, "PER"]), ("wrong_boundary", "LOC", [2, 3, "LOC"], [0, 3, "PER"])]


# ----- NER: the report ----------------------------------------------------------------------------

SENTENCES = [  # gold IOB2; predictions with I- after O, as an argmax may give them
    ("John Smith lives in New York", "B-PER I-PER O O B-LOC I-LOC", "B-PER I-PER O O B-LOC I-LOC"),  # all correct
    ("Mary met Anna in Paris", "B-PER O B-PER O B-LOC", "B-PER O B-LOC O O"),  # correct, wrong type, missed
    ("the EU said it", "O B-ORG O O", "B-ORG I-ORG O B-MISC"),  # wrong boundary, spurious
    ("Peter Blackburn spoke", "B-PER I-PER O", "O I-PER O"),  # I- after O starts an entity: wrong boundary
    ("no entities here", "O O O", "O O O"),
]


def ner_rows(sentences=SENTENCES):
    return [{"id": i, "tokens": text.split(), "tags": tags.split(), "predicted": predicted.split()}
            for i, (text, tags, predicted) in enumerate(sentences)]


def test_correct_per_type_is_seqevals_true_positives_so_precision_recall_and_f1_are_seqevals():
    from seqeval.metrics import classification_report

    rows = ner_rows()
    report = NER.error_report(rows)
    table = {row[0]: dict(zip(report["table"]["columns"], row)) for row in report["table"]["rows"]}
    expected = classification_report([r["tags"] for r in rows], [r["predicted"] for r in rows], output_dict=True,
                                      zero_division=0)
    assert set(table) == {"PER", "LOC", "ORG", "MISC"}
    for kind, scores in table.items():
        assert scores["correct"] == round(expected[kind]["recall"] * expected[kind]["support"])
        assert scores["precision"] == pytest.approx(expected[kind]["precision"])
        assert scores["recall"] == pytest.approx(expected[kind]["recall"])
        assert scores["f1"] == pytest.approx(expected[kind]["f1-score"])


def test_per_type_counts_add_up_to_the_gold_entities_when_overlaps_pair_one_to_one():
    report = NER.error_report(ner_rows())
    columns = report["table"]["columns"]
    table = {row[0]: dict(zip(columns, row)) for row in report["table"]["rows"]}
    assert table["PER"] == {**table["PER"], "correct": 2, "wrong type": 1, "wrong boundary": 1, "missed": 0}
    assert table["LOC"] == {**table["LOC"], "correct": 1, "wrong type": 0, "missed": 1}
    assert table["MISC"]["spurious"] == 1 and table["ORG"]["wrong boundary"] == 1
    gold = {"PER": 4, "LOC": 2, "ORG": 1, "MISC": 0}
    for kind, scores in table.items():
        assert sum(scores[c] for c in ("correct", "wrong type", "wrong boundary", "missed")) == gold[kind]
    assert report["summary"] == {"examples": 5, "entities": 7, "predicted": 7, "correct": 3, "wrong_type": 1,
                                 "wrong_boundary": 2, "missed": 1, "spurious": 1}


def test_the_type_confusion_matrix_has_gold_rows_predicted_columns_and_o_for_missed_and_spurious():
    confusion = NER.error_report(ner_rows())["confusion"]
    assert confusion["labels"] == ["LOC", "MISC", "ORG", "PER", "O"]
    cell = {(g, p): confusion["matrix"][i][j] for i, g in enumerate(confusion["labels"])
            for j, p in enumerate(confusion["labels"])}
    assert cell["PER", "PER"] == 3  # two correct, one wrong boundary of the same type
    assert cell["PER", "LOC"] == 1  # Anna (wrong type)
    assert cell["LOC", "O"] == 1  # Paris, missed
    assert cell["O", "MISC"] == 1  # "it", spurious
    assert sum(map(sum, confusion["matrix"])) == 8


def test_examples_come_worst_first_with_word_spans_and_at_most_limit():
    report = NER.error_report(ner_rows(), limit=3)
    assert [e["id"] for e in report["examples"]] == [1, 2, 3]  # two errors, two errors, one error
    mary = report["examples"][0]
    assert mary["gold"] == [[0, 1, "PER"], [2, 3, "PER"], [4, 5, "LOC"]]
    assert mary["predicted"] == [[0, 1, "PER"], [2, 3, "LOC"]]
    assert [e["kind"] for e in mary["errors"]] == ["correct", "wrong_type", "missed"]
    assert len(NER.error_report(ner_rows(), limit=None)["examples"]) == 5


def test_iob1_and_bioes_tags_give_the_same_spans_as_iob2():
    iob2 = NER.error_report(ner_rows([("a b c d", "B-PER I-PER O B-LOC", "B-PER O O B-LOC")]))["examples"][0]
    for tags, predicted in (("I-PER I-PER O I-LOC", "I-PER O O I-LOC"), ("B-PER E-PER O S-LOC", "S-PER O O S-LOC")):
        other = NER.error_report(ner_rows([("a b c d", tags, predicted)]))["examples"][0]
        assert (other["gold"], other["predicted"], other["errors"]) == (iob2["gold"], iob2["predicted"], iob2["errors"])


# ----- classification -------------------------------------------------------------------------------

CLASSIFIED = [  # (gold, predicted, probability of positive)
    ("positive", "positive", 0.9), ("positive", "negative", 0.4), ("negative", "negative", 0.2),
    ("negative", "positive", 0.95), ("neutral", "negative", 0.1), ("positive", "negative", 0.45),
]


def classification_rows(with_scores=True):
    rows = []
    for i, (gold, predicted, positive) in enumerate(CLASSIFIED):
        rest = 1 - positive
        scores = {"negative": rest if predicted == "negative" else rest / 2, "neutral": 0.0, "positive": positive}
        if predicted == "negative":
            scores["neutral"] = 1 - positive - scores["negative"]
        rows.append({"id": i, "text": f"text <{i}>", "label": gold, "predicted": predicted,
                     "scores": scores if with_scores else None})
    return rows


def test_per_class_precision_recall_f1_and_support_agree_with_scikit_learn():
    from sklearn.metrics import precision_recall_fscore_support

    report = CLASSIFICATION.error_report(classification_rows())
    labels = [row[0] for row in report["table"]["rows"]]
    assert report["table"]["columns"] == ["label", "precision", "recall", "f1", "support"]
    expected = precision_recall_fscore_support([g for g, _, _ in CLASSIFIED], [p for _, p, _ in CLASSIFIED],
                                               labels=labels, zero_division=0)
    for i, row in enumerate(report["table"]["rows"]):
        assert row[1:4] == pytest.approx([expected[0][i], expected[1][i], expected[2][i]])
        assert row[4] == expected[3][i]
    assert report["summary"] == {"examples": 6, "correct": 2, "mistakes": 4, "accuracy": pytest.approx(2 / 6)}


def test_the_classification_confusion_matrix_counts_gold_rows_by_predicted_columns():
    confusion = CLASSIFICATION.error_report(classification_rows())["confusion"]
    assert confusion["labels"] == ["negative", "neutral", "positive"]
    assert confusion["matrix"] == [[1, 0, 1], [1, 0, 0], [2, 0, 1]]


def test_mistakes_come_most_confident_first_with_the_predicted_labels_probability():
    examples = CLASSIFICATION.error_report(classification_rows())["examples"]
    assert [e["id"] for e in examples] == [3, 4, 1, 5]
    assert examples[0] == {"id": 3, "text": "text <3>", "label": "negative", "predicted": "positive",
                           "confidence": 0.95}
    assert examples[1]["confidence"] == pytest.approx(0.9)


def test_a_predictions_file_without_probabilities_still_reports_its_mistakes_in_order():
    examples = CLASSIFICATION.error_report(classification_rows(with_scores=False), limit=2)["examples"]
    assert [(e["id"], e["confidence"]) for e in examples] == [(1, None), (3, None)]


def test_unlabelled_rows_are_counted_but_not_scored():
    rows = classification_rows() + [{"id": 6, "text": "?", "label": None, "predicted": "positive", "scores": None}]
    report = CLASSIFICATION.error_report(rows)
    assert report["summary"]["examples"] == 6 and report["summary"]["unlabelled"] == 1
    assert CLASSIFICATION.error_rows(rows)[-1]["correct"] is None


# ----- sft ------------------------------------------------------------------------------------------


def sft_rows():
    return [{"id": 0, "prompt": "2+2?", "reference": "4", "generation": "4", "match": True, "stopped": True},
            {"id": 1, "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
             "reference": "Hello", "generation": "Hello there", "match": False, "stopped": True},
            {"id": 2, "prompt": "Capital of France?", "reference": "Paris", "generation": "Lyon", "match": False}]


def test_sft_lists_prompt_reference_generation_and_match_mismatches_first():
    report = SFT.error_report(sft_rows())
    assert report["confusion"] is None
    assert report["table"]["columns"] == ["prompt", "reference", "generation", "match"]
    assert report["table"]["rows"] == [["system: Be brief.\nuser: Hi", "Hello", "Hello there", False],
                                       ["Capital of France?", "Paris", "Lyon", False], ["2+2?", "4", "4", True]]
    assert [e["id"] for e in report["examples"]] == [1, 2, 0]
    assert report["examples"][1] == {"id": 2, "prompt": "Capital of France?", "reference": "Paris",
                                     "generation": "Lyon", "match": False}
    assert report["summary"] == {"examples": 3, "matches": 1, "mismatches": 2, "exact_match": pytest.approx(1 / 3)}


# ----- a run's predictions file: report, DataFrame, errors ------------------------------------------


def run_with_predictions(tmp_path, task, rows):
    store = RunStore(tmp_path / "runs")
    run = Run(store.create_run(Config.from_dict({"name": f"{task}-run", "task": task})), store)
    (run.dir / "predictions").mkdir()
    (run.dir / "predictions" / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return run


def test_a_runs_report_names_run_task_and_split_around_the_tasks_report(tmp_path):
    run = run_with_predictions(tmp_path, "ner", ner_rows())
    report = run.error_report(limit=2)
    assert list(report) == ["run", "task", "split", "summary", "table", "confusion", "examples"]
    assert (report["run"], report["task"], report["split"]) == (run.id, "ner", "test")
    assert json.loads(json.dumps(report)) == report
    assert report == error_report(run.store, run.id, "test", 2)


def test_run_errors_is_a_dataframe_of_every_entity_decision_with_its_words(tmp_path):
    frame = run_with_predictions(tmp_path, "ner", ner_rows()).errors()
    assert list(frame.columns) == ["id", "kind", "type", "gold", "predicted", "sentence"]
    assert len(frame) == 8
    wrong_type = frame[frame.kind == "wrong_type"].iloc[0]
    assert (wrong_type.id, wrong_type.type, wrong_type.gold, wrong_type.predicted) == (1, "PER", "Anna", "Anna")
    assert frame[frame.kind == "spurious"].iloc[0].sentence == "the EU said it"


def test_run_errors_for_classification_has_one_row_per_text_with_its_confidence(tmp_path):
    frame = run_with_predictions(tmp_path, "classification", classification_rows()).errors()
    assert list(frame.columns) == ["id", "text", "label", "predicted", "confidence", "correct"]
    assert frame.id.tolist() == list(range(6)) and frame.correct.tolist() == [True, False, True, False, False, False]


def test_a_run_without_saved_predictions_says_so_in_one_line(tmp_path):
    store = RunStore(tmp_path / "runs")
    run = Run(store.create_run(Config.from_dict({"name": "fresh", "task": "ner"})), store)
    with pytest.raises(RunError, match=r"no saved predictions for its test split \(predictions/test.jsonl\)"):
        run.errors()


def test_a_split_that_is_not_a_data_split_is_refused_before_any_path_is_built(tmp_path):
    run = run_with_predictions(tmp_path, "ner", ner_rows())
    with pytest.raises(ConfigError, match="split must be one of train, validation, test; got '../test'"):
        run.error_report("../test")


def test_a_last_line_still_being_written_is_left_out(tmp_path):
    run = run_with_predictions(tmp_path, "sft", sft_rows())
    with (run.dir / "predictions" / "test.jsonl").open("a") as out:
        out.write('{"id": 3, "prompt": "unfinis')
    assert [row["id"] for row in read_predictions(run.store, run.id)] == [0, 1, 2]


# ----- probabilities saved by a real run -------------------------------------------------------------


def test_a_classification_run_saves_every_labels_probability_with_its_predictions(tiny_model_dir, tmp_path):
    from ftkit.engine.training import run_training

    data = tmp_path / "data"
    data.mkdir()
    texts = ["good movie", "great film", "bad movie", "terrible film"]
    for split, repeat in (("train", 4), ("test", 1)):
        lines = [f"{text}\t{'positive' if text.split()[0] in ('good', 'great') else 'negative'}"
                 for text in texts * repeat]
        (data / f"{split}.tsv").write_text("sentence\tlabel\n" + "\n".join(lines) + "\n")
    config = load_config(task="classification", model=str(tiny_model_dir),
                         data={"train": str(data / "train.tsv"), "test": str(data / "test.tsv")},
                         training={"epochs": 1, "batch_size": 8, "max_seq_length": 16},
                         output={"dir": str(tmp_path / "runs")}).with_absolute_paths()
    store = RunStore(config.runs_dir)
    run_id = store.create_run(config)
    assert run_training(store, run_id) == "completed"

    rows = read_predictions(store, run_id)
    assert [row["text"] for row in rows] == texts
    for row in rows:
        assert set(row["scores"]) == {"negative", "positive"}
        assert sum(row["scores"].values()) == pytest.approx(1.0, abs=1e-5)
        assert row["predicted"] == max(row["scores"], key=row["scores"].get)
    report = error_report(store, run_id)
    assert all(e["confidence"] == pytest.approx(rows[e["id"]]["scores"][e["predicted"]]) for e in report["examples"])
