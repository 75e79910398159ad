"""Ready-to-display answers for the magics: a word's neighbours, and what a run's fine-tuning moved.

``%ftkit neighbors`` and ``%ftkit moved`` call these; they check their input, load (and cache) the
spaces, and return objects that render themselves in a notebook.
"""

from __future__ import annotations

from typing import Any

from ..errors import FtkitError
from .compare import Comparison
from .loading import load, load_pair
from .plots import show_bokeh
from .space import SPACES
from .tables import NeighborTable

# Contextual spaces for the magics read the first sentences of the run's training data: enough
# for the frequent words to settle, quick enough to wait for.
QUICK_SENTENCES = 2000


def show_neighbors(word: str, run: Any = None, k: int = 10, space: str = "static") -> NeighborTable:
    """``word``'s ``k`` nearest neighbours in the default model, or in a run's base model and checkpoint side by side.

    ``run`` is a `ftkit.runs.Run` or its id or name.
    """
    _check_space(space)
    if not isinstance(word, str) or not word.strip():
        raise FtkitError("give a word to look up, e.g. `%ftkit neighbors paris`")
    if run is None:
        if space == "contextual":
            raise FtkitError("contextual neighbours need a run (its training data is the corpus): add --run RUN")
        return NeighborTable(word, {"default": load("default", space).neighbors(word, k)}, caption="static embeddings")
    before, after = load_pair(run, space, **_options(space))
    return NeighborTable(word, {before.name: before.neighbors(word, k), after.name: after.neighbors(word, k)})


def show_moved(run: Any, k: int = 20, space: str = "contextual", min_frequency: int = 2) -> "MovedWords":
    """The ``k`` words whose neighbourhoods the run's fine-tuning changed most: a table and an arrow plot."""
    _check_space(space)
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise FtkitError(f"k must be a positive whole number of words, got {k!r}")
    before, after = load_pair(run, space, **_options(space))
    return MovedWords(Comparison(before, after), k, min_frequency)


class MovedWords:
    """A comparison shown as its most moved words (table) above their before/after arrows (bokeh)."""

    def __init__(self, comparison: Comparison, n: int = 20, min_frequency: int = 1):
        self.comparison, self.n, self.min_frequency = comparison, n, min_frequency

    def plot(self) -> Any:
        return self.comparison.plot(self.n, min_frequency=self.min_frequency)

    def _repr_html_(self) -> str:
        return self.comparison.summary_html(self.n, self.min_frequency)

    def _ipython_display_(self) -> None:
        from IPython.display import HTML, display

        display(HTML(self._repr_html_()))
        show_bokeh(self.plot())


def _check_space(space: str) -> None:
    if space not in SPACES:
        raise FtkitError(f"space must be one of {', '.join(SPACES)}, not {space!r}")


def _options(space: str) -> dict[str, Any]:
    return {"max_sentences": QUICK_SENTENCES} if space == "contextual" else {}
