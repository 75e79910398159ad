"""Supervised fine-tuning of causal LMs (``task: sft``): chats and instructions in, answers out.

The task: canonical rows are ``messages`` (``[{role, content}]``, checked by ``ftkit.data.chat``),
the ``layout`` they came in (which decides the default ``training.train_on``) and their ``origin``
("train.jsonl:12", for errors). There is no label set and no new head: the model is the causal
LM itself (LoRA on every linear layer by default), trained with its own loss on the trained
tokens; evaluation reports that loss and its perplexity, and at the end generates answers for the
test split (written to the predictions file as they come), scored by exact match, by
label-likelihood accuracy when the answers form a small set, and by ROUGE-L on request.

Which tokens are learnt from: the loss is taken on the assistant turns (chat data), on the final
answer (prompt/completion data) or on every token. Chat templates such as SmolLM2's have no
``{% generation %}`` markers, so ``return_assistant_tokens_mask`` comes out all zero; instead each
assistant turn is located by rendering the conversation up to it with ``add_generation_prompt=True``
and requiring that to be a token prefix of the whole rendering. A template that re-renders earlier
turns differently fails with an error naming the example rather than training on the wrong tokens.

Each trained turn includes its end-of-turn token (SmolLM2's ``<|im_end|>``), which is also the pad
token, so padding is known from the attention mask only, never by token id. Truncation never leaves
an example whose trained tokens were all cut: such examples are flagged (``trained_tokens == 0``)
and dropped. torch is imported only by the collator; generation is the engine's (``EvalContext``).
"""

from __future__ import annotations

import html
import json
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from ..errors import DataError, FtkitError
from .base import EvalContext, ReportRow, Task

if TYPE_CHECKING:
    import datasets

    from ..config import DataConfig
    from ..data.formats import Table
    from .stats import SplitStats

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
        "prompt_tokens": _percentiles(prompt_lengths),
        "completion_tokens": _percentiles(completion_lengths),
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


def _percentiles(values: list[int]) -> dict[str, int]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(fraction: float) -> int:
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    return {"min": ordered[0], "p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": ordered[-1]}


# ----- the task ---------------------------------------------------------------------------------------

SMALL_ANSWER_SET = 20  # at most this many distinct answers: a label set (label-likelihood accuracy, answer counts)
DEFAULT_PREDICT_TOKENS = 64


