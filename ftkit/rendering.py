"""Small HTML building blocks shared by every view (notebook, embeddings): escaping, numbers, tables,
and BokehJS loaded once per kernel from the installed package (offline, no CDN)."""

from __future__ import annotations

import html
from typing import Any, Iterable

_TABLE_STYLE = "border-collapse:collapse;font-size:12px;font-family:var(--jp-code-font-family,monospace)"
_CELL_STYLE = "padding:2px 8px;border-bottom:1px solid #e5e7eb;text-align:right"

_bokehjs_loaded = False


def ensure_bokehjs() -> None:
    """Load BokehJS into the notebook page once per kernel, from the installed package (offline).

    jupyter_bokeh's widget renders with the page's BokehJS; without this its views fail to load.
    """
    global _bokehjs_loaded
    if not _bokehjs_loaded:
        from bokeh.io import output_notebook
        from bokeh.resources import INLINE

        output_notebook(INLINE, hide_banner=True)
        _bokehjs_loaded = True


def escape(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def shortened(text: Any, limit: int = 60) -> str:
    """``text`` on one line, cut to ``limit`` characters with "…" marking the cut."""
    line = " ".join(("" if text is None else str(text)).split())
    return line if len(line) <= limit else line[:limit - 1] + "…"


def clipped(text: Any, limit: int = 60) -> str:
    """Escaped HTML of `shortened` text with the whole text in its tooltip: long free text in a table cell."""
    return f'<span title="{escape(text)}">{escape(shortened(text, limit))}</span>'


def words(name: str) -> str:
    """A stored name as people read it: ``wrong_type`` -> ``wrong type``."""
    return name.replace("_", " ")


def cut_mark(max_new_tokens: int) -> str:
    """What follows an answer that stopped at its token limit rather than at its end."""
    return f"… (cut at {max_new_tokens} tokens)"


def format_number(value: Any, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits - 1}e}" if 0 < abs(value) < 1e-3 else f"{value:.{digits}f}"
    return str(value)


def html_table(headers: Iterable[str], rows: Iterable[Iterable[Any]], raw_columns: Iterable[int] = ()) -> str:
    """A compact table; cells are escaped except in ``raw_columns`` (already HTML)."""
    raw = set(raw_columns)
    head = "".join(f'<th style="{_CELL_STYLE};font-weight:600">{escape(h)}</th>' for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td style="{_CELL_STYLE}">{cell if i in raw else escape(cell)}</td>'
                         for i, cell in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f'<table class="ftkit-table" style="{_TABLE_STYLE}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
