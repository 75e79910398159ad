"""Chat and instruction records: four layouts to canonical messages, file:line errors, templates, corpora."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftkit.data.chat import (ALPACA, MESSAGES, PROMPT_COMPLETION, SHAREGPT, chatterbot_pairs, chitchat_conversations,
                             instructions_from_table, read_chat_records)
from ftkit.data.formats import read_delimited, read_jsonl, records_to_table
from ftkit.errors import DataError, FtkitError

SST2_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2" / "dev.tsv"


def write_jsonl(path: Path, records: list) -> Path:
    # A blank line first, so that file lines and record positions differ.
    path.write_text("\n" + "".join(json.dumps(record) + "\n" for record in records))
    return path


def chat(*turns: tuple[str, str]) -> dict:
    return {"messages": [{"role": role, "content": content} for role, content in turns]}


GOOD_CHAT = chat(("user", "Hi"), ("assistant", "Hello!"))
GOOD_PAIR = {"prompt": "2+2=", "completion": "4"}
GOOD_ALPACA = {"instruction": "Name a colour.", "input": "", "output": "red"}
GOOD_SHAREGPT = {"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]}


@pytest.mark.parametrize("record, layout, expected", [
    (chat(("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello!")), MESSAGES,
     [("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello!")]),
    ({"prompt": "2+2=", "completion": "4"}, PROMPT_COMPLETION, [("user", "2+2="), ("assistant", "4")]),
    ({"prompt": [{"role": "user", "content": "2+2="}], "completion": [{"role": "assistant", "content": "4"}]},
     PROMPT_COMPLETION, [("user", "2+2="), ("assistant", "4")]),
    ({"instruction": "Translate to French.", "input": "cat", "output": "chat"}, ALPACA,
     [("user", "Translate to French.\n\ncat"), ("assistant", "chat")]),
    ({"instruction": "Name a colour.", "input": "", "output": "red"}, ALPACA,
     [("user", "Name a colour."), ("assistant", "red")]),
    ({"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]},
     SHAREGPT, [("system", "S"), ("user", "Q"), ("assistant", "A")]),
])
def test_each_layout_is_detected_and_normalised_to_messages(tmp_path, record, layout, expected):
    records = read_chat_records(read_jsonl(write_jsonl(tmp_path / "data.jsonl", [record, record])))
    assert records.format == layout
    assert [[(m["role"], m["content"]) for m in conversation] for conversation in records.conversations] == [expected] * 2
    assert records.origins == [f"{tmp_path / 'data.jsonl'}:2", f"{tmp_path / 'data.jsonl'}:3"]


@pytest.mark.parametrize("good, bad, reason", [
    (GOOD_CHAT, chat(("user", "Hi")), "no assistant turn"),
    (GOOD_CHAT, chat(("user", "Hi"), ("user", "Hello?"), ("assistant", "Yes")), "roles out of order"),
    (GOOD_CHAT, chat(("assistant", "Hi"), ("user", "Hello?"), ("assistant", "Yes")), "roles out of order"),
    (GOOD_CHAT, chat(("user", "Hi"), ("system", "Be brief."), ("assistant", "Yes")), "may only come first"),
    (GOOD_CHAT, chat(("user", "Hi"), ("assistant", "Yes"), ("user", "And?")), "must end with an assistant turn"),
    (GOOD_CHAT, chat(("user", "Hi"), ("assistant", "  ")), "message 2 (assistant) is empty"),
    (GOOD_CHAT, chat(("user", "Hi"), ("bot", "Yes")), "unknown role 'bot'"),
    (GOOD_CHAT, {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": ["Yes"]}]},
     "content must be a string, got list"),
    (GOOD_CHAT, {"messages": [{"role": "user", "text": "Hi"}]}, "must be an object with 'role' and 'content'"),
    (GOOD_CHAT, {"messages": "Hi"}, "messages must be a list"),
    (GOOD_PAIR, {"prompt": "2+2=", "completion": ""}, "empty completion"),
    (GOOD_PAIR, {"prompt": "2+2=", "completion": 4}, "completion must be a string, got int"),
    (GOOD_ALPACA, {"instruction": "Name a colour.", "output": " "}, "empty output"),
    (GOOD_SHAREGPT, {"conversations": [{"from": "human", "value": "Q"}, {"from": "robot", "value": "A"}]},
     "unknown role 'robot'"),
    (GOOD_CHAT, GOOD_ALPACA, "this row is alpaca but the first row"),
    (GOOD_CHAT, {"text": "just text"}, "not a chat or instruction record"),
])
def test_bad_record_is_a_data_error_naming_file_and_line(tmp_path, good, bad, reason):
    path = write_jsonl(tmp_path / "train.jsonl", [good, good, bad])
    with pytest.raises(DataError) as caught:
        read_chat_records(read_jsonl(path))
    assert (caught.value.path, caught.value.line) == (str(path), 4)
    assert reason in str(caught.value) and str(caught.value).startswith(f"{path}:4: ")


def test_in_memory_rows_are_named_by_position():
    table = records_to_table([GOOD_CHAT, chat(("user", "Hi"))], "my list")
    with pytest.raises(DataError, match=r"my list, example 1: no assistant turn"):
        read_chat_records(table)


def test_prompt_template_builds_instructions_from_any_columns_with_answer_words(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text("sentence,label\ngreat fun,1\ndull,0\n")
    table = instructions_from_table(read_delimited(path, ","), "Review: {sentence}\nIs this review positive or negative?",
                                    "label", {0: "negative", 1: "positive"})  # YAML ints against CSV strings
    records = read_chat_records(table)
    assert records.format == PROMPT_COMPLETION
    assert records.conversations[0] == [
        {"role": "user", "content": "Review: great fun\nIs this review positive or negative?"},
        {"role": "assistant", "content": "positive"}]
    assert records.conversations[1][1]["content"] == "negative"
    assert records.origins == [f"{path}:2", f"{path}:3"]


def test_sst2_becomes_an_instruction_set_from_configuration_alone():
    table = instructions_from_table(read_delimited(SST2_DEV, "\t"), "Review: {sentence}\nPositive or negative?",
                                    "label", {"0": "negative", "1": "positive"})
    assert len(table) == 872 and set(table.columns["completion"]) == {"negative", "positive"}


@pytest.mark.parametrize("template, column, answers, reason, line", [
    ("Review: {review}", "label", None, "column 'review' is not in the data (named by prompt_template); "
                                        "the columns are sentence, label", None),
    ("Review: {sentence}", "stars", None, "column 'stars' is not in the data (named by completion_column)", None),
    ("Review: {sentence", "label", None, "prompt_template does not render", None),
    ("Review: {}", "label", None, "names fields by column", None),
    ("Review: {sentence}", "label", {0: "negative"}, "label '1' is not in answer_map", 2),
    ("Review: {sentence}", "label", None, "column 'sentence' is empty", 3),
])
def test_bad_prompt_template_or_answer_is_a_data_error(tmp_path, template, column, answers, reason, line):
    path = tmp_path / "reviews.csv"
    path.write_text('sentence,label\ngreat fun,1\n"",0\n')
    with pytest.raises(DataError) as caught:
        instructions_from_table(read_delimited(path, ","), template, column, answers)
    assert reason in str(caught.value)
    assert (caught.value.path, caught.value.line) == (str(path), line)


def test_chatterbot_pairs_are_unique_question_answer_pairs():
    pairs = chatterbot_pairs()
    assert len(pairs) == 897  # 2,025 pairs in the corpus files, most repeated
    assert len({(p[0]["content"], p[1]["content"]) for p in pairs}) == len(pairs)
    assert all([m["role"] for m in pair] == ["user", "assistant"] and all(m["content"] for m in pair) for pair in pairs)


def test_chitchat_conversations_alternate_user_and_assistant_and_end_with_assistant():
    conversations = chitchat_conversations(limit=50)
    assert len(conversations) == 50
    assert max(len(c) for c in conversations) > 4  # multi-turn
    for conversation in conversations:
        assert [m["role"] for m in conversation] == ["user", "assistant"] * (len(conversation) // 2)
    table = records_to_table([{"messages": c} for c in conversations], "chitchat")
    assert len(read_chat_records(table)) == 50  # every conversation passes the checks


def test_missing_corpus_package_says_how_to_install(monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "chitchat_dataset" else real_find_spec(name, *args))
    with pytest.raises(FtkitError, match=r"pip install --no-deps chitchat-dataset==0.9.0"):
        chitchat_conversations(limit=1)
