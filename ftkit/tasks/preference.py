"""Preference tuning of causal LMs (``task: dpo``, ``orpo``, ``kto``): better and worse answers to a prompt.

Canonical rows are a ``prompt`` (the messages before the answer), the ``chosen`` and ``rejected``
answers (text; kto: one ``completion`` and its ``label``), the ``format`` they came in and their
``origin`` ("train.jsonl:12", for errors). Reading and checking the records is
``ftkit.data.preference``'s; this module adds what needs the model's tokenizer (the prompt must
render with its chat template), statistics and the pair preview, the rows TRL's trainers read, and
the scores. Everything generative (the model class, generation at the end, predict, chat, the load
snippet, error report) is the SFT task's: a DPO checkpoint of a causal LM is used as one.

How these tasks train is their recipe's (``ftkit.engine.recipes``: TRL's DPO, ORPO and KTO trainers).
"""

from __future__ import annotations

import html
from collections import Counter
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from ..errors import DataError
from .base import EvalContext, ReportRow, Task
from .sft import SMALL_ANSWER_SET, SftTask, answer_metrics
from .sft_encoding import assistant_spans, encode_conversation, percentiles, render_ids, trained_spans_html

if TYPE_CHECKING:
    import datasets

    from ..config import DataConfig
    from ..data.formats import Table
    from .stats import SplitStats

Message = dict[str, str]
PREFERENCE_METRICS = (("preference loss", "loss"), ("reward accuracy", "rewards/accuracies"),
                      ("reward margin", "rewards/margins"))


def _assistant(text: str) -> list[Message]:
    return [{"role": "assistant", "content": text}]


