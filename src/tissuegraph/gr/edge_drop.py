"""Per-edge drop probabilities: neighbours that look unlike the spot are dropped more often (STAIG step 4)."""

from __future__ import annotations

import numpy as np


def edge_drop_probabilities(
    edges: np.ndarray, embedding: np.ndarray, n_nodes: int, metric: str = "cosine"
) -> np.ndarray:
    """Probability of dropping each undirected edge, computed vectorised over the edge list.

    For a spot i with neighbours j, p_ij = d_ij / sum_k d_ik (d = cosine or euclidean distance between the
    endpoints' embeddings); the undirected edge gets the mean of p_ij and p_ji.
    """
    src, dst = edges[:, 0], edges[:, 1]
    a, b = embedding[src].astype(np.float64), embedding[dst].astype(np.float64)
    if metric == "cosine":
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        dist = 1.0 - np.einsum("ij,ij->i", a, b) / np.maximum(norms, 1e-12)
    else:
        dist = np.linalg.norm(a - b, axis=1)
    dist = np.maximum(dist, 1e-12)
    totals = np.bincount(src, weights=dist, minlength=n_nodes) + np.bincount(dst, weights=dist, minlength=n_nodes)
    prob = 0.5 * (dist / totals[src] + dist / totals[dst])
    return prob.astype(np.float32)
