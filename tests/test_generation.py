"""`ftkit.engine.generation.Generator`: streamed, batched and one-by-one answers agree; checkpoints load.

A tiny random llama with SmolLM2's real tokenizer and ChatML template (`tests/sft_fixtures.py`):
its answers are nonsense, which is the point for the agreement tests (any token, special or a
lone byte, may come out). The real default-causal answers one question in the slow test.
"""

from __future__ import annotations

import json

import pytest

from ftkit.engine.generation import Generation, Generator, as_messages
from ftkit.errors import FtkitError
from tests.sft_fixtures import default_causal_dir, smollm2_tokenizer, tiny_llama, tiny_llama_dir  # noqa: F401 - fixtures

PROMPTS = [
    "Review: a gorgeous, witty film.\nIs this review positive or negative?",
    "Hi",
    [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "Colour of the sky?"},
     {"role": "assistant", "content": "Blue."}, {"role": "user", "content": "And grass, at night, in winter?"}],
    "Tell me something long about the history of the bicycle, its makers and the roads it rode on.",
]


@pytest.fixture(scope="module")
def generator(tiny_llama, smollm2_tokenizer):  # noqa: F811
    return Generator(tiny_llama, smollm2_tokenizer, device="cpu")


def test_a_text_prompt_is_one_user_turn_rendered_with_the_generation_prompt(generator, smollm2_tokenizer):  # noqa: F811
    ids = generator.prompt_ids("Hi")
    text = smollm2_tokenizer.decode(ids)
    assert text.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    assert generator.prompt_ids([{"role": "user", "content": "Hi"}]) == ids


def test_the_end_of_turn_token_stops_answers(generator, smollm2_tokenizer):  # noqa: F811
    im_end = smollm2_tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert im_end in generator.stop_token_ids
    assert generator.pad_token_id == im_end  # SmolLM2: pad == eos == end of turn


def test_streamed_pieces_join_to_exactly_the_generated_text(generator):
    for prompt in PROMPTS:
        pieces = list(generator.stream(prompt, max_new_tokens=24))
        assert len(pieces) > 1
        assert "".join(pieces) == generator.generate(prompt, max_new_tokens=24)


def test_a_finished_stream_says_whether_its_answer_ended_or_was_cut_at_the_token_limit(generator):
    for prompt in PROMPTS:
        stream = generator.stream(prompt, max_new_tokens=6)
        assert stream.generation is None  # not known before the answer is over
        text = "".join(stream)
        assert stream.generation == generator.generations([prompt], max_new_tokens=6)[0]
        assert stream.generation.text == text
    assert not stream.generation.stopped  # six tokens of a random model: cut, not ended


def test_streaming_with_sampling_is_reproducible_under_a_seed(generator):
    import torch

    torch.manual_seed(3)
    streamed = "".join(generator.stream("Hi", max_new_tokens=16, temperature=0.8, top_p=0.9))
    torch.manual_seed(3)
    assert streamed == generator.generate("Hi", max_new_tokens=16, temperature=0.8, top_p=0.9)


def test_batches_with_left_padding_answer_as_one_by_one(generator):
    one_by_one = [generator.generations([prompt], max_new_tokens=12)[0] for prompt in PROMPTS]
    batched = generator.generations(PROMPTS, max_new_tokens=12, batch_size=3)  # a full batch and a partial one
    assert [g.token_ids for g in batched] == [g.token_ids for g in one_by_one]
    assert generator.generate_batch(PROMPTS, max_new_tokens=12, batch_size=4) == [g.text for g in one_by_one]


def test_an_answer_ends_after_its_first_end_of_turn_token(generator, smollm2_tokenizer):  # noqa: F811
    im_end = smollm2_tokenizer.convert_tokens_to_ids("<|im_end|>")
    words = smollm2_tokenizer("positive", add_special_tokens=False)["input_ids"]
    finished = generator._finished([*words, im_end, im_end, im_end])  # what follows the first is padding
    assert finished == Generation("positive", [*words, im_end], True)
    assert generator._finished(words) == Generation("positive", words, False)


