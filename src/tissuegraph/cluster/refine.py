"""Spatial refinement: each spot takes the most frequent label among its nearest spots (sparse, per slice)."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from tissuegraph.gr.spatial import nearest_with_ties


def refine_labels(
    labels: np.ndarray, coords: np.ndarray, *, n_neighbors: int = 15, groups: np.ndarray | None = None
) -> np.ndarray:
    """Plurality vote over each spot itself and its ``n_neighbors`` nearest other spots of the same slice, plus
    every spot as near as the last of them (``gr.spatial.nearest_with_ties``: on Visium's hexagons the 15th
    nearest is one of 6 equally near, and keeping all 6 makes the vote independent of the order of the rows).

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
        nearest, kept = nearest_with_ties(coords[rows], k) if k else (at[:, None][:, :0], np.ones((rows.size, 0), bool))
        # the spot itself goes first, ahead of its neighbours in order of distance
        neighbour_codes = codes[rows[np.column_stack([at, nearest])]]
        counted = np.column_stack([np.ones(rows.size, dtype=bool), kept])
        votes = sparse.csr_matrix(
            (counted.ravel().astype(float), (np.repeat(at, counted.shape[1]), neighbour_codes.ravel())),
            shape=(rows.size, names.size),
        ).toarray()
        top = counted & (votes[at[:, None], neighbour_codes] == votes.max(1, keepdims=True))
        refined[rows] = neighbour_codes[at, top.argmax(1)]
    return names[refined]
