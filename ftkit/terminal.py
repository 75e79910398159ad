"""What the CLI prints for people: aligned tables, JSON for scripts, and a followed run's progress bar."""

from __future__ import annotations

import json
from typing import Any

from .runstore.events import phase_text

FOLLOWED_METRICS = ("f1", "precision", "recall", "accuracy", "loss", "perplexity", "exact_match", "label_accuracy")


def print_table(rows: list[list[Any]]) -> None:
    """Rows (the first one the headers) in aligned columns."""
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def follow_in_terminal(run: Any, quiet: bool) -> int:
    """A terminal progress bar fed by the run's events (folded by `ftkit.runstore.events.RunState`);
    exit 1 if the run does not complete."""
    from tqdm.auto import tqdm

    state, offset = run.store.read_state(run.id)  # a long run's summary: its past is not printed again
    bar = None if quiet else tqdm(total=None, unit="step", dynamic_ncols=True, desc=run.name)
    shown_phase: tuple[Any, ...] | None = None
    for event in run.follow(offset=offset):
        update = state.apply(event)
        if bar is None:
            continue
        if update.kind == "phase" and state.phase:
            # A line when a phase (or the split it works on) begins; its count n/N moves in the bar's label.
            if (state.phase, state.phase_detail) != shown_phase:
                shown_phase = (state.phase, state.phase_detail)
                bar.write(update.message or phase_text(state.phase_info))
            bar.set_description_str(f"{run.name}: {phase_text(state.phase_info)}", refresh=True)
        elif update.kind == "progress" and shown_phase is not None:
            shown_phase = None
            bar.set_description_str(run.name, refresh=False)
        if update.kind == "progress":
            progress = state.progress
            if progress.get("total_steps") and bar.total != progress["total_steps"]:
                bar.total = progress["total_steps"]
            bar.n = progress.get("step") or 0
            postfix = {"epoch": f"{progress.get('epoch') or 0:.2f}"}
            if progress.get("loss") is not None:
                postfix["loss"] = f"{progress['loss']:.4f}"
            bar.set_postfix(postfix, refresh=True)
        elif update.evaluation is not None:
            metrics = update.evaluation["metrics"]
            shown = ", ".join(f"{k} {metrics[k]:.4f}" for k in FOLLOWED_METRICS if isinstance(metrics.get(k), (int, float)))
            bar.write(f"{update.evaluation['split']} @ step {update.evaluation.get('step')}: {shown}")
        elif update.kind == "log" and update.message:
            bar.write(update.message)
    if bar is not None:
        bar.close()
    status = run.status
    if not quiet:
        print(f"run {run.id} {status}" + (f": {run.error}" if status == "failed" else ""))
    return 0 if status in ("completed", "stopped") else 1
