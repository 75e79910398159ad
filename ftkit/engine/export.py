"""`ftkit export`: a run's checkpoint written where people run models, read back, and verified.

A generative run becomes one GGUF file (llama.cpp, Ollama, LM Studio; `gguf_export`), an encoder run an
ONNX folder (ONNX Runtime; `onnx_export`). The export is then loaded by a reader that shares nothing with
the writer (transformers' GGUF loader, ONNX Runtime) and answers the run's test split (else its
validation split, at most ``examples`` rows) beside the fine-tuned model: the share of equal answers is
the export's agreement, and below `VERIFICATION_THRESHOLDS` it is kept but marked as failing.

Everything is written into a staging folder beside the destination and moved into place at the end, so
a failed or stopped export leaves nothing half-written; the destination's README.md and Modelfile are
ftkit's own (an ``export.json`` beside them) or the export refuses before any work. It reports through
the run's ``export`` events (`ftkit.runstore.events`) and returns its record (``export.json``).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

from ..config import load_config
from ..errors import ConfigError, FtkitError
from ..runstore import RunStore
from ..runstore.files import write_json_atomic
from ..runstore.layout import (CONFIG_FILE, EXPORT_RECORD_FILE, EXPORTS_DIR, GGUF_QUANTS, VERIFICATION_THRESHOLDS,
                               choose_checkpoint, export_folder_name)
from ..runstore.liveness import process_start_time
from ..tasks import get_task
from .card import CARD_FILE, write_export_card

MODELFILE = "Modelfile"
_PROGRESS_INTERVAL = 0.5  # seconds between progress events


class ExportStopped(FtkitError):
    """SIGTERM or Ctrl-C: the export stops and removes what it had written."""


def export_checkpoint(store: RunStore, run_id: str, format: str | None = None, quant: str | None = None,
                      checkpoint: str | None = None, output: str | Path | None = None, ollama: bool = False,
                      examples: int = 200, export_id: str | None = None) -> dict[str, Any]:
    """Export one checkpoint of a run (by default its best) and verify it; returns the export's record."""
    report = _Reporter(store, run_id, export_id or secrets.token_hex(4))
    run_dir = store.run_dir(run_id)
    try:
        config = load_config(run_dir / CONFIG_FILE)
        task = get_task(config.task)
        format, quant = _format_and_quant(task, format, quant, ollama)
        source = choose_checkpoint(run_dir, store.checkpoints(run_id), config.best_metric, checkpoint, run_id)
        folder, file_name = _destination(run_dir, run_id, source, format, quant, output)
    except FtkitError as exc:
        if export_id:  # an export the caller named (the panel's) is followed through its events: it ends in one
            report.event("failed", checkpoint=checkpoint, format=format, quant=quant, error=str(exc))
        raise
    report.event("started", pid=os.getpid(), pid_started=process_start_time(os.getpid()), checkpoint=source.name,
                 format=format, quant=quant, path=str(folder / file_name))
    staging = folder.parent / f".ftkit-export-{report.export_id}"
    on_main_thread = threading.current_thread() is threading.main_thread()  # signals reach the main thread only
    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)} if on_main_thread else {}
    began = time.monotonic()
    try:
        staging.mkdir(parents=True)
        written = _write(format, quant, source, staging, file_name, config, report, ollama)
        verification = _verify(format, quant, source, staging, file_name, config, task, examples, report)
        record = {"id": report.export_id, "run": run_id, "checkpoint": source.name, "source": str(source),
                  "format": format, "quant": quant, "file": file_name, "path": str(folder / file_name),
                  "size": (staging / file_name).stat().st_size if format == "gguf" else _folder_size(staging),
                  "seconds": round(time.monotonic() - began, 1), "verification": verification,
                  "files": sorted(written)}
        write_json_atomic(staging / EXPORT_RECORD_FILE, record)
        write_export_card(staging, record, config)
        _move_into_place(staging, folder)
    except ExportStopped:
        shutil.rmtree(staging, ignore_errors=True)
        report.event("stopped")
        raise
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        report.event("failed", error=str(exc) if isinstance(exc, FtkitError) else f"{type(exc).__name__}: {exc}")
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    report.event("completed", path=record["path"], size=record["size"], seconds=record["seconds"],
                 verification=verification)
    return record


