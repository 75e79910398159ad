"""The `Task` interface: what ftkit asks a task, so that nothing else needs to know which task it is.

A task owns everything that differs between kinds of fine-tuning: the canonical columns of its
data and how raw tables become them, its label set and the checks on it, statistics and preview,
tokenisation, the model class and collator and loss, metrics and their report, the predictions it
writes after training and where they go wrong, ``predict`` on new text, and the form fields it
adds. The generic machinery (readers, tag schemes, windows, report helpers, errors with file and
line) stays in ``ftkit.data`` (task-neutral readers) and ``ftkit.engine``; a task calls the first, and
the engine asks the task. What a task does with data (loading into its canonical columns, labels and
tokenisation, statistics, preview) runs through ``ftkit.tasks.loading``, ``alignment``, ``stats`` and
``preview``.

Importing a task module must stay cheap (the CLI and the notebook layer import it to read a
default metric or a form field): torch, transformers, datasets, peft and seqeval are imported
inside the methods that need them, which only the worker calls.

The defaults below are those of a task with a label set (``label_column`` is set); a generative
task without one (SFT) sets ``label_column = None`` and overrides what that changes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Mapping, Sequence

if TYPE_CHECKING:
    import datasets

    from ..config import DataConfig
    from ..data.formats import Table
    from .stats import SplitStats

DEFAULT_MAX_SEQ_LENGTH = 256  # training.max_seq_length's default (ftkit.config takes it from here)
ReportRow = tuple[str, "float | None", "float | None", "float | None", "int | None"]  # name, P, R, F1, support


@dataclass
class EvalContext:
    """What the engine hands a task's ``evaluate`` besides the tokenised split (a generative task needs it).

    ``generator()`` builds, on first call, the engine's `Generator` over the trainer's model and the
    training tokenizer (its chat template), so a task generates without importing the engine.
    """

    raw: Any  # the split's canonical rows (datasets.Dataset), in their order
    config: Any  # the run's Config
    tokenizer: Any
    generator: Callable[[], Any]
    predictions_path: Path | None = None  # where predictions/<split>.jsonl goes; None: not saved
    main_process: bool = True  # in a distributed run only the main process generates and writes


class Task(ABC):
    """One kind of fine-tuning. Subclasses set the class attributes and implement the abstract methods."""

    # ----- identity, columns and wording ------------------------------------------------------------
    name: ClassVar[str]  # the registry key and the config's `task` value
    columns: ClassVar[tuple[str, ...]]  # canonical columns of a loaded row; (first, second) lists map onto the first two
    label_column: ClassVar[str | None]  # the canonical column holding the labels; None: no label set (generative)
    example_noun: ClassVar[str] = "examples"  # what a row is called in statistics ("sentences")
    label_noun: ClassVar[str] = "label"  # what one label is called in messages ("entity type"); plural adds "s"
    labelled_noun: ClassVar[str] = "labelled"  # the statistics column that counts labels ("entities")
    distribution_title: ClassVar[str] = "examples per label"  # the DataPicker's label-count bars
    form_fields: ClassVar[tuple[str, ...]] = ()  # config keys that mean something only for this task (shown in forms)
    file_suffixes: ClassVar[tuple[str, ...]] = ()  # data files read as this task when none is named (%ftkit data)

    # ----- training ------------------------------------------------------------------------------------
    recipe: ClassVar[str] = "supervised"  # how it trains: a name in ftkit.engine.recipes.RECIPES
    default_metric: ClassVar[str]  # picks the best checkpoint unless training.metric_for_best_model says otherwise
    peft_task_type: ClassVar[str]  # peft's TaskType for LoRA ("TOKEN_CLS"); also how a LoRA checkpoint names its task
    architecture_suffix: ClassVar[str]  # how a saved model's `architectures` names this task ("ForTokenClassification")
    supports_packing: ClassVar[bool] = False  # padding-free packed rows keep their meaning (token-level losses only)
    # The loss is a causal LM's on a few labelled tokens per row: computed from their logits alone (engine/lm_loss.py).
    sparse_lm_loss: ClassVar[bool] = False
    encoder_takes_indices: ClassVar[bool] = False  # the encoder wants each row's index (to stitch windows back)
    pre_split_words: ClassVar[bool] = True  # the encoder passes words (byte-level BPE then needs add_prefix_space)
    new_head: ClassVar[bool] = True  # from_pretrained adds a fresh task head (trained by adapter head, saved with LoRA)
    lora_target_modules: ClassVar[str | None] = None  # LoRA default: None = attention and feed-forward layers per architecture
    # training.learning_rate when the config leaves it empty, per adapter.kind. Encoders, measured on CoNLL-2003
    # (benchmarks/RESULTS.md): full fine-tuning reaches test F1 0.845 in 1 epoch at 2e-4 (0.818 at 1e-4, batch
    # 32); LoRA's rate was chosen on validation F1 over three seeds (choose_defaults.py --study lora).
    default_learning_rates: ClassVar[Mapping[str, float]] = MappingProxyType({"full": 2e-4, "head": 1e-3, "lora": 2e-3})
    default_model: ClassVar[str] = "default"  # what `model: default` means for this task
    default_adapter: ClassVar[str] = "full"  # adapter.kind unless the config names one
    stats_use_tokenizer: ClassVar[bool] = False  # statistics and preview count tokens (``token_stats``)

    # ----- Hugging Face conventions ---------------------------------------------------------------------
    pipeline_task: ClassVar[str]  # transformers.pipeline's name for this task ("token-classification")
    pipeline_options: ClassVar[str] = ""  # extra pipeline() arguments in the load snippet, as Python source
    example_input: ClassVar[str] = "..."  # a text the load snippet runs the model on

    # ----- data: canonical columns and label checks ---------------------------------------------------
    @abstractmethod
    def features(self) -> "datasets.Features":
        """The Arrow features of the canonical columns, so every source yields the same schema."""

    @abstractmethod
    def canonical(self, table: "Table", options: "DataConfig") -> "Table":
        """Raw rows -> the canonical columns; every problem a DataError with file and line (``table.error``)."""

    def normalise(self, tables: dict[str, "Table"], options: "DataConfig") -> None:
        """Rewrite canonical tables in place into the form training reads (NER: tags to IOB2). Default: nothing.

        Called on all splits together, so a detected scheme is one for the whole data set.
        """

    def labels_in(self, row_labels: Any) -> set[str]:
        """The labels one row uses, as users name them (NER: entity types, B-/I- being one)."""
        return {row_labels}

    def label_of(self, given: str) -> str:
        """The label a name in ``data.labels`` stands for (NER: "B-PER" -> "PER")."""
        return given

    def position_of(self, row_labels: Any, label: str) -> int | None:
        """Where in a row ``label`` occurs, for an error that points at a token; None for one label per row."""
        return None

    def check_labels_across_splits(self, tables: Mapping[str, "Table"], given: Sequence[str] | None) -> None:
        """Validation/test labels must occur in train (or in ``data.labels`` when given): a model cannot learn others."""
        if self.label_column is None:
            return
        column = self.label_column
        for split, table in tables.items():
            if split != "test":
                unlabelled = next((i for i, row in enumerate(table.columns[column]) if row is None), None)
                if unlabelled is not None:
                    raise table.error(unlabelled, f"{split} split: this row has no label (-1 marks an unlabelled "
                                      "row, which only a test split may have: it is predicted, not scored)")
        if given:
            allowed = {self.label_of(name) for name in given} - {"O"}
            checked = dict(tables)
            reason = "is not in data.labels ({})".format(", ".join(given))
        else:
            if "train" not in tables:
                return
            allowed = set()
            for row in tables["train"].columns[column]:
                allowed |= self.labels_in(row)
            checked = {split: table for split, table in tables.items() if split != "train"}
            reason = "never occurs in train; a model cannot learn it (fix the data, or list every label in data.labels)"
        for split, table in checked.items():
            for index, row in enumerate(table.columns[column]):
                unknown = self.labels_in(row) - allowed
                if unknown:
                    label = sorted(unknown)[0]
                    raise table.error(index, f"{split} split: {self.label_noun} '{label}' {reason}",
                                      token=self.position_of(row, label))

    @abstractmethod
    def label_list(self, splits: Iterable["datasets.Dataset"], given: Sequence[str] | None = None) -> list[str]:
        """The model's labels in a stable order (``given`` is data.labels, used as is after checks); [] without a label set."""

    def model_labels_in(self, row_labels: Any) -> Iterable[str]:
        """The model labels (label2id keys) one row needs (NER: every tag)."""
        return [row_labels]

    def check_known_labels(self, dataset: "datasets.Dataset", split: str, label2id: Mapping[str, int]) -> None:
        """Every label in ``dataset`` must be one of the model's, before tokenising turns it into an id."""
        from ..errors import DataError

        if self.label_column is None:
            return
        for index, row in enumerate(dataset[self.label_column]):
            for label in self.model_labels_in(row):
                if label not in label2id:
                    raise DataError(
                        f"{split} split, example {index}: label '{label}' is not one of the model's labels "
                        f"({', '.join(label2id)}). Add it to data.labels, or fix the data"
                    )

    # ----- statistics and preview ------------------------------------------------------------------------
    def tag_scheme(self, splits: Mapping[str, "datasets.Dataset"], option: str | None) -> str | None:
        """The tag scheme statistics check the data against (``option`` is data.tag_scheme); None without tags."""
        return None

    @abstractmethod
    def split_stats(self, name: str, dataset: "datasets.Dataset", scheme: str | None) -> "SplitStats":
        """Sizes, label counts, lengths in words and problems of one split, for `ftkit.data_stats`."""

    @abstractmethod
    def preview_html(self, rows: Iterable[Mapping[str, Any]]) -> str:
        """Canonical rows as HTML examples (escaped), one colour per label."""

    def token_stats(self, dataset: "datasets.Dataset", tokenizer: Any, options: Any) -> dict[str, Any]:
        """Counts in the model's tokens for one split (where ``stats_use_tokenizer``); ``options`` is the TrainingConfig."""
        return {}

    def token_preview_html(self, rows: Iterable[Mapping[str, Any]], tokenizer: Any, options: Any) -> str:
        """The preview as the model sees it (SFT: the rendered chat, trained tokens highlighted)."""
        return self.preview_html(rows)

    # ----- model, tokenisation, batches and loss ---------------------------------------------------------
    @abstractmethod
    def model_class(self) -> type:
        """The transformers Auto class the model is built and reloaded with."""

    def model_kwargs(self, labels: Sequence[str]) -> dict[str, Any]:
        """Keyword arguments for ``from_pretrained`` that size and name the head; {} for a task without labels."""
        if self.label_column is None:
            return {}
        id2label = dict(enumerate(labels))
        return {"num_labels": len(labels), "id2label": id2label, "label2id": {label: i for i, label in id2label.items()}}

    @abstractmethod
    def encoder(self, tokenizer: Any, label2id: Mapping[str, int], max_length: int) -> Callable[..., dict[str, list]]:
        """A batched ``datasets.map`` function: canonical rows -> model inputs, ``labels`` and ``length``, unpadded.

        It takes ``(batch, indices)`` when ``encoder_takes_indices`` is set, and ``encoder_options(config)``
        as keyword arguments.
        """

    def encoder_options(self, config: Any) -> dict[str, Any]:
        """Keyword arguments for ``encoder`` from the run's Config (part of the tokenised cache's key)."""
        return {}

    def configure_model(self, model: Any) -> None:
        """Adjust a freshly loaded model for training (SFT: no KV cache, which would also defeat packing)."""

    @abstractmethod
    def collator(self, tokenizer: Any, pad_to_multiple_of: int | None) -> Any:
        """Pads each batch to its own longest row (packing is the engine's, where ``supports_packing``)."""

    def loss_function(self) -> Callable[..., Any] | None:
        """The Trainer's ``compute_loss_func``; None keeps the model's own loss."""
        return None

    # ----- evaluation and predictions ------------------------------------------------------------------
    def reduce_logits(self, logits: Any) -> Any:
        """What evaluation keeps of a batch's logits, on the device: argmax ids, so it gathers ints, not
        label-wide floats (classification keeps every label's probability, for the predictions file)."""
        return logits.argmax(dim=-1)

    def compute_metrics(self, id2label: Mapping[int, str], mode: str | None = None) -> Callable[[Any], dict] | None:
        """A Trainer ``compute_metrics`` on what ``reduce_logits`` kept (plain keys: "f1"); None when the
        loss is the measure."""
        return None

    def loss_metrics(self, loss: float) -> dict[str, float]:
        """Metrics that follow from an evaluation's loss, added to every evaluation (SFT: perplexity)."""
        return {}

    def evaluate(self, trainer: Any, features: Any, split: str,
                 context: EvalContext | None = None) -> tuple[dict[str, Any], Any]:
        """Metrics of one tokenised split (without the split prefix) and what ``save_predictions`` needs."""
        output = trainer.predict(features, metric_key_prefix=split)
        return {k.removeprefix(f"{split}_"): v for k, v in output.metrics.items()}, output.predictions

    @abstractmethod
    def report_summary(self, metrics: Mapping[str, Any], support: int) -> tuple[str, list[ReportRow]]:
        """The report's title and the rows after the per-class ones (averages): (name, P, R, F1, support)."""

    @abstractmethod
    def save_predictions(self, prepared: Any, split: str, predictions: Any, path: Path) -> None:
        """Write ``predictions/<split>.jsonl``: one line per example of ``prepared.raw[split]``, in its order."""

    # ----- where the model goes wrong (from the predictions file, no model loaded) ---------------------
    @abstractmethod
    def error_report(self, rows: Sequence[Mapping[str, Any]], limit: int | None = None) -> dict[str, Any]:
        """``{"summary", "table", "confusion", "examples"}`` of a predictions file's rows (`ftkit.runs.error_report`).

        ``summary`` counts (``examples``: the rows scored), ``table`` is ``{"title", "columns", "rows"}``,
        ``confusion`` is ``{"title", "labels", "matrix"}`` (rows gold, columns predicted) or None, and
        ``examples`` are at most ``limit`` rows (None: all), worst first.
        """

    @abstractmethod
    def error_rows(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The same judgements as flat records in the split's order, for ``Run.errors()``'s DataFrame."""

    @abstractmethod
    def error_facets(self, example: Mapping[str, Any]) -> list[tuple[str, str | None]]:
        """The (kind, type) pairs one report example is found under in the error browser's filters."""

    @abstractmethod
    def error_example_html(self, example: Mapping[str, Any], labels: Sequence[str]) -> str:
        """One report example as escaped HTML for the error browser; ``labels`` fix the colours across examples."""

    def training_example(self, row: Mapping[str, Any], predicted: Sequence[str] | None,
                         labels: Sequence[str]) -> dict[str, Any]:
        """One training example as the data map shows it: ``{"text", "gold", "predicted"}`` as short strings
        and ``"html"`` (the error browser's rendering); ``predicted``: the model's label names for the
        example's labelled positions on its last training pass (None where there is no label set)."""
        raise NotImplementedError(f"task {self.name} does not show its training examples")

    @abstractmethod
    def predict(self, predictor: Any, texts: list[str], batch_size: int) -> list[Any]:
        """Predictions on raw texts, one per text, with a trained ``Predictor`` (model, tokenizer, id2label)."""

    @abstractmethod
    def prediction_display(self, text: str, prediction: Any) -> tuple[str, str]:
        """One prediction for people: (plain text, escaped HTML), as `%ftkit predict` shows it."""

    # ----- export (`ftkit export`: the engine writes the file, the task says what to check it on) -----------
    export_format: ClassVar[str] = "onnx"  # what `ftkit export` writes: onnx for encoders, gguf for causal LMs

    def export_inputs(self, raw: "datasets.Dataset") -> tuple[list[Any], list[Any]]:
        """What an exported model is verified on: ``predict``'s inputs for the split's rows, and their gold answers."""
        raise NotImplementedError(f"task {self.name} does not say what its exports are verified on")

    def comparable(self, prediction: Any) -> Any:
        """What must be equal for two predictions to agree (a label, the entity spans, the answer's text)."""
        return prediction

    def export_scores(self, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
        """Scores of predictions against the gold answers, reported for the model and its export."""
        return {}

    def load_snippet(self, path: str, adapter_only: bool) -> str:
        """Python that loads the checkpoint at ``path`` and runs it once: for the panel and model cards.

        A whole model loads with `transformers.pipeline` as it is; LoRA adapter weights need their base
        model, which ftkit's Predictor rebuilds (or `ftkit merge` makes a whole model of them).
        """
        if adapter_only:
            return ("from ftkit.engine.inference import Predictor\n"
                    f"model = Predictor.from_checkpoint({path!r})\n"
                    f"print(model.predict({self.example_input!r}))")
        return ("from transformers import pipeline\n"
                f"model = pipeline({self.pipeline_task!r}, model={path!r}{self.pipeline_options})\n"
                f"print(model({self.example_input!r}))")

    def __repr__(self) -> str:
        return f"<task {self.name}>"
