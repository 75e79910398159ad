"""One typed schema for a fine-tuning run, shared by the CLI, magics, widgets and server.

Every field carries its help text in ``metadata["help"]`` (and its allowed values in
``metadata["choices"]``), so flags, form labels and error messages all come from here.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from .config_parsing import (absolute_paths, deep_copy, missing_paths,  # noqa: F401 (API)
                             parse_overrides, parse_value, read_config_file, set_dotted)
from .data.registry import DATA_FORMATS
from .data.tags import TAG_SCHEMES
from .errors import ConfigError
from .secrets import HOW as SECRET_HOW, find_secret
from .runstore.layout import DEFAULT_RUNS_DIR, SELECTION_SPLIT, resolve_runs_dir, run_name
from .tasks import DEFAULT_TASK, TASK_NAMES, get_task, task_help
from .tasks.base import DEFAULT_MAX_SEQ_LENGTH
from .trainer_args import check_owned, check_tracker_names

ADAPTERS = ("full", "head", "lora")
# The models a config names by a word (the engine finds them: ftkit.engine.models), and what each is, as forms show it.
BUILTIN_MODELS = {"default": "MiniLM-L6 (encoder)", "default-causal": "SmolLM2-135M-Instruct (causal LM)"}
TRAIN_ON = ("assistant", "completion", "all")
FINAL_CHECKPOINTS = ("auto", "best", "last")
PRECISIONS = ("auto", "bf16", "fp16", "no")
STRATEGIES = ("ddp", "fsdp", "deepspeed")
PADDING_FREE = ("auto", "always", "never")
EXECUTORS = ("local", "slurm", "submitit-local")  # resources.executor: see ftkit.process.executors
SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
              "inverse_sqrt", "cosine_with_min_lr", "warmup_stable_decay")


def _field(default: Any, help: str, choices: Iterable[str] | None = None, **kw: Any) -> Any:
    metadata = {"help": help}
    if choices is not None:
        metadata["choices"] = tuple(choices)
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata, **kw)
    return field(default=default, metadata=metadata, **kw)


@dataclass
class DataConfig:
    train: str | None = _field(None, "Training data: a file, a saved `datasets` folder, or a hub id.")
    validation: str | None = _field(None, "Validation data; when empty, a seeded fraction of train is held out.")
    test: str | None = _field(None, "Test data, evaluated once at the end and saved as predictions.")
    format: str | None = _field(None, "Input format; guessed from the file when empty.", DATA_FORMATS)
    subset: str | None = _field(None, "Hub datasets: the configuration (subset) name, e.g. sst2 for nyu-mll/glue.")
    revision: str | None = _field(None, "Hub datasets: a branch, tag or commit to load.")
    split_names: dict[str, str] | None = _field(None, "Source split names for train/validation/test when they differ, "
                                                      "e.g. {validation: validation_matched}.")
    tag_column: int = _field(-1, "CoNLL: which whitespace-separated column holds the tag (-1 = last).")
    tag_scheme: str = _field("auto", "NER tag scheme of the input; IOB1 is converted to IOB2.", TAG_SCHEMES)
    text_column: str | None = _field(None, "Classification: column with the text (guessed: text, sentence, ...).")
    label_column: str | None = _field(None, "Classification: column with the label (guessed: label, ...).")
    tokens_column: str | None = _field(None, "NER in JSONL/CSV: column with the word list (guessed: tokens, words).")
    tags_column: str | None = _field(None, "NER in JSONL/CSV: column with the tag list (guessed: tags, ner_tags, labels).")
    labels: list[str] | None = _field(None, "The label set; inferred from the training data when empty.")
    prompt_template: str | None = _field(None, "SFT and preference tuning from any table: the prompt, filled from each row's columns, e.g. "
                                         "'Review: {sentence}\\nIs this review positive or negative?'.")
    completion_column: str | None = _field(None, "SFT with prompt_template: the column holding the answer to learn.")
    answer_map: dict[str, str] | None = _field(None, "SFT and preference tuning with prompt_template: stored answers -> answer words, "
                                               "e.g. {0: negative, 1: positive} (keys match as text).")
    chosen_column: str | None = _field(None, "Preference tuning with prompt_template: the column holding the better "
                                       "answer (its value goes through answer_map when one is given).")
    rejected_column: str | None = _field(None, "Preference tuning with prompt_template: the column holding the worse "
                                         "answer; when empty, another answer of answer_map (for two answers: the other).")
    exclude: list[int] | None = _field(None, "Training examples left out, by their row in the train split (0 = the first, "
                                       "as run.data_map() numbers them), e.g. likely label errors.")
    relabel: dict[str, Any] | None = _field(None, "Training examples given another label: row -> label (ner: the "
                                            "sentence's tag list), e.g. {12: negative}.")
    retrain_of: str | None = _field(None, "The run whose splits this run retrains (run.retrain, ftkit train --from): "
                                    "they were copied into this run's data/ folder, then exclude and relabel applied.")
    validation_fraction: float = _field(0.02, "Share of train held out when there is no validation split (at least "
                                        "one example); chosen on validation F1 over 2%, 5% and 10% (benchmarks/RESULTS.md).")


@dataclass
class AdapterConfig:
    kind: str | None = _field(None, "full: train every weight; head: freeze the encoder; lora: low-rank adapters (peft). "
                              "Default: the task's (lora for sft, full otherwise).", ADAPTERS)
    r: int = _field(16, "LoRA rank.")
    alpha: int = _field(32, "LoRA scaling (alpha / r multiplies the update).")
    dropout: float = _field(0.1, "LoRA dropout.")
    target_modules: list[str] | None = _field(None, "LoRA target modules; a per-architecture default when empty.")


@dataclass
class TrainingConfig:
    epochs: float = _field(3, "Passes over the training data.")
    learning_rate: float | None = _field(None, "Peak learning rate; when empty, the task's default per adapter "
                                         "(full 2e-4, head 1e-3, lora 2e-3; classification's and sft's lora 5e-4).")
    batch_size: int | str = _field(16, "Sentences per device step, or 'auto' to find the largest that fits.")
    eval_batch_size: int | None = _field(None, "Batch size for evaluation (default: twice batch_size).")
    gradient_accumulation_steps: int = _field(1, "Steps whose gradients add up before each optimiser update.")
    warmup: float = _field(0.1, "Learning-rate warmup: a fraction of all steps when < 1, else a step count.")
    weight_decay: float = _field(0.01, "AdamW weight decay.")
    lr_scheduler: str = _field("linear", "Learning-rate schedule (transformers' SchedulerType names).", SCHEDULERS)
    max_seq_length: int = _field(DEFAULT_MAX_SEQ_LENGTH, "Longest tokenised input; longer NER sentences are split into windows.")
    max_steps: int | None = _field(None, "Stop after this many optimiser steps (overrides epochs).")
    max_train_samples: int | None = _field(None, "Train on a seeded subset of this many examples.")
    max_eval_samples: int | None = _field(None, "Evaluate on a seeded subset of this many examples.")
    eval_steps: int | None = _field(None, "Evaluate every N steps (default: once per epoch).")
    save_steps: int | None = _field(None, "Checkpoint every N steps (default: once per epoch).")
    save_total_limit: int | None = _field(2, "Keep at most this many checkpoints (the best one is always kept).")
    logging_steps: int = _field(10, "Log the training loss every N steps.")
    early_stopping_patience: int | None = _field(None, "Stop when the metric has not improved for N evaluations.")
    final_checkpoint: str = _field("auto", "The checkpoint a run ends on (what the test score, predictions and exports "
                                   "use): best (the best on validation), last, or auto: the best when the validation "
                                   "split has at least 200 examples, or metric_for_best_model or early_stopping_patience "
                                   "is set, else the last; a smaller split (ftkit's own 2% of a small train set) scores "
                                   "too noisily to choose by (benchmarks/RESULTS.md).", FINAL_CHECKPOINTS)
    metric_for_best_model: str | None = _field(None, "Metric that picks the best checkpoint (default: the task's: f1 for "
                                               "NER, accuracy for classification, loss for sft), as the validation "
                                               "curve names it or without the split: validation_exact_match, f1.")
    group_by_length: bool = _field(True, "Batch sentences of similar length together (less padding).")
    padding_free: str = _field("auto", "Pack NER and SFT batches into one row without padding (examples never attend to "
                               "each other): 'auto' on a GPU where a probe of the loaded model finds packed examples stay "
                               "apart, 'always' (also on CPU; an error where they would not), 'never'.", PADDING_FREE)
    train_on: str | None = _field(None, "SFT: which tokens the loss is taken on: assistant (every assistant turn), "
                                  "completion (the last one) or all; by default assistant for chats, completion "
                                  "for prompt/completion and alpaca data.", TRAIN_ON)
    max_new_tokens: int = _field(16, "SFT: longest answer generated for each test example (generation stops earlier "
                                 "at the end-of-turn token).")
    rouge_l: bool = _field(False, "SFT: also score the test generations by ROUGE-L F1 against the references.")
    generate_every: int | None = _field(None, "sft, dpo, orpo: every N evaluations during training, also generate "
                                        "answers for a fixed seeded sample of the validation split and score them (exact match, "
                                        "label likelihood, ROUGE-L with rouge_l): curves beside the loss, the latest "
                                        "answers in the monitor, and validation_exact_match can pick the best checkpoint.")
    generate_examples: int = _field(64, "sft, dpo, orpo: how many validation examples generate_every answers (its cost "
                                    "grows with it).")
    beta: float | None = _field(None, "dpo, orpo, kto: how far the tuned model may move from the reference (DPO, KTO) "
                                "or the weight of the odds-ratio term (ORPO); TRL's default (0.1) when empty.")
    loss_type: str | None = _field(None, "dpo: the loss variant (sigmoid: DPO, ipo, hinge, robust, apo_zero, sft, ... as "
                                   "TRL names them); kto: kto or apo_zero_unpaired. TRL's default when empty.")
    record_dynamics: bool = _field(True, "Record each training example's confidence in its gold label every epoch, "
                                   "from the training passes themselves (dynamics.parquet): the data map and likely "
                                   "label errors (run.data_map()). Supervised tasks (ner, classification, sft).")
    seed: int = _field(42, "Seed for data order, subsets, held-out split and initialisation.")
    device: str = _field("auto", "auto (CUDA when present), cuda or cpu.", ("auto", "cuda", "cpu"))
    dataloader_num_workers: int = _field(0, "Worker processes that prepare batches.")
    report_to: list[str] | None = _field(None, "Experiment trackers that also receive the Trainer's logs, beside ftkit's "
                                         "own events: tensorboard (logs in the run folder), mlflow ($MLFLOW_TRACKING_URI, "
                                         "else a file store in the runs folder), wandb. Empty: none.")
    trainer_args: dict[str, Any] | None = _field(None, "Any other transformers TrainingArguments field, passed as given, "
                                                 "e.g. {max_grad_norm: 0.5, gradient_checkpointing: true, "
                                                 "label_smoothing_factor: 0.1}; fields this schema sets are refused.")


@dataclass
class ResourcesConfig:
    devices: int | str = _field(1, "Training processes per node, one per GPU; 'auto' = every visible GPU (1 on CPU). "
                                   "More than one process is launched with torchrun.")
    nodes: int = _field(1, "Machines taking part; each other node runs the command `ftkit train` prints.")
    node_rank: int = _field(0, "This machine's index among the nodes (0 = the main node, which writes the run store).")
    main_address: str | None = _field(None, "Host name or IP of node 0, reachable from every node (needed when nodes > 1).")
    main_port: int = _field(29500, "TCP port on node 0 where the processes meet (multi-node runs).")
    strategy: str = _field("ddp", "ddp: a full model copy per device; fsdp: shard weights, gradients and optimizer "
                                  "state across devices; deepspeed: ZeRO stage 2 (needs the deepspeed package).", STRATEGIES)
    mixed_precision: str = _field("auto", "bf16/fp16 autocast on a GPU ('auto': bf16 on Ampere or newer, else fp16 with "
                                          "loss scaling); always fp32 on CPU.", PRECISIONS)
    compile: bool = _field(False, "Compile the model with torch.compile: a slower start, faster steps on a GPU.")
    runs_per_device: int = _field(1, "Runs of one run store that share a device (each visible GPU, else the CPU); runs "
                                     "launched while it is busy wait as queued and start in launch order. 0: no "
                                     "queue, every run starts at once.")
    stall_timeout: int | None = _field(None, "Seconds without progress, once training has begun, after which a run "
                                             "shows as stalled (empty: 10x its longest pause so far, at least 300).")
    executor: str = _field("local", "Where the run goes: local (a process on this machine), slurm (a job sent to "
                                    "Slurm through submitit; the run store must be on a shared file system) or "
                                    "submitit-local (the same job on this machine).", EXECUTORS)
    partition: str | None = _field(None, "Slurm: the partition to send the job to.")
    account: str | None = _field(None, "Slurm: the account the job is charged to.")
    time_limit: int = _field(240, "Cluster jobs: the time limit, in minutes.")
    gpus_per_node: int | None = _field(None, "Cluster jobs: GPUs per node (default: resources.devices; none on CPU).")
    cpus_per_task: int | None = _field(None, "Cluster jobs: CPU cores per node.")
    mem_gb: int | None = _field(None, "Cluster jobs: memory per node, in GB.")
    slurm_options: dict[str, Any] | None = _field(None, "Slurm: more sbatch options, e.g. {qos: high, constraint: a100}.")
    job_setup: list[str] | None = _field(None, "Cluster jobs: shell lines run first, e.g. [module load cuda, "
                                               "source ~/venv/bin/activate].")


@dataclass
class OutputConfig:
    dir: str | None = _field(None, f"Run store folder (default: $FTKIT_RUNS_DIR or {DEFAULT_RUNS_DIR}).")
    save_predictions: bool = _field(True, "Save test-split predictions with the run.")
    sweep: str | None = _field(None, "The sweep this run belongs to (`ftkit sweep` sets it); the runs of a sweep are "
                               "listed together and compared with `ftkit compare --sweep NAME`.")


@dataclass
class Config:
    task: str = _field(DEFAULT_TASK, f"What to learn: {task_help()}.", TASK_NAMES)
    model: str = _field("default", "'default' (the task's embedded model: MiniLM-L6, or SmolLM2-135M-Instruct for sft), "
                                   "'default-causal' (SmolLM2-135M-Instruct), a local model folder, or a hub id.")
    name: str | None = _field(None, "A human name for the run (default: task-model-adapter).")
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "Where the data comes from."})
    adapter: AdapterConfig = field(default_factory=AdapterConfig, metadata={"help": "What is trained."})
    training: TrainingConfig = field(default_factory=TrainingConfig, metadata={"help": "Hyperparameters."})
    resources: ResourcesConfig = field(default_factory=ResourcesConfig, metadata={"help": "Devices, nodes and speed-ups."})
    output: OutputConfig = field(default_factory=OutputConfig, metadata={"help": "Where runs are stored."})

    def __post_init__(self) -> None:
        validate(self)

    # ----- construction ---------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Config":
        if not isinstance(data, Mapping):
            raise ConfigError(f"a config must be a mapping of keys to values, got {type(data).__name__}")
        return _build(cls, data, prefix="")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def replace(self, overrides: Mapping[str, Any]) -> "Config":
        """A copy with dotted keys (``{"training.epochs": 1}``) set."""
        merged = self.to_dict()
        for key, value in overrides.items():
            set_dotted(merged, key, value)
        return Config.from_dict(merged)

    # ----- derived values ------------------------------------------------------------
    def with_absolute_paths(self, base_dir: str | os.PathLike | None = None) -> "Config":
        """This config with its local paths made absolute against ``base_dir`` (default: the working folder)."""
        return Config.from_dict(absolute_paths(self.to_dict(), base_dir or os.getcwd()))

    @property
    def run_name(self) -> str:
        return run_name(self.name, self.task, self.model, self.adapter.kind)

    @property
    def learning_rate(self) -> float:
        if self.training.learning_rate is not None:
            return self.training.learning_rate
        return get_task(self.task).default_learning_rates[self.adapter.kind]

    @property
    def best_metric(self) -> str:
        """The validation metric that picks the best checkpoint, without its split (``exact_match``)."""
        chosen = self.training.metric_for_best_model or get_task(self.task).default_metric
        return chosen.removeprefix(f"{SELECTION_SPLIT}_").removeprefix("eval_")

    @property
    def runs_dir(self) -> Path:
        return resolve_runs_dir(self.output.dir)


def is_in_memory_data(value: Any) -> bool:
    """A data value that is not a path or hub id (a pandas DataFrame, a `datasets` Dataset or
    DatasetDict, a list of dicts): saved into the run's folder at launch. Judged by type name, so
    nothing heavy is imported."""
    if isinstance(value, list):
        return bool(value) and all(isinstance(row, Mapping) for row in value)
    kind = type(value)
    return kind.__module__.split(".")[0] in ("pandas", "datasets") and kind.__name__ in (
        "DataFrame", "Dataset", "DatasetDict")


# ----- loading ----------------------------------------------------------------------------


def load_config(
    source: "Config | Mapping[str, Any] | str | os.PathLike | None" = None,
    overrides: Iterable[str] | Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Config:
    """Build a Config from a YAML/JSON file, a dict, a Config, or keyword arguments.

    ``overrides`` are ``"training.epochs=1"`` strings (values parsed as YAML) or a dotted-key dict;
    keyword arguments are dotted keys with ``__`` or nested dicts (``training={"epochs": 1}``).
    Relative data, model and output paths written in a file resolve against the file's folder;
    those given any other way stay as given until launch (`Config.with_absolute_paths`).
    """
    if source is None:
        data: dict[str, Any] = {}
    elif isinstance(source, Config):
        data = source.to_dict()
    elif isinstance(source, Mapping):
        data = deep_copy(source)
    else:
        path = Path(source)
        data = absolute_paths(read_config_file(path), path.resolve().parent)
    for key, value in kwargs.items():
        set_dotted(data, key.replace("__", "."), value)
    for key, value in parse_overrides(overrides).items():
        set_dotted(data, key, value)
    return Config.from_dict(data)


# ----- validation --------------------------------------------------------------------------


def _suggest(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(word), list(options), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def _build(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            raise ConfigError(
                f"unknown key '{dotted}'.{_suggest(key, fields)} Allowed keys"
                f"{' under ' + prefix.rstrip('.') if prefix else ''}: {', '.join(fields)}."
            )
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if value is None:
                value = {}
            if not isinstance(value, Mapping):
                raise ConfigError(f"'{dotted}' must be a mapping with keys {', '.join(f.name for f in dataclasses.fields(hint))}")
            kwargs[key] = _build(hint, value, prefix=f"{dotted}.")
        else:
            kwargs[key] = _coerce(dotted, value, hint, fields[key].metadata.get("choices"))
    return cls(**kwargs)


def _coerce(key: str, value: Any, hint: Any, choices: tuple[str, ...] | None) -> Any:
    """Check ``value`` against a field's type; accept the forms users write (ints for floats, "auto")."""
    args = typing.get_args(hint)
    allows_none = type(None) in args
    if value is None:
        if allows_none:
            return None
        raise ConfigError(f"'{key}' cannot be empty")
    kinds = [a for a in args if a is not type(None)] if args and typing.get_origin(hint) not in (list, dict) else [hint]
    for kind in kinds:
        origin = typing.get_origin(kind)
        if origin is dict and typing.get_args(kind)[1] is Any:  # free-form settings: values stay as written
            if isinstance(value, str):  # a flag or form field in YAML's flow style
                value = parse_value(value)
            if isinstance(value, Mapping) and all(isinstance(k, (str, int)) and not isinstance(k, bool) for k in value):
                return deep_copy({str(k): v for k, v in value.items()})  # YAML reads {12: ...} with an int key
            continue
        if origin is dict:
            if isinstance(value, Mapping) and all(isinstance(v, (str, int, float, bool)) for v in value.values()):
                return {str(k): str(v) for k, v in value.items()}
            continue
        if origin is list and typing.get_args(kind)[0] is int:  # row numbers
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            try:
                if isinstance(value, (list, tuple)) and all(isinstance(v, (int, str)) and not isinstance(v, bool)
                                                            for v in value):
                    return [int(v) for v in value]
            except ValueError:
                pass
            continue
        if origin is list:
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            if isinstance(value, (list, tuple)) and all(isinstance(v, (str, int)) for v in value):
                return [str(v) for v in value]
            continue
        if kind is bool:
            if isinstance(value, bool):
                return value
            continue
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind is int and isinstance(value, float) and value.is_integer():
            return int(value)
        if kind is float and isinstance(value, (int, float, str)) and not isinstance(value, bool):
            try:
                number = float(value)
            except (ValueError, OverflowError):  # not a number, or an int past float's range
                continue
            if not math.isfinite(number):  # NaN passes every range check and infinity crashes the Trainer
                raise ConfigError(f"'{key}' must be a finite number; got {value!r}")
            return number
        if kind is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = str(value)
            if choices and value not in choices:
                raise ConfigError(
                    f"'{key}' must be one of {', '.join(choices)}; got '{value}'.{_suggest(value, choices)}"
                )
            return value
    expected = " or ".join(_type_name(k) for k in kinds) + (" or empty" if allows_none else "")
    raise ConfigError(f"'{key}' must be {expected}; got {value!r}")


