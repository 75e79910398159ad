"""Training throughput (non-padding tokens/s): ftkit vs the classic tutorial loop vs a plain Trainer.

Same model (`model: default`), data (a seeded CoNLL-2003 train subset), batch size and number of
steps, one process, one after another; printed as ratios. Targets: >= 3x the tutorial loop and
>= 1.0x the plain Trainer.

    .venv/bin/python benchmarks/throughput.py [--steps 60] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "conll2003"


def tutorial_loop(prepared, batch_size: int, steps: int) -> float:
    """The classic notebook recipe: pad every sentence to 128, naive labels, a plain AdamW loop, fp32."""
    from ftkit.engine.models import build_model, resolve_model_source

    raw, tokenizer = prepared.raw["train"], prepared.tokenizer
    label2id = {label: i for i, label in enumerate(prepared.labels)}
    encoded = tokenizer(list(raw["tokens"]), is_split_into_words=True, padding="max_length", truncation=True,
                        max_length=128, return_tensors="pt")
    labels = torch.tensor([([label2id[t] for t in tags] + [0] * 128)[:128] for tags in raw["tags"]])
    dataset = torch.utils.data.TensorDataset(encoded["input_ids"], encoded["attention_mask"], labels)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True)
    torch.manual_seed(0)
    model = build_model(resolve_model_source("default"), "ner", prepared.labels)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
    model.train()
    started = time.perf_counter()
    for step, (ids, mask, y) in enumerate(loader):
        if step == steps:
            break
        loss = model(input_ids=ids, attention_mask=mask, labels=y).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return time.perf_counter() - started


def plain_trainer(prepared, batch_size: int, steps: int, out: str) -> float:
    """A plain Trainer: aligned labels, the token-classification collator, random order (no grouping)."""
    from transformers import DataCollatorForTokenClassification, Trainer, TrainingArguments

    from ftkit.engine.models import build_model, resolve_model_source

    torch.manual_seed(0)
    model = build_model(resolve_model_source("default"), "ner", prepared.labels)
    args = TrainingArguments(output_dir=out, per_device_train_batch_size=batch_size, max_steps=steps,
                             learning_rate=5e-5, save_strategy="no", eval_strategy="no", report_to="none",
                             disable_tqdm=True, use_cpu=not torch.cuda.is_available(), logging_strategy="no")
    trainer = Trainer(model=model, args=args, train_dataset=prepared.features["train"],
                      data_collator=DataCollatorForTokenClassification(prepared.tokenizer))
    return trainer.train().metrics["train_runtime"]


def ftkit_trainer(prepared, out: str) -> float:
    from ftkit.engine.training import build_trainer

    return build_trainer(prepared, Path(out)).train().metrics["train_runtime"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    from ftkit.config import load_config
    from ftkit.engine.training import prepare

    samples = args.steps * args.batch_size
    config = load_config({
        "task": "ner", "model": "default", "adapter": {"kind": "full"},
        "data": {"train": str(DATA / "train.txt"), "validation": str(DATA / "valid.txt")},
        "training": {"batch_size": args.batch_size, "max_steps": args.steps, "max_train_samples": samples,
                     "max_eval_samples": 32, "eval_steps": 10**6, "save_steps": 10**6, "logging_steps": 10**6},
    })
    prepared = prepare(config)
    tokens = sum(prepared.features["train"]["length"])  # one pass over the subset = `steps` batches
    with tempfile.TemporaryDirectory() as out:
        times = {
            "tutorial loop (pad to 128, fp32 AdamW loop)": tutorial_loop(prepared, args.batch_size, args.steps),
            "plain Trainer (dynamic padding, random order)": plain_trainer(prepared, args.batch_size, args.steps, out),
            "ftkit (dynamic padding, length-grouped)": ftkit_trainer(prepared, out),
        }
    ftkit_rate = tokens / times["ftkit (dynamic padding, length-grouped)"]
    print(f"{samples} sentences, {tokens} non-padding tokens, batch {args.batch_size}, {args.steps} steps, "
          f"device {'cuda' if torch.cuda.is_available() else 'cpu'}, torch threads {torch.get_num_threads()}")
    for name, seconds in times.items():
        rate = tokens / seconds
        print(f"{name:<48} {seconds:7.1f} s  {rate:8.0f} tokens/s  ftkit = {ftkit_rate / rate:4.2f}x")


if __name__ == "__main__":
    main()
