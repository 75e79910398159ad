"""Model cards: the ``README.md`` the Hugging Face hub shows, written into a run's best checkpoint and
into every merged model, so a model says what it is, what it was trained on and how to load it.

Built with `huggingface_hub.ModelCard` (YAML metadata + Markdown); no torch.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import yaml

from ..runstore.lineage import is_run_reference
from ..tasks import get_task
from ..tasks.scoring import report_markdown

if TYPE_CHECKING:
    from ..config import Config
    from ..runstore import RunStore

CARD_FILE = "README.md"


def base_model_id(model: str) -> str | None:
    """The hub id of the model a run started from, when there is one (a local folder has none)."""
    from .causal import DEFAULT_CAUSAL_HUB_ID, DEFAULT_CAUSAL_MODEL
    from .models import DEFAULT_MODEL, DEFAULT_MODEL_HUB_ID

    known = {DEFAULT_MODEL: DEFAULT_MODEL_HUB_ID, DEFAULT_CAUSAL_MODEL: DEFAULT_CAUSAL_HUB_ID}
    if is_run_reference(model):  # another run's checkpoint (run:<id>/checkpoint-<step>): no hub id of its own
        return None
    if model in known:
        return known[model]
    looks_like_hub_id = model.count("/") == 1 and not Path(model).expanduser().exists() and not model.startswith((".", "/", "~"))
    return model if looks_like_hub_id else None


def without_folders(value: Any) -> Any:
    """``value`` (a config, its dicts and lists) with each local path cut to its file name: a card is published, and
    a path says whose machine and home folder it came from. Hub ids and relative names stay."""
    if isinstance(value, dict):
        return {key: without_folders(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_folders(item) for item in value]
    if isinstance(value, str) and (os.path.isabs(value) or value.startswith("~") or re.match(r"^[A-Za-z]:[\\/]", value)):
        return Path(value).name
    return value


def model_card(config: "Config", metrics: Mapping[str, Mapping[str, Any]], adapter_only: bool,
               base_model: str | None = None) -> Any:
    """The card of a model fine-tuned by ``config``; ``metrics`` maps a split to its scores."""
    from huggingface_hub import ModelCard, ModelCardData

    task = get_task(config.task)
    base = base_model or base_model_id(config.model)
    hub_data = [source for source in (config.data.train, config.data.validation, config.data.test)
                if isinstance(source, str) and base_model_id(source) == source]
    data = ModelCardData(
        base_model=base, library_name="peft" if adapter_only else "transformers",
        pipeline_tag=task.pipeline_task, tags=["ftkit", task.name, config.adapter.kind],
        datasets=sorted(set(hub_data)) or None,
    )
    lines = [f"# {config.run_name}", "",
             f"{task.name} ({task.pipeline_task}) fine-tuned with [ftkit](https://pypi.org/project/ftkit/) from "
             f"`{base or without_folders(config.model)}` ({config.adapter.kind} fine-tuning).", "", "## Data", ""]
    lines += [f"- {split}: `{without_folders(source)}`" for split, source in
              (("train", config.data.train), ("validation", config.data.validation), ("test", config.data.test))
              if source]
    if not config.data.validation:
        lines.append(f"- validation: {config.data.validation_fraction:.0%} of train, held out with seed "
                     f"{config.training.seed}")
    lines += ["", "## Results", ""]
    for split, scores in metrics.items():
        if scores:
            lines += [f"### {split}", "", report_markdown(scores, config.task), ""]
    if not any(metrics.values()):
        lines += ["No evaluation was recorded.", ""]
    lines += ["## How to load it", "", "```python", task.load_snippet("PATH_OR_REPO_ID", adapter_only), "```", ""]
    if adapter_only:
        lines += ["This folder holds LoRA adapter weights (and the trained head). `ftkit merge RUN` writes a "
                  "standalone model that `transformers.pipeline` loads directly.", ""]
    shown = without_folders(config.to_dict())
    shown.get("output", {}).pop("dir", None)
    lines += ["## Training configuration", "", "```yaml", yaml.safe_dump(shown, sort_keys=False).rstrip(), "```", ""]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))


def write_model_card(folder: str | Path, config: "Config", metrics: Mapping[str, Mapping[str, Any]],
                     adapter_only: bool) -> Path:
    """Write ``folder/README.md``; returns its path."""
    path = Path(folder) / CARD_FILE
    model_card(config, metrics, adapter_only).save(path)
    return path


def write_run_card(store: "RunStore", run_id: str, config: "Config", folder: str | Path | None = None) -> Path:
    """The card of a run's best checkpoint (or of ``folder``, a merge of it): its validation scores
    at that checkpoint and the run's test scores."""
    from ..runstore.layout import best_checkpoint

    detail = store.get(run_id)
    best = best_checkpoint(detail["checkpoints"], config.best_metric)
    metrics = {"validation": best.get("metrics") or {}, "test": detail["metrics"].get("test") or {}}
    if folder is None:
        return write_model_card(best["path"], config, metrics, adapter_only=bool(best["adapter_only"]))
    return write_model_card(folder, config, metrics, adapter_only=False)