class DpoTask(SftTask):
    """Pairs of a better and a worse answer to one prompt, trained with DPO (TRL's DPOTrainer)."""

    name = "dpo"
    recipe = "dpo"
    columns = ("prompt", "chosen", "rejected", "format", "origin")
    answer_columns: tuple[str, ...] = ("chosen", "rejected")  # the answers a row holds, as previewed and counted
    example_noun = "pairs"
    distribution_title = "pairs per chosen answer"
    form_fields = ("data.prompt_template", "data.chosen_column", "data.rejected_column", "data.answer_map",
                   "training.beta", "training.loss_type", "training.max_new_tokens", "training.generate_every",
                   "training.generate_examples")
    default_metric = "loss"  # the held-out preference loss
    supports_packing = False  # TRL pads its pairs; its padding-free mode is off in trl 1.16
    # LoRA: chosen on held-out SST-2 pairs (dev sentences 200-247) from default-causal, 20 steps of 8, beta 0.1:
    # 5e-5 and 2e-4 learnt only a bias (reward accuracy 0.50, loss above log 2), 1e-3 reached 0.73 (benchmarks/
    # RESULTS.md, "Preference tuning"). A bigger model wants less. Full weights: TRL's own scale, not measured here.
    default_learning_rates = MappingProxyType({**Task.default_learning_rates, "full": 5e-6, "lora": 1e-3})

    # ----- data ---------------------------------------------------------------------------------------
    def features(self) -> "datasets.Features":
        """The prompt as messages, kto's label a bool, every other column (answers, format, origin) text."""
        import datasets

        message = {"role": datasets.Value("string"), "content": datasets.Value("string")}
        typed = {"prompt": datasets.List(message), "label": datasets.Value("bool")}
        return datasets.Features({column: typed.get(column, datasets.Value("string")) for column in self.columns})

    def canonical(self, table: "Table", options: "DataConfig") -> "Table":
        """Explicit or implicit pairs, or any table through ``data.prompt_template`` and the answer columns."""
        from ..data.formats import Table
        from ..data.preference import read_preference_records

        if options.prompt_template:
            table = self.records_from_table(table, options)
        records = read_preference_records(table)
        self.check_format(records, table)
        return Table(self.canonical_columns(records), table.source, table.path, table.lines)

    def records_from_table(self, table: "Table", options: "DataConfig") -> "Table":
        """Records from any table: the prompt from ``data.prompt_template``, the answers from their columns."""
        from ..data.preference import pairs_from_table

        chosen = options.chosen_column or options.completion_column
        if not chosen:
            raise DataError("data.prompt_template needs data.chosen_column: the column holding the better answer "
                            f"(the columns are {', '.join(table.columns)})", table.path)
        return pairs_from_table(table, options.prompt_template, chosen, options.rejected_column, options.answer_map)

    def check_format(self, records: Any, table: "Table") -> None:
        if not records.paired:
            raise DataError(f"{self.name} trains on pairs (prompt, chosen, rejected), but these are unpaired records "
                            "(prompt, completion, label): use task: kto", table.path)

    def canonical_columns(self, records: Any) -> dict[str, list]:
        return {"prompt": records.prompts, "chosen": records.chosen, "rejected": records.rejected,
                "format": [records.format] * len(records), "origin": records.origins}

    def answers(self, row: Mapping[str, Any]) -> list[tuple[str, str]]:
        """(name, answer) per answer a row holds: chosen and rejected."""
        return [(column, row[column]) for column in self.answer_columns]

    def check_renders(self, dataset: "datasets.Dataset", tokenizer: Any, split: str) -> None:
        """Every prompt and answer renders with the chat template (a DataError names the record otherwise)."""
        for row in dataset:
            for _, answer in self.answers(row):
                assistant_spans(tokenizer, [*row["prompt"], *_assistant(answer)], f"{split} split, {row['origin']}")

    def trainer_rows(self, dataset: "datasets.Dataset") -> "datasets.Dataset":
        """TRL's conversational preference rows: prompt messages, and each answer as one assistant message."""
        import datasets

        return datasets.Dataset.from_dict({"prompt": dataset["prompt"],
                                           "chosen": [_assistant(text) for text in dataset["chosen"]],
                                           "rejected": [_assistant(text) for text in dataset["rejected"]]})

    # ----- statistics and preview --------------------------------------------------------------------
    def split_stats(self, name: str, dataset: "datasets.Dataset", scheme: str | None) -> "SplitStats":
        """Pairs, words per pair, and the chosen answers when they form a small set."""
        from .stats import SplitStats

        rows = list(dataset)
        lengths = [sum(len(m["content"].split()) for m in row["prompt"])
                   + sum(len(answer.split()) for _, answer in self.answers(row)) for row in rows]
        answers = Counter(self.reference(row).strip() for row in rows)
        stats = SplitStats.of(len(rows), lengths, dict(answers) if len(answers) <= SMALL_ANSWER_SET else {},
                              len(answers))
        stats.extra = {"prompt turns": sum(len(row["prompt"]) for row in rows)}
        return stats

    def reference(self, row: Mapping[str, Any]) -> str:
        """The answer a row says is right (scored against the test generations)."""
        return row["chosen"]

    def token_stats(self, dataset: "datasets.Dataset", tokenizer: Any, options: Any) -> dict[str, Any]:
        """Prompt and answer lengths in the model's tokens, and how many rows ``max_seq_length`` cuts."""
        max_length = getattr(options, "max_seq_length", None)
        prompt_lengths, answer_lengths, truncated = [], {column: [] for column in self.answer_columns}, 0
        for row in dataset:
            prompt = len(render_ids(tokenizer, row["prompt"], add_generation_prompt=True))
            prompt_lengths.append(prompt)
            longest = 0
            for column, (_, answer) in zip(self.answer_columns, self.answers(row)):
                full = len(render_ids(tokenizer, [*row["prompt"], *_assistant(answer)]))
                answer_lengths[column].append(full - prompt)
                longest = max(longest, full)
            truncated += bool(max_length and longest > max_length)
        stats: dict[str, Any] = {"prompt tokens": percentiles(prompt_lengths)}
        stats.update({f"{column} tokens": percentiles(lengths) for column, lengths in answer_lengths.items()})
        stats[f"truncated at {max_length}"] = truncated
        return stats

    def preview_html(self, rows: Iterable[Mapping[str, Any]]) -> str:
        """Each pair: the prompt's turns, then the answers side by side (chosen green, rejected red)."""
        parts = []
        for row in rows:
            prompt = "".join(f'<div><b style="color:#6b7280">{html.escape(m["role"])}</b>: '
                             f'{html.escape(m["content"])}</div>' for m in row["prompt"])
            answers = "".join(_answer_cell(name, html.escape(answer)) for name, answer in self.answers(row))
            parts.append(f'<div class="ftkit-example ftkit-pair" style="margin-bottom:8px">{prompt}'
                         f'<div style="display:flex;gap:8px">{answers}</div></div>')
        return "".join(parts)

    def token_preview_html(self, rows: Iterable[Mapping[str, Any]], tokenizer: Any, options: Any) -> str:
        """Each pair as the model reads it: prompt plus answer through the chat template, trained tokens
        highlighted, chosen and rejected side by side."""
        max_length = getattr(options, "max_seq_length", None)
        parts = []
        for row in rows:
            cells = []
            for name, answer in self.answers(row):
                encoded = encode_conversation(tokenizer, [*row["prompt"], *_assistant(answer)], "completion",
                                              max_length, row["origin"])
                note = (f'<div style="color:#dc2626;font-size:12px">cut at {max_length} of {encoded.full_length} '
                        "tokens</div>" if encoded.truncated else "")
                cells.append(_answer_cell(name, trained_spans_html(tokenizer, encoded.input_ids, encoded.labels) + note))
            parts.append(f'<div class="ftkit-pair" style="display:flex;gap:8px;margin-bottom:8px">{"".join(cells)}</div>')
        return "".join(parts)

    # ----- evaluation -----------------------------------------------------------------------------
    def prompts_and_references(self, raw: "datasets.Dataset") -> tuple[list[list[Message]], list[str]]:
        rows = [row for row in raw if self.reference(row)]
        return [[dict(m) for m in row["prompt"]] for row in rows], [self.reference(row) for row in rows]

    def evaluate(self, trainer: Any, features: Any, split: str,
                 context: EvalContext | None = None) -> tuple[dict[str, Any], Any]:
        """The held-out preference loss and reward metrics (TRL's), then generations for the test prompts
        scored against the chosen answers (exact match; label likelihood where the answers form a small set)."""
        # TRL names its own figures eval_* whatever the prefix asked for: both prefixes go.
        metrics = {key.removeprefix(f"{split}_").removeprefix("eval_"): value
                   for key, value in trainer.evaluate(features, metric_key_prefix=split).items()}
        if context is None or not context.main_process:
            return metrics, None
        rows = self.generate_answers(context, split)
        metrics.update(answer_metrics(rows, rouge=bool(context.config.training.rouge_l)))
        return metrics, rows

    def reportpercentiles(self, metrics: Mapping[str, Any], support: int) -> tuple[str, list[ReportRow]]:
        names = (*PREFERENCE_METRICS, ("exact match", "exact_match"), ("label accuracy", "label_accuracy"),
                 ("ended by end-of-turn", "stopped"))
        return "preference scores (held-out pairs; test answers generated)", [
            (name, None, None, metrics.get(key), metrics.get("samples")) for name, key in names
            if metrics.get(key) is not None]


