"""The latest answers a generative run gave on its validation examples, as the monitor shows them."""

from __future__ import annotations

import math
from typing import Any, Mapping

from ...rendering import escape, html_table
from ...runstore.layout import SELECTION_SPLIT

ANSWER_COLUMNS = {"prompt": 60, "reference": 40, "generation": 40}  # how many characters a cell shows


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) else math.nan


def answers_html(evaluation: Mapping[str, Any] | None) -> str:
    """The latest generated answers (`RunState.answered`) under their step and cost; "" for none."""
    if evaluation is None:
        return ""
    seconds, samples = (_number(evaluation["metrics"].get(name)) for name in ("generation_seconds", "samples"))
    cost = f"answers generated for {samples:.0f} {SELECTION_SPLIT} examples in {seconds:.1f} s per evaluation"
    rows = [[_text_cell(answer.get(key), width) for key, width in ANSWER_COLUMNS.items()]
            + [("✓" if answer.get("match") else "✗") + (" cut at the token limit" if answer.get("stopped") is False else "")]
            for answer in evaluation["answers"]]
    return (f'<div class="ftkit-answers" style="max-width:100%;overflow-x:auto;margin-top:6px;font-size:12px">'
            f'<div style="font-weight:600">{SELECTION_SPLIT} answers at step {escape(evaluation.get("step"))}</div>'
            f'<div style="color:#6b7280">{"" if math.isnan(seconds + samples) else cost}</div>'
            f'{html_table([*ANSWER_COLUMNS, "match"], rows, raw_columns=(0, 1, 2))}</div>')


def _text_cell(value: Any, width: int) -> str:
    """A text on one line, cut to ``width`` characters (the whole of it on hover), left-aligned."""
    text = " ".join(str("" if value is None else value).split())
    short = text if len(text) <= width else text[:width - 1] + "…"
    return f'<div style="text-align:left" title="{escape(value)}">{escape(short)}</div>'