def export_card(record: Mapping[str, Any], config: "Config") -> str:
    """The README.md of an export: what it is, how it was verified, and how to run it where it goes."""
    check = record["verification"]
    kind = f"GGUF ({record['quant']})" if record["format"] == "gguf" else "ONNX"
    verdict = "passed" if check["passed"] else "**FAILED** (kept; `ftkit push` refuses it without --allow-unverified)"
    tags = ["ftkit", config.task, record["format"], *([record["quant"]] if record["quant"] else [])]
    lines = ["---", f"library_name: {record['format']}", "tags:", *(f"- {tag}" for tag in tags)]
    if base_model_id(config.model):
        lines.append(f"base_model: {base_model_id(config.model)}")
    lines += ["---", "", f"# {config.run_name}: {kind}", "",
              f"{config.task} model fine-tuned with ftkit (run `{record['run']}`, `{record['checkpoint']}`), "
              f"exported as `{record['file']}` ({record['size'] / 1e6:.1f} MB) in {record['seconds']:.0f} s.", "",
              "## Verification", "",
              f"Read back with {check['reader']} and compared with the fine-tuned model on {check['examples']} "
              f"examples of the {check['split']} split: verification {verdict}.", "",
              "| | fine-tuned model | export |", "|---|---|---|",
              f"| agreement | | {check['agreement']:.1%} (threshold {check['threshold']:.0%}) |"]
    for metric in check["model"]:
        lines.append(f"| {metric} | {check['model'][metric]:.1%} | {check['export'][metric]:.1%} |")
    per_example = check["seconds_per_example"]
    lines.append(f"| seconds per example | {per_example['model']:.4f} | {per_example['export']:.4f} |")
    if "max_logit_difference" in check:
        lines.append(f"| largest logit difference | | {check['max_logit_difference']:.2e} |")
    usage = _GGUF_USAGE if record["format"] == "gguf" else _ONNX_USAGE[config.task]
    lines += ["", "## How to run it", "", usage.replace("FILE", record["file"]), ""]
    return "\n".join(lines)


_GGUF_USAGE = """- llama.cpp: `llama-cli -m FILE -cnv` (the chat template is in the file), or `llama-server -m FILE`.
- Ollama: `ollama create my-model -f Modelfile` then `ollama run my-model` (`ftkit export --ollama` writes
  the Modelfile: FROM this file, the chat template, the end-of-turn stop).
- LM Studio: `lms import FILE`, or drop the file into its models folder.
- transformers: `AutoModelForCausalLM.from_pretrained(".", gguf_file="FILE")` (and the same for AutoTokenizer)."""

_ONNX_RUN = """```python
import json, onnxruntime
from transformers import AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained(".")  # this folder
session = onnxruntime.InferenceSession("FILE")
labels = json.load(open("config.json"))["id2label"]
names = [i.name for i in session.get_inputs()]
"""

_ONNX_USAGE = {
    "classification": _ONNX_RUN + """encoded = tokenizer(["a film worth seeing"], padding=True, truncation=True, return_tensors="np")
logits = session.run(["logits"], {name: encoded[name] for name in names})[0]
print([labels[str(i)] for i in logits.argmax(-1)])
```""",
    "ner": _ONNX_RUN + """words = "George Washington went to Washington".split()
encoded = tokenizer([words], is_split_into_words=True, truncation=True, return_tensors="np")
logits = session.run(["logits"], {name: encoded[name] for name in names})[0][0]
seen = set()  # each word takes its first subword's label, as in training
for position, word in enumerate(encoded.word_ids(0)):
    if word is not None and word not in seen:
        seen.add(word)
        print(words[word], labels[str(int(logits[position].argmax()))])
```""",
}


def write_export_card(folder: str | Path, record: Mapping[str, Any], config: "Config") -> Path:
    path = Path(folder) / CARD_FILE
    path.write_text(export_card(record, config), encoding="utf-8")
    return path
