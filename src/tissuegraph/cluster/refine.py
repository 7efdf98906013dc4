"""Spatial refinement: each spot takes the most frequent label among its nearest spots (sparse, per slice)."""

from __future__ import annotations

import numpy as np
from scipy import sparse
from sklearn.neighbors import NearestNeighbors


def refine_labels(
    labels: np.ndarray, coords: np.ndarray, *, n_neighbors: int = 15, groups: np.ndarray | None = None
) -> np.ndarray:
    """Plurality vote over each spot itself and its ``n_neighbors`` nearest other spots of the same slice.

    A spot takes the most frequent label of its neighbourhood (as in the reference). Ties go to the label met
    first going outward from the spot, itself first: a spot keeps its own label when it ties for the most votes,
    and otherwise the nearer label wins, never the one that happens to sort first.
    """
    names, codes = np.unique(np.asarray(labels), return_inverse=True)
    coords = np.asarray(coords, dtype=np.float64)
    groups = np.zeros(codes.size, dtype=int) if groups is None else np.asarray(groups)
    refined = codes.copy()
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        at = np.arange(rows.size)
        k = min(n_neighbors, rows.size - 1)
        # Querying the fitted points (None) leaves each spot out of its own list even among duplicate positions;
        # the spot itself then goes first, ahead of its neighbours in order of distance.
        nearest = NearestNeighbors(n_neighbors=k).fit(coords[rows]).kneighbors(None)[1] if k else at[:, None][:, :0]
        neighbour_codes = codes[rows[np.column_stack([at, nearest])]]
        votes = sparse.csr_matrix(
            (np.ones(neighbour_codes.size), (np.repeat(at, k + 1), neighbour_codes.ravel())),
            shape=(rows.size, names.size),
        ).toarray()
        top = votes[at[:, None], neighbour_codes] == votes.max(1, keepdims=True)
        refined[rows] = neighbour_codes[at, top.argmax(1)]
    return names[refined]