def _format_and_quant(task: Any, format: str | None, quant: str | None, ollama: bool) -> tuple[str, str | None]:
    format = format or task.export_format
    if format != task.export_format:
        raise ConfigError(f"a {task.name} run exports to {task.export_format}, not {format}")
    if format == "gguf":
        quant = quant or "f16"
        if quant not in GGUF_QUANTS:
            raise ConfigError(f"--quant must be one of {', '.join(GGUF_QUANTS)}, not '{quant}'")
        return format, quant
    if quant or ollama:
        raise ConfigError(f"an {format} export has no --quant and no --ollama Modelfile (those are for GGUF)")
    return format, None


def _destination(run_dir: Path, run_id: str, source: Path, format: str, quant: str | None,
                 output: str | Path | None) -> tuple[Path, str]:
    """(folder, main file): RUN/exports/<checkpoint>-<format>[-<quant>]/ by default; ``-o FILE.gguf`` names
    the file, any other ``-o`` the folder. Refuses a folder holding a card or Modelfile ftkit did not write."""
    default_file = f"{run_id}-{quant}.gguf" if format == "gguf" else "model.onnx"
    if output is None:
        folder, file_name = run_dir / EXPORTS_DIR / export_folder_name(source.name, format, quant), default_file
    else:
        output = Path(output).expanduser().resolve()
        if format == "gguf" and output.suffix == ".gguf":
            folder, file_name = output.parent, output.name
        else:
            folder, file_name = output, default_file
    if folder.resolve() == source.resolve() or source.resolve() in folder.resolve().parents:
        raise ConfigError(f"the export cannot go into the checkpoint it comes from ({source})")
    if not (folder / EXPORT_RECORD_FILE).exists():
        theirs = [name for name in (CARD_FILE, MODELFILE, file_name) if (folder / name).exists()]
        if theirs:
            raise ConfigError(f"{folder} already holds {', '.join(theirs)} that ftkit did not export; "
                              "choose another -o (nothing was written)")
    return folder, file_name


def _write(format: str, quant: str | None, source: Path, staging: Path, file_name: str, config: Any,
           report: "_Reporter", ollama: bool) -> list[str]:
    """The exported files in ``staging``: the model merged (LoRA folded in) in a scratch folder, then written."""
    from .adapters import merge_checkpoint

    report.event("progress", detail="merging the checkpoint")
    merged = merge_checkpoint(source, staging / ".merged")
    try:
        if format == "onnx":
            from .adapters import load_for_inference
            from .onnx_export import write_onnx

            report.event("progress", detail="writing ONNX")
            write_onnx(*load_for_inference(merged), staging)
        else:
            from transformers import AutoTokenizer

            from .gguf_export import ollama_modelfile, write_gguf

            write_gguf(merged, staging / file_name, quant, name=config.run_name,
                       on_tensor=lambda done, total: report.progress("writing GGUF", done, total))
            if ollama:
                modelfile = ollama_modelfile(file_name, AutoTokenizer.from_pretrained(merged))
                (staging / MODELFILE).write_text(modelfile, encoding="utf-8")
    finally:
        shutil.rmtree(merged, ignore_errors=True)
    return [path.name for path in staging.iterdir()] + [EXPORT_RECORD_FILE, CARD_FILE]


