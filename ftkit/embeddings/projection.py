"""2-D projections of word vectors: PCA in torch by default, UMAP when umap-learn is installed.

PCA here is exact (an eigen-decomposition of the d x d covariance, so 20k x 384 takes a few
milliseconds) and deterministic: each axis is signed so that its largest loading is positive.
UMAP (``pip install ftkit[umap]``) is probed, never imported at module load; with a seed it runs
single-threaded and repeats exactly.
"""

from __future__ import annotations

import importlib.util

import torch

from ..errors import FtkitError
from .index import normalize_rows

METHODS = ("pca", "umap", "auto")


def is_umap_available() -> bool:
    """Whether ``method="umap"`` can run (the optional ``umap`` extra)."""
    return importlib.util.find_spec("umap") is not None


def project(vectors: torch.Tensor, method: str = "pca", seed: int = 0, n_components: int = 2) -> torch.Tensor:
    """Coordinates (n x n_components, float32, on the CPU) of the unit-normalised rows.

    ``method="auto"`` takes UMAP when installed, PCA otherwise.
    """
    if method not in METHODS:
        raise FtkitError(f"projection method must be one of {', '.join(METHODS)}, not {method!r}")
    if method == "auto":
        method = "umap" if is_umap_available() else "pca"
    unit = normalize_rows(vectors).cpu()
    if method == "umap":
        return _umap(unit, seed, n_components)
    return pca(unit, n_components)


def pca(vectors: torch.Tensor, n_components: int = 2) -> torch.Tensor:
    """Principal-component coordinates, computed from the covariance in float64."""
    centered = vectors.double() - vectors.double().mean(dim=0)
    _, eigenvectors = torch.linalg.eigh(centered.T @ centered)
    axes = eigenvectors[:, -n_components:].flip(1)
    signs = torch.sign(axes.gather(0, axes.abs().argmax(dim=0, keepdim=True)))
    return (centered @ (axes * signs)).float()


def _umap(vectors: torch.Tensor, seed: int, n_components: int) -> torch.Tensor:
    if not is_umap_available():
        raise FtkitError("method='umap' needs umap-learn: `pip install ftkit[umap]` (or use method='pca')")
    import warnings

    import umap

    neighbors = max(2, min(15, vectors.shape[0] - 1))
    reducer = umap.UMAP(n_components=n_components, n_neighbors=neighbors, metric="cosine", random_state=seed)
    with warnings.catch_warnings():  # a seed makes UMAP single-threaded, and it says so every time
        warnings.filterwarnings("ignore", message="n_jobs value .* overridden")
        return torch.from_numpy(reducer.fit_transform(vectors.numpy())).float()
