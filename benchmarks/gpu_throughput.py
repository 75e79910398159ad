"""GPU training throughput and model-FLOPs utilisation (MFU): each speed-up on and off, and the tutorial loop.

For the default model (MiniLM-L6) and a BERT-base-sized model built from a config (random
weights: speed does not depend on them), on a seeded CoNLL-2003 subset:
- "ftkit": ftkit's Trainer setup (bf16/fp16 autocast, TF32, fused AdamW, SDPA, length-grouped
  dynamic padding; padding-free where supported);
- the same with one option switched off (or, for torch.compile and padding-free, on);
- "tutorial": the classic notebook loop: every sentence padded to 128, fp32, eager attention,
  plain AdamW.
Then MFU of the BERT-base-sized model on full 128-token rows (no padding at all), the figure
the target (>= 35%) refers to. Tokens are non-padding tokens; FLOPs per token are
6 x parameters (forward and backward matmuls) + 12 x layers x hidden x sequence length (attention).

    python benchmarks/gpu_throughput.py                    # on the GPU machine, about 5-8 minutes
    python benchmarks/gpu_throughput.py --tiny --cpu       # any machine: a tiny model, to prove it runs
Targets: ftkit >= 5x the tutorial loop; MFU >= 35% for BERT-base at sequence length 128.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "conll2003"

# Dense bf16/fp16 tensor-core peaks (FLOP/s) of common GPUs; --peak-tflops for others.
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10": 125e12,
              "RTX 4090": 165e12, "V100": 125e12, "T4": 65e12}


def model_config(name: str, num_labels: int, tiny: bool) -> Any:
    from transformers import AutoConfig, BertConfig

    from ftkit.engine.models import default_model_dir

    if tiny:
        return BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                          num_labels=num_labels)
    if name == "bert-base":
        return BertConfig(num_labels=num_labels)  # 768 hidden, 12 layers, 12 heads: 110M parameters
    config = AutoConfig.from_pretrained(default_model_dir())
    config.num_labels = num_labels
    return config


def build(config: Any, attention: str) -> Any:
    from transformers import AutoModelForTokenClassification

    torch.manual_seed(0)
    return AutoModelForTokenClassification.from_config(config, attn_implementation=attention)


def flops_per_token(model: Any, seq_len: float) -> float:
    config = model.config
    params = sum(p.numel() for p in model.parameters()) - config.vocab_size * config.hidden_size  # lookups are free
    return 6 * params + 12 * config.num_hidden_layers * config.hidden_size * seq_len


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def tutorial_loop(prepared: Any, model: Any, batch_size: int, steps: int, device: str) -> float:
    """Seconds for ``steps`` steps of the classic recipe: pad to 128, fp32, plain AdamW loop."""
    raw, tokenizer = prepared.raw["train"], prepared.tokenizer
    label2id = {label: i for i, label in enumerate(prepared.labels)}
    encoded = tokenizer(list(raw["tokens"]), is_split_into_words=True, padding="max_length", truncation=True,
                        max_length=128, return_tensors="pt")
    labels = torch.tensor([([label2id[t] for t in tags] + [-100] * 128)[:128] for tags in raw["tags"]])
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(encoded["input_ids"], encoded["attention_mask"], labels),
        batch_size=batch_size, shuffle=True)
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
    synchronize()
    started = time.perf_counter()
    for step, (ids, mask, y) in enumerate(loader):
        if step == steps:
            break
        loss = model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=y.to(device)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    synchronize()
    return time.perf_counter() - started


def ftkit_run(prepared: Any, model: Any, out: str, tweak: Callable[[Any], None] | None = None) -> float:
    """Seconds of training with ftkit's Trainer setup (``tweak`` may switch one option off first)."""
    from ftkit.engine.training import build_trainer

    prepared.model = model
    trainer = build_trainer(prepared, Path(out))
    trainer.args.eval_strategy = trainer.args.save_strategy = "no"  # time training steps only
    trainer.args.load_best_model_at_end = False
    if tweak:
        tweak(trainer)
    synchronize()
    return trainer.train().metrics["train_runtime"]