def _verify(format: str, quant: str | None, source: Path, staging: Path, file_name: str, config: Any, task: Any,
            examples: int, report: "_Reporter") -> dict[str, Any]:
    """The export's answers beside the fine-tuned model's on up to ``examples`` held-out rows."""
    from ..data.splits import subset
    from .inference import Predictor
    from ..tasks.loading import run_splits

    report.event("progress", detail="reading the verification split")
    raw = run_splits(config, task)
    split = "test" if "test" in raw and len(raw["test"]) else "validation"
    rows = subset(raw[split], examples, config.training.seed)
    inputs, references = task.export_inputs(rows)
    reference = Predictor.from_checkpoint(source)
    reference.max_new_tokens = config.training.max_new_tokens
    exported = _exported_predictor(format, staging, file_name, task.name, reference)
    generative = format == "gguf"
    batch_size = 16 if generative else 32
    answers: dict[str, list[Any]] = {"model": [], "export": []}
    seconds = {"model": 0.0, "export": 0.0}
    for start in range(0, len(inputs), batch_size):
        chunk = inputs[start:start + batch_size]
        for side, predictor in (("model", reference), ("export", exported)):
            began = time.perf_counter()
            answers[side] += task.predict(predictor, chunk, batch_size)
            seconds[side] += time.perf_counter() - began
        report.progress(f"verifying on {split}", min(start + batch_size, len(inputs)), len(inputs))
    seconds["export"] -= getattr(exported, "reference_seconds", 0.0)  # ONNX: its comparison's PyTorch passes
    agreed = sum(task.comparable(a) == task.comparable(b) for a, b in zip(answers["model"], answers["export"]))
    agreement = agreed / max(1, len(inputs))
    threshold = VERIFICATION_THRESHOLDS[quant or format]
    result: dict[str, Any] = {
        "passed": bool(inputs) and agreement >= threshold, "agreement": round(agreement, 4), "threshold": threshold,
        "examples": len(inputs), "split": split,
        "reader": "transformers GGUF loader" if generative else "onnxruntime",
        "model": task.export_scores(answers["model"], references),
        "export": task.export_scores(answers["export"], references),
        "seconds_per_example": {side: round(s / max(1, len(inputs)), 4) for side, s in seconds.items()},
        "disagreements": [{"input": inputs[i], "model": answers["model"][i], "export": answers["export"][i]}
                          for i in range(len(inputs))
                          if task.comparable(answers["model"][i]) != task.comparable(answers["export"][i])][:5],
    }
    if not generative:
        result["max_logit_difference"] = exported.max_logit_difference
    return result


def _exported_predictor(format: str, staging: Path, file_name: str, task: str, reference: Any) -> Any:
    """The export as a `Predictor`, read by what users run it with (a reader that is not ftkit's writer)."""
    from .inference import Predictor

    if format == "onnx":
        from .onnx_export import OnnxPredictor

        return OnnxPredictor(staging, task, reference=reference.model)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # Only the .gguf is in the folder yet: with a tokenizer_config.json beside it the tokenizer would be read from that.
    tokenizer = AutoTokenizer.from_pretrained(staging, gguf_file=file_name)
    model = AutoModelForCausalLM.from_pretrained(staging, gguf_file=file_name)
    return Predictor(model, tokenizer, task=task, max_new_tokens=reference.max_new_tokens)


def _move_into_place(staging: Path, folder: Path) -> None:
    """Each file of ``staging`` replaces its namesake in ``folder`` (an earlier export of the same kind)."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in staging.iterdir():
        target = folder / path.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(path, target)
    staging.rmdir()


def _folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def _stop(signum: int, frame: Any) -> None:
    raise ExportStopped(f"the export was stopped ({signal.Signals(signum).name}); its partial files were removed")


class _Reporter:
    """The export's events in the run's log: every state change, progress at most every half second."""

    def __init__(self, store: RunStore, run_id: str, export_id: str):
        self.store, self.run_id, self.export_id = store, run_id, export_id
        self._last = 0.0

    def event(self, state: str, **fields: Any) -> None:
        self.store.append_event(self.run_id, {"type": "export", "id": self.export_id, "state": state, **fields})
        self._last = time.monotonic()

    def progress(self, detail: str, done: int, total: int) -> None:
        if done >= total or time.monotonic() - self._last >= _PROGRESS_INTERVAL:
            self.event("progress", detail=detail, done=done, total=total)


__all__ = ["MODELFILE", "ExportStopped", "export_checkpoint"]
