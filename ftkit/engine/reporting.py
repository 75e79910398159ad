"""Reporting to the run store from inside the Trainer: progress, logs, evaluations, checkpoints, stop."""

from __future__ import annotations

import math
import numbers
import time
from pathlib import Path
from typing import Any, Callable

import torch
from transformers import TrainerCallback

from ..runstore.events import CURVES
from ..runstore.layout import PROGRESS_MARK_FILE, checkpoint_name, saved_checkpoints
from ..runstore import RunStore, folder_size

PROGRESS_INTERVAL_S = 0.5  # a follower sees progress well within a second...
# ...of a young run: the interval then grows with the run's age (a hundredth of it) up to this, so a
# week-long run writes some 120,000 progress lines, not 1.2 million, and its events stay cheap to read.
MAX_PROGRESS_INTERVAL_S = 5.0
PHASE_INTERVAL_S = 0.3  # phase counts (reading data n/N, tokenising n/N): a few events a second at most
# What a training log carries about the bookkeeping, not the model: the event's own step and epoch,
# and the timing and totals the Trainer adds (train_runtime... with include_num_input_tokens_seen).
LOG_BOOKKEEPING = frozenset({"epoch", "step", "total_flos", "train_runtime", "train_samples_per_second",
                             "train_steps_per_second", "train_tokens_per_second", "train_loss"})


