"""Bokeh views of a space: a projection scatter with search, and before/after arrows for a comparison.

Everything the browser needs travels in the document: each point carries its word, frequency,
majority NER tag and the ids of its nearest neighbours (computed in the full space, not in 2-D),
so the search box highlights a word and its neighbours with a few lines of CustomJS and no kernel.
Display with INLINE resources (`show_bokeh`), never a CDN: notebooks here work offline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import torch

from .index import all_neighbors
from .projection import project

if TYPE_CHECKING:
    from .compare import Comparison
    from .space import EmbeddingSpace

OUTSIDE_COLOR = "#b8b8b8"  # the "O" tag: most words, drawn quietly
PLAIN_COLOR = "#1f77b4"
TOOLS = "pan,wheel_zoom,box_zoom,reset,save"
HOVER_FIELDS = (("word", "@word"), ("frequency", "@frequency"), ("tag", "@tag"))

_SEARCH_JS = """
const data = source.data, words = data.word;
const raw = (cb_obj.value_input ?? cb_obj.value ?? "").trim();
const query = lowercase ? raw.toLowerCase() : raw;
const escape = (s) => String(s).replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));
const i = query ? words.indexOf(query) : -1;
if (i < 0) {
  source.selected.indices = [];
  labels.data = {x: [], y: [], word: []};
  info.text = query ? `<i>${escape(raw)}</i> is not among the plotted words` : "";
  return;
}
const picked = [i, ...data.neighbors[i]];
source.selected.indices = picked;
labels.data = {x: picked.map((j) => data.x[j]), y: picked.map((j) => data.y[j]), word: picked.map((j) => words[j])};
info.text = `<b>${escape(words[i])}</b>: ` + data.neighbors[i].map((j) => escape(words[j])).join(", ");
"""


def tag_colors(tags: Sequence[str]) -> dict[str, str]:
    """A colour per entity type, stable across plots ("O" and unknown in grey)."""
    from bokeh.palettes import Category10_10

    kinds = sorted({t for t in tags if t not in ("O", "")})
    colors = {kind: Category10_10[i % 10] for i, kind in enumerate(kinds)}
    return {**colors, "O": OUTSIDE_COLOR, "": OUTSIDE_COLOR}


def plot_projection(
    space: "EmbeddingSpace",
    words: Sequence[str] | None = None,
    max_words: int = 5000,
    method: str = "pca",
    seed: int = 0,
    k: int = 10,
    title: str | None = None,
    width: int = 800,
    height: int = 600,
) -> Any:
    """A searchable 2-D scatter of ``space`` (its ``max_words`` most frequent words, or ``words``).

    Points are coloured by majority NER tag when the space knows tags; hover shows word,
    frequency and tag; typing in the search box highlights a word and its ``k`` neighbours.
    Returns a bokeh layout (a column of the search row and the figure).
    """
    from bokeh.layouts import column, row
    from bokeh.models import ColumnDataSource, CustomJS, Div, HoverTool, LabelSet, Scatter, TextInput
    from bokeh.plotting import figure

    shown = space.subset(words) if words is not None else space.top(min(max_words, 20_000))
    xy = project(shown.vectors, method=method, seed=seed)
    neighbors = all_neighbors(shown.index, shown.vectors, min(k, len(shown) - 1)) if len(shown) > 1 else None
    tags = shown.tags or [""] * len(shown)
    colors = tag_colors(tags)
    source = ColumnDataSource({
        "x": xy[:, 0].tolist(), "y": xy[:, 1].tolist(), "word": shown.words,
        "frequency": shown.frequencies.tolist() if shown.frequencies is not None else ["–"] * len(shown),
        "tag": tags,
        "color": [colors.get(t, OUTSIDE_COLOR) for t in tags] if shown.tags else [PLAIN_COLOR] * len(shown),
        "neighbors": neighbors.tolist() if neighbors is not None else [[] for _ in shown.words],
    })
    plot = figure(title=title or f"{space.name}: {len(shown)} words ({method.upper()})", width=width, height=height,
                  tools=TOOLS, active_scroll="wheel_zoom", output_backend="webgl" if len(shown) > 5000 else "canvas")
    legend = {"legend_field": "tag"} if shown.tags else {}
    points = plot.scatter("x", "y", source=source, size=5, fill_color="color", line_color=None, fill_alpha=0.7,
                          **legend)
    points.selection_glyph = Scatter(size=11, fill_color="color", line_color="black", fill_alpha=1)
    points.nonselection_glyph = Scatter(size=4, fill_color="color", line_color=None, fill_alpha=0.12)
    plot.add_tools(HoverTool(renderers=[points], tooltips=list(HOVER_FIELDS)))
    labels = ColumnDataSource({"x": [], "y": [], "word": []})
    plot.add_layout(LabelSet(x="x", y="y", text="word", source=labels, x_offset=5, y_offset=5, text_font_size="11px"))
    if shown.tags:
        plot.legend.location, plot.legend.click_policy = "top_right", "hide"
    search = TextInput(title="Find a word", placeholder="type a word…", width=220)
    info = Div(text="", width=width - 240)
    callback = CustomJS(args={"source": source, "labels": labels, "info": info, "lowercase": shown.lowercase},
                        code=_SEARCH_JS)
    search.js_on_change("value_input", callback)
    search.js_on_change("value", callback)
    return column(row(search, info), plot)


def plot_comparison(comparison: "Comparison", n: int = 20, background: int = 2000, min_frequency: int = 1,
                    seed: int = 0, width: int = 800, height: int = 600) -> Any:
    """The ``n`` most moved words as arrows from their aligned "before" to their "after" position.

    Both spaces are projected together (one PCA over the Procrustes-aligned before vectors and the
    after vectors), so an arrow's length is movement relative to the rest of the vocabulary; the
    ``background`` most frequent words are drawn in grey for orientation.
    """
    from bokeh.layouts import column
    from bokeh.models import Arrow, ColumnDataSource, Div, HoverTool, LabelSet, VeeHead
    from bokeh.plotting import figure

    moved = comparison.moved(n, min_frequency=min_frequency)
    rows = [comparison.after.ids[w] for w in moved["word"]]
    highlighted = set(rows)
    context = [i for i in range(min(background, len(comparison.words))) if i not in highlighted]
    picked = torch.tensor(rows + context, dtype=torch.long, device=comparison.aligned_before.device)
    xy = project(torch.cat([comparison.aligned_before[picked], comparison.centered_after[picked]]), seed=seed)
    before_xy, after_xy = xy[: len(picked)], xy[len(picked):]
    count = len(rows)
    arrows = ColumnDataSource({
        "x0": before_xy[:count, 0].tolist(), "y0": before_xy[:count, 1].tolist(),
        "x1": after_xy[:count, 0].tolist(), "y1": after_xy[:count, 1].tolist(),
        "word": list(moved["word"]),
        "shared": [f"{v:.0%}" for v in moved["shared_neighbors"]], "shift": [f"{v:.3f}" for v in moved["shift"]],
        "before": list(moved["before"]), "after": list(moved["after"]),
    })
    others = ColumnDataSource({"x": after_xy[count:, 0].tolist(), "y": after_xy[count:, 1].tolist(),
                               "word": [comparison.words[i] for i in context]})
    before_label, after_label = comparison.labels
    plot = figure(title=f"{before_label} → {after_label}: the {count} words that moved most", width=width,
                  height=height, tools=TOOLS, active_scroll="wheel_zoom")
    context_points = plot.scatter("x", "y", source=others, size=3, color=OUTSIDE_COLOR, alpha=0.4)
    plot.scatter("x0", "y0", source=arrows, size=7, marker="circle", fill_color="white", line_color="#d95f02",
                 legend_label=before_label)
    moved_points = plot.scatter("x1", "y1", source=arrows, size=8, color="#1b9e77", legend_label=after_label)
    plot.add_layout(Arrow(end=VeeHead(size=8, fill_color="#555555", line_color="#555555"), source=arrows,
                          x_start="x0", y_start="y0", x_end="x1", y_end="y1", line_color="#555555", line_alpha=0.7))
    plot.add_layout(LabelSet(x="x1", y="y1", text="word", source=arrows, x_offset=4, y_offset=4, text_font_size="11px"))
    plot.add_tools(HoverTool(renderers=[moved_points], tooltips=[
        ("word", "@word"), (f"shared of top {comparison.k}", "@shared"), ("cosine shift", "@shift"),
        ("before", "@before"), ("after", "@after")]))
    plot.add_tools(HoverTool(renderers=[context_points], tooltips=[("word", "@word")]))
    plot.legend.location = "top_right"
    note = Div(text="Hollow: before (aligned by Procrustes); filled: after. Grey: the most frequent words, after.")
    return column(note, plot)


def show_bokeh(obj: Any) -> None:
    """Display a bokeh object in the notebook, loading BokehJS from the installed package once."""
    from bokeh.io import show

    from ..rendering import ensure_bokehjs

    ensure_bokehjs()
    show(obj)
