"""SFT's chat encoding: a conversation rendered by the tokenizer's chat template, and which tokens train.

Which tokens are learnt from: the loss is taken on the assistant turns (chat data), on the final
answer (prompt/completion data) or on every token. Chat templates such as SmolLM2's have no
``{% generation %}`` markers, so ``return_assistant_tokens_mask`` comes out all zero; instead each
assistant turn is located by rendering the conversation up to it with ``add_generation_prompt=True``
and requiring that to be a token prefix of the whole rendering. A template that re-renders earlier
turns differently fails with an error naming the example rather than training on the wrong tokens.

Each trained turn includes its end-of-turn token (SmolLM2's ``<|im_end|>``), which is also the pad
token, so padding is known from the attention mask only, never by token id. Truncation never leaves
an example whose trained tokens were all cut: such examples are flagged (``trained_tokens == 0``)
and dropped. torch is imported only by the collator.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from ..errors import DataError, FtkitError

IGNORE_INDEX = -100
TRAIN_ON_CHOICES = ("assistant", "completion", "all")
# What a layout of ftkit.data.chat learns from unless training.train_on says otherwise.
DEFAULT_TRAIN_ON = {"messages": "assistant", "sharegpt": "assistant", "prompt-completion": "completion",
                    "alpaca": "completion"}

Message = Mapping[str, str]
Span = tuple[int, int]  # [start, end) token positions


@dataclass
class EncodedConversation:
    """One conversation as model inputs, before padding."""

    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX where no loss is taken
    assistant_spans: list[Span]  # every assistant turn, end-of-turn token included, in the untruncated rendering
    full_length: int  # tokens before truncation

    @property
    def truncated(self) -> bool:
        return self.full_length > len(self.input_ids)

    @property
    def trained_tokens(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


def render_ids(tokenizer: Any, messages: Sequence[Message], add_generation_prompt: bool = False) -> list[int]:
    """Token ids of the chat template's rendering (special tokens come from the template alone)."""
    text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=add_generation_prompt)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def assistant_spans(tokenizer: Any, messages: Sequence[Message],
                    origin: str = "example") -> tuple[list[int], list[Span]]:
    """The rendered conversation's ids and the span of each assistant turn, its end-of-turn token included.

    A turn starts where the rendering of the messages before it plus the generation prompt ends,
    and ends where the rendering through it ends, less anything after its last end-of-turn token
    (the newline ChatML puts between turns is not what the model should learn to emit).
    """
    if not getattr(tokenizer, "chat_template", None):
        raise FtkitError("the tokenizer has no chat template, so conversations cannot be rendered; "
                         "use an instruct model (model: default-causal) or one whose tokenizer defines chat_template")
    try:
        ids = render_ids(tokenizer, messages)
        spans = []
        for index, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            start = len(_token_prefix(ids, render_ids(tokenizer, messages[:index], add_generation_prompt=True),
                                      origin, index, "with the generation prompt"))
            end = len(_token_prefix(ids, render_ids(tokenizer, messages[: index + 1]), origin, index + 1, ""))
            spans.append((start, _through_end_of_turn(ids, start, end, tokenizer.eos_token_id)))
    except DataError:
        raise
    except Exception as exc:  # a template error: jinja's own exception, or one the template raises
        raise DataError(f"{origin}: the chat template does not render this conversation: "
                        f"{type(exc).__name__}: {exc}") from None
    return ids, spans


