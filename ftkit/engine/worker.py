"""The processes that import the training stack: a run's worker and the jobs the CLI runs on its checkpoints.

`python -m ftkit.engine.worker train RUN_DIR` is what a run's supervisor (`ftkit.process.supervisor`)
starts and watches; it writes the run's events, and its final status.

`evaluate`, `predict`, `merge` and `export` are the training-stack jobs of `ftkit eval/predict/merge/export`:
each loads a checkpoint (by default the run's best, `ftkit.runstore.layout.choose_checkpoint`) and writes
``{"result": ...}`` or ``{"error": "..."}`` as JSON to ``--output`` (default: stdout), so the CLI
never imports torch. Worker processes are the only ones that import the training stack.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

from ..config import load_config
from ..errors import FtkitError
from ..runstore.layout import CONFIG_FILE, MERGED_DIR, choose_checkpoint
from ..runstore import RunStore

JOBS = ("evaluate", "predict", "merge", "export")


def train(run_dir: Path, resume: bool) -> int:
    store, run_id = RunStore(run_dir.parent), run_dir.name
    # SIGTERM straight to the worker also means: checkpoint, then stop.
    signal.signal(signal.SIGTERM, lambda signum, frame: store.request_stop(run_id))
    try:
        store.append_event(run_id, {"type": "phase", "phase": "starting", "detail": "importing torch and transformers"})
        from .training import run_training

        status = run_training(store, run_id, resume=resume)
    except FtkitError as exc:
        store.set_status(run_id, "failed", error=str(exc))
        print(f"ftkit: {exc}", file=sys.stderr)
        return 1
    except BaseException as exc:  # noqa: BLE001 - every failure must reach the store
        traceback.print_exc()
        message = str(exc).strip().splitlines()[0][:500] if str(exc).strip() else ""
        store.set_status(run_id, "failed", error=f"{type(exc).__name__}: {message}".rstrip(": "))
        return 1
    print(f"ftkit: run {run_id} {status}", flush=True)
    return 0


# ----- jobs on a run's checkpoints (ftkit eval / predict / merge / export) ---------------------------------------


def _checkpoint(store: RunStore, run_dir: Path, requested: str | None) -> Path:
    config = load_config(run_dir / CONFIG_FILE)
    return choose_checkpoint(run_dir, store.checkpoints(run_dir.name), config.best_metric, requested, run_dir.name)


def evaluate_job(run_dir: Path, split: str = "test", checkpoint: str | None = None,
                 data_source: str | None = None) -> dict[str, Any]:
    """Metrics of a checkpoint on ``split`` (or on ``data_source``), and the report table people read."""
    from ..tasks.scoring import report_table
    from .training import evaluate_run

    store = RunStore(run_dir.parent)
    path = _checkpoint(store, run_dir, checkpoint)
    metrics = evaluate_run(store, run_dir.name, split=split, checkpoint=str(path), data_source=data_source)
    task = load_config(run_dir / CONFIG_FILE).task
    return {"checkpoint": str(path), "split": data_source or split, "metrics": metrics,
            "report": report_table(metrics, task)}


def predict_job(run_dir: Path, texts: list[str], checkpoint: str | None = None) -> list[Any]:
    from .inference import Predictor

    predictor = Predictor.from_checkpoint(_checkpoint(RunStore(run_dir.parent), run_dir, checkpoint))
    predictor.max_new_tokens = load_config(run_dir / CONFIG_FILE).training.max_new_tokens
    return predictor.predict(list(texts))


def merge_job(run_dir: Path, output: str | None = None, checkpoint: str | None = None) -> dict[str, Any]:
    from .adapters import merge_checkpoint

    from .card import write_run_card

    store = RunStore(run_dir.parent)
    path = _checkpoint(store, run_dir, checkpoint)
    merged = merge_checkpoint(path, output or run_dir / MERGED_DIR)
    write_run_card(store, run_dir.name, load_config(run_dir / CONFIG_FILE), merged)
    return {"checkpoint": str(path), "path": str(merged)}


def run_job(args: argparse.Namespace) -> int:
    """One job; its result (or the error the user can fix) goes to ``--output`` as JSON."""
    run_dir = args.run_dir.resolve()
    try:
        if args.mode == "evaluate":
            result: Any = evaluate_job(run_dir, args.split, args.checkpoint, args.data)
        elif args.mode == "predict":
            result = predict_job(run_dir, json.loads(Path(args.texts_file).read_text(encoding="utf-8")), args.checkpoint)
        elif args.mode == "merge":
            result = merge_job(run_dir, args.merged_dir, args.checkpoint)
        else:
            from .export import export_checkpoint

            result = export_checkpoint(RunStore(run_dir.parent), run_dir.name, args.format, args.quant, args.checkpoint,
                                       args.export_path, args.ollama, args.examples, args.export_id)
        reply, code = {"result": result}, 0
    except FtkitError as exc:
        reply, code = {"error": str(exc)}, 2
    text = json.dumps(reply, default=str)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        print(text, flush=True)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ftkit.engine.worker")
    parser.add_argument("mode", choices=("train", *JOBS))
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--split", default="test", help="evaluate: the split to score")
    parser.add_argument("--data", help="evaluate: a file, folder or hub id scored instead of the split")
    parser.add_argument("--checkpoint", help="evaluate/predict/merge/export: a step, checkpoint name or folder (default: the best)")
    parser.add_argument("--texts-file", help="predict: a JSON list of texts")
    parser.add_argument("--merged-dir", help="merge: the output folder (default: RUN_DIR/merged)")
    parser.add_argument("--format", help="export: gguf or onnx (default: what the run's task exports to)")
    parser.add_argument("--quant", help="export: f16, q8_0 or q4_0 (GGUF)")
    parser.add_argument("--export-path", help="export: the output folder, or a .gguf file (default: RUN_DIR/exports/...)")
    parser.add_argument("--ollama", action="store_true", help="export: also write an Ollama Modelfile")
    parser.add_argument("--examples", type=int, default=200, help="export: how many held-out examples verify it")
    parser.add_argument("--export-id", help="export: the id its events carry (the server's)")
    parser.add_argument("--output", help="evaluate/predict/merge/export: where to write the JSON result (default: stdout)")
    args = parser.parse_args(argv)
    if args.mode in JOBS:
        return run_job(args)
    return train(args.run_dir.resolve(), args.resume)


if __name__ == "__main__":
    sys.exit(main())
