"""DPO with LoRA on SST-2 made into preference pairs: ftkit's product path vs a plain TRL DPOTrainer script.

Each SST-2 sentence becomes a pair: the prompt template asks whether the review is positive or
negative, the chosen answer is the right word and the rejected answer the other one. One command
measures, side by side on the same model, data, LoRA, beta, schedule and seed:

  (a) a plain TRL ``DPOTrainer`` script (conversational prompt/chosen/rejected rows, LoRA r 16 on
      all linear layers handed to TRL as ``peft_config``), in its own process;
  (b) ftkit's product path, ``ftkit.train({task: dpo, ...})`` reading the SST-2 TSV itself through
      ``data.prompt_template`` / ``chosen_column: label`` / ``answer_map`` (the rejected answer is the
      other answer of the map), in its own worker process;

and, for the base model and both results, on the same dev sentences (scored by the same code):
exact match of greedy generations, label-likelihood accuracy (the likelier of the two answers),
held-out reward accuracy (how often the implicit reward, policy log-likelihood minus the base
model's, is higher for the right answer than for the wrong one) and the mean reward margin
(beta times that difference). Training figures: process wall time, trainer time, time per step,
training tokens/s (prompt + answer tokens of both sequences of a pair) and peak RSS; then ratios
ftkit / TRL. The issue's targets: reward accuracy within 2 points, tokens/s at least 1.0x, peak
memory at most 1.1x; the tuned model right far more often than the base model.

    .venv/bin/python benchmarks/preference.py --tiny             # seconds: a tiny random llama, a dry run
    .venv/bin/python benchmarks/preference.py                    # 60 steps of 8 pairs, 500 train, 200 dev
    .venv/bin/python benchmarks/preference.py --steps 30 --json dpo.json
    .venv/bin/python benchmarks/preference.py --choose-lr 5e-5 2e-4 1e-3 --steps 20 --validation-examples 48

Both trainings use ftkit's warmup (10%) and weight decay (0.01), fp32 on CPU and no gradient
checkpointing (TRL's configs turn it on; ftkit leaves it off for a model this size), so the
comparison measures the implementations, not two recipes.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sft import (ANSWER_MAP, CHOICES, DATA, PROMPT_TEMPLATE, _share, answer_of, print_training_table, prompt_of,  # noqa: E402
                 read_tsv, run_trl, tiny_llama, write_tsv)


def rejected_of(row: dict[str, str]) -> str:
    return next(choice for choice in CHOICES if choice != answer_of(row))


# ----- (a) the plain TRL script, run in a child process (its peak RSS is its own) ---------------------


def trl_worker(spec_file: str) -> None:
    """Train with TRL's DPOTrainer as the spec says; write the figures next to the spec."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    spec = json.loads(Path(spec_file).read_text())
    started = time.perf_counter()
    rows = read_tsv(Path(spec["train"]))
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": prompt_of(row)}],
                                  "chosen": [{"role": "assistant", "content": answer_of(row)}],
                                  "rejected": [{"role": "assistant", "content": rejected_of(row)}]} for row in rows])
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    torch.manual_seed(spec["seed"])
    model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=torch.float32)
    args = DPOConfig(output_dir=spec["out"], per_device_train_batch_size=spec["batch_size"],
                     learning_rate=spec["learning_rate"], max_steps=spec["steps"], warmup_steps=0.1, weight_decay=0.01,
                     lr_scheduler_type="linear", seed=spec["seed"], data_seed=spec["seed"], max_length=256,
                     beta=spec["beta"], gradient_checkpointing=False, bf16=False, save_strategy="no",
                     eval_strategy="no", report_to="none", logging_steps=max(1, spec["steps"] // 6), disable_tqdm=True,
                     use_cpu=not torch.cuda.is_available())
    lora = LoraConfig(task_type="CAUSAL_LM", r=spec["lora_r"], lora_alpha=spec["lora_alpha"],
                      lora_dropout=spec["lora_dropout"], target_modules="all-linear")
    trainer = DPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=lora)
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    data = trainer.train_dataset
    lengths = [2 * len(p) + len(c) + len(r) for p, c, r in zip(data["prompt_ids"], data["chosen_ids"], data["rejected_ids"])]
    metrics = trainer.train().metrics
    runtime = metrics["train_runtime"]
    tokens = spec["steps"] * spec["batch_size"] * sum(lengths) / max(1, len(lengths))
    trainer.model.save_pretrained(spec["adapter"])
    tokenizer.save_pretrained(spec["adapter"])
    Path(spec["result"]).write_text(json.dumps({
        "train_seconds": runtime, "train_tokens_per_second": tokens / runtime if runtime else None,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "trainable_parameters": trainable, "train_loss": metrics.get("train_loss"),
        "process_seconds": time.perf_counter() - started,
    }))


# ----- (b) ftkit's product path --------------------------------------------------------------------------