def encode_conversation(tokenizer: Any, messages: Sequence[Message], train_on: str = "assistant",
                        max_length: int | None = None, origin: str = "example") -> EncodedConversation:
    """Input ids and labels of one conversation, truncated on the right to ``max_length``.

    ``assistant`` trains every assistant turn, ``completion`` the last one, ``all`` every token.
    When truncation cuts every assistant token of the trained turns, no label is kept (even for
    ``all``): the example would otherwise teach the model to continue a cut prompt.
    """
    if train_on not in TRAIN_ON_CHOICES:
        raise FtkitError(f"train_on must be one of {', '.join(TRAIN_ON_CHOICES)}, not {train_on!r}")
    ids, spans = assistant_spans(tokenizer, messages, origin)
    answer_spans = spans[-1:] if train_on == "completion" else spans
    if train_on == "all":
        labels = list(ids)
    else:
        labels = [IGNORE_INDEX] * len(ids)
        for start, end in answer_spans:
            labels[start:end] = ids[start:end]
    kept = len(ids) if max_length is None else min(len(ids), max_length)
    if not any(start < kept for start, _ in answer_spans):
        labels = [IGNORE_INDEX] * len(ids)
    return EncodedConversation(ids[:kept], labels[:kept], spans, len(ids))


def encode_batch(batch: Mapping[str, list], indices: Sequence[int] | None = None, *, tokenizer: Any,
                 train_on: str = "assistant", max_length: int | None = None) -> dict[str, list]:
    """For ``datasets.map(batched=True, with_indices=True, fn_kwargs=...)`` over a ``messages`` column.

    Errors name the row by its ``origin`` column when the dataset has one ("train.jsonl:12"),
    otherwise by its index. Rows whose trained tokens were all truncated have ``trained_tokens == 0``;
    ``drop_untrained`` removes them.
    """
    origins = batch.get("origin") or [f"example {i}" for i in (indices or range(len(batch["messages"])))]
    columns: dict[str, list] = {"input_ids": [], "attention_mask": [], "labels": [], "length": [],
                                "truncated": [], "trained_tokens": []}
    for messages, origin in zip(batch["messages"], origins):
        encoded = encode_conversation(tokenizer, messages, train_on, max_length, origin)
        columns["input_ids"].append(encoded.input_ids)
        columns["attention_mask"].append([1] * len(encoded.input_ids))
        columns["labels"].append(encoded.labels)
        columns["length"].append(len(encoded.input_ids))
        columns["truncated"].append(encoded.truncated)
        columns["trained_tokens"].append(encoded.trained_tokens)
    return columns


def drop_untrained(dataset: Any) -> tuple[Any, int]:
    """The encoded dataset without rows left with no trained token, and how many were dropped."""
    kept = dataset.filter(lambda count: count > 0, input_columns="trained_tokens")
    return kept, len(dataset) - len(kept)


def check_trained_tokens(labels: Any, origins: Sequence[str]) -> None:
    """Raise when a padded batch has no trained token: the loss would be a silent zero (or NaN)."""
    if not bool((labels != IGNORE_INDEX).any()):
        raise DataError(f"a batch has no trained tokens (every label is masked): {', '.join(origins)}. "
                        f"Their answers were cut by truncation or are empty; raise max_length or drop them")


@dataclass
class SFTCollator:
    """Pads ``input_ids`` with the pad id, ``attention_mask`` with 0 and ``labels`` with -100.

    Written here rather than taken from ``DataCollatorForSeq2Seq``, which pads on the side stored
    in the tokenizer (left for generation, right for training would mean mutating a shared
    tokenizer) and passes every other column to ``tokenizer.pad``. Padding uses
    ``torch.nn.utils.rnn.pad_sequence``.
    """

    pad_token_id: int
    padding_side: str = "right"

    def __call__(self, features: list[Mapping[str, Any]]) -> dict[str, Any]:
        import torch
        from torch.nn.utils.rnn import pad_sequence

        def padded(key: str, value: int) -> "torch.Tensor":
            rows = [torch.tensor(feature[key], dtype=torch.long) for feature in features]
            return pad_sequence(rows, batch_first=True, padding_value=value, padding_side=self.padding_side)

        batch = {"input_ids": padded("input_ids", self.pad_token_id), "labels": padded("labels", IGNORE_INDEX)}
        batch["attention_mask"] = pad_sequence(
            [torch.ones(len(feature["input_ids"]), dtype=torch.long) for feature in features],
            batch_first=True, padding_value=0, padding_side=self.padding_side)
        origins = [str(feature.get("origin", f"batch row {row}")) for row, feature in enumerate(features)]
        check_trained_tokens(batch["labels"], origins)
        return batch


