"""Training dynamics: each training example's confidence in its gold label, every time training sees it.

Read from the forward passes training makes anyway (no extra pass): the training batches carry each
row's index (``DYNAMICS_ROW``, put through the collator by `RowIndexCollator`), and `FtkitTrainer`
hands the batch's logits (or, for a causal LM's sparse loss, the trained tokens' log-probabilities)
to `DynamicsRecorder.add_*`. The first pass over an example is made before the model has trained
on it, so its probabilities are out of sample; later passes show how it is learnt (dataset
cartography: Swayamdipta et al., 2020). One record per example per pass, written as one Parquet file
(`ftkit.runstore.layout.DYNAMICS_FILE`) at every epoch end, evaluation and checkpoint, so it can be
read while the run trains; `ftkit.datamap` turns it into the data map and the label-issue scores.

The record's ``level`` (in the file's metadata) says how to score it: ``example`` (one label per
example, probabilities over the label set), ``token`` (one label per word, each with probabilities)
or ``generated`` (the trained tokens of an answer: their log-likelihood, no label set).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from transformers import TrainerCallback

from ..runstore.files import write_bytes_atomic
from ..runstore.layout import DYNAMICS_FILE, DYNAMICS_LEVEL_KEY

DYNAMICS_ROW = "dynamics_row"  # the training feature row a batch row came from
IGNORE_INDEX = -100


class RowIndexCollator:
    """A collator that carries each feature's ``DYNAMICS_ROW`` past the task's own collator (which pads,
    or packs, the rest) as one tensor in the batch."""

    def __init__(self, inner: Any):
        self.inner = inner

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        rows = [feature[DYNAMICS_ROW] for feature in features]
        batch = self.inner([{k: v for k, v in feature.items() if k != DYNAMICS_ROW} for feature in features])
        batch[DYNAMICS_ROW] = torch.tensor(rows, dtype=torch.long)
        return batch


def segments(labels: torch.Tensor, position_ids: torch.Tensor | None, examples: int) -> torch.Tensor:
    """Which example of the batch each position belongs to: its row, or in a packed row (one row holding
    ``examples`` examples) the count of example starts (position 0) up to it."""
    if labels.shape[0] == 1 and examples > 1 and position_ids is not None:
        return (position_ids == 0).long().cumsum(dim=-1) - 1
    return torch.arange(labels.shape[0], device=labels.device).unsqueeze(1).expand_as(labels)


class DynamicsRecorder(TrainerCallback):
    """Collects one record per training example per pass and writes them to ``folder/DYNAMICS_FILE``.

    ``example_of_row`` and ``offset_of_row`` map a training feature row to its example (its index in the
    train split as given) and, for an example split into windows, the window's first word.
    """

    def __init__(self, folder: Path, example_of_row: Sequence[int], offset_of_row: Sequence[int] | None = None,
                 next_token: bool = False):
        self.path = Path(folder) / DYNAMICS_FILE
        self.example_of_row = np.asarray(example_of_row, dtype=np.int64)
        self.offset_of_row = np.zeros_like(self.example_of_row) if offset_of_row is None \
            else np.asarray(offset_of_row, dtype=np.int64)
        self.next_token = next_token  # a causal LM: the logits at t predict the label at t + 1
        self.records: list[dict[str, Any]] = []
        self.level: str | None = None
        self.epoch = 0
        self.step = 0
        self.seconds = 0.0  # time spent recording and writing: its cost, reported with the run's resources
        self.main = True
        self._written = 0  # records already in the file

    # ----- from the training step ---------------------------------------------------------------
    @torch.no_grad()
    def add_logits(self, rows: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor,
                   position_ids: torch.Tensor | None = None) -> None:
        """A batch's logits: one label per example (``labels`` of shape [batch]) or per position."""
        started = time.perf_counter()
        logits = logits.detach()
        if labels.dim() == 1:
            self.level = "example"
            probs = logits.float().softmax(-1)
            keep = labels != IGNORE_INDEX
            gold = labels.clamp(min=0).to(probs.device)
            self._add_tokens(rows, torch.arange(len(labels), device=probs.device)[keep], gold[keep],
                             probs[keep].gather(-1, gold[keep, None]).squeeze(-1), probs[keep].argmax(-1), probs[keep])
        else:
            segment = segments(labels, position_ids, len(rows)).to(logits.device)
            labels = labels.to(logits.device)
            if self.next_token:
                logits, labels, segment = logits[:, :-1], labels[:, 1:], segment[:, 1:]
            keep = labels != IGNORE_INDEX
            scores, gold = logits[keep].float(), labels[keep]
            if self.next_token:
                self.level = "generated"
                logp = scores.log_softmax(-1).gather(-1, gold[:, None]).squeeze(-1)
                self._add_tokens(rows, segment[keep], gold, logp, scores.argmax(-1), None)
            else:
                self.level = "token"
                probs = scores.softmax(-1)
                self._add_tokens(rows, segment[keep], gold, probs.gather(-1, gold[:, None]).squeeze(-1),
                                 probs.argmax(-1), probs)
        self.seconds += time.perf_counter() - started

    @torch.no_grad()
    def add_token_logprobs(self, rows: torch.Tensor, segment: torch.Tensor, gold: torch.Tensor,
                           logprob: torch.Tensor, predicted: torch.Tensor) -> None:
        """A causal LM's trained tokens, already scored (the sparse loss's log-probabilities)."""
        started = time.perf_counter()
        self.level = "generated"
        self._add_tokens(rows, segment, gold, logprob.detach().float(), predicted, None)
        self.seconds += time.perf_counter() - started

    def _add_tokens(self, rows: torch.Tensor, segment: torch.Tensor, gold: torch.Tensor, score: torch.Tensor,
                    predicted: torch.Tensor, probs: torch.Tensor | None) -> None:
        """One record per example of the batch from its scored tokens (``segment``: each token's example)."""
        segment, gold, score, predicted = (t.cpu().numpy() for t in (segment, gold, score, predicted))
        probs = probs.cpu().numpy() if probs is not None else None
        rows = rows.cpu().numpy()
        order = np.argsort(segment, kind="stable")
        bounds = np.searchsorted(segment[order], np.arange(len(rows) + 1))
        for index, row in enumerate(rows):
            tokens = order[bounds[index]:bounds[index + 1]]
            if not len(tokens):
                continue  # every label of this example was cut or ignored
            right = predicted[tokens] == gold[tokens]
            # Generative: the geometric mean of the trained tokens' probabilities, in [0, 1] like the others.
            confidence = math.exp(score[tokens].mean()) if self.level == "generated" else float(score[tokens].mean())
            self.records.append({
                "example": int(self.example_of_row[row]), "offset": int(self.offset_of_row[row]),
                "epoch": self.epoch, "step": self.step, "confidence": confidence, "correct": float(right.mean()),
                # numpy, not Python lists: a large split's records stay a few bytes per number in memory
                "gold": gold[tokens].astype(np.int32), "predicted": predicted[tokens].astype(np.int32),
                "probs": list(probs[tokens].astype(np.float32)) if probs is not None else None,
            })

    # ----- the Trainer's events -------------------------------------------------------------------
    def on_train_begin(self, args, state, control, **kwargs):
        self.main = state.is_world_process_zero
        if state.global_step and self.path.is_file():  # resumed: keep what the checkpoint's steps recorded
            import pandas as pd

            earlier = pd.read_parquet(self.path)
            self.records = [row for row in earlier.to_dict("records") if row["step"] <= state.global_step]
            for row in self.records:
                row["probs"] = None if row["probs"] is None else list(row["probs"])

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.epoch = math.floor((state.epoch or 0.0) + 1e-6)

    def on_step_begin(self, args, state, control, **kwargs):
        self.step = state.global_step + 1  # the optimiser step this batch's gradients go into

    def on_epoch_end(self, args, state, control, **kwargs):
        self.write(args)

    def on_evaluate(self, args, state, control, **kwargs):
        self.write(args)

    def on_save(self, args, state, control, **kwargs):
        self.write(args)

    def on_train_end(self, args, state, control, **kwargs):
        self.write(args)

    def write(self, args: Any) -> None:
        """Every record so far, gathered from all processes, as one Parquet file replaced atomically.

        An epoch's end, its evaluation and its checkpoint come together: a single process writes once
        for them (every process of a distributed run takes part in each gather, so it always writes)."""
        distributed = getattr(args, "world_size", 1) > 1 and torch.distributed.is_initialized()
        if not distributed and len(self.records) == self._written:
            return
        started = time.perf_counter()
        records, self._written = self.records, len(self.records)
        if distributed:
            parts: list[Any] = [None] * args.world_size
            torch.distributed.all_gather_object(parts, self.records)
            records = [record for part in parts for record in part]
            levels: list[Any] = [None] * args.world_size
            torch.distributed.all_gather_object(levels, self.level)
            self.level = next((level for level in levels if level), None)
        if self.main and records and self.level:
            write_bytes_atomic(self.path, records_parquet(records, self.level))
        self.seconds += time.perf_counter() - started