def run_ftkit(args: argparse.Namespace, model: str, train_file: Path, validation_file: Path,
              work: Path, evaluations: int = 1) -> dict[str, Any]:
    import ftkit

    config = ftkit.load_config({
        "name": f"bench-dpo-{args.learning_rate:g}", "task": "dpo", "model": model,
        "data": {"train": str(train_file), "validation": str(validation_file), "prompt_template": PROMPT_TEMPLATE,
                 "chosen_column": "label", "answer_map": dict(ANSWER_MAP)},
        "adapter": {"kind": "lora", "r": args.lora_r, "alpha": args.lora_alpha, "dropout": args.lora_dropout},
        "training": {"batch_size": args.batch_size, "learning_rate": args.learning_rate, "max_steps": args.steps,
                     "eval_steps": args.steps // evaluations, "save_steps": args.steps, "logging_steps": max(1, args.steps // 6),
                     "seed": args.seed, "beta": args.beta},
        "output": {"dir": str(work / "ftkit-runs"), "save_predictions": False},
    }, overrides=args.overrides)
    started = time.perf_counter()
    run = ftkit.train(config).wait()
    wall = time.perf_counter() - started
    if run.status != "completed":
        raise SystemExit(f"the ftkit run {run.status}: {run.error}\n{run.log_tail()}")
    record = json.loads((run.dir / "run.json").read_text())
    usage = record.get("resources", {})
    return {"train_seconds": usage.get("train_runtime_seconds"),
            "train_tokens_per_second": usage.get("train_tokens_per_second"),
            "peak_rss_bytes": usage.get("peak_rss_bytes"),
            "trainable_parameters": record.get("parameters", {}).get("trainable"),
            "wall_seconds": wall, "checkpoint": str(run.checkpoint_path()), "reported_metrics": run.metrics,
            "validation_history": [m for m in run.info()["metric_history"] if m["split"] == "validation"]}


def choose_learning_rate(args: argparse.Namespace, model: str, train_file: Path, validation_file: Path,
                         work: Path) -> None:
    """ftkit runs at each rate of ``--choose-lr``, scored on the held-out validation pairs only (how the
    default was chosen: never on the dev sentences the comparison scores)."""
    print(f"{'lr':>8}  validation loss per evaluation   reward accuracy   reward margin   (steps {args.steps})")
    for rate in args.choose_lr:
        args.learning_rate = rate
        history = run_ftkit(args, model, train_file, validation_file, work, evaluations=2)["validation_history"]
        curve = {name: [round(m["value"], 3) for m in history if m["name"] == name]
                 for name in ("loss", "rewards/accuracies", "rewards/margins")}
        print(f"{rate:>8g}  {' / '.join(map(str, curve['loss'])):<32}  {curve['rewards/accuracies'][-1]:<16}  "
              f"{curve['rewards/margins'][-1]}", flush=True)


# ----- evaluation: generations, label likelihood, implicit rewards against the base model -----------------


def score(source: str, rows: list[dict[str, str]], args: argparse.Namespace) -> dict[str, Any]:
    """Log-likelihood of each answer (end of turn included) per row, and greedy generations."""
    import torch

    from ftkit.engine.generation import Generator

    generator = Generator.load(source)
    prompts = [prompt_of(row) for row in rows]
    started = time.perf_counter()
    scores = generator.choice_scores(prompts, CHOICES, batch_size=args.eval_batch_size)
    likelihood_seconds = time.perf_counter() - started
    started = time.perf_counter()
    with torch.inference_mode():
        generations = generator.generations(prompts, max_new_tokens=args.max_new_tokens,
                                            batch_size=args.eval_batch_size)
    return {"scores": scores, "generations": [g.text for g in generations],
            "likelihood_seconds": likelihood_seconds, "generation_seconds": time.perf_counter() - started}


def quality(scored: dict[str, Any], base: dict[str, Any], rows: list[dict[str, str]], beta: float) -> dict[str, Any]:
    answers = [answer_of(row) for row in rows]
    right = [CHOICES.index(answer) for answer in answers]
    margins = [beta * ((policy[r] - reference[r]) - (policy[1 - r] - reference[1 - r]))
               for policy, reference, r in zip(scored["scores"], base["scores"], right)]
    return {
        "exact_match": _share(g.strip().lower() == a for g, a in zip(scored["generations"], answers)),
        "label_likelihood_accuracy": _share(row[r] > row[1 - r] for row, r in zip(scored["scores"], right)),
        "reward_accuracy": _share(margin > 0 for margin in margins),
        "reward_margin": sum(margins) / max(1, len(margins)),
        "generation_seconds": scored["generation_seconds"], "likelihood_seconds": scored["likelihood_seconds"],
        "examples": scored["generations"][:3],
    }


# ----- the report -------------------------------------------------------------------------------------------


