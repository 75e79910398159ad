"""The preference tasks' data side: tables made into pairs by the config alone, KTO's labelled answers,
statistics and the side-by-side preview with the trained tokens, and the rows TRL's trainers read."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import ftkit
from ftkit.errors import DataError
from ftkit.tasks import get_task
from tests.sft_fixtures import default_causal_dir, smollm2_tokenizer  # noqa: F401

SST2_LIKE = pd.DataFrame({"sentence": ["a gripping film", "dull and long", "lovely"], "label": [1, 0, 1]})
PAIRS = {"prompt_template": "Review: {sentence}\nPositive or negative?", "chosen_column": "label",
         "answer_map": {0: "negative", 1: "positive"}}


def test_a_labelled_table_becomes_pairs_from_the_config_alone_the_rejected_answer_being_the_other_one():
    rows = ftkit.load_data(SST2_LIKE, "dpo", **PAIRS)["train"]
    assert rows[0]["prompt"] == [{"role": "user", "content": "Review: a gripping film\nPositive or negative?"}]
    assert [(row["chosen"], row["rejected"]) for row in rows] == [("positive", "negative"), ("negative", "positive"),
                                                                    ("positive", "negative")]
    assert {row["format"] for row in rows} == {"explicit"}


def test_kto_reads_a_table_through_the_completion_and_label_columns():
    table = pd.DataFrame({"question": ["2+2?", "capital of France?"], "answer": ["4", "Berlin"], "good": [True, False]})
    rows = ftkit.load_data(table, "kto", prompt_template="{question}", completion_column="answer",
                           label_column="good")["train"]
    assert [(row["prompt"][0]["content"], row["completion"], row["label"]) for row in rows] == [
        ("2+2?", "4", True), ("capital of France?", "Berlin", False)]


def test_kto_unpairs_pairs_and_dpo_refuses_labelled_answers_naming_kto(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "hi", "chosen": "hello", "rejected": "go away"}) + "\n")
    rows = ftkit.load_data(str(pairs), "kto")["train"]
    assert [(row["completion"], row["label"], row["origin"]) for row in rows] == [
        ("hello", True, f"{pairs}:1"), ("go away", False, f"{pairs}:1")]
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"prompt": "hi", "completion": "hello", "label": True}) + "\n")
    with pytest.raises(DataError, match="use task: kto"):
        ftkit.load_data(str(answers), "dpo")


def test_a_prompt_template_without_the_answer_columns_is_refused_with_what_to_set():
    with pytest.raises(DataError, match="needs data.chosen_column"):
        ftkit.load_data(SST2_LIKE, "dpo", prompt_template="{sentence}")
    with pytest.raises(DataError, match="needs data.completion_column .* and data.label_column .*, or data.chosen_column"):
        ftkit.load_data(SST2_LIKE, "kto", prompt_template="{sentence}", completion_column="label")


def test_statistics_count_pairs_and_tokens_and_how_many_pairs_max_length_cuts(smollm2_tokenizer):
    stats = ftkit.data_stats(SST2_LIKE, "dpo", tokenizer=smollm2_tokenizer, max_length=24, **PAIRS)
    train = stats.splits["train"]
    assert train.examples == 3 and train.label_counts == {"negative": 1, "positive": 2}
    assert set(train.extra) >= {"prompt tokens", "chosen tokens", "rejected tokens", "truncated at 24"}
    from ftkit.tasks.sft_encoding import render_ids

    prompts = [render_ids(smollm2_tokenizer, [{"role": "user", "content": PAIRS["prompt_template"].format(sentence=s)}],
                          add_generation_prompt=True) for s in SST2_LIKE["sentence"]]
    assert train.extra["prompt tokens"]["max"] == max(map(len, prompts))
    assert train.extra["chosen tokens"]["max"] >= 2  # the answer word and the end-of-turn token
    assert train.extra["truncated at 24"] == sum(len(p) + 2 > 24 for p in prompts)
    assert "pairs" in str(stats)


def test_the_preview_shows_prompt_chosen_and_rejected_side_by_side_with_trained_tokens_highlighted(smollm2_tokenizer):
    page = ftkit.data_preview(SST2_LIKE, 2, "dpo", tokenizer=smollm2_tokenizer, **PAIRS)
    assert page.count('class="ftkit-pair"') == 2
    first = page.split('class="ftkit-pair"')[1]
    assert first.index("chosen") < first.index("rejected")
    assert 'class="ftkit-trained"' in first and "positive" in first and "negative" in first
    plain = get_task("dpo").preview_html(ftkit.load_data(SST2_LIKE, "dpo", **PAIRS)["train"].select(range(1)))
    assert "Review: a gripping film" in plain and "&lt;" not in plain.replace("<", "")  # escaped, not raw


def test_trl_reads_conversational_rows_one_assistant_message_per_answer():
    rows = ftkit.load_data(SST2_LIKE, "dpo", **PAIRS)["train"]
    trl = get_task("dpo").trainer_rows(rows)
    assert trl.column_names == ["prompt", "chosen", "rejected"]
    assert trl[0]["chosen"] == [{"role": "assistant", "content": "positive"}]
    assert trl[0]["rejected"] == [{"role": "assistant", "content": "negative"}]


def test_ftkit_data_shows_a_pairs_file_side_by_side_with_its_counts(shell, tmp_path, default_causal_dir):
    from tests.test_magics import run_cell

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"Review {i}: fine. Positive or negative?", "chosen": "positive",
                                         "rejected": "negative"}) + "\n" for i in range(3)))
    result, captured = run_cell(shell, f"%ftkit data {pairs} --task dpo --model {default_causal_dir} -n 2")
    assert result.success, captured.stderr
    html = " ".join(output.data.get("text/html", "") for output in captured.outputs)
    assert "pairs" in html and "chosen tokens" in html  # the statistics
    assert html.count('class="ftkit-pair"') == 2 and 'class="ftkit-trained"' in html  # the preview
