"""HTML and text renderings of runs shared by the magics and widgets.

Plain functions from store dictionaries to strings, so the same table or summary looks the same
whether it appears in a live widget, a static notebook export or a terminal. No widget imports.
"""

from __future__ import annotations

import datetime
import re
from typing import Any, Mapping

from ..runstore.events import FINAL_STATUSES, phase_text, shown_status
from ..rendering import escape, format_number, html_table

STATUS_COLOURS = {"queued": "#6b7280", "starting": "#60a5fa", "running": "#2563eb", "completed": "#16a34a",
                  "failed": "#dc2626", "stopped": "#d97706"}
ENTITY_SCORES = ("precision", "recall", "f1", "support")
ENTITY_METRIC = re.compile(rf"^(?P<kind>.+)_(?P<name>{'|'.join(ENTITY_SCORES)})$")
OVERALL_METRICS = ("loss", "precision", "recall", "f1", "accuracy", "macro_f1", "weighted_f1", "perplexity",
                   "exact_match", "label_accuracy", "rouge_l")


def format_duration(seconds: float | None) -> str:
    """``3725`` -> ``1:02:05``; empty when unknown."""
    if seconds is None:
        return ""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_time(timestamp: float | None) -> str:
    if not timestamp:
        return ""
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")


def status_badge_html(status: str) -> str:
    colour = STATUS_COLOURS.get(status, "#6b7280")
    return (f'<span class="ftkit-status ftkit-status-{escape(status)}" style="background:{colour};color:white;'
            f'border-radius:9px;padding:1px 8px;font-size:11px;font-weight:600">{escape(status)}</span>')


def progress_text(progress: Mapping[str, Any], phase: Mapping[str, Any] | None = None) -> str:
    """One line: ``step 120/500 · epoch 1.20 · 85.3 samples/s · ETA 1:10 · loss 0.1234``; before the first
    step, the phase the run is in (``tokenising train 3,000/12,637``, see `ftkit.runstore.events.phase_text`)."""
    if phase and phase.get("name"):
        return phase_text(phase)
    step, total = progress.get("step") or 0, progress.get("total_steps")
    parts = [f"step {step}/{total}" if total else f"step {step}"]
    if progress.get("epoch") is not None:
        parts.append(f"epoch {progress['epoch']:.2f}")
    if progress.get("samples_per_second"):
        parts.append(f"{progress['samples_per_second']:.1f} samples/s")
    if progress.get("eta_seconds") is not None:
        parts.append(f"ETA {format_duration(progress['eta_seconds'])}")
    if progress.get("loss") is not None:
        parts.append(f"loss {progress['loss']:.4f}")
    return " · ".join(parts)


def runs_table_html(runs: list[Mapping[str, Any]]) -> str:
    """The `%ftkit runs` table (summaries from `RunStore.list_runs`)."""
    if not runs:
        return "<p>No runs yet: start one with <code>%finetune</code> or <code>ftkit.train(...)</code>.</p>"
    headers = ["id", "name", "status", "task", "model", "adapter", "step", "best", "created", "duration"]
    return html_table(headers, (_run_row(r, html=True) for r in runs), raw_columns=[2])


def runs_table_text(runs: list[Mapping[str, Any]]) -> str:
    if not runs:
        return "No runs yet."
    headers = ["id", "name", "status", "task", "model", "adapter", "step", "best", "created", "duration"]
    rows = [headers] + [[str(c) for c in _run_row(r, html=False)] for r in runs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(headers))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def _run_row(run: Mapping[str, Any], html: bool) -> list[Any]:
    progress = run.get("progress") or {}
    total = progress.get("total_steps")
    step = f"{progress.get('step') or 0}/{total}" if total else str(progress.get("step") or 0)
    best = run.get("best_metric")
    best_text = f"{best['name']} {format_number(best['value'])}" if best and best.get("value") is not None else ""
    model = run.get("model") or ""
    status = shown_status(run["status"], run.get("phase"))
    return [run["id"], run["name"], status_badge_html(status) if html else status, run.get("task"),
            model if len(model) < 40 else "…" + model[-38:], run.get("adapter"), step, best_text,
            format_time(run.get("created")), format_duration(run.get("duration"))]


