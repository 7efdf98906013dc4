"""Per-edge drop probabilities: neighbours that look unlike the spot are dropped more often (STAIG step 4)."""

from __future__ import annotations

import numpy as np

from tissuegraph.errors import InputError

WEIGHTINGS = ("softmax", "proportional")
METRICS = ("cosine", "euclidean")


def edge_drop_probabilities(
    edges: np.ndarray,
    embedding: np.ndarray,
    n_nodes: int,
    metric: str = "cosine",
    weighting: str = "softmax",
) -> np.ndarray:
    """Probability of dropping each undirected edge, computed vectorised over the edge list.

    For a spot i with neighbours j and d the cosine or euclidean distance between the endpoints' embeddings,
    i's unit of probability is shared among its edges: ``weighting="softmax"`` gives p_ij = exp(d_ij) /
    sum_k exp(d_ik) (STAIG's gene mode, cosine distances of the expression PCA), ``"proportional"`` gives
    p_ij = d_ij / sum_k d_ik, a softmax of log distances (its image mode, euclidean distances of the image
    embeddings). The undirected edge gets the mean of p_ij and p_ji.
    """
    if weighting not in WEIGHTINGS:
        raise InputError(f"unknown weighting {weighting!r}; expected one of {WEIGHTINGS}")
    if metric not in METRICS:  # anything else used to fall through to euclidean
        raise InputError(f"unknown distance {metric!r}; expected one of {METRICS}")
    src, dst = edges[:, 0], edges[:, 1]
    a, b = embedding[src].astype(np.float64), embedding[dst].astype(np.float64)
    if metric == "cosine":
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        dist = 1.0 - np.einsum("ij,ij->i", a, b) / np.maximum(norms, 1e-12)
    else:  # euclidean
        dist = np.linalg.norm(a - b, axis=1)
    if weighting == "softmax":
        peak = np.full(n_nodes, -np.inf)  # shift each spot's exponents by its largest distance: no overflow
        np.maximum.at(peak, src, dist)
        np.maximum.at(peak, dst, dist)
        src_w, dst_w = np.exp(dist - peak[src]), np.exp(dist - peak[dst])
    else:
        src_w = dst_w = np.maximum(dist, 1e-12)
    totals = np.bincount(src, weights=src_w, minlength=n_nodes) + np.bincount(dst, weights=dst_w, minlength=n_nodes)
    prob = 0.5 * (src_w / totals[src] + dst_w / totals[dst])
    return prob.astype(np.float32)