def test_choice_scores_are_the_log_likelihood_of_each_answer_and_its_end_of_turn(generator, smollm2_tokenizer):  # noqa: F811
    import torch

    scores = generator.choice_scores(["Is it good?", "Is it bad?"], ["positive", "negative"])
    assert len(scores) == 2 and all(len(row) == 2 for row in scores)
    ids = generator.prompt_ids("Is it good?")
    answer = smollm2_tokenizer("negative", add_special_tokens=False)["input_ids"] + [generator.pad_token_id]
    full = torch.tensor([ids + answer])
    with torch.inference_mode():
        log_probs = torch.log_softmax(generator.model(input_ids=full).logits[0].float(), dim=-1)
    expected = sum(float(log_probs[len(ids) - 1 + i, token]) for i, token in enumerate(answer))
    assert scores[0][1] == pytest.approx(expected, abs=1e-4)


CHOICES = ["no", "positive", "very negative"]  # answers of 1, 1 and 2 tokens, each + the end-of-turn token


def reference_choice_scores(generator, prompts, choices):
    """The straightforward way: one unpadded forward pass per prompt + choice, log-softmax everywhere."""
    import torch

    from ftkit.tasks.sft_encoding import assistant_spans

    scores = []
    for prompt in prompts:
        row = []
        for choice in choices:
            ids, spans = assistant_spans(generator.tokenizer, [*as_messages(prompt),
                                                               {"role": "assistant", "content": choice}])
            begin, end = spans[-1]
            with torch.inference_mode():
                logits = generator.model(input_ids=torch.tensor([ids])).logits[0].float()
            log_probs = torch.log_softmax(logits, dim=-1)
            row.append(sum(float(log_probs[position - 1, ids[position]]) for position in range(begin, end)))
        scores.append(row)
    return scores