def _finite(value: Any) -> bool:
    """A real number JSON can carry: numpy's scalars count, booleans, NaN and infinity do not."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


class PhaseReporter:
    """Writes phase events before the first step (`ftkit.runstore.events.PHASES`), throttled.

    A new phase or detail (another split) is written at once, as is a count that reaches its
    total; counts in between at most every ``interval`` seconds.
    """

    def __init__(self, store: RunStore, run_id: str, interval: float = PHASE_INTERVAL_S):
        self.store, self.run_id, self.interval = store, run_id, interval
        self._last_key: tuple[Any, ...] | None = None
        self._last_time = 0.0

    def __call__(self, phase: str, done: int | None = None, total: int | None = None, detail: str | None = None,
                 cached: bool = False) -> None:
        now = time.monotonic()
        key = (phase, detail, cached)
        complete = total is not None and done == total
        if key == self._last_key and not complete and now - self._last_time < self.interval:
            return
        self._last_key, self._last_time = key, now
        event: dict[str, Any] = {"type": "phase", "phase": phase}
        event.update({k: v for k, v in (("done", done), ("total", total), ("detail", detail)) if v is not None})
        if cached:
            event["cached"] = True
        self.store.append_event(self.run_id, event)


class EventCallback(TrainerCallback):
    """Writes progress, evaluation and checkpoint events; turns a stop request into save-and-stop.

    Every process of a distributed run has one, but only the first (``state.is_world_process_zero``)
    writes: one writer per run. It also reads the stop request and tells the others, so that all
    processes stop after the same step (one that trained on alone would wait forever for its peers).
    """

    def __init__(self, store: RunStore, run_id: str, best_metric: str, adapter_only: bool):
        self.store, self.run_id, self.best_metric, self.adapter_only = store, run_id, best_metric, adapter_only
        self.started = time.monotonic()
        self.start_step = 0
        self.last_progress = 0.0
        self.last_mark = -1.0
        self.last_loss: float | None = None
        self.stop_requested = False
        self.evaluation_seconds = 0.0  # validation passes inside this training call (not training time)
        self.samples_per_step = 1
        self.answers: Callable[[], list[dict[str, Any]] | None] | None = None  # ValidationAnswers.take_latest

    def progress_interval(self, now: float) -> float:
        """Seconds between progress events: `PROGRESS_INTERVAL_S`, growing with the run's age."""
        return min(MAX_PROGRESS_INTERVAL_S, max(PROGRESS_INTERVAL_S, (now - self.started) / 100))

    def mark_progress(self, state) -> None:
        """Touch the run's progress mark (at most once a second): what tells its supervisor the run moves."""
        now = time.monotonic()
        if state.is_world_process_zero and now - self.last_mark >= 1.0:
            self.last_mark = now
            (self.store.run_dir(self.run_id) / PROGRESS_MARK_FILE).touch()

    def on_prediction_step(self, args, state, control, **kwargs):
        self.mark_progress(state)  # a long evaluation is progress too

    def on_train_begin(self, args, state, control, **kwargs):
        self.mark_progress(state)
        self.started, self.start_step = time.monotonic(), state.global_step
        self.samples_per_step = args.train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)
        self._progress(state, force=True)
        # Until the first step ends (the next progress event): the first batch, the optimizer's state.
        self._write(state, {"type": "phase", "phase": "first step"})

    def on_step_end(self, args, state, control, **kwargs):
        self.mark_progress(state)
        self._progress(state)
        if not self.stop_requested and self._stop_agreed(args, state):
            self.stop_requested = True
            self._write(state, {"type": "log", "message": f"stop requested: saving a checkpoint at step {state.global_step}"})
            control.should_save = True
            control.should_training_stop = True

    def _stop_agreed(self, args, state) -> bool:
        requested = state.is_world_process_zero and self.store.stop_requested(self.run_id)
        if args.world_size > 1:
            flag = torch.tensor([int(requested)], device=args.device)
            torch.distributed.broadcast(flag, src=0)
            requested = bool(flag.item())
        return requested

    def _write(self, state, event: dict[str, Any]) -> None:
        if state.is_world_process_zero:
            self.store.append_event(self.run_id, event)

    def on_log(self, args, state, control, logs=None, **kwargs):
        """A training log (the Trainer's have a ``loss``; evaluations arrive through :meth:`on_evaluate`
        and the final summary has ``train_loss``): the well-known curves at the top level, as events
        always had them, and every other finite number the trainer logged (TRL's ``rewards/chosen``,
        ``logps/rejected``...) under ``values``, so each becomes a curve without a list naming it."""
        logs = logs or {}
        if "loss" in logs:
            self.last_loss = float(logs["loss"])
            event = {"type": "log", "step": state.global_step, "epoch": state.epoch,
                     **{name: logs.get(name) for name in CURVES}, "loss": self.last_loss}
            values = {name: float(value) for name, value in logs.items()
                      if name not in CURVES and name not in LOG_BOOKKEEPING and _finite(value)}
            if values:
                event["values"] = values
            self._write(state, event)
            self._progress(state, force=True)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if any(key.startswith("test_") for key in metrics or {}):
            return  # the test split evaluated through Trainer.evaluate (a TRL trainer's): the engine records it
        self.evaluation_seconds += float((metrics or {}).get("eval_runtime") or 0.0)
        metrics = {k.removeprefix("eval_"): v for k, v in (metrics or {}).items()}
        event = {"type": "eval", "split": "validation", "step": state.global_step, "epoch": state.epoch,
                 "metrics": metrics, "best_metric_name": self.best_metric}
        answers = self.answers() if self.answers else None
        if answers:
            event["answers"] = answers
        self._write(state, event)

    def on_save(self, args, state, control, **kwargs):
        # The event names the checkpoint (checkpoint-<step>), not where it is: readers join the name
        # with the run folder, so a run store that moves keeps working.
        name = checkpoint_name(state.global_step)
        folder = Path(args.output_dir) / name
        if not state.is_world_process_zero or not folder.is_dir():
            return
        metrics = next((h for h in reversed(state.log_history) if h.get("step") == state.global_step
                        and any(k.startswith("eval_") for k in h)), {})
        kept = saved_checkpoints(args.output_dir)
        self._write(state, {
            "type": "checkpoint", "step": state.global_step, "checkpoint": name, "size": folder_size(folder),
            "adapter_only": self.adapter_only, "kept": kept,
            # A run that keeps its last checkpoint (`keeps_best`) ranks none by its scores: the last is its best.
            **({} if args.load_best_model_at_end else {"ranked": False}),
            "metrics": {k.removeprefix("eval_"): v for k, v in metrics.items() if k.startswith("eval_")},
        })

    def _progress(self, state, force: bool = False) -> None:
        now = time.monotonic()
        first = state.global_step == self.start_step + 1  # ends the "first step" phase at once
        if not (force or first) and now - self.last_progress < self.progress_interval(now) \
                and state.global_step < state.max_steps:
            return
        self.last_progress = now
        done = state.global_step - self.start_step
        elapsed = now - self.started
        rate = done / elapsed if elapsed > 0 and done > 0 else None
        self._write(state, {
            "type": "progress", "step": state.global_step, "total_steps": state.max_steps,
            "epoch": state.epoch or 0.0, "loss": self.last_loss,
            "samples_per_second": rate * self.samples_per_step if rate else None,
            "eta_seconds": (state.max_steps - state.global_step) / rate if rate else None,
        })