@contextlib.contextmanager
def tf32_off():
    previous = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = previous


def throughput_table(name: str, args: argparse.Namespace, device: str, out: str) -> list[dict[str, Any]]:
    from ftkit.config import load_config
    from ftkit.engine.training import prepare

    samples = args.steps * args.batch_size
    base = {
        "task": "ner", "model": "default", "adapter": {"kind": "full"},
        "data": {"train": str(DATA / "train.txt"), "validation": str(DATA / "valid.txt")},
        "training": {"batch_size": args.batch_size, "max_steps": args.steps, "max_train_samples": samples,
                     "max_eval_samples": 8, "eval_steps": 10**6, "save_steps": 10**6, "logging_steps": 10**6,
                     "max_seq_length": 128, "device": device},
        "output": {"dir": out},
    }

    def prepared_for(**overrides: Any) -> Any:
        return prepare(load_config(base, overrides=overrides))

    prepared = prepared_for()
    config = model_config(name, len(prepared.labels), args.tiny)
    tokens = sum(prepared.features["train"]["length"])  # one pass over the subset = `steps` batches
    mean_len = tokens / len(prepared.features["train"])
    from ftkit.engine.models import preferred_attention

    fast = preferred_attention() if device == "cuda" else "sdpa"
    ftkit_run(prepared, build(config, fast), out)  # warm-up: CUDA context, kernels, allocator
    variants: dict[str, Callable[[], float]] = {
        "ftkit (all options on)": lambda: ftkit_run(prepared_for(), build(config, fast), out),
        "  without mixed precision (fp32)": lambda: ftkit_run(
            prepared_for(**{"resources.mixed_precision": "no"}), build(config, fast), out),
        "  without fused AdamW": lambda: ftkit_run(prepared_for(), build(config, fast), out,
                                                   lambda t: setattr(t.args, "optim", "adamw_torch")),
        "  without SDPA (eager attention)": lambda: ftkit_run(prepared_for(), build(config, "eager"), out),
        "  without length grouping": lambda: ftkit_run(
            prepared_for(**{"training.group_by_length": False}), build(config, fast), out),
        "tutorial loop (pad 128, fp32, eager, AdamW)": lambda: tutorial_loop(
            prepared_for(), build(config, "eager"), args.batch_size, args.steps, device),
    }
    if device == "cuda":  # compiling on CPU takes minutes for little gain; TF32 is a GPU feature
        variants["  with torch.compile"] = lambda: ftkit_run(
            prepared_for(**{"resources.compile": True}), build(config, fast), out)

        def without_tf32() -> float:
            with tf32_off():
                return ftkit_run(prepared_for(**{"resources.mixed_precision": "no"}), build(config, fast), out)
        variants["  fp32 and without TF32"] = without_tf32
    if device == "cuda":  # auto packs there wherever the probe finds packed rows stay apart (engine/packing.py)
        variants["  without padding-free batches"] = lambda: ftkit_run(
            prepared_for(**{"training.padding_free": "never"}), build(config, fast), out)
    per_token = flops_per_token(build(config, "eager"), mean_len)
    rows = []
    for variant, run in variants.items():
        seconds = run()
        rate = tokens / seconds
        rows.append({"model": name, "variant": variant.strip(), "seconds": seconds, "tokens_per_second": rate,
                     "mfu": mfu(rate * per_token, args)})
    return rows


def mfu(flops_per_second: float, args: argparse.Namespace) -> float | None:
    peak = args.peak_tflops * 1e12 if args.peak_tflops else None
    if peak is None and torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        peak = next((flops for key, flops in PEAK_FLOPS.items() if key in name), None)
    return flops_per_second / peak if peak else None


