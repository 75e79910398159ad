"""Training memory of full vs LoRA fine-tuning of a BERT-base-sized model (built from a config).

Per adapter, in a fresh process each (peak figures must not mix): parameters, trainable
parameters, the optimizer state AdamW really holds after a few steps (bytes counted from its
tensors), gradient bytes, and the peak memory of those steps: peak RSS on CPU, and
torch.cuda.max_memory_allocated on a GPU. Target: LoRA cuts optimizer state by over 90%.

    python benchmarks/memory.py [--batch-size 4] [--seq-len 64] [--steps 3] [--cpu]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

import torch


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def measure(adapter: str, batch_size: int, seq_len: int, steps: int, device: str) -> dict:
    """Train ``steps`` steps with ``adapter`` and report what memory went where."""
    from transformers import AutoModelForTokenClassification, BertConfig

    from ftkit.engine.adapters import apply_adapter, parameter_counts
    from ftkit.config import AdapterConfig

    torch.manual_seed(0)
    labels = 9
    model = AutoModelForTokenClassification.from_config(BertConfig(num_labels=labels), attn_implementation="sdpa")
    model = apply_adapter(model, AdapterConfig(kind=adapter), "ner").to(device)
    trainable, total = parameter_counts(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    ids = torch.randint(1000, 30000, (batch_size, seq_len), device=device)
    targets = torch.randint(0, labels, (batch_size, seq_len), device=device)
    for _ in range(steps):
        loss = model(input_ids=ids, labels=targets).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)  # keep the gradients to count them
    figures = {
        "adapter": adapter,
        "parameters": total,
        "trainable_parameters": trainable,
        "weight_bytes": tensor_bytes(model.parameters()),
        "gradient_bytes": tensor_bytes(p.grad for p in model.parameters() if p.grad is not None),
        "optimizer_state_bytes": tensor_bytes(v for state in optimizer.state.values() for v in state.values()),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rss_before_steps_bytes": rss_before,
    }
    if device == "cuda":
        figures["peak_cuda_bytes"] = torch.cuda.max_memory_allocated()
    return figures


def mb(size: int) -> str:
    return f"{size / 2**20:8.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--cpu", action="store_true", help="measure on CPU even where a GPU is present")
    parser.add_argument("--one", choices=("full", "lora"), help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    device = "cpu" if args.cpu or not torch.cuda.is_available() else "cuda"
    if args.one:
        print(json.dumps(measure(args.one, args.batch_size, args.seq_len, args.steps, device)))
        return
    results = {}
    for adapter in ("full", "lora"):
        child = subprocess.run([sys.executable, __file__, "--one", adapter, "--batch-size", str(args.batch_size),
                                "--seq-len", str(args.seq_len), "--steps", str(args.steps)] + (["--cpu"] if args.cpu else []),
                               capture_output=True, text=True, check=True)
        results[adapter] = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"BERT-base-sized token classifier on {device}, batch {args.batch_size} x {args.seq_len} tokens, "
          f"{args.steps} AdamW steps")
    keys = [("parameters", "parameters"), ("trainable_parameters", "trainable parameters")]
    sizes = [("weight_bytes", "weights"), ("gradient_bytes", "gradients"), ("optimizer_state_bytes", "optimizer state"),
             ("peak_rss_bytes", "peak RSS (process)")] + ([("peak_cuda_bytes", "peak CUDA allocated")] if device == "cuda" else [])
    print(f"{'':<24}{'full':>14}{'lora':>14}")
    for key, label in keys:
        print(f"{label:<24}{results['full'][key]:>14,}{results['lora'][key]:>14,}")
    for key, label in sizes:
        print(f"{label:<24}{mb(results['full'][key]):>14}{mb(results['lora'][key]):>14}")
    cut = 1 - results["lora"]["optimizer_state_bytes"] / results["full"]["optimizer_state_bytes"]
    print(f"LoRA cuts optimizer state by {100 * cut:.2f}% (target > 90%)")


if __name__ == "__main__":
    main()
