"""Spatial refinement: each spot takes the most frequent label among its nearest spots (sparse, per slice)."""

from __future__ import annotations

import numpy as np
from scipy import sparse
from sklearn.neighbors import NearestNeighbors


def refine_labels(
    labels: np.ndarray, coords: np.ndarray, *, n_neighbors: int = 15, groups: np.ndarray | None = None
) -> np.ndarray:
    """Plurality vote over each spot itself and its ``n_neighbors`` nearest other spots of the same slice.

    A spot takes the most frequent label of its neighbourhood (as in the reference); when its own label ties for
    the most votes it keeps it.
    """
    names, codes = np.unique(np.asarray(labels), return_inverse=True)
    groups = np.zeros(codes.size, dtype=int) if groups is None else np.asarray(groups)
    refined = codes.copy()
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        k = min(n_neighbors + 1, rows.size)
        _, idx = NearestNeighbors(n_neighbors=k).fit(coords[rows]).kneighbors(coords[rows])
        neighbour_codes = codes[rows[idx]]
        votes = sparse.csr_matrix(
            (np.ones(neighbour_codes.size), (np.repeat(np.arange(rows.size), k), neighbour_codes.ravel())),
            shape=(rows.size, names.size),
        ).toarray()
        own = codes[rows]
        best = votes.argmax(1)
        at = np.arange(rows.size)
        refined[rows] = np.where(votes[at, own] >= votes[at, best], own, best)
    return names[refined]
