"""ChatWidget without a browser: both columns stream their answers, keep their own turns, fail inline.

The fine-tuned side is a LoRA checkpoint of a tiny random llama (SmolLM2's tokenizer), whose
base is the same llama saved as a folder; a random adapter makes the two answer differently.
"""

from __future__ import annotations

import html
import shutil

import pytest

from ftkit.config import Config
from ftkit.engine.generation import Generator
from ftkit.notebook.widgets.chat import ChatWidget
from ftkit.runs import Run
from ftkit.runstore import RunStore
from tests.sft_fixtures import default_causal_dir, smollm2_tokenizer, tiny_llama, tiny_llama_dir  # noqa: F401 - fixtures

TOKENS = 8


@pytest.fixture(scope="module")
def lora_checkpoint(tmp_path_factory, tiny_llama_dir, smollm2_tokenizer):  # noqa: F811
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_llama_dir),
                           LoraConfig(task_type="CAUSAL_LM", r=4, target_modules="all-linear", init_lora_weights=False))
    folder = tmp_path_factory.mktemp("run") / "checkpoint-4"
    model.save_pretrained(folder)
    smollm2_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def expected(tiny_llama_dir, lora_checkpoint):
    """What each model answers on its own, for comparison with the widget's columns."""
    return {"base": Generator.load(tiny_llama_dir), "finetuned": Generator.load(lora_checkpoint)}


def ask(chat: ChatWidget, text: str) -> None:
    chat.prompt.value = text
    chat.send_button.click()
    assert chat.wait(timeout=120), "the answers did not finish"


def watch(column) -> list[str]:
    seen: list[str] = []
    column.answer.observe(lambda change: seen.append(change["new"]), names="value")
    return seen