class OrpoTask(DpoTask):
    """Pairs trained with ORPO (TRL's ORPOTrainer): no reference model, the SFT loss plus an odds-ratio term."""

    name = "orpo"
    recipe = "orpo"
    form_fields = tuple(field for field in DpoTask.form_fields if field != "training.loss_type")
    # ORPO also learns the chosen answers (an SFT term), so it takes the rates of SFT.
    default_learning_rates = SftTask.default_learning_rates


class KtoTask(DpoTask):
    """Single answers labelled desirable or not, trained with KTO (TRL's KTOTrainer): no pairs needed."""

    name = "kto"
    recipe = "kto"
    form_fields = ("data.prompt_template", "data.completion_column", "data.label_column", "data.answer_map",
                   "training.beta", "training.loss_type", "training.max_new_tokens")
    columns = ("prompt", "completion", "label", "format", "origin")
    answer_columns = ("completion",)
    example_noun = "answers"
    distribution_title = "desirable answers"

    def records_from_table(self, table: "Table", options: "DataConfig") -> "Table":
        """Pairs as for dpo (``data.chosen_column``, ...), else the prompt from ``data.prompt_template``, the
        answer from ``data.completion_column`` and whether it is desirable from ``data.label_column``."""
        from ..data.chat import instructions_from_table
        from ..data.formats import Table

        if options.chosen_column:
            return super().records_from_table(table, options)
        if not (options.completion_column and options.label_column):
            raise DataError("kto with data.prompt_template needs data.completion_column (the answer) and "
                            "data.label_column (true when the answer is desirable), or data.chosen_column for "
                            f"pairs; the columns are {', '.join(table.columns)}", table.path)
        if options.label_column not in table.columns:
            raise DataError(f"column {options.label_column!r} (data.label_column) is not in the data; the columns "
                            f"are {', '.join(table.columns)}", table.path)
        answers = instructions_from_table(table, options.prompt_template, options.completion_column,
                                          options.answer_map)
        return Table({"prompt": answers.columns["prompt"], "completion": answers.columns["completion"],
                      "label": table.columns[options.label_column]}, table.source, table.path, table.lines)

    def check_format(self, records: Any, table: "Table") -> None:
        """Any preference records will do: a pair is two labelled answers (see ``canonical_columns``)."""

    def canonical_columns(self, records: Any) -> dict[str, list]:
        """Labelled answers as they are; each pair becomes its chosen answer (desirable) and its rejected one
        (not), as TRL's ``unpair_preference_dataset`` does."""
        if not records.paired:
            return {"prompt": records.prompts, "completion": records.completions, "label": records.labels,
                    "format": [records.format] * len(records), "origin": records.origins}
        twice = [value for value in records.prompts for _ in (0, 1)]
        return {"prompt": twice,
                "completion": [answer for pair in zip(records.chosen, records.rejected) for answer in pair],
                "label": [desirable for _ in records.prompts for desirable in (True, False)],
                "format": [records.format] * len(twice),
                "origin": [origin for origin in records.origins for _ in (0, 1)]}

    def answers(self, row: Mapping[str, Any]) -> list[tuple[str, str]]:
        return [("desirable" if row["label"] else "undesirable", row["completion"])]

    def reference(self, row: Mapping[str, Any]) -> str:
        return row["completion"] if row["label"] else ""

    def trainer_rows(self, dataset: "datasets.Dataset") -> "datasets.Dataset":
        import datasets

        return datasets.Dataset.from_dict({"prompt": dataset["prompt"],
                                           "completion": [_assistant(text) for text in dataset["completion"]],
                                           "label": dataset["label"]})


def _answer_cell(name: str, body: str) -> str:
    colour = "#c6f0c2" if name in ("chosen", "desirable") else "#fecaca"
    return (f'<div style="flex:1;min-width:0"><div style="font-size:11px;color:#6b7280">{html.escape(name)}</div>'
            f'<div style="background:{colour};padding:2px 4px;border-radius:4px;white-space:pre-wrap">{body}</div></div>')