def split_metrics(metrics: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """Overall metrics and per-entity ``{"PER": {"precision", "recall", "f1"}}`` from a flat dict."""
    overall: dict[str, Any] = {}
    per_entity: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        match = ENTITY_METRIC.match(key)
        if match and match["kind"] not in ("overall", "eval", "macro", "micro", "weighted"):
            per_entity.setdefault(match["kind"], {})[match["name"]] = value
        else:
            overall[key] = value
    return overall, dict(sorted(per_entity.items()))


def eval_table_html(evaluations: list[Mapping[str, Any]]) -> str:
    """One row per evaluation (epoch) with the overall scores; below it, one row per entity type for
    each split's latest evaluation. Scores per entity type as columns would make a table wider than
    the output for any real tag set, so they go in rows; the whole scrolls sideways if it is still wide."""
    if not evaluations:
        return ""
    present: set[str] = set()
    latest: dict[str, tuple[Mapping[str, Any], dict[str, dict[str, float]]]] = {}
    for evaluation in evaluations:
        overall, per_entity = split_metrics(evaluation.get("metrics") or {})
        present.update(overall)
        if per_entity:
            latest[evaluation.get("split", "")] = (evaluation, per_entity)
    overall_names = [name for name in OVERALL_METRICS if name in present]
    rows = []
    for evaluation in evaluations:
        overall, _ = split_metrics(evaluation.get("metrics") or {})
        epoch = evaluation.get("epoch")
        rows.append([evaluation.get("split", ""), f"{epoch:.2f}" if isinstance(epoch, (int, float)) else "",
                     evaluation.get("step", "")] + [format_number(overall.get(n)) for n in overall_names])
    parts = [html_table(["split", "epoch", "step"] + overall_names, rows)]
    for split, (evaluation, per_entity) in latest.items():
        step = evaluation.get("step")
        title = f"{split} by entity type" + (f", step {step}" if step is not None else "")
        names = [name for name in ENTITY_SCORES if any(name in scores for scores in per_entity.values())]
        entity_rows = [[kind] + [format_number(scores.get(name)) for name in names]
                       for kind, scores in per_entity.items()]
        parts.append(f'<div class="ftkit-eval-entities" style="margin-top:6px"><div style="font-size:12px;'
                     f'font-weight:600">{escape(title)}</div>{html_table(["type", *names], entity_rows)}</div>')
    return f'<div class="ftkit-eval" style="max-width:100%;overflow-x:auto">{"".join(parts)}</div>'


def outcome_text(status: str, progress: Mapping[str, Any], duration: float | None = None,
                 best_metric: Mapping[str, Any] | None = None, last_checkpoint: int | None = None,
                 best_checkpoint: int | None = None) -> str:
    """What a finished run came to, in one line (it stands where the Stop button stood): ``completed:
    30/30 steps in 1:05 · final train loss 0.4435 · best validation_f1 0.9100 · best checkpoint at step 20
    · last at step 30``: the best is what loads by default, the last what a resume continues from."""
    step, total = progress.get("step") or 0, progress.get("total_steps")
    head = f"{status}: {step}/{total} steps" if total else f"{status}: {step} steps"
    parts = [head + (f" in {format_duration(duration)}" if duration else "")]
    if progress.get("loss") is not None:
        parts.append(f"final train loss {format_number(progress['loss'])}")
    if best_metric and best_metric.get("value") is not None:
        parts.append(f"best {best_metric['name']} {format_number(best_metric['value'])}")
    parts.append(checkpoints_text(last_checkpoint, best_checkpoint))
    return " · ".join(parts)


def checkpoints_text(last: int | None, best: int | None) -> str:
    """Which checkpoint is the best and which the last: ``best checkpoint at step 8 · last at step 16``."""
    if last is None:
        return "no checkpoint saved"
    if best is None:
        return f"last checkpoint at step {last}"
    return f"best and last checkpoint at step {last}" if best == last else \
        f"best checkpoint at step {best} · last at step {last}"


def run_summary_html(detail: Mapping[str, Any], log_tail: str = "") -> str:
    """A static picture of a run (for front ends without widgets and for exported notebooks)."""
    progress = detail.get("progress") or {}
    total, step = progress.get("total_steps"), progress.get("step") or 0
    percent = 100 * step / total if total else 0
    bar = (f'<div style="background:#e5e7eb;border-radius:3px;height:8px;width:320px">'
           f'<div style="background:#2563eb;height:8px;border-radius:3px;width:{percent:.1f}%"></div></div>')
    parts = [
        f'<div class="ftkit-run-summary"><b>{escape(detail["name"])}</b> <code>{escape(detail["id"])}</code> '
        f'{status_badge_html(shown_status(detail["status"], detail.get("phase")))}',
        f'{bar}<div style="font-size:12px">{escape(progress_text(progress, detail.get("phase")))}</div>',
    ]
    if detail["status"] in FINAL_STATUSES:
        checkpoints = detail.get("checkpoints") or []
        outcome = outcome_text(detail["status"], progress, detail.get("duration"), detail.get("best_metric"),
                               checkpoints[-1]["step"] if checkpoints else None, detail.get("best_checkpoint"))
        parts.append(f'<div class="ftkit-outcome" style="font-size:12px">{escape(outcome)}</div>')
    metrics = detail.get("metrics") or {}
    rows = [{"split": split, "metrics": values} for split, values in metrics.items()]
    if rows:
        parts.append(eval_table_html(rows))
    if detail.get("error"):
        parts.append(f'<pre style="color:#dc2626;white-space:pre-wrap">{escape(detail["error"])}</pre>')
        if log_tail:
            parts.append(f'<pre style="font-size:11px;max-height:200px;overflow:auto">{escape(log_tail)}</pre>')
    return "\n".join(parts) + "</div>"


def run_summary_text(detail: Mapping[str, Any], log_tail: str = "") -> str:
    lines = [f"{detail['name']} ({detail['id']}): {detail['status']} — "
             f"{progress_text(detail.get('progress') or {}, detail.get('phase'))}"]
    for split, values in (detail.get("metrics") or {}).items():
        overall, _ = split_metrics(values)
        scores = ", ".join(f"{k} {format_number(overall[k])}" for k in OVERALL_METRICS if k in overall)
        lines.append(f"  {split}: {scores}")
    if detail.get("error"):
        lines.append(f"  error: {detail['error']}")
        if log_tail:
            lines += ["  " + line for line in log_tail.splitlines()[-10:]]
    return "\n".join(lines)