def test_send_streams_both_answers_into_their_columns(lora_checkpoint, expected):
    chat = ChatWidget(lora_checkpoint, max_new_tokens=TOKENS)
    assert chat.base._generator is None and chat.finetuned._generator is None  # nothing loads before Send
    streamed = {"base": watch(chat.base), "finetuned": watch(chat.finetuned)}
    statuses: list[str] = []
    chat.finetuned.status.observe(lambda change: statuses.append(change["new"]), names="value")

    ask(chat, "Hi there")

    assert chat.prompt.value == ""
    assert any("loading…" in status for status in statuses)
    for side, column in (("base", chat.base), ("finetuned", chat.finetuned)):
        answer = expected[side].generate("Hi there", max_new_tokens=TOKENS)
        assert column.streamed_text == answer
        assert any("▍" in value for value in streamed[side]), f"{side}: no partial answer was shown"
        assert column.history == [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": answer}]
        assert html.escape(answer, quote=True) in column.transcript.value and column.answer.value == ""
        assert column.error.layout.display == "none"
    assert chat.base.streamed_text != chat.finetuned.streamed_text


def test_each_side_keeps_its_own_conversation_across_turns(lora_checkpoint, expected):
    chat = ChatWidget(lora_checkpoint, max_new_tokens=TOKENS)
    ask(chat, "Hi")
    ask(chat, "And then?")
    for side, column in (("base", chat.base), ("finetuned", chat.finetuned)):
        assert [m["role"] for m in column.history] == ["user", "assistant", "user", "assistant"]
        assert column.history[-1]["content"] == expected[side].generate(column.history[:3], max_new_tokens=TOKENS)
        assert column.transcript.value.count("And then?") == 1


def test_an_answer_the_token_limit_cut_is_marked_so_in_the_transcript(lora_checkpoint, expected):
    chat = ChatWidget(lora_checkpoint, max_new_tokens=TOKENS)
    ask(chat, "Hi")
    cut = {side: not expected[side].generations(["Hi"], max_new_tokens=TOKENS)[0].stopped for side in expected}
    assert any(cut.values())  # a random model rarely ends within the limit: what makes this test mean something
    for side, column in (("base", chat.base), ("finetuned", chat.finetuned)):
        assert (f"… (cut at {TOKENS} tokens)" in column.transcript.value) == cut[side]
        assert "cut at" not in column.history[-1]["content"]  # the conversation goes on with the answer itself


def test_controls_set_the_length_and_clear_forgets_both_conversations(lora_checkpoint, expected):
    chat = ChatWidget(lora_checkpoint)
    chat.max_new_tokens.value = 3
    ask(chat, "Hi")
    assert len(chat.finetuned._generator.tokenizer(chat.finetuned.streamed_text, add_special_tokens=False)
               ["input_ids"]) <= 3 + 1  # decoding and re-encoding may split differently by a token
    assert chat.finetuned.streamed_text == expected["finetuned"].generate("Hi", max_new_tokens=3)
    chat.clear_button.click()
    assert chat.base.history == chat.finetuned.history == []
    assert chat.base.transcript.value == chat.finetuned.transcript.value == ""


def test_empty_text_sends_nothing_and_a_second_send_waits_for_the_answers(lora_checkpoint):
    chat = ChatWidget(lora_checkpoint, max_new_tokens=TOKENS)
    assert chat.send("   ") is False
    assert chat.send("Hi") is True
    assert chat.send("Again") is False or not chat.busy  # refused while the first answers stream
    chat.wait(timeout=120)
    assert [m["content"] for m in chat.base.history if m["role"] == "user"][0] == "Hi"


def test_a_side_that_cannot_load_shows_its_error_inline_and_the_other_still_answers(tmp_path, lora_checkpoint, expected):
    chat = ChatWidget(lora_checkpoint, base=tmp_path / "no-such-model", max_new_tokens=TOKENS)
    ask(chat, "Hi")
    assert chat.base.error.layout.display == "block"
    assert "does not exist" in chat.base.error.value and "Traceback" not in chat.base.error.value
    assert chat.base.history == [] and chat.base.status.value == ""
    assert chat.finetuned.streamed_text == expected["finetuned"].generate("Hi", max_new_tokens=TOKENS)


def test_a_run_answers_with_its_best_checkpoint_beside_its_base_model(runs_dir, tiny_llama_dir, lora_checkpoint, expected):
    store = RunStore()
    run = Run(store.create_run(Config(name="sft-chat", model=str(tiny_llama_dir))), store)
    chat = ChatWidget(run, max_new_tokens=TOKENS)
    ask(chat, "Hi")  # no checkpoint yet: said inline, the base still answers
    assert "no saved model yet" in chat.finetuned.error.value
    assert chat.base.streamed_text == expected["base"].generate("Hi", max_new_tokens=TOKENS)

    shutil.copytree(lora_checkpoint, run.dir / "best")  # picked up on the next Send
    ask(chat, "Hi")
    assert chat.finetuned.streamed_text == expected["finetuned"].generate("Hi", max_new_tokens=TOKENS)
    assert "sft-chat" in chat.finetuned.title.value


def test_any_two_runs_compare_a_dpo_run_beside_the_sft_run_it_started_from(runs_dir, tiny_llama_dir, lora_checkpoint,
                                                                           expected):
    store = RunStore()
    sft = Run(store.create_run(Config(name="stage-sft", task="sft", model=str(tiny_llama_dir))), store)
    shutil.copytree(lora_checkpoint, sft.dir / "checkpoint-4")  # what the dpo run started from
    shutil.copytree(lora_checkpoint, sft.dir / "best")  # its best now
    dpo = Run(store.create_run(Config(name="stage-dpo", task="dpo", model=f"run:{sft.id}/checkpoint-4")), store)
    shutil.copytree(lora_checkpoint, dpo.dir / "best")
    by_default = ChatWidget(dpo, max_new_tokens=TOKENS)  # a run beside the checkpoint it started from
    assert "stage-sft" in by_default.base.title.value and "checkpoint-4" in by_default.base.title.value
    chat = ChatWidget(dpo, base="run:stage-sft", max_new_tokens=TOKENS)
    assert "compared with: stage-sft" in chat.base.title.value and "stage-dpo" in chat.finetuned.title.value
    ask(chat, "Hi")
    assert chat.base.streamed_text == expected["finetuned"].generate("Hi", max_new_tokens=TOKENS)  # the sft checkpoint
    assert ChatWidget(dpo, base=sft).base.title.value == chat.base.title.value
