"""Supervised fine-tuning of causal LMs (``task: sft``): chats and instructions in, answers out.

The task: canonical rows are ``messages`` (``[{role, content}]``, checked by ``ftkit.data.chat``),
the ``layout`` they came in (which decides the default ``training.train_on``) and their ``origin``
("train.jsonl:12", for errors). There is no label set and no new head: the model is the causal
LM itself (LoRA on every linear layer by default), trained with its own loss on the trained
tokens; evaluation reports that loss and its perplexity, and at the end generates answers for the
test split (written to the predictions file as they come), scored by exact match, by
label-likelihood accuracy when the answers form a small set, and by ROUGE-L on request.

The rendering of a chat into tokens, which of them are trained, the collator and token statistics
are in ``sft_encoding.py``. torch is imported only by the collator; generation is the engine's (``EvalContext``).
"""

from __future__ import annotations

import html
import json
import math
import os
from collections import Counter
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from ..errors import DataError, FtkitError
from .base import EvalContext, ReportRow, Task
from .sft_encoding import (DEFAULT_TRAIN_ON, TRAIN_ON_CHOICES, SFTCollator, encode_conversation, sft_token_stats,
                           trained_spans_html)

if TYPE_CHECKING:
    import datasets

    from ..config import DataConfig
    from ..data.formats import Table
    from .stats import SplitStats


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
                   "training.generate_every", "training.generate_examples",
                   "training.max_new_tokens", "training.rouge_l")
    pipeline_task = "text-generation"
    example_input = "Hello! What can you do?"
    default_metric = "loss"
    generated_metrics = ("exact_match", "label_accuracy", "rouge_l", "stopped")  # scores of generated answers
    peft_task_type = "CAUSAL_LM"
    architecture_suffix = "ForCausalLM"
    supports_packing = True  # the loss is per token, and the separator label keeps examples from predicting each other
    encoder_takes_indices = True  # sentence_id: rows whose answer truncation cut are dropped
    sparse_lm_loss = True  # the answers are a few tokens of each row: no batch x length x vocabulary logits
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
        scores, rows = self.sampled_answers(context, split)
        return {**metrics, **scores}, rows

    def sampled_answers(self, context: EvalContext, split: str = "validation") -> tuple[dict[str, float], list[dict]]:
        """Answers generated for every row of ``context.raw`` and their scores (`answer_metrics`); the
        end-of-training test split, and the validation sample scored while training (``generate_every``)."""
        rows = self.generate_answers(context, split)
        return answer_metrics(rows, rouge=bool(context.config.training.rouge_l)), rows

    def prompts_and_references(self, raw: "datasets.Dataset") -> tuple[list[list[dict[str, str]]], list[str]]:
        """What the test generations answer (each conversation before its last turn) and what they are scored against."""
        conversations = raw["messages"]
        return ([[dict(m) for m in messages[:-1]] for messages in conversations],
                [messages[-1]["content"] for messages in conversations])

    def generate_answers(self, context: EvalContext, split: str) -> list[dict[str, Any]]:
        """Per example of ``context.raw``: prompt, reference, generation, match (and the likeliest answer)."""
        prompts, references = self.prompts_and_references(context.raw)
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

    export_format = "gguf"

    def export_inputs(self, raw: "datasets.Dataset") -> tuple[list[list[dict[str, str]]], list[str]]:
        return self.prompts_and_references(raw)

    def export_scores(self, predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
        return {"exact_match": sum(exact_match(p, r) for p, r in zip(predictions, references)) / max(1, len(references))}

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

    def training_example(self, row: Mapping[str, Any], predicted: Sequence[str] | None,
                         labels: Sequence[str]) -> dict[str, Any]:
        """The conversation before its last turn, and that turn: the answer it trains on."""
        messages = [dict(m) for m in row["messages"]]
        prompt = _prompt_value(messages[:-1])
        page = "".join(f'<div style="white-space:pre-wrap{";color:#6b7280" if m["role"] != "assistant" else ""}">'
                       f'<b>{html.escape(m["role"])}</b>: {html.escape(str(m["content"]))}</div>' for m in messages)
        text = prompt if isinstance(prompt, str) else "\n".join(f"{m['role']}: {m['content']}" for m in prompt)
        return {"text": text, "gold": messages[-1]["content"],
                "predicted": None, "html": f'<div class="ftkit-error-example">{page}</div>'}

    def error_example_html(self, example: Mapping[str, Any], labels: Sequence[str]) -> str:
        verdict = "match" if example["match"] else "mismatch"
        return (f'<div class="ftkit-error-example"><div style="color:#6b7280;white-space:pre-wrap">'
                f'<b>prompt</b>: {html.escape(example["prompt"])}</div>'
                f'<div><b>reference</b>: {html.escape(example["reference"])}</div>'
                f'<div><b>generation</b> ({verdict}): {html.escape(example["generation"])}{_cut_mark(example)}</div></div>')

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


def _cut_mark(answer: Mapping[str, Any]) -> str:
    """After an answer that max_new_tokens cut (``stopped`` False; older predictions do not say): a mark."""
    return ' <span style="color:#b45309">… (cut at the token limit)</span>' if answer.get("stopped") is False else ""


class _SftEncoder:
    """Batched map function: conversations -> ids and labels (trained tokens only), truncated on the right;
    rows whose trained tokens were all cut are dropped."""

    def __init__(self, tokenizer: Any, max_length: int, train_on: str | None):
        self.tokenizer, self.max_length, self.train_on = tokenizer, max_length, train_on
        if train_on is not None and train_on not in TRAIN_ON_CHOICES:
            raise FtkitError(f"training.train_on must be one of {', '.join(TRAIN_ON_CHOICES)}, not {train_on!r}")

    def __call__(self, batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        rows: dict[str, list] = {"input_ids": [], "attention_mask": [], "labels": [], "length": [], "sentence_id": []}
        for messages, layout, origin, index in zip(batch["messages"], batch["layout"], batch["origin"], indices):
            train_on = self.train_on or DEFAULT_TRAIN_ON.get(layout, "assistant")
            encoded = encode_conversation(self.tokenizer, messages, train_on, self.max_length, origin)
            if not encoded.trained_tokens:
                continue
            rows["input_ids"].append(encoded.input_ids)
            rows["attention_mask"].append([1] * len(encoded.input_ids))
            rows["labels"].append(encoded.labels)
            rows["length"].append(len(encoded.input_ids))
            rows["sentence_id"].append(index)  # its row in the split: a dropped row leaves a gap
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
