"""Word-embedding explorer: neighbours, analogies, projections, and what fine-tuning moved.

    space = ftkit.embeddings.load("default")                 # static input embeddings
    space.neighbors("paris"); space.analogy("man", "king", "woman")
    ctx = ftkit.embeddings.load(run, "contextual")           # hidden states pooled per word
    ftkit.embeddings.compare("default", run).moved()         # words whose neighbourhoods changed

Imports torch on import: the light `ftkit` package loads this only when asked.
"""

from __future__ import annotations

from .compare import Comparison, compare, procrustes
from .contextual import Corpus, read_corpus
from .export import export_projector
from .index import APPROXIMATE_THRESHOLD, ExactIndex, HnswIndex, build_index, is_hnswlib_available
from .loading import load, load_pair, resolve_source
from .plots import plot_comparison, plot_projection, show_bokeh
from .projection import is_umap_available, project
from .space import SPACES, EmbeddingSpace
from .tables import NeighborTable
from .views import MovedWords, show_moved, show_neighbors

__all__ = [
    "APPROXIMATE_THRESHOLD", "Comparison", "Corpus", "EmbeddingSpace", "ExactIndex", "HnswIndex", "MovedWords",
    "NeighborTable", "SPACES", "build_index", "compare", "export_projector", "is_hnswlib_available",
    "is_umap_available", "load", "load_pair", "plot_comparison", "plot_projection", "procrustes", "project",
    "read_corpus", "resolve_source", "show_bokeh", "show_moved", "show_neighbors",
]