def _type_name(kind: Any) -> str:
    if typing.get_origin(kind) is list and typing.get_args(kind)[0] is int:
        return "a list of row numbers"
    if typing.get_origin(kind) is list:
        return "a list of names"
    if typing.get_origin(kind) is dict:
        return "a mapping of names to values" if typing.get_args(kind)[1] is Any else "a mapping of names to names"
    return {int: "an integer", float: "a number", str: "text", bool: "true/false"}.get(kind, str(kind))


def validate(config: Config) -> None:
    """Cross-field and range checks that a type alone cannot express; fills in the task's default adapter."""
    if config.adapter.kind is None:
        config.adapter.kind = get_task(config.task).default_adapter
    t = config.training
    if isinstance(t.batch_size, str) and t.batch_size != "auto":
        raise ConfigError(f"'training.batch_size' must be a positive integer or 'auto'; got '{t.batch_size}'")
    r = config.resources
    if isinstance(r.devices, str) and r.devices != "auto":
        raise ConfigError(f"'resources.devices' must be a positive integer or 'auto'; got '{r.devices}'")
    checks = [
        ("training.epochs", t.epochs, t.epochs > 0, "a positive number"),
        ("training.batch_size", t.batch_size, t.batch_size == "auto" or int(t.batch_size) > 0, "a positive integer or 'auto'"),
        ("training.learning_rate", t.learning_rate, t.learning_rate is None or 0 < t.learning_rate < 1, "between 0 and 1"),
        ("training.gradient_accumulation_steps", t.gradient_accumulation_steps, t.gradient_accumulation_steps >= 1, "at least 1"),
        ("training.warmup", t.warmup, t.warmup >= 0, "0 or more"),
        ("training.weight_decay", t.weight_decay, t.weight_decay >= 0, "0 or more"),
        ("training.max_seq_length", t.max_seq_length, 8 <= t.max_seq_length <= 65536, "between 8 and 65536"),
        ("training.max_steps", t.max_steps, t.max_steps is None or t.max_steps > 0, "a positive integer"),
        ("training.max_train_samples", t.max_train_samples, t.max_train_samples is None or t.max_train_samples > 0, "a positive integer"),
        ("training.max_eval_samples", t.max_eval_samples, t.max_eval_samples is None or t.max_eval_samples > 0, "a positive integer"),
        ("training.eval_steps", t.eval_steps, t.eval_steps is None or t.eval_steps > 0, "a positive integer"),
        ("training.save_steps", t.save_steps, t.save_steps is None or t.save_steps > 0, "a positive integer"),
        ("training.save_total_limit", t.save_total_limit, t.save_total_limit is None or t.save_total_limit > 0, "a positive integer"),
        ("training.logging_steps", t.logging_steps, t.logging_steps > 0, "a positive integer"),
        ("training.max_new_tokens", t.max_new_tokens, t.max_new_tokens > 0, "a positive integer"),
        ("training.generate_every", t.generate_every, t.generate_every is None or t.generate_every > 0,
         "a positive integer (evaluations)"),
        ("training.generate_examples", t.generate_examples, t.generate_examples > 0, "a positive integer"),
        ("training.dataloader_num_workers", t.dataloader_num_workers, t.dataloader_num_workers >= 0, "0 or more"),
        ("training.seed", t.seed, 0 <= t.seed < 2**32, "between 0 and 2**32 - 1 (what numpy accepts)"),
        ("resources.devices", r.devices, r.devices == "auto" or int(r.devices) > 0, "a positive integer or 'auto'"),
        ("resources.nodes", r.nodes, r.nodes > 0, "a positive integer"),
        ("resources.node_rank", r.node_rank, 0 <= r.node_rank < r.nodes, f"between 0 and nodes - 1 ({r.nodes - 1})"),
        ("resources.main_port", r.main_port, 0 < r.main_port < 65536, "a TCP port (1-65535)"),
        ("resources.runs_per_device", r.runs_per_device, r.runs_per_device >= 0, "0 (no queue) or a positive integer"),
        ("resources.stall_timeout", r.stall_timeout, r.stall_timeout is None or r.stall_timeout > 0, "a positive number of seconds"),
        ("resources.time_limit", r.time_limit, r.time_limit > 0, "a positive number of minutes"),
        ("resources.gpus_per_node", r.gpus_per_node, r.gpus_per_node is None or r.gpus_per_node >= 0, "0 or more"),
        ("adapter.r", config.adapter.r, config.adapter.r > 0, "a positive integer"),
        ("adapter.alpha", config.adapter.alpha, config.adapter.alpha > 0, "a positive integer"),
        ("adapter.dropout", config.adapter.dropout, 0 <= config.adapter.dropout < 1, "in [0, 1)"),
        ("data.validation_fraction", config.data.validation_fraction, 0 < config.data.validation_fraction < 1, "between 0 and 1"),
    ]
    for key, value, ok, expected in checks:
        if not ok:
            raise ConfigError(f"'{key}' must be {expected}; got {value!r}")
    if r.executor == "submitit-local" and r.nodes > 1:
        raise ConfigError("resources.executor: submitit-local runs one node; use slurm for resources.nodes > 1")
    if r.nodes > 1 and not r.main_address and r.executor == "local":
        raise ConfigError("'resources.main_address' is needed when resources.nodes > 1: the host name or IP of node 0")
    if not str(config.model).strip():
        raise ConfigError("'model' cannot be empty: use 'default', a local model folder or a hub id")
    secret = find_secret(dataclasses.asdict(config))
    if secret:  # refused before it reaches config.yaml, the server's answers, a card or a push; never echoed
        raise ConfigError(f"'{secret}' holds a secret (a token, key or password): a run never stores one. {SECRET_HOW}")
    # Trainer pass-through: names only here (no import); field names and packages at launch (check_launch).
    check_tracker_names(t.report_to or ())
    check_owned(t.trainer_args or {})


def check_trainable(config: Config) -> None:
    """What a run needs beyond a valid config. A config without training data is valid (a starter
    file, a dry run, a form half filled in), but a run made from it fails as soon as it starts."""
    if not config.data.train:
        raise ConfigError("'data.train' is needed to train: a data file, a saved dataset folder, a hub id "
                          "or the name of a notebook variable holding the data")


def check_paths(config: Config) -> None:
    """Refuse a config whose data files or model folder do not exist (`missing_paths`), before a run is made."""
    missing = missing_paths(config)
    if missing:
        raise ConfigError("; ".join(missing.values()))


# ----- helpers ---------------------------------------------------------------------------


def schema_fields(cls: type = Config, prefix: str = "") -> list[tuple[str, Any, dataclasses.Field]]:
    """Every leaf field as ``(dotted_key, type_hint, field)``: what flags and forms are built from."""
    hints = typing.get_type_hints(cls)
    leaves = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            leaves.extend(schema_fields(hints[f.name], f"{prefix}{f.name}."))
        else:
            leaves.append((f"{prefix}{f.name}", hints[f.name], f))
    return leaves
