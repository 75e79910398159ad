"""Which SFT loss to compute: full logits, TRL's fused LM head, or the logits of trained positions alone.

A training step of SmolLM2-135M-Instruct with LoRA (r 16 on every linear layer, dropout 0.05) on
batches of 8 SST-2 instructions trained on their answers only, three ways, each in its own process
(its peak RSS is its own):

  full     the model's own loss: batch x length x 49,152 logits, their float copy and log-softmax;
  trl      TRL's fused LM head (``trl.trainer.utils.add_fused_lm_head``, what its SFTTrainer uses):
           chunked log-probabilities, every position scored on a CPU (the compact path needs Triton);
  trained  ftkit's (``ftkit.engine.lm_loss.loss_at_trained_positions``): the model's forward with
           ``logits_to_keep`` = the positions whose next token is trained in some row.

It prints seconds per step (the median of the steps after the first), peak RSS and the losses, which
must agree to the fifth digit (the same loss, computed three ways):

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/lm_loss.py [--steps 6] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"
VARIANTS = ("full", "trl", "trained")


def measure(variant: str, steps: int, batch_size: int) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftkit.engine.causal import default_causal_model_dir
    from ftkit.engine.lm_loss import loss_at_trained_positions
    from ftkit.tasks.sft_encoding import SFTCollator, encode_conversation

    torch.manual_seed(0)
    folder = str(default_causal_model_dir())
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.config.use_cache = False
    if variant == "trl":
        from trl.trainer.utils import add_fused_lm_head

        add_fused_lm_head(model)  # before peft wraps it, as TRL does
    model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=16, lora_alpha=32, lora_dropout=0.05,
                                             target_modules="all-linear"))
    with (DATA / "train.tsv").open(encoding="utf-8", newline="") as stream:
        rows = random.Random(0).sample(list(csv.DictReader(stream, delimiter="\t", quoting=csv.QUOTE_NONE)),
                                       steps * batch_size)
    examples = []
    for row in rows:
        messages = [{"role": "user", "content": f"Review: {row['sentence']}\nIs this review positive or negative?"},
                    {"role": "assistant", "content": ("negative", "positive")[int(row["label"])]}]
        encoded = encode_conversation(tokenizer, messages, "completion", 256)
        examples.append({"input_ids": encoded.input_ids, "labels": encoded.labels})
    collate = SFTCollator(pad_token_id=tokenizer.pad_token_id)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def loss_of(batch: dict) -> "torch.Tensor":
        count = (batch["labels"][:, 1:] != -100).sum()
        if variant == "full":
            return model(**batch, num_items_in_batch=count).loss
        if variant == "trl":
            return model(**batch, fused_lm_head=True, num_items_in_batch=count).loss
        return loss_at_trained_positions(model, batch, count)

    model.train()
    seconds, losses = [], []
    for step in range(steps):
        batch = collate(examples[step * batch_size:(step + 1) * batch_size])
        started = time.perf_counter()
        loss = loss_of(batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        seconds.append(time.perf_counter() - started)
        losses.append(round(loss.item(), 5))
    return {"variant": variant, "seconds_per_step": statistics.median(seconds[1:]), "losses": losses,
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(measure(args.variant, args.steps, args.batch_size)))
        return
    results = []
    for variant in VARIANTS:
        done = subprocess.run([sys.executable, __file__, "--variant", variant, "--steps", str(args.steps),
                               "--batch-size", str(args.batch_size)], capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"{'loss':<9}{'s/step':>8}{'peak RSS GiB':>14}  losses")
    for row in results:
        print(f"{row['variant']:<9}{row['seconds_per_step']:>8.2f}{row['peak_rss_gib']:>14.2f}  {row['losses']}")


if __name__ == "__main__":
    main()
