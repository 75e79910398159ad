"""`NeighborBrowser`: type a word, see its nearest neighbours; switch space and model as you go.

A word box (updating on every keystroke), a k slider, a static/contextual choice and a
base/checkpoint toggle above a neighbours table. Spaces load on first use and stay loaded, so
switching back is instant. The table is a plain `widgets.HTML`, so tests drive the widget by
setting values in Python and reading ``browser.table.value``.
"""

from __future__ import annotations

import inspect
import time
from functools import partial
from typing import Any, Callable, Mapping

import ipywidgets as widgets

from ...embeddings import EmbeddingSpace, NeighborTable, load
from ...embeddings.tables import message_html
from ...errors import FtkitError

SpaceOrLoader = EmbeddingSpace | Callable[[], EmbeddingSpace]


class NeighborBrowser(widgets.VBox):
    """Browse neighbours in spaces keyed by (model, space kind), e.g. ("base", "static").

    Values may be spaces or zero-argument callables that build one (called on first use).
    """

    def __init__(self, spaces: Mapping[tuple[str, str], SpaceOrLoader], word: str = "", k: int = 10):
        if not spaces:
            raise FtkitError("NeighborBrowser needs at least one space, keyed by (model, kind)")
        self._spaces: dict[tuple[str, str], SpaceOrLoader] = dict(spaces)
        models = list(dict.fromkeys(model for model, _ in self._spaces))
        kinds = list(dict.fromkeys(kind for _, kind in self._spaces))
        self.word = widgets.Text(value=word, description="word", placeholder="type a word", continuous_update=True)
        self.k = widgets.IntSlider(value=k, min=1, max=50, description="k", continuous_update=True)
        self.space = widgets.ToggleButtons(options=kinds, description="space", disabled=len(kinds) < 2)
        self.model = widgets.ToggleButtons(options=models, description="model", disabled=len(models) < 2)
        self.table = widgets.HTML()
        for control in (self.word, self.k, self.space, self.model):
            control.observe(self._refresh, names="value")
        super().__init__([widgets.HBox([self.word, self.k]), widgets.HBox([self.space, self.model]), self.table])
        self._refresh()

    @classmethod
    def for_run(cls, run: Any, corpus: Any = None, max_sentences: int | None = 2000, word: str = "",
                k: int = 10) -> "NeighborBrowser":
        """The run's base model and its checkpoint, static and contextual (over the run's training data)."""
        from ...embeddings.loading import resolve_source

        base = resolve_source(run).base
        if base is None:
            raise FtkitError(f"{run!r} is not a run: use NeighborBrowser.for_model for a plain model")
        corpus = corpus if corpus is not None else run
        spaces = {}
        for label, source in (("base", base), ("checkpoint", run)):
            spaces[(label, "static")] = partial(load, source, "static")
            spaces[(label, "contextual")] = partial(load, source, "contextual", corpus, max_sentences=max_sentences)
        return cls(spaces, word, k)

    @classmethod
    def for_model(cls, source: Any = "default", corpus: Any = None, max_sentences: int | None = 2000,
                  word: str = "", k: int = 10) -> "NeighborBrowser":
        """One model: its static space, and its contextual space when a corpus is given."""
        spaces = {("base", "static"): partial(load, source, "static")}
        if corpus is not None:
            spaces[("base", "contextual")] = partial(load, source, "contextual", corpus, max_sentences=max_sentences)
        return cls(spaces, word, k)

    def current_space(self) -> EmbeddingSpace | None:
        """The chosen space, loading it now if needed; None when that model/kind pair is not offered."""
        key = (self.model.value, self.space.value)
        entry = self._spaces.get(key)
        if entry is None or isinstance(entry, EmbeddingSpace):
            return entry
        loading = f"loading the {key[1]} space of {key[0]}…"
        self.table.value = message_html(loading)
        self._spaces[key] = entry(progress=self._progress_shower(loading)) if _takes_progress(entry) else entry()
        return self._spaces[key]

    def _progress_shower(self, loading: str, interval: float = 0.25) -> Callable[[int, int], None]:
        """Shows a contextual pass's sentences done / total in place of the table, a few times a second."""
        last = [0.0]

        def show(done: int, total: int) -> None:
            now = time.monotonic()
            if done < total and now - last[0] < interval:
                return
            last[0] = now
            self.table.value = message_html(f"{loading} {done:,}/{total:,} sentences")

        return show

    def _refresh(self, change: Any = None) -> None:
        word = self.word.value.strip()
        try:
            space = self.current_space()
            if space is None:
                self.table.value = message_html(f"no {self.space.value} space for {self.model.value}", error=True)
            elif not word:
                self.table.value = message_html("type a word to see its neighbours")
            else:
                self.table.value = NeighborTable(word, {space.name: space.neighbors(word, self.k.value)})._repr_html_()
        except FtkitError as exc:
            self.table.value = message_html(str(exc), error=True)


def _takes_progress(loader: Callable[..., Any]) -> bool:
    """Whether a space loader accepts ``progress=`` (`ftkit.embeddings.load` does; a plain function may not)."""
    try:
        return "progress" in inspect.signature(loader).parameters
    except (TypeError, ValueError):
        return False