def mfu_at_128(args: argparse.Namespace, device: str, out: str) -> dict[str, Any]:
    """BERT-base-sized model on full 128-token rows through ftkit's Trainer setup."""
    import datasets

    from ftkit.config import load_config
    from ftkit.engine.training import Prepared

    seq_len, rows = 128, args.mfu_batch_size * args.mfu_steps
    config = model_config("bert-base", 9, args.tiny)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, config.vocab_size, (rows, seq_len), generator=generator)
    labels = torch.randint(0, 9, (rows, seq_len), generator=generator)
    features = datasets.Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": [[1] * seq_len] * rows,
                                           "labels": labels.tolist(), "length": [seq_len] * rows})
    ftkit_config = load_config({"task": "ner", "training": {
        "batch_size": args.mfu_batch_size, "max_steps": args.mfu_steps, "eval_steps": 10**6, "save_steps": 10**6,
        "logging_steps": 10**6, "device": device, "max_seq_length": seq_len}, "output": {"dir": out}})
    from ftkit.engine.models import load_tokenizer, preferred_attention, resolve_model_source

    tokenizer = load_tokenizer(resolve_model_source("default"))
    results = {}
    for attempt in ("warm-up", "measured"):
        model = build(config, preferred_attention() if device == "cuda" else "sdpa")
        splits = datasets.DatasetDict({"train": features, "validation": features.select(range(4))})
        prepared = Prepared(ftkit_config, None, splits, [str(i) for i in range(9)], tokenizer, model)
        seconds = ftkit_run(prepared, model, out)
        rate = rows * seq_len / seconds
        results = {"tokens_per_second": rate, "seconds": seconds,
                   "mfu": mfu(rate * flops_per_token(model, seq_len), args), "batch_size": args.mfu_batch_size}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a tiny BERT instead of the real sizes (to check the script)")
    parser.add_argument("--cpu", action="store_true", help="train on CPU even where a GPU is present")
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps per variant (default 100 GPU, 5 CPU)")
    parser.add_argument("--batch-size", type=int, default=None, help="sentences per step (default 32 GPU, 8 CPU)")
    parser.add_argument("--mfu-steps", type=int, default=None, help="steps of the 128-token MFU run (default 60 GPU, 3 CPU)")
    parser.add_argument("--mfu-batch-size", type=int, default=None, help="rows per step of the MFU run (default 64, 4 CPU)")
    parser.add_argument("--peak-tflops", type=float, help="the device's peak (bf16) TFLOP/s, for MFU where unknown")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    device = "cpu" if args.cpu or not torch.cuda.is_available() else "cuda"
    gpu = device == "cuda"
    args.steps = args.steps or (100 if gpu else 5)
    args.batch_size = args.batch_size or (32 if gpu else 8)
    args.mfu_steps = args.mfu_steps or (60 if gpu else 3)
    args.mfu_batch_size = args.mfu_batch_size or (64 if gpu else 4)
    models = ["tiny"] if args.tiny else ["default", "bert-base"]
    where = torch.cuda.get_device_name(0) if gpu else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device {where}; {args.steps} steps x {args.batch_size} sentences per variant")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        rows = [row for name in models for row in throughput_table(name, args, device, out)]
        at_128 = mfu_at_128(args, device, out)
    for name in models:
        mine = [r for r in rows if r["model"] == name]
        ftkit_rate = mine[0]["tokens_per_second"]
        tutorial = next(r for r in mine if r["variant"].startswith("tutorial"))["tokens_per_second"]
        print(f"\n{name}: ftkit is {ftkit_rate / tutorial:.1f}x the tutorial loop (target >= 5x)")
        for r in mine:
            shown_mfu = f"{100 * r['mfu']:5.1f}%" if r["mfu"] is not None else "  n/a"
            print(f"  {r['variant']:<46} {r['tokens_per_second']:10.0f} tokens/s  MFU {shown_mfu}  "
                  f"ftkit = {ftkit_rate / r['tokens_per_second']:4.2f}x")
    shown = f"{100 * at_128['mfu']:.1f}%" if at_128["mfu"] is not None else "n/a (unknown peak; pass --peak-tflops)"
    print(f"\n{'tiny' if args.tiny else 'BERT-base'} at sequence length 128, batch {at_128['batch_size']}: "
          f"{at_128['tokens_per_second']:.0f} tokens/s, MFU {shown} (target >= 35%)")
    print(f"total {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"device": where, "throughput": rows, "mfu_at_128": at_128}, indent=1))


if __name__ == "__main__":
    main()
