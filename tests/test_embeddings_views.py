"""What the notebook shows: the bokeh projection and comparison documents, and the NeighborBrowser widget."""

from __future__ import annotations

import math

import pytest
import torch
from bokeh.embed import file_html
from bokeh.models import Arrow, GlyphRenderer, HoverTool, LabelSet, Plot, Scatter, TextInput
from bokeh.resources import INLINE

from ftkit.embeddings import EmbeddingSpace, compare, plot_projection
from ftkit.notebook.widgets.neighbors import NeighborBrowser

CITIES = ["paris", "london", "berlin", "rome"]
PEOPLE = ["peter", "john", "mary", "anna"]


def clustered_space(name: str = "base", seed: int = 0, swap: bool = False) -> EmbeddingSpace:
    """Cities near one direction, people near another; ``swap`` moves "paris" among the people."""
    generator = torch.Generator().manual_seed(seed)
    centres = {"LOC": torch.eye(16)[0] * 5, "PER": torch.eye(16)[1] * 5}
    words, vectors, tags = [], [], []
    for tag, group in (("LOC", CITIES), ("PER", PEOPLE)):
        for word in group:
            centre = centres["PER"] if swap and word == "paris" else centres[tag]
            words.append(word), tags.append(tag)
            vectors.append(centre + 0.3 * torch.randn(16, generator=generator))
    words += [f"filler{i}" for i in range(12)]
    vectors += list(torch.randn(12, 16, generator=generator) * 3)
    tags += ["O"] * 12
    return EmbeddingSpace(words, torch.stack(vectors), name=name, frequencies=range(len(words), 0, -1), tags=tags,
                          lowercase=True)


# ----- bokeh -------------------------------------------------------------------------------------


def test_projection_plot_has_a_scatter_with_hover_fields_and_a_search_box():
    space = clustered_space()
    layout = plot_projection(space, k=3)
    plot = layout.select_one({"type": Plot})
    scatter = [r for r in plot.renderers if isinstance(r, GlyphRenderer) and isinstance(r.glyph, Scatter)]
    assert len(scatter) == 1
    data = scatter[0].data_source.data
    assert len(data["word"]) == len(space)
    assert set(data["tag"]) == {"LOC", "PER", "O"}
    hover = plot.select_one({"type": HoverTool})
    assert [field for field, _ in hover.tooltips] == ["word", "frequency", "tag"]
    paris = data["word"].index("paris")
    assert [data["word"][j] for j in data["neighbors"][paris]] == [w for w, _ in space.neighbors("paris", k=3)]
    search = layout.select_one({"type": TextInput})
    assert {"change:value_input", "change:value"} <= set(search.js_property_callbacks)
    assert layout.select_one({"type": LabelSet}) is not None


def test_projection_colours_follow_tags_and_untagged_spaces_get_one_colour():
    data = plot_projection(clustered_space()).select_one({"type": Plot}).renderers[0].data_source.data
    colors = {tag: {c for c, t in zip(data["color"], data["tag"]) if t == tag} for tag in ("LOC", "PER", "O")}
    assert all(len(c) == 1 for c in colors.values()) and len(set.union(*colors.values())) == 3
    plain = EmbeddingSpace(["a", "b", "c"], torch.randn(3, 4))
    data = plot_projection(plain).select_one({"type": Plot}).renderers[0].data_source.data
    assert len(set(data["color"])) == 1 and data["frequency"] == ["–"] * 3


def test_projection_document_embeds_bokehjs_inline_without_a_cdn():
    html = file_html(plot_projection(clustered_space()), INLINE, "projection")
    assert "cdn.bokeh.org" not in html and '<script src="http' not in html.replace("'", '"')
    assert "filler0" in html


def test_comparison_plot_draws_one_arrow_per_moved_word_from_before_to_after():
    comparison = compare(clustered_space(), clustered_space("tuned", swap=True), k=3)
    layout = comparison.plot(n=4, background=10)
    arrow = layout.select_one({"type": Arrow})
    data = arrow.source.data
    assert data["word"][0] == "paris" and len(data["word"]) == 4
    assert all(math.isfinite(v) for key in ("x0", "y0", "x1", "y1") for v in data[key])
    plot = layout.select_one({"type": Plot})
    hovers = [[field for field, _ in hover.tooltips] for hover in plot.select({"type": HoverTool})]
    assert ["word", "shared of top 3", "cosine shift", "before", "after"] in hovers
    file_html(layout, INLINE)  # the document serialises


# ----- widget ------------------------------------------------------------------------------------


@pytest.fixture
def browser() -> NeighborBrowser:
    loaded = []

    def contextual() -> EmbeddingSpace:
        loaded.append("contextual")
        return clustered_space("ctx", seed=2).subset(CITIES + PEOPLE)

    widget = NeighborBrowser({("base", "static"): clustered_space("base"),
                              ("checkpoint", "static"): clustered_space("tuned", swap=True),
                              ("base", "contextual"): contextual}, k=3)
    widget.loaded = loaded
    return widget


def test_browser_shows_neighbours_as_the_word_is_typed(browser):
    assert browser.word.continuous_update
    assert "type a word" in browser.table.value
    browser.word.value = "paris"
    assert browser.table.value.count("<tr>") == 1 + 3
    assert all(city in browser.table.value for city in ("london", "berlin", "rome"))
    browser.word.value = "Peter"
    assert "mary" in browser.table.value and "london" not in browser.table.value


def test_browser_follows_the_k_slider_and_the_checkpoint_toggle(browser):
    browser.word.value = "paris"
    browser.k.value = 5
    assert browser.table.value.count("<tr>") == 1 + 5
    browser.k.value = 3
    browser.model.value = "checkpoint"
    assert "tuned" in browser.table.value
    assert sum(person in browser.table.value for person in PEOPLE) == 3


def test_browser_loads_a_space_on_first_use_only_and_reports_missing_ones(browser):
    browser.word.value = "paris"
    assert browser.loaded == []
    browser.space.value = "contextual"
    browser.space.value = "static"
    browser.space.value = "contextual"
    assert browser.loaded == ["contextual"] and "ctx" in browser.table.value
    browser.model.value = "checkpoint"
    assert "no contextual space for checkpoint" in browser.table.value


def test_browser_shows_errors_in_place_of_the_table(browser):
    browser.space.value = "contextual"
    browser.word.value = "filler1"
    assert "never occurs in the corpus" in browser.table.value