@pytest.fixture(scope="module")
def sharp_generator(smollm2_tokenizer):  # noqa: F811
    """A tiny llama with large weights: attention and logits depend strongly on positions and padding."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(smollm2_tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                         max_position_embeddings=512, tie_word_embeddings=True, initializer_range=0.5,
                         pad_token_id=smollm2_tokenizer.pad_token_id, eos_token_id=smollm2_tokenizer.eos_token_id)
    torch.manual_seed(0)
    return Generator(LlamaForCausalLM(config).eval(), smollm2_tokenizer, device="cpu")


@pytest.mark.parametrize("batch_size", [1, 3])  # 3: 4 prompts make a full batch and one of 1
def test_choice_scores_equal_one_full_forward_per_prompt_and_choice(sharp_generator, batch_size):
    expected = reference_choice_scores(sharp_generator, PROMPTS, CHOICES)
    scores = sharp_generator.choice_scores(PROMPTS, CHOICES, batch_size=batch_size)
    assert [len(row) for row in scores] == [len(CHOICES)] * len(PROMPTS)
    for row, expected_row in zip(scores, expected):  # in the callers' order, though batched by length
        assert row == pytest.approx(expected_row, abs=1e-4)
    assert sharp_generator.choice_scores(PROMPTS[1:2], CHOICES)[0] == pytest.approx(expected[1], abs=1e-4)
    assert sharp_generator.choice_scores([], CHOICES) == []


def test_choice_scores_run_each_prompt_once_for_all_its_choices(sharp_generator):
    calls = []
    hook = sharp_generator.model.register_forward_hook(
        lambda module, args, kwargs, output: calls.append((tuple(kwargs["input_ids"].shape), output.logits.shape[1])),
        with_kwargs=True)
    try:
        sharp_generator.choice_scores(PROMPTS, CHOICES, batch_size=3)
    finally:
        hook.remove()
    shortest = min(len(sharp_generator.prompt_ids(prompt)) for prompt in PROMPTS)
    prefix, *batches = calls
    assert prefix[0][0] == 1 and 0 < prefix[0][1] < shortest  # the shared start of the prompts, run once
    prompt_passes, answer_passes = batches[0::2], batches[1::2]
    assert [shape[0] for shape, _ in prompt_passes] == [3, 1] and all(kept == 1 for _, kept in prompt_passes)
    assert [shape for shape, _ in answer_passes] == [(3 * len(CHOICES), 2), (len(CHOICES), 2)]


def test_choose_picks_the_likeliest_choice(sharp_generator):
    choices = ["positive", "negative"]  # this model prefers either, depending on the prompt
    scores = sharp_generator.choice_scores(PROMPTS, choices, batch_size=3)
    best = [choices[max(range(len(row)), key=row.__getitem__)] for row in scores]
    assert len(set(best)) == 2
    assert sharp_generator.choose(PROMPTS, choices, batch_size=3) == best


def test_bad_prompts_are_clear_errors(generator):
    for bad in ([], [{"role": "robot", "content": "x"}], [{"role": "user"}], 42):
        with pytest.raises(FtkitError, match="prompt|message"):
            as_messages(bad)
    with pytest.raises(FtkitError, match="max_new_tokens"):
        generator.generate("Hi", max_new_tokens=0)
    with pytest.raises(FtkitError, match="list of prompts"):
        generator.generate_batch("Hi")


def test_a_model_folder_loads_and_answers_as_the_model_in_memory(tiny_llama_dir, generator):
    loaded = Generator.load(tiny_llama_dir)
    assert loaded.generate(PROMPTS[0], max_new_tokens=10) == generator.generate(PROMPTS[0], max_new_tokens=10)


def test_a_lora_checkpoint_folder_loads_base_plus_adapter(tmp_path, tiny_llama_dir, smollm2_tokenizer):  # noqa: F811
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    lora = get_peft_model(base, LoraConfig(task_type="CAUSAL_LM", r=4, target_modules="all-linear",
                                           init_lora_weights=False))  # random B: the adapter changes answers
    checkpoint = tmp_path / "checkpoint-10"
    lora.save_pretrained(checkpoint)
    smollm2_tokenizer.save_pretrained(checkpoint)
    assert json.loads((checkpoint / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_llama_dir)

    loaded = Generator.load(checkpoint)
    assert isinstance(loaded.model, PeftModel)
    in_memory = Generator(lora.eval(), smollm2_tokenizer, device="cpu")
    assert loaded.generations(PROMPTS[:2], max_new_tokens=10) == in_memory.generations(PROMPTS[:2], max_new_tokens=10)
    assert loaded.generate("Hi", max_new_tokens=10) != Generator.load(tiny_llama_dir).generate("Hi", max_new_tokens=10)


def test_folders_that_are_not_causal_models_are_clear_errors(tmp_path):
    with pytest.raises(FtkitError, match="does not exist"):
        Generator.load(tmp_path / "missing")
    with pytest.raises(FtkitError, match="neither config.json nor adapter_config.json"):
        Generator.load(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertForTokenClassification"]}))
    with pytest.raises(FtkitError, match="not a causal language model"):
        Generator.load(tmp_path)
    lora = tmp_path / "lora"
    lora.mkdir()
    (lora / "adapter_config.json").write_text(json.dumps({"task_type": "CAUSAL_LM",
                                                         "base_model_name_or_path": str(tmp_path / "gone")}))
    with pytest.raises(FtkitError, match="no longer exists"):
        Generator.load(lora)


@pytest.mark.slow
def test_the_default_causal_model_answers_a_short_question_in_a_few_tokens():
    generator = Generator.load("default-causal")
    [answer] = generator.generations(["What is the capital of France? Answer with one word."], max_new_tokens=8)
    assert "Paris" in answer.text
    assert answer.stopped and len(answer.token_ids) <= 8
    assert "".join(generator.stream("What is the capital of France? Answer with one word.", max_new_tokens=8)) \
        == answer.text
