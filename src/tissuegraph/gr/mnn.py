"""Mutual nearest neighbours between two sets of points (slices in an embedding, or landmark coordinates).

Exact kNN from scikit-learn. k is capped at half the smaller set: with k at or above a set's size, every point of
the other set has all of it among its k nearest, and the test would be one-sided (each point of a 10-spot slice
paired with its 50 nearest of the other, whatever they are). So a slice with fewer spots than k is never a crash,
and its matches stay mutual.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from sklearn.neighbors import NearestNeighbors


def _knn_matrix(queries: np.ndarray, points: np.ndarray, k: int) -> sparse.csr_matrix:
    """Sparse (n_queries, n_points) 0/1 matrix marking each query's k nearest points."""
    index = NearestNeighbors(n_neighbors=k).fit(points)
    return index.kneighbors_graph(queries, mode="connectivity").tocsr()


def mutual_nearest_neighbors(x: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """Pairs (i, j) where y[j] is among the k nearest of x[i] and x[i] among the k nearest of y[j].

    k is capped at half the smaller set (at least 1), see the module docstring. Returns an (n_pairs, 2) int64
    array sorted by i then j (empty, shape (0, 2), when there is none).
    """
    if k < 1:
        raise ValueError(f"k must be at least 1 (got {k})")
    if len(x) == 0 or len(y) == 0:
        return np.empty((0, 2), dtype=np.int64)
    k = max(1, min(k, min(len(x), len(y)) // 2))
    x_to_y = _knn_matrix(x, y, k)
    y_to_x = _knn_matrix(y, x, k)
    mutual = x_to_y.multiply(y_to_x.T).tocoo()
    pairs = np.stack([mutual.row, mutual.col], axis=1).astype(np.int64)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def nearest_mnn_partner(x: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """For each x[i] with at least one MNN partner in y, its nearest such partner: an (n, 2) array (i, j)."""
    return _nearest_partner(mutual_nearest_neighbors(x, y, k), x, y)


def nearest_mnn_partners_both_ways(x: np.ndarray, y: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``nearest_mnn_partner(x, y, k)`` and ``nearest_mnn_partner(y, x, k)`` from one MNN search: the mutual
    pairs are the same set either way round, so the neighbour searches need not run twice."""
    pairs = mutual_nearest_neighbors(x, y, k)
    swapped = pairs[:, ::-1]
    swapped = swapped[np.lexsort((swapped[:, 1], swapped[:, 0]))]  # in the order the search from y returns them
    return _nearest_partner(pairs, x, y), _nearest_partner(swapped, y, x)


def _nearest_partner(pairs: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Of the pairs (i, j), sorted by i then j, each i's pair with the nearest y[j] (the first of equals)."""
    if len(pairs) == 0:
        return pairs
    distance = np.linalg.norm(x[pairs[:, 0]] - y[pairs[:, 1]], axis=1)
    order = np.lexsort((distance, pairs[:, 0]))
    pairs = pairs[order]
    first = np.ones(len(pairs), dtype=bool)
    first[1:] = pairs[1:, 0] != pairs[:-1, 0]
    return pairs[first]