class SftTask(Task):
    name = "sft"
    columns = ("messages", "layout", "origin")
    label_column = None
    example_noun = "conversations"
    label_noun = "answer"
    labelled_noun = "answers"
    distribution_title = "examples per answer"
    form_fields = ("data.prompt_template", "data.completion_column", "data.answer_map", "training.train_on",
                   "training.max_new_tokens", "training.rouge_l")
    pipeline_task = "text-generation"
    example_input = "Hello! What can you do?"
    default_metric = "loss"
    peft_task_type = "CAUSAL_LM"
    architecture_suffix = "ForCausalLM"
    supports_packing = True  # the loss is per token, and the separator label keeps examples from predicting each other
    pre_split_words = False  # chat templates render text; a prefix space would change the rendering
    new_head = False  # the LM head is pretrained (and tied to the embeddings in small models)
    lora_target_modules = "all-linear"  # peft: every linear layer but the output layer
    default_model = "default-causal"
    default_adapter = "lora"  # a causal LM is large; LoRA on every linear layer learns an answer format in steps
    # The encoders' LoRA rate (2e-3) was chosen for a fresh head on a small encoder; a pretrained LM head keeps 5e-4.
    default_learning_rates = MappingProxyType({**Task.default_learning_rates, "lora": 5e-4})
    stats_use_tokenizer = True

    # ----- data ---------------------------------------------------------------------------------------
    def features(self) -> "datasets.Features":
        import datasets

        message = {"role": datasets.Value("string"), "content": datasets.Value("string")}
        return datasets.Features({"messages": datasets.List(message), "layout": datasets.Value("string"),
                                  "origin": datasets.Value("string")})

    def canonical(self, table: "Table", options: "DataConfig") -> "Table":
        """Chats, prompt/completion, alpaca or sharegpt rows, or any table through ``data.prompt_template``."""
        from ..data.chat import instructions_from_table, read_chat_records
        from ..data.formats import Table

        if options.prompt_template:
            if not options.completion_column:
                raise DataError("data.prompt_template needs data.completion_column: the column holding the answer "
                                f"(the columns are {', '.join(table.columns)})", table.path)
            table = instructions_from_table(table, options.prompt_template, options.completion_column,
                                            options.answer_map)
        elif options.completion_column or options.answer_map:
            raise DataError("data.completion_column and data.answer_map need data.prompt_template, which writes "
                            "the prompt from each row's columns (e.g. 'Review: {sentence}\\nPositive or negative?')",
                            table.path)
        records = read_chat_records(table)
        return Table({"messages": records.conversations, "layout": [records.format] * len(records),
                      "origin": records.origins}, table.source, table.path, table.lines)

    def label_list(self, splits: Iterable["datasets.Dataset"], given: Sequence[str] | None = None) -> list[str]:
        return []

    # ----- statistics and preview --------------------------------------------------------------------
    def split_stats(self, name: str, dataset: "datasets.Dataset", scheme: str | None) -> "SplitStats":
        """Conversations, words, turns, and the answers when they form a small set (SST-2: negative/positive)."""
        from .stats import SplitStats

        conversations = dataset["messages"]
        lengths = [sum(len(message["content"].split()) for message in messages) for messages in conversations]
        answers = Counter(messages[-1]["content"].strip() for messages in conversations)
        counts = dict(answers) if len(answers) <= SMALL_ANSWER_SET else {}
        stats = SplitStats.of(len(dataset), lengths, counts, len(answers))
        stats.extra = {"turns": sum(len(messages) for messages in conversations),
                       "assistant turns": sum(m["role"] == "assistant" for messages in conversations for m in messages)}
        return stats

    def token_stats(self, dataset: "datasets.Dataset", tokenizer: Any, options: Any) -> dict[str, Any]:
        """Prompt and completion lengths in the model's tokens, and how many examples ``max_seq_length`` cuts."""
        layouts = dataset["layout"]
        train_on = getattr(options, "train_on", None) or DEFAULT_TRAIN_ON.get(layouts[0] if layouts else "", "assistant")
        max_length = getattr(options, "max_seq_length", None)
        counted = sft_token_stats(tokenizer, dataset["messages"], train_on, max_length, dataset["origin"])
        return {"prompt tokens": counted["prompt_tokens"], "completion tokens": counted["completion_tokens"],
                f"truncated at {max_length}": counted["truncated"],
                "dropped (answer cut)": counted["dropped_by_truncation"], "train_on": train_on}

    def preview_html(self, rows: Iterable[Mapping[str, Any]]) -> str:
        """Each conversation's turns, the answers (what is learnt) highlighted."""
        parts = []
        for row in rows:
            turns = "".join(
                f'<div><b style="color:#6b7280">{html.escape(m["role"])}</b>: '
                + (f'<span style="background:#c6f0c2">{html.escape(m["content"])}</span>' if m["role"] == "assistant"
                   else html.escape(m["content"])) + "</div>"
                for m in row["messages"])
            parts.append(f'<div class="ftkit-example" style="margin-bottom:6px">{turns}</div>')
        return "".join(parts)

    def token_preview_html(self, rows: Iterable[Mapping[str, Any]], tokenizer: Any, options: Any) -> str:
        """Each conversation rendered by the chat template, trained tokens highlighted and the rest greyed."""
        max_length = getattr(options, "max_seq_length", None)
        parts = []
        for row in rows:
            train_on = getattr(options, "train_on", None) or DEFAULT_TRAIN_ON.get(row["layout"], "assistant")
            encoded = encode_conversation(tokenizer, row["messages"], train_on, max_length, row["origin"])
            note = (f'<div style="color:#dc2626;font-size:12px">cut at {max_length} of {encoded.full_length} tokens'
                    f'{"; nothing left to train on: dropped" if not encoded.trained_tokens else ""}</div>'
                    if encoded.truncated else "")
            parts.append(trained_spans_html(tokenizer, encoded.input_ids, encoded.labels) + note)
        return "".join(parts)

    # ----- model, tokenisation, batches and loss -----------------------------------------------------
    def model_class(self) -> type:
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM

    def encoder(self, tokenizer: Any, label2id: Mapping[str, int], max_length: int,
                train_on: str | None = None) -> Callable[..., dict[str, list]]:
        return _SftEncoder(tokenizer, max_length, train_on)

    def encoder_options(self, config: Any) -> dict[str, Any]:
        return {"train_on": config.training.train_on}

    def collator(self, tokenizer: Any, pad_to_multiple_of: int | None) -> Any:
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        return SFTCollator(pad_token_id=pad)

    def configure_model(self, model: Any) -> None:
        # Training needs no KV cache; a cache would also keep transformers from seeing packed rows' boundaries.
        model.config.use_cache = False

    # ----- evaluation and predictions --------------------------------------------------------------
    def loss_metrics(self, loss: float) -> dict[str, float]:
        return {"perplexity": math.exp(min(float(loss), 80.0))}

    def evaluate(self, trainer: Any, features: Any, split: str,
                 context: EvalContext | None = None) -> tuple[dict[str, Any], Any]:
        """The loss on the trained tokens (and perplexity), then answers generated for every example.

        Generation runs in batches (left padding) on the main process; each batch's rows are appended
        to the predictions file as soon as they exist (``save_predictions`` then adds the likeliest answers).
        """
        output = trainer.evaluation_loop(trainer.get_test_dataloader(features), description=f"{split} loss",
                                         prediction_loss_only=True, metric_key_prefix=split)
        metrics = {k.removeprefix(f"{split}_"): v for k, v in output.metrics.items()}
        if context is None or not context.main_process:
            return metrics, None
        rows = self.generate_answers(context, split)
        metrics.update(answer_metrics(rows, rouge=bool(context.config.training.rouge_l)))
        return metrics, rows

    def generate_answers(self, context: EvalContext, split: str) -> list[dict[str, Any]]:
        """Per example of ``context.raw``: prompt, reference, generation, match (and the likeliest answer)."""
        conversations = context.raw["messages"]
        prompts = [[dict(m) for m in messages[:-1]] for messages in conversations]
        references = [messages[-1]["content"] for messages in conversations]
        training = context.config.training
        batch_size = training.eval_batch_size or 2 * (16 if training.batch_size == "auto" else int(training.batch_size))
        generator = context.generator()
        rows: list[dict[str, Any]] = []
        out = _open_predictions(context.predictions_path)
        try:
            for start in range(0, len(prompts), batch_size):
                batch = prompts[start:start + batch_size]
                for offset, generation in enumerate(generator.generations(batch, training.max_new_tokens,
                                                                          batch_size=batch_size)):
                    index = start + offset
                    row = {"id": index, "prompt": _prompt_value(batch[offset]), "reference": references[index],
                           "generation": generation.text, "match": exact_match(generation.text, references[index]),
                           "stopped": generation.stopped}
                    rows.append(row)
                    if out is not None:
                        out.write(json.dumps(row, ensure_ascii=False) + "\n")
                if out is not None:
                    out.flush()
        finally:
            if out is not None:
                out.close()
        choices = answer_set(references)
        if choices:  # label likelihood: no generation needed, so no answer is cut short or phrased differently
            for row, choice in zip(rows, generator.choose(prompts, choices, batch_size=batch_size)):
                row["choice"] = choice
        return rows

    def report_summary(self, metrics: Mapping[str, Any], support: int) -> tuple[str, list[ReportRow]]:
        m, n = metrics, metrics.get("samples")
        names = (("loss", "loss"), ("perplexity", "perplexity"), ("exact match", "exact_match"),
                 ("label accuracy", "label_accuracy"), ("ROUGE-L", "rouge_l"), ("ended by end-of-turn", "stopped"))
        return "generation scores (loss on trained tokens; test answers generated)", [
            (name, None, None, m.get(key), n) for name, key in names if m.get(key) is not None]

    def save_predictions(self, prepared: Any, split: str, predictions: Any, path: Path) -> None:
        """``{"id", "prompt", "reference", "generation", "match", "stopped", ("choice")}`` per example, in order.

        The rows were already appended to ``path`` while they were generated; this writes the finished file.
        """
        if predictions is None:
            return
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.tmp")
        partial.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in predictions), encoding="utf-8")
        os.replace(partial, path)

    def predict(self, predictor: Any, texts: list[str], batch_size: int) -> list[str]:
        """The model's answer to each text, asked as one user turn through the checkpoint's chat template."""
        max_new_tokens = getattr(predictor, "max_new_tokens", None) or DEFAULT_PREDICT_TOKENS
        return predictor.generator().generate_batch(texts, max_new_tokens=max_new_tokens, batch_size=batch_size)

    def prediction_display(self, text: str, prediction: Any) -> tuple[str, str]:
        page = (f"<div><div style='color:#6b7280'><b>user</b>: {html.escape(text)}</div>"
                f"<div><b>assistant</b>: {html.escape(str(prediction))}</div></div>")
        return f"{text}\n→ {prediction}", page

    # ----- where the model goes wrong ----------------------------------------------------------------
    def error_report(self, rows: Sequence[Mapping[str, Any]], limit: int | None = None) -> dict[str, Any]:
        """Prompt, reference, generation and exact match per example, mismatches first (then the split's order)."""
        examples = sorted((_generation_example(row) for row in rows), key=lambda e: (e["match"], e["id"]))[:limit]
        matches = sum(bool(row["match"]) for row in rows)
        columns = ["prompt", "reference", "generation", "match"]
        return {
            "summary": {"examples": len(rows), "matches": matches, "mismatches": len(rows) - matches,
                        "exact_match": matches / len(rows) if rows else 0.0},
            "table": {"title": "generations, mismatches first", "columns": columns,
                      "rows": [[example[column] for column in columns] for example in examples]},
            "confusion": None,
            "examples": examples,
        }

    def error_rows(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """One record per example: id, prompt, reference, generation, match."""
        return [_generation_example(row) for row in rows]

    def error_facets(self, example: Mapping[str, Any]) -> list[tuple[str, str | None]]:
        return [("match" if example["match"] else "mismatch", None)]

    def error_example_html(self, example: Mapping[str, Any], labels: Sequence[str]) -> str:
        verdict = "match" if example["match"] else "mismatch"
        return (f'<div class="ftkit-error-example"><div style="color:#6b7280;white-space:pre-wrap">'
                f'<b>prompt</b>: {html.escape(example["prompt"])}</div>'
                f'<div><b>reference</b>: {html.escape(example["reference"])}</div>'
                f'<div><b>generation</b> ({verdict}): {html.escape(example["generation"])}</div></div>')

    def load_snippet(self, path: str, adapter_only: bool) -> str:
        """A chat turn through the checkpoint's own chat template: ftkit's Generator for LoRA adapter
        weights (it rebuilds the base), transformers' text-generation pipeline for a whole model."""
        if adapter_only:
            return ("from ftkit.engine.generation import Generator\n"
                    f"model = Generator.load({path!r})\n"
                    f"print(model.generate({self.example_input!r}, max_new_tokens=64))")
        return ("from transformers import pipeline\n"
                f"chat = pipeline('text-generation', model={path!r})\n"
                f"print(chat([{{'role': 'user', 'content': {self.example_input!r}}}], max_new_tokens=64))")


class _SftEncoder:
    """Batched map function: conversations -> ids and labels (trained tokens only), truncated on the right;
    rows whose trained tokens were all cut are dropped."""

    def __init__(self, tokenizer: Any, max_length: int, train_on: str | None):
        self.tokenizer, self.max_length, self.train_on = tokenizer, max_length, train_on
        if train_on is not None and train_on not in TRAIN_ON_CHOICES:
            raise FtkitError(f"training.train_on must be one of {', '.join(TRAIN_ON_CHOICES)}, not {train_on!r}")

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        rows: dict[str, list] = {"input_ids": [], "attention_mask": [], "labels": [], "length": []}
        for messages, layout, origin in zip(batch["messages"], batch["layout"], batch["origin"]):
            train_on = self.train_on or DEFAULT_TRAIN_ON.get(layout, "assistant")
            encoded = encode_conversation(self.tokenizer, messages, train_on, self.max_length, origin)
            if not encoded.trained_tokens:
                continue
            rows["input_ids"].append(encoded.input_ids)
            rows["attention_mask"].append([1] * len(encoded.input_ids))
            rows["labels"].append(encoded.labels)
            rows["length"].append(len(encoded.input_ids))
        return rows


# ----- scoring generations ------------------------------------------------------------------------------


def normalise_answer(text: str) -> str:
    """Whitespace collapsed and case folded: what exact match compares."""
    return " ".join(str(text).split()).casefold()


def exact_match(generation: str, reference: str) -> bool:
    return normalise_answer(generation) == normalise_answer(reference)


def answer_set(references: Sequence[str]) -> list[str]:
    """The distinct references when they form a small label set (2-20 values, some repeated), else []."""
    distinct = sorted(set(references))
    return distinct if 2 <= len(distinct) <= SMALL_ANSWER_SET and len(distinct) < len(references) else []


def rouge_l(generation: str, reference: str) -> float:
    """ROUGE-L F1: the longest common subsequence of (lower-cased, whitespace-split) words.

    ``rouge_score`` is used when installed (its tokenizer and stemmer-free F-measure); otherwise the same
    LCS F-measure is computed here.
    """
    try:
        from rouge_score import rouge_scorer
    except ImportError:
        return _lcs_f1(generation.lower().split(), reference.lower().split())
    return float(rouge_scorer.RougeScorer(["rougeL"]).score(reference, generation)["rougeL"].fmeasure)


def _lcs_f1(candidate: Sequence[str], reference: Sequence[str]) -> float:
    if not candidate or not reference:
        return 0.0
    previous = [0] * (len(reference) + 1)
    for word in candidate:
        current = [0]
        for j, other in enumerate(reference):
            current.append(previous[j] + 1 if word == other else max(previous[j + 1], current[j]))
        previous = current
    common = previous[-1]
    if not common:
        return 0.0
    precision, recall = common / len(candidate), common / len(reference)
    return 2 * precision * recall / (precision + recall)


def answer_metrics(rows: Sequence[Mapping[str, Any]], rouge: bool = False) -> dict[str, float]:
    """Exact match, the share that ended by themselves, label-likelihood accuracy and ROUGE-L of prediction rows."""
    if not rows:
        return {"samples": 0}
    metrics = {"exact_match": sum(bool(row["match"]) for row in rows) / len(rows),
               "stopped": sum(bool(row.get("stopped")) for row in rows) / len(rows), "samples": len(rows)}
    if all("choice" in row for row in rows):
        metrics["label_accuracy"] = sum(row["choice"] == row["reference"] for row in rows) / len(rows)
    if rouge:
        metrics["rouge_l"] = sum(rouge_l(row["generation"], row["reference"]) for row in rows) / len(rows)
    return metrics


def _prompt_value(messages: list[dict[str, str]]) -> Any:
    """One user turn as its text; anything longer as the messages."""
    return messages[0]["content"] if len(messages) == 1 and messages[0]["role"] == "user" else messages


def _generation_example(row: Mapping[str, Any]) -> dict[str, Any]:
    """A predictions-file row for the error report: the prompt as text (a conversation as "role: content" lines)."""
    prompt = row["prompt"]
    if not isinstance(prompt, str):
        prompt = "\n".join(f"{message['role']}: {message['content']}" for message in prompt)
    return {"id": row["id"], "prompt": prompt, "reference": row["reference"], "generation": row["generation"],
            "match": bool(row["match"])}


def _open_predictions(path: Path | None) -> Any:
    if path is None:
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("w", encoding="utf-8")
