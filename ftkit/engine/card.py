"""Model cards: the ``README.md`` the Hugging Face hub shows, written into a run's best checkpoint and
into every merged model, so a model says what it is, what it was trained on and how to load it.

Built with `huggingface_hub.ModelCard` (YAML metadata + Markdown); no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

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
             f"`{base or config.model}` ({config.adapter.kind} fine-tuning).", "", "## Data", ""]
    lines += [f"- {split}: `{source}`" for split, source in
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
    lines += ["## Training configuration", "", "```yaml", config.to_yaml().rstrip(), "```", ""]
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
