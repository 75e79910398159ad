"""Predictions on raw text: entities with character offsets (NER) or labels with probabilities.

NER text is split into words with their character spans, tokenized as pre-split words, and each
word takes the prediction of its first subword, exactly as in training; B-/I- runs of words then
become entities whose offsets point back into the original text. Texts longer than the model's
window are split into windows of whole words, so nothing is dropped.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .adapters import load_for_inference, task_of
from ..errors import FtkitError

if TYPE_CHECKING:
    from ..runs import Run

WORD_PATTERN = re.compile(r"\w+(?:[-']\w+)*|[^\w\s]")
BEST_FOLDERS = ("best", "final")
ENTITY_COLOURS = ("#fde68a", "#a7f3d0", "#bfdbfe", "#fbcfe8", "#ddd6fe", "#fed7aa", "#c7d2fe", "#bbf7d0")


class Predictor:
    """A trained model ready to predict; ``task`` is read from the model when not given."""

    def __init__(self, model: Any, tokenizer: Any, task: str | None = None, max_length: int | None = None):
        import torch

        self.tokenizer = tokenizer
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.to(self.device).eval()
        config = model.config
        self.task = task or task_of(_architectures(model), type(model).__name__)
        self.id2label = {int(k): v for k, v in config.id2label.items()}
        # Tokenizers without a recorded limit report a huge model_max_length; positions are the real cap.
        limits = (getattr(config, "max_position_embeddings", None), tokenizer.model_max_length, max_length)
        self.max_length = min((int(limit) for limit in limits if limit and limit < 1_000_000), default=512)

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> "Predictor":
        model, tokenizer = load_for_inference(path)
        return cls(model, tokenizer)

    @classmethod
    def from_run(cls, run: "Run", checkpoint: str | int | None = None) -> "Predictor":
        """The run's final best model, or a checkpoint named by step or path."""
        return cls.from_checkpoint(checkpoint_path(run, checkpoint))

    @property
    def labels(self) -> list[str]:
        return [self.id2label[i] for i in sorted(self.id2label)]

    def predict(self, texts: str | list[str], batch_size: int = 32) -> Any:
        """Entities (NER) or ``{"label", "scores"}`` (classification): for one text, or a list per text."""
        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        if not all(isinstance(text, str) for text in batch):
            raise FtkitError("predict() takes a text or a list of texts")
        results = self._predict_entities(batch, batch_size) if self.task == "ner" else self._classify(batch, batch_size)
        return results[0] if single else results

    # ----- classification ------------------------------------------------------------------------
    def _classify(self, texts: list[str], batch_size: int) -> list[dict[str, Any]]:
        results = []
        for start in range(0, len(texts), batch_size):
            encoded = self.tokenizer(texts[start:start + batch_size], truncation=True, max_length=self.max_length,
                                     padding=True, return_tensors="pt")
            for probs in self._probabilities(encoded):
                scores = {self.id2label[i]: float(p) for i, p in enumerate(probs)}
                results.append({"label": max(scores, key=scores.get), "scores": scores})
        return results

    def _probabilities(self, encoded: Any) -> Any:
        import torch

        with torch.inference_mode():
            logits = self.model(**{k: v.to(self.device) for k, v in encoded.items()}).logits
            return torch.softmax(logits.float(), dim=-1).cpu()

    # ----- NER --------------------------------------------------------------------------------------
    def _predict_entities(self, texts: list[str], batch_size: int) -> list[list[dict[str, Any]]]:
        spans = [[(m.start(), m.end()) for m in WORD_PATTERN.finditer(text)] for text in texts]
        windows = [(t, window) for t, text_spans in enumerate(spans)
                   for window in self._windows([texts[t][s:e] for s, e in text_spans])]
        word_tags: list[list[tuple[str, float]]] = [[] for _ in texts]
        for start in range(0, len(windows), batch_size):
            chunk = windows[start:start + batch_size]
            encoded = self.tokenizer([words for _, words in chunk], is_split_into_words=True, truncation=True,
                                     max_length=self.max_length, padding=True, return_tensors="pt")
            probabilities = self._probabilities(encoded).numpy()
            for row, (t, words) in enumerate(chunk):
                tags: list[tuple[str, float] | None] = [None] * len(words)
                for position, word in enumerate(encoded.word_ids(row)):
                    if word is not None and tags[word] is None:
                        label_id = int(probabilities[row, position].argmax())
                        tags[word] = (self.id2label[label_id], float(probabilities[row, position, label_id]))
                word_tags[t].extend(tag or ("O", 0.0) for tag in tags)
        return [group_entities(text, text_spans, tags) for text, text_spans, tags in zip(texts, spans, word_tags)]

    def _windows(self, words: list[str]) -> list[list[str]]:
        """Split words into consecutive windows whose subwords (plus special tokens) fit the model."""
        if not words:
            return []
        encoded = self.tokenizer(words, is_split_into_words=True, add_special_tokens=False)
        pieces = [0] * len(words)
        for word in encoded.word_ids():
            if word is not None:
                pieces[word] += 1
        budget = self.max_length - self.tokenizer.num_special_tokens_to_add(pair=False)
        windows, current, used = [], [], 0
        for word, count in zip(words, pieces):
            if current and used + count > budget:
                windows.append(current)
                current, used = [], 0
            current.append(word)
            used += count
        windows.append(current)
        return windows


