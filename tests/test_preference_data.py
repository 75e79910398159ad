"""Preference records: explicit, implicit (message lists, Anthropic HH) and unpaired layouts, pairs from any
table, and every malformed record as a DataError naming its file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftkit.data.formats import Table, read_delimited, read_jsonl, records_to_table
from ftkit.data.preference import pairs_from_table, read_preference_records
from ftkit.errors import DataError


def write_jsonl(path: Path, records: list) -> Path:
    # A blank line first, so that file lines and record positions differ (record i is on line i + 2).
    path.write_text("\n" + "".join(json.dumps(record) + "\n" for record in records))
    return path


def read(tmp_path: Path, records: list):
    return read_preference_records(read_jsonl(write_jsonl(tmp_path / "train.jsonl", records)))


def msgs(*role_contents: tuple[str, str]) -> list[dict[str, str]]:
    return [{"role": role, "content": content} for role, content in role_contents]


def turns(*texts: str) -> list[dict[str, str]]:
    """Messages alternating user and assistant, starting with the user."""
    return msgs(*((("user", "assistant")[i % 2], text) for i, text in enumerate(texts)))


def hh(*texts: str) -> str:
    """An Anthropic HH string alternating Human and Assistant, starting with the Human."""
    return "".join(f"\n\n{('Human', 'Assistant')[i % 2]}: {text}" for i, text in enumerate(texts))


def answer(content) -> list[dict[str, str]]:
    """An answer in the conversational layout: one assistant message."""
    return msgs(("assistant", content))


USER, ASSISTANT = "user", "assistant"
EXPLICIT = {"prompt": "2+2=", "chosen": "4", "rejected": "5"}
CONVERSATIONAL = {"prompt": msgs(("system", "Be brief."), (USER, "2+2=")),
                  "chosen": answer("4"), "rejected": answer("5")}
IMPLICIT = {"chosen": turns("2+2=", "4"), "rejected": turns("2+2=", "5")}
HH = {"chosen": hh("2+2=", "4"), "rejected": hh("2+2=", "5")}
UNPAIRED = {"prompt": "2+2=", "completion": "4", "label": True}


# ----- the layouts ------------------------------------------------------------------------------

def test_standard_explicit_pairs_keep_their_answers_and_make_the_prompt_one_user_turn(tmp_path):
    records = read(tmp_path, [EXPLICIT, {"prompt": "Capital of France?", "chosen": "Paris", "rejected": "Lyon"}])
    assert (records.format, records.paired, len(records)) == ("explicit", True, 2)
    assert records.prompts == [msgs((USER, "2+2=")), msgs((USER, "Capital of France?"))]
    assert (records.chosen, records.rejected) == (["4", "Paris"], ["5", "Lyon"])
    assert (records.completions, records.labels) == ([], [])
    path = tmp_path / "train.jsonl"
    assert records.origins == [f"{path}:2", f"{path}:3"]


def test_conversational_explicit_pairs_keep_the_prompt_messages_and_take_the_assistant_text(tmp_path):
    records = read(tmp_path, [CONVERSATIONAL])
    assert records.format == "explicit"
    assert records.prompts == [msgs(("system", "Be brief."), (USER, "2+2="))]
    assert (records.chosen, records.rejected) == (["4"], ["5"])


def test_implicit_message_lists_split_at_the_final_assistant_turn(tmp_path):
    shared = [(USER, "Hi"), (ASSISTANT, "Hello!"), (USER, "2+2=")]
    records = read(tmp_path, [IMPLICIT, {"chosen": msgs(*shared, (ASSISTANT, "4")),
                                         "rejected": msgs(*shared, (ASSISTANT, "22"))}])
    assert records.format == "implicit" and records.paired
    assert records.prompts == [msgs((USER, "2+2=")), msgs(*shared)]
    assert (records.chosen, records.rejected) == (["4", "4"], ["5", "22"])


def test_anthropic_hh_strings_become_user_and_assistant_turns(tmp_path):
    no_leading_newlines = {"chosen": "Human: hi\n\nAssistant: hello", "rejected": "Human: hi\n\nAssistant: go away"}
    records = read(tmp_path, [HH, no_leading_newlines])
    assert records.format == "implicit"
    assert records.prompts == [msgs((USER, "2+2=")), msgs((USER, "hi"))]
    assert (records.chosen, records.rejected) == (["4", "hello"], ["5", "go away"])


def test_a_multi_turn_hh_pair_splits_at_the_last_shared_assistant_turn(tmp_path):
    shared = ["What is a prime?", "A number with two divisors.", "Is 9 one?"]
    records = read(tmp_path, [{"chosen": hh(*shared, "No, 9 = 3 x 3."), "rejected": hh(*shared, "Yes.")}])
    assert records.prompts == [msgs((USER, "What is a prime?"), (ASSISTANT, "A number with two divisors."),
                                    (USER, "Is 9 one?"))]
    assert (records.chosen, records.rejected) == (["No, 9 = 3 x 3."], ["Yes."])


@pytest.mark.parametrize("stored, label", [(True, True), (False, False), (1, True), (0, False),
                                           ("true", True), ("false", False), ("False", False)])
def test_unpaired_records_read_bool_int_and_string_labels(tmp_path, stored, label):
    records = read(tmp_path, [UNPAIRED, {"prompt": msgs((USER, "3+3=")), "completion": msgs((ASSISTANT, "7")),
                                         "label": stored}])
    assert (records.format, records.paired) == ("unpaired", False)
    assert records.prompts == [msgs((USER, "2+2=")), msgs((USER, "3+3="))]
    assert (records.completions, records.labels) == (["4", "7"], [True, label])
    assert (records.chosen, records.rejected) == ([], [])


def test_in_memory_records_are_named_by_position():
    records = read_preference_records(records_to_table([EXPLICIT], "DataFrame"))
    assert records.origins == ["DataFrame, example 0"]


# ----- malformed records ------------------------------------------------------------------------

@pytest.mark.parametrize("good, bad, reason", [
    (EXPLICIT, {"prompt": "2+2=", "chosen": "4", "rejected": " 4 "}, "chosen and rejected are the same answer"),
    (HH, {"chosen": hh("q", "a"), "rejected": hh("q", "a")}, "chosen and rejected are the same answer"),
    (EXPLICIT, {"prompt": "2+2=", "chosen": "  ", "rejected": "5"}, "empty chosen answer"),
    (EXPLICIT, {"prompt": "2+2=", "chosen": "4", "rejected": ""}, "empty rejected answer"),
    (CONVERSATIONAL, {"prompt": turns("q"), "chosen": answer(""), "rejected": answer("b")}, "empty chosen answer"),
    (HH, {"chosen": hh("q", "a"), "rejected": "\n\nHuman: q\n\nAssistant:"}, "empty rejected answer"),
    (UNPAIRED, {"prompt": "2+2=", "completion": "\n", "label": True}, "empty completion answer"),
    (EXPLICIT, {"prompt": " ", "chosen": "4", "rejected": "5"}, "empty prompt"),
    # implicit pairs whose shared prompt cannot be found
    (IMPLICIT, {"chosen": turns("2+2=", "4"), "rejected": turns("2+3=", "5")}, "differ at turn 1"),
    (IMPLICIT, {"chosen": turns("q", "a", "r", "b"), "rejected": turns("q", "c")}, "differ at turn 2"),
    (HH, {"chosen": hh("q", "a", "r", "b"), "rejected": hh("q", "x", "r", "c")}, "differ at turn 2"),
    (IMPLICIT, {"chosen": turns("q", "a"), "rejected": turns("q", "b", "r")}, "rejected ends with a user turn"),
    (HH, {"chosen": hh("q", "a", "thanks"), "rejected": hh("q", "b")}, "chosen ends with a user turn"),
    (HH, {"chosen": "4", "rejected": "5"}, "chosen is not an Anthropic HH conversation"),
    (HH, {"chosen": hh("q", "a"), "rejected": "preamble" + hh("q", "b")},
     "rejected is not an Anthropic HH conversation"),
    (IMPLICIT, {"chosen": answer("a"), "rejected": answer("b")},
     "no shared prompt: chosen and rejected hold only their answers"),
    (IMPLICIT, {"chosen": turns("q", "a"), "rejected": hh("q", "b")},
     "both message lists or both Anthropic HH strings"),
    # one format per file
    (EXPLICIT, IMPLICIT, "this record is implicit (chosen, rejected) but the first record"),
    (EXPLICIT, UNPAIRED, "this record is unpaired (prompt, completion, label) but the first record"),
    (UNPAIRED, HH, "this record is implicit (chosen, rejected) but the first record"),
    # missing keys, wrong types, bad messages
    (EXPLICIT, {"prompt": "2+2=", "chosen": "4"}, "the explicit format also needs rejected"),
    (IMPLICIT, {"chosen": "4"}, "the implicit format also needs rejected"),
    (UNPAIRED, {"prompt": "2+2=", "completion": "4"}, "the unpaired format also needs label"),
    (EXPLICIT, {"text": "2+2=4"}, "not a preference record: its fields are ['text']"),
    (EXPLICIT, {"prompt": "2+2=", "chosen": 4, "rejected": "5"},
     "chosen must be a string or a list with one assistant message, got int"),
    (EXPLICIT, {"prompt": 22, "chosen": "4", "rejected": "5"},
     "prompt must be a string or a list of {role, content} messages, got int"),
    (CONVERSATIONAL, {"prompt": turns("q"), "chosen": answer(4), "rejected": answer("b")},
     "the chosen answer's content must be a string, got int"),
    (CONVERSATIONAL, {"prompt": msgs(("bot", "q")), "chosen": answer("a"), "rejected": answer("b")},
     "unknown role 'bot'"),
    (CONVERSATIONAL, {"prompt": [{"role": USER, "text": "q"}], "chosen": answer("a"), "rejected": answer("b")},
     "prompt[0] must be an object with 'role' and 'content'"),
    (CONVERSATIONAL, {"prompt": [], "chosen": answer("a"), "rejected": answer("b")}, "prompt holds no messages"),
    (CONVERSATIONAL, {"prompt": turns("q"), "chosen": answer("a") + answer("b"), "rejected": answer("c")},
     "chosen must hold exactly one assistant message"),
    (CONVERSATIONAL, {"prompt": turns("q"), "chosen": answer("a"), "rejected": turns("c")},
     "rejected must hold exactly one assistant message"),
    (CONVERSATIONAL, {"prompt": turns("q", "a"), "chosen": answer("b"), "rejected": answer("c")}, "roles out of order"),
    (IMPLICIT, {"chosen": msgs((USER, "q"), ("robot", "r"), (ASSISTANT, "a")),
                "rejected": msgs((USER, "q"), ("robot", "r"), (ASSISTANT, "b"))}, "unknown role 'robot'"),
    (UNPAIRED, {"prompt": "2+2=", "completion": "4", "label": "yes"}, "label must be true"),
    (UNPAIRED, {"prompt": "2+2=", "completion": "4", "label": 2}, "label must be true"),
    (UNPAIRED, {"prompt": "2+2=", "completion": "4", "label": 1.0}, "label must be true"),
])
def test_a_bad_record_is_a_data_error_naming_file_and_line(tmp_path, good, bad, reason):
    with pytest.raises(DataError) as caught:
        read(tmp_path, [good, good, bad])
    path = tmp_path / "train.jsonl"
    assert (caught.value.path, caught.value.line) == (str(path), 4)
    assert str(caught.value).startswith(f"{path}:4: ") and "train.jsonl:4" in str(caught.value)
    assert reason in str(caught.value)


def test_a_mixed_file_names_the_first_record_of_another_format_and_the_first_record(tmp_path):
    with pytest.raises(DataError) as caught:
        read(tmp_path, [EXPLICIT, EXPLICIT, UNPAIRED, IMPLICIT])
    path = tmp_path / "train.jsonl"
    assert str(caught.value).startswith(f"{path}:4: ")
    assert f"the first record ({path}:2) is explicit" in str(caught.value)


def test_an_empty_file_is_a_clear_error(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("\n")
    with pytest.raises(DataError, match="no examples"):
        read_preference_records(read_jsonl(path))
    with pytest.raises(DataError) as caught:
        read_preference_records(Table({"chosen": [], "rejected": []}, "train.jsonl", str(path), []))
    assert str(caught.value).startswith(f"{path}: no examples") and "`prompt`/`completion`/`label`" in str(caught.value)


# ----- pairs from any table ----------------------------------------------------------------------

SST2 = [{"sentence": "a gorgeous film", "label": 1}, {"sentence": "dull and long", "label": 0}]


def test_a_table_with_both_answer_columns_becomes_explicit_string_pairs(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("question,good,bad\nCapital of France?,Paris,Lyon\n2+2=,4,5\n")
    table = pairs_from_table(read_delimited(path, ","), "Q: {question}", "good", "bad", None)
    assert (table.path, table.lines) == (str(path), [2, 3])
    records = read_preference_records(table)
    assert records.format == "explicit"
    assert records.prompts == [msgs((USER, "Q: Capital of France?")), msgs((USER, "Q: 2+2="))]
    assert (records.chosen, records.rejected) == (["Paris", "4"], ["Lyon", "5"])
    assert records.origins == [f"{path}:2", f"{path}:3"]


def test_a_table_row_whose_answers_are_equal_is_named_by_its_line(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("question,good,bad\n2+2=,4,5\n3+3=,6,6\n")
    with pytest.raises(DataError) as caught:
        read_preference_records(pairs_from_table(read_delimited(path, ","), "{question}", "good", "bad", None))
    assert str(caught.value).startswith(f"{path}:3: ") and "same answer" in str(caught.value)


@pytest.mark.parametrize("answer_map", [{"0": "negative", "1": "positive"}, {0: "negative", 1: "positive"}])
def test_sst2_rows_with_an_answer_map_alone_reject_the_other_answer(tmp_path, answer_map):
    path = write_jsonl(tmp_path / "train.jsonl", SST2)
    table = pairs_from_table(read_jsonl(path), "Review: {sentence}\nSentiment?", "label", None, answer_map)
    records = read_preference_records(table)
    assert records.format == "explicit"
    assert records.prompts == [msgs((USER, "Review: a gorgeous film\nSentiment?")),
                               msgs((USER, "Review: dull and long\nSentiment?"))]
    assert (records.chosen, records.rejected) == (["positive", "negative"], ["negative", "positive"])
    assert records.origins == [f"{path}:2", f"{path}:3"]


def test_without_a_rejected_column_the_next_different_answer_of_the_map_is_rejected_cycling():
    rows = [{"text": "t", "label": label} for label in (0, 1, 2, 3)]
    table = pairs_from_table(records_to_table(rows, "rows"), "{text}", "label", None,
                             {"0": "bad", "1": "good", "2": "good", "3": "fine"})
    assert table.columns["chosen"] == ["bad", "good", "good", "fine"]
    assert table.columns["rejected"] == ["good", "fine", "fine", "bad"]


def test_an_answer_map_maps_the_rejected_column_too():
    rows = [{"text": "t", "better": 1, "worse": 0}]
    table = pairs_from_table(records_to_table(rows, "rows"), "{text}", "better", "worse", {0: "no", 1: "yes"})
    assert (table.columns["chosen"], table.columns["rejected"]) == (["yes"], ["no"])


def test_pairs_need_a_rejected_column_or_an_answer_map(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", SST2)
    with pytest.raises(DataError) as caught:
        pairs_from_table(read_jsonl(path), "{sentence}", "label", None, None)
    assert "data.rejected_column" in str(caught.value) and "data.answer_map" in str(caught.value)
    assert str(caught.value).startswith(f"{path}: ")


@pytest.mark.parametrize("template, chosen, rejected, answer_map, reason", [
    ("{sentence}", "stars", None, {"0": "no", "1": "yes"},
     "column 'stars' is not in the data (named by data.chosen_column)"),
    ("{sentence}", "label", "worse", None, "column 'worse' is not in the data (named by data.rejected_column)"),
    ("{review}", "label", None, {"0": "no", "1": "yes"},
     "column 'review' is not in the data (named by prompt_template)"),
    ("{sentence}", "label", None, {"0": "no", "1": "no"}, "data.answer_map has one answer"),
])
def test_a_pairs_setting_that_cannot_work_is_a_data_error_naming_the_file(tmp_path, template, chosen, rejected,
                                                                           answer_map, reason):
    path = write_jsonl(tmp_path / "train.jsonl", SST2)
    with pytest.raises(DataError) as caught:
        pairs_from_table(read_jsonl(path), template, chosen, rejected, answer_map)
    assert reason in str(caught.value) and str(caught.value).startswith(f"{path}: ")


def test_a_stored_answer_missing_from_the_map_is_named_by_its_line(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [*SST2, {"sentence": "meh", "label": 2}])
    with pytest.raises(DataError) as caught:
        pairs_from_table(read_jsonl(path), "{sentence}", "label", None, {"0": "negative", "1": "positive"})
    assert str(caught.value).startswith(f"{path}:4: ") and "not in answer_map" in str(caught.value)