def records_parquet(records: list[dict[str, Any]], level: str) -> bytes:
    """The records as Parquet bytes, the level in the schema's metadata."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("example", pa.int64()), ("offset", pa.int32()), ("epoch", pa.int32()), ("step", pa.int64()),
                        ("confidence", pa.float32()), ("correct", pa.float32()), ("gold", pa.list_(pa.int32())),
                        ("predicted", pa.list_(pa.int32())), ("probs", pa.list_(pa.list_(pa.float32())))],
                       metadata={DYNAMICS_LEVEL_KEY: level})
    table = pa.Table.from_pylist(records, schema=schema)
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def recorder_for(prepared: Any, folder: Path) -> DynamicsRecorder | None:
    """A recorder for a run's training split when ``training.record_dynamics`` asks for one (supervised
    recipes); the train features gain the ``DYNAMICS_ROW`` column it needs."""
    if not prepared.config.training.record_dynamics:
        return None
    train = prepared.features["train"]
    columns = train.column_names
    examples = train["sentence_id"][:] if "sentence_id" in columns else range(len(train))
    offsets = train["word_offset"][:] if "word_offset" in columns else None
    prepared.features["train"] = train.add_column(DYNAMICS_ROW, list(range(len(train))))
    return DynamicsRecorder(folder, list(examples), offsets, next_token=prepared.task.architecture_suffix == "ForCausalLM")


__all__ = ["DYNAMICS_ROW", "DynamicsRecorder", "RowIndexCollator", "recorder_for", "records_parquet", "segments"]
