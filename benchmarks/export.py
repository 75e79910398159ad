"""`ftkit export`, verified: GGUF of a generative run, ONNX of two encoder runs, through the product path.

  (a) an SST-2-as-instructions LoRA SFT run of ``default-causal`` (SmolLM2-135M-Instruct; benchmarks/sft.py's
      settings: 500 seeded train sentences, 60 steps, batch 8), its validation split the first 200 dev
      sentences; then ``run.export(quant=...)`` for each quant: the export's agreement with the fine-tuned
      model's greedy answers on those 200 sentences, both exact matches, file size and export time (merge,
      write, read back with transformers' GGUF loader and verify: the export's own ``seconds``);
  (b) a CoNLL-2003 NER and an SST-2 classification run of ``default`` (MiniLM-L6; short, seeded train
      subsets) exported to ONNX: label agreement (entity spans for NER) on up to 200 test sentences, the
      largest logit difference, and the latency per sentence at batch 1 of ONNX Runtime beside PyTorch's
      (the same task code on both; 2 threads each), on the same sentences.

Targets (issue 25): f16 agreement >= 99%, q8_0 >= 97%, exact match within 1 point of the fine-tuned model's;
ONNX label agreement 100%.

    .venv/bin/python benchmarks/export.py                       # all of it (about 15 minutes on 2 cores)
    .venv/bin/python benchmarks/export.py --skip gguf           # the ONNX part only
    .venv/bin/python benchmarks/export.py --tiny                # a dry run in a minute
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sft import ANSWER_MAP, PROMPT_TEMPLATE, read_tsv, write_tsv  # noqa: E402

import ftkit  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def train(config: dict, overrides: list[str]) -> "ftkit.Run":
    run = ftkit.train(ftkit.load_config(config, overrides=overrides)).wait()
    if run.status != "completed":
        raise SystemExit(f"the run {run.status}: {run.error}\n{run.log_tail()}")
    return run


def gguf_part(args: argparse.Namespace, work: Path) -> list[dict]:
    rows = random.Random(args.seed).sample(read_tsv(SHARED / "sst2" / "train.tsv"), args.train_examples)
    dev = read_tsv(SHARED / "sst2" / "dev.tsv")[:args.examples]
    run = train({"name": "bench-export-sft", "task": "sft", "model": args.causal_model,
                 "data": {"train": str(write_tsv(work / "train.tsv", rows)),
                          "validation": str(write_tsv(work / "dev.tsv", dev)), "prompt_template": PROMPT_TEMPLATE,
                          "completion_column": "label", "answer_map": dict(ANSWER_MAP)},
                 "adapter": {"kind": "lora", "r": 16, "alpha": 32},
                 "training": {"batch_size": 8, "learning_rate": 2e-4, "max_steps": args.steps, "seed": args.seed,
                              "eval_steps": args.steps, "save_steps": args.steps, "max_new_tokens": 8},
                 "output": {"dir": str(work / "runs"), "save_predictions": False}}, args.overrides)
    results = []
    for quant in args.quants:
        began = time.perf_counter()
        record = run.export(quant=quant, examples=args.examples, ollama=True)
        check = record["verification"]
        results.append({"export": f"gguf {quant}", "run": "SST-2 sft (default-causal, LoRA)",
                        "examples": check["examples"], "agreement": check["agreement"], "passed": check["passed"],
                        "model exact match": check["model"]["exact_match"],
                        "export exact match": check["export"]["exact_match"],
                        "size MB": record["size"] / 1e6, "export s": record["seconds"],
                        "process s": time.perf_counter() - began, "path": record["path"]})
        print(json.dumps(results[-1]), flush=True)
    return results


def onnx_part(args: argparse.Namespace, work: Path) -> list[dict]:
    conll, sst2 = SHARED / "conll2003", SHARED / "sst2"
    runs = {
        "CoNLL-2003 ner (default, full)": {
            "task": "ner", "data": {"train": str(conll / "train.txt"), "validation": str(conll / "valid.txt"),
                                    "test": str(conll / "test.txt")}},
        "SST-2 classification (default, full)": {
            "task": "classification", "data": {"train": str(sst2 / "train.tsv"), "validation": str(sst2 / "dev.tsv"),
                                               "test": str(sst2 / "test.tsv"), "text_column": "sentence"}},
    }
    results = []
    for name, config in runs.items():
        run = train({**config, "name": f"bench-export-{config['task']}", "model": "default",
                     "training": {"epochs": 1, "seed": args.seed, "max_train_samples": args.encoder_train_examples,
                                  "max_eval_samples": args.examples},
                     "output": {"dir": str(work / "runs"), "save_predictions": False}}, args.overrides)
        record = run.export(examples=args.examples)
        check = record["verification"]
        torch_ms, onnx_ms = batch_one_latency(run, Path(record["path"]).parent, args.latency_sentences)
        results.append({"export": "onnx", "run": name, "examples": check["examples"], "agreement": check["agreement"],
                        "passed": check["passed"], "max logit diff": check["max_logit_difference"],
                        "size MB": record["size"] / 1e6, "export s": record["seconds"],
                        "pytorch ms/sentence": torch_ms, "onnxruntime ms/sentence": onnx_ms,
                        "speed-up": torch_ms / onnx_ms})
        print(json.dumps(results[-1]), flush=True)
    return results


def batch_one_latency(run: "ftkit.Run", folder: Path, n: int) -> tuple[float, float]:
    """Median milliseconds per sentence, one sentence per call, through the task's own predict on both."""
    import torch

    from ftkit.engine.inference import Predictor
    from ftkit.engine.onnx_export import OnnxPredictor
    from ftkit.tasks.loading import run_splits

    from ftkit.tasks import get_task

    torch.set_num_threads(2)
    task = get_task(run.config.task)
    inputs, _ = task.export_inputs(run_splits(run.config, task)["test"].select(range(n)))
    medians = []
    for predictor in (Predictor.from_run(run), OnnxPredictor(folder, run.config.task, threads=2)):
        task.predict(predictor, inputs[:3], 1)  # warm-up
        times = []
        for text in inputs:
            began = time.perf_counter()
            task.predict(predictor, [text], 1)
            times.append((time.perf_counter() - began) * 1000)
        medians.append(statistics.median(times))
    return medians[0], medians[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip", choices=["gguf", "onnx"], action="append", default=[])
    parser.add_argument("--quants", nargs="+", default=["f16", "q8_0", "q4_0"])
    parser.add_argument("--steps", type=int, default=60, help="SFT optimiser steps (default 60)")
    parser.add_argument("--train-examples", type=int, default=500, help="SFT train sentences (default 500)")
    parser.add_argument("--encoder-train-examples", type=int, default=2000, help="NER/classification train rows")
    parser.add_argument("--examples", type=int, default=200, help="verification examples (default 200)")
    parser.add_argument("--latency-sentences", type=int, default=100)
    parser.add_argument("--causal-model", default="default-causal")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--tiny", action="store_true", help="a dry run: few steps, examples and sentences")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.tiny:
        args.steps, args.train_examples, args.encoder_train_examples = 2, 16, 64
        args.examples, args.latency_sentences, args.quants = 8, 8, args.quants[:1]
    work = Path(tempfile.mkdtemp(prefix="ftkit-bench-export-"))
    results = ([] if "gguf" in args.skip else gguf_part(args, work)) + ([] if "onnx" in args.skip else onnx_part(args, work))
    print(f"\n{os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end")
    for row in results:
        print(" | ".join(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}" for k, v in row.items() if k != "path"))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