def trained_spans_html(tokenizer: Any, input_ids: Sequence[int], labels: Sequence[int]) -> str:
    """The rendered chat with trained tokens highlighted and the rest greyed, for a data preview."""
    pieces, run, run_trained = [], [], None
    for token, label in zip(input_ids, labels):
        trained = label != IGNORE_INDEX
        if run and trained != run_trained:
            pieces.append(_html_run(tokenizer, run, run_trained))
            run = []
        run.append(token)
        run_trained = trained
    if run:
        pieces.append(_html_run(tokenizer, run, run_trained))
    return ('<pre class="ftkit-sft-preview" style="white-space: pre-wrap; font-size: 90%">'
            + "".join(pieces) + "</pre>")


def sft_token_stats(tokenizer: Any, conversations: Iterable[Sequence[Message]], train_on: str = "assistant",
                    max_length: int | None = None, origins: Sequence[str] | None = None) -> dict[str, Any]:
    """Counts for a data preview: examples, turns, prompt/completion token lengths, truncation.

    Prompt tokens are those outside the trained answers; completion tokens those inside, both
    counted before truncation.
    """
    prompt_lengths, completion_lengths = [], []
    turns = assistant_turns = truncated = untrained = 0
    for index, messages in enumerate(conversations):
        origin = origins[index] if origins is not None else f"example {index}"
        encoded = encode_conversation(tokenizer, messages, train_on, max_length, origin)
        answer_spans = encoded.assistant_spans[-1:] if train_on == "completion" else encoded.assistant_spans
        answer_tokens = sum(end - start for start, end in answer_spans)
        completion_lengths.append(answer_tokens)
        prompt_lengths.append(encoded.full_length - answer_tokens)
        turns += len(messages)
        assistant_turns += len(encoded.assistant_spans)
        truncated += encoded.truncated
        untrained += encoded.trained_tokens == 0
    return {
        "examples": len(prompt_lengths),
        "turns": turns,
        "assistant_turns": assistant_turns,
        "prompt_tokens": percentiles(prompt_lengths),
        "completion_tokens": percentiles(completion_lengths),
        "max_length": max_length,
        "truncated": truncated,
        "dropped_by_truncation": untrained,
    }


def _token_prefix(ids: list[int], prefix: list[int], origin: str, upto: int, how: str) -> list[int]:
    if ids[: len(prefix)] != prefix:
        raise DataError(
            f"{origin}: the chat template renders the first {upto} message(s) {how} differently from how it renders "
            f"them inside the whole conversation (not a token prefix), so the assistant turns cannot be located. "
            f"Use a chat template that renders earlier turns unchanged, such as ChatML")
    return prefix


def _through_end_of_turn(ids: list[int], start: int, end: int, end_of_turn_id: int | None) -> int:
    """``end`` pulled back to just after the turn's last end-of-turn token, when the turn has one."""
    for position in range(end - 1, start - 1, -1):
        if ids[position] == end_of_turn_id:
            return position + 1
    return end


def _html_run(tokenizer: Any, token_ids: list[int], trained: bool) -> str:
    text = html.escape(tokenizer.decode(token_ids, skip_special_tokens=False))
    if trained:
        return f'<span class="ftkit-trained" style="background: #c6f0c2; color: #000">{text}</span>'
    return f'<span class="ftkit-untrained" style="color: #9a9a9a">{text}</span>'


def percentiles(values: list[int]) -> dict[str, int]:
    """min, p50, p90, p99 and max of token lengths, for statistics."""
    if not values:
        return {}
    ordered = sorted(values)

    def at(fraction: float) -> int:
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    return {"min": ordered[0], "p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": ordered[-1]}