def print_report(results: dict[str, Any], args: argparse.Namespace) -> None:
    rows = [("base model (before)", results.get("base")), ("TRL DPOTrainer", results.get("trl", {}).get("eval")),
            ("ftkit dpo", results.get("ftkit", {}).get("eval"))]
    print(f"\n{results['eval_examples']} dev sentences, greedy, at most {args.max_new_tokens} new tokens")
    print(f"{'model':<22}{'exact':>8}{'label-lik':>11}{'reward acc':>12}{'margin':>9}{'gen s':>8}{'lik s':>7}")
    for name, row in rows:
        if row:
            print(f"{name:<22}{row['exact_match']:>8.3f}{row['label_likelihood_accuracy']:>11.3f}"
                  f"{row['reward_accuracy']:>12.3f}{row['reward_margin']:>9.3f}{row['generation_seconds']:>8.1f}"
                  f"{row['likelihood_seconds']:>7.1f}")
    print(f"\n{results['train_examples']} train pairs, {args.steps} steps of batch {args.batch_size}, "
          f"lr {args.learning_rate:g}, beta {args.beta:g}, LoRA r {args.lora_r}")
    print_training_table(results, {"trl": "TRL DPOTrainer", "ftkit": "ftkit dpo"})
    if results.get("ratios"):
        print("\nftkit / TRL: " + ", ".join(f"{name} {value:.3f}" for name, value in results["ratios"].items()
                                           if value is not None))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60, help="optimiser steps of each training (default 60)")
    parser.add_argument("--train-examples", type=int, default=500, help="seeded SST-2 train pairs (default 500)")
    parser.add_argument("--eval-examples", type=int, default=200, help="first N dev sentences (default 200)")
    parser.add_argument("--validation-examples", type=int, default=16,
                        help="the ftkit run's own validation pairs (dev sentences after the scored ones)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--eval-batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--lora-alpha", type=int, default=32)
    parser.add_argument("--lora-dropout", type=float, default=0.05)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--model", default="default-causal")
    parser.add_argument("--skip", choices=["trl", "ftkit", "base"], action="append", default=[],
                        help="leave a part out (repeatable)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="extra ftkit config overrides, e.g. training.loss_type=ipo")
    parser.add_argument("--tiny", action="store_true", help="a seconds-long dry run with a tiny random llama")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--work-dir", help="keep runs, adapters and data subsets here (default: a temporary folder)")
    parser.add_argument("--choose-lr", type=float, nargs="+", metavar="LR",
                        help="instead of the comparison: ftkit runs of --steps at each rate, scored on the held-out "
                             "validation pairs (how the default was chosen)")
    parser.add_argument("--trl-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.trl_worker:
        trl_worker(args.trl_worker)
        return
    if args.tiny:
        args.steps, args.train_examples, args.eval_examples = min(args.steps, 2), min(args.train_examples, 16), \
            min(args.eval_examples, 8)
        args.validation_examples, args.max_new_tokens = min(args.validation_examples, 4), min(args.max_new_tokens, 4)

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="ftkit-bench-dpo-"))
    work.mkdir(parents=True, exist_ok=True)
    model = tiny_llama(work / "tiny-llama") if args.tiny else args.model
    if model == "default-causal":
        from ftkit.engine.causal import default_causal_model_dir

        model_dir = str(default_causal_model_dir())  # TRL gets the converted folder, ftkit its own name
    else:
        model_dir = model
    train_rows = random.Random(args.seed).sample(read_tsv(DATA / "train.tsv"), args.train_examples)
    dev = read_tsv(DATA / "dev.tsv")
    eval_rows = dev[:args.eval_examples]
    train_file = write_tsv(work / "train.tsv", train_rows)
    validation_file = write_tsv(work / "validation.tsv",
                                dev[args.eval_examples:args.eval_examples + args.validation_examples])

    if args.choose_lr:
        choose_learning_rate(args, model, train_file, validation_file, work)
        return
    import os

    results: dict[str, Any] = {"train_examples": len(train_rows), "eval_examples": len(eval_rows),
                               "load_average_before": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M %Z")}
    base = score(model_dir, eval_rows, args)
    if "base" not in args.skip:
        results["base"] = quality(base, base, eval_rows, args.beta)
    for key, train in (("trl", lambda: run_trl(args, model_dir, train_file, work, __file__, beta=args.beta)),
                       ("ftkit", lambda: run_ftkit(args, model, train_file, validation_file, work))):
        if key in args.skip:
            continue
        row = train()
        row["seconds_per_step"] = row["train_seconds"] / args.steps if row.get("train_seconds") else None
        row["eval"] = quality(score(row["checkpoint"], eval_rows, args), base, eval_rows, args.beta)
        row["load_average_after"] = os.getloadavg()
        results[key] = row
    if "trl" in results and "ftkit" in results:
        ftkit_row, trl_row = results["ftkit"], results["trl"]
        results["ratios"] = {
            "reward accuracy (points)": 100 * (ftkit_row["eval"]["reward_accuracy"] - trl_row["eval"]["reward_accuracy"]),
            "train tokens/s (x)": ftkit_row["train_tokens_per_second"] / trl_row["train_tokens_per_second"],
            "peak RSS (x)": ftkit_row["peak_rss_bytes"] / trl_row["peak_rss_bytes"],
            "wall time (x)": ftkit_row["wall_seconds"] / trl_row["wall_seconds"],
        }
    print_report(results, args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