def group_entities(text: str, spans: list[tuple[int, int]], tags: list[tuple[str, float]]) -> list[dict[str, Any]]:
    """Entities from per-word (tag, probability): B- (or S-) starts one, I- (or E-) of the same type continues it.

    An I- tag after O or another type starts an entity too (as seqeval's default mode reads it).
    """
    entities: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for (start, end), (tag, score) in zip(spans, tags):
        prefix, _, kind = tag.partition("-") if "-" in tag else ("I", "", tag)
        if tag == "O" or not kind:
            current = None
            continue
        if current is None or prefix in ("B", "S") or current["label"] != kind:
            current = {"label": kind, "start": start, "end": end, "scores": [score]}
            entities.append(current)
        else:
            current["end"] = end
            current["scores"].append(score)
        if prefix in ("E", "S"):
            current = None
    return [{"text": text[e["start"]:e["end"]], "label": e["label"], "start": e["start"], "end": e["end"],
             "score": sum(e["scores"]) / len(e["scores"])} for e in entities]


def entities_html(text: str, entities: list[dict[str, Any]]) -> str:
    """The text with each entity highlighted (one colour per type) and its type shown; all text escaped."""
    colours: dict[str, str] = {}
    parts, cursor = [], 0
    for entity in sorted(entities, key=lambda e: e["start"]):
        if entity["start"] < cursor:
            continue
        colour = colours.setdefault(entity["label"], ENTITY_COLOURS[len(colours) % len(ENTITY_COLOURS)])
        parts.append(html.escape(text[cursor:entity["start"]]))
        parts.append(f'<mark style="background:{colour};padding:0 2px;border-radius:3px" '
                     f'title="{html.escape(entity["label"])} {entity.get("score", 0):.2f}">'
                     f'{html.escape(text[entity["start"]:entity["end"]])}'
                     f'<sub style="font-size:0.7em;margin-left:2px">{html.escape(entity["label"])}</sub></mark>')
        cursor = entity["end"]
    parts.append(html.escape(text[cursor:]))
    return '<div class="ftkit-entities" style="line-height:1.8">' + "".join(parts) + "</div>"


def _architectures(model: Any) -> list[str]:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return [type(base).__name__, *(getattr(base.config, "architectures", None) or [])]


def checkpoint_path(run: "Run", checkpoint: str | int | None = None) -> Path:
    """Which folder of ``run`` to load.

    By default the trainer's ``best`` (or ``final``) folder, else the checkpoint with the highest
    validation score for the run's metric, else the last one. ``checkpoint`` may be a step number,
    ``checkpoint-<step>`` or a path.
    """
    checkpoints = run.checkpoints
    if checkpoint is not None:
        name = str(checkpoint)
        for candidate in (Path(name).expanduser(), run.dir / name, run.dir / f"checkpoint-{name}"):
            if candidate.is_dir():
                return candidate
        steps = ", ".join(str(c["step"]) for c in checkpoints) or "none"
        raise FtkitError(f"run {run.id} has no checkpoint '{checkpoint}' (steps: {steps})")
    for name in BEST_FOLDERS:
        if (run.dir / name).is_dir():
            return run.dir / name
    existing = [{**c, "path": run.dir / c["path"]} for c in checkpoints if (run.dir / c["path"]).is_dir()]
    if not existing:
        raise FtkitError(f"run {run.id} has no saved model yet: wait for its first checkpoint")
    metric = run.config.best_metric
    sign = -1 if metric.endswith("loss") else 1
    scored = [c for c in existing if _metric(c.get("metrics") or {}, metric) is not None]
    if scored:
        return Path(max(scored, key=lambda c: sign * _metric(c["metrics"], metric))["path"])
    return Path(max(existing, key=lambda c: c["step"])["path"])


def _metric(metrics: dict[str, Any], name: str) -> float | None:
    for key in (name, f"eval_{name}", f"validation_{name}"):
        if isinstance(metrics.get(key), (int, float)):
            return float(metrics[key])
    return None
