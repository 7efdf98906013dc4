"""Leiden on a kNN graph of the embedding, with a resolution search that hits a requested number of clusters.

The search only looks at the number of clusters found, never at any annotation.
"""

from __future__ import annotations

import igraph as ig
import leidenalg
import numpy as np
from sklearn.neighbors import kneighbors_graph

MAX_WIDENINGS = 6  # resolution up to 10 * 4^6, about 41,000


def _leiden(graph: ig.Graph, resolution: float, seed: int) -> np.ndarray:
    partition = leidenalg.find_partition(
        graph,
        leidenalg.RBConfigurationVertexPartition,
        weights="weight",
        resolution_parameter=resolution,
        seed=seed,
    )
    return np.asarray(partition.membership)


def leiden_n_clusters(
    embedding: np.ndarray, n_clusters: int, *, n_neighbors: int = 15, seed: int = 0, max_steps: int = 40
) -> np.ndarray:
    """Bisect the resolution (log scale) until leiden finds ``n_clusters`` clusters; closest count if never exact.

    The bracket starts at [0.001, 10] and its top is raised while it still gives too few clusters.
    """
    knn = kneighbors_graph(embedding, n_neighbors=min(n_neighbors, embedding.shape[0] - 1), mode="connectivity")
    knn = knn.maximum(knn.T).tocoo()
    upper = knn.row < knn.col
    graph = ig.Graph(n=embedding.shape[0], edges=list(zip(knn.row[upper], knn.col[upper], strict=True)))
    graph.es["weight"] = knn.data[upper].tolist()
    low, high = 1e-3, 10.0
    best = _leiden(graph, 1.0, seed)
    for _ in range(MAX_WIDENINGS):  # many clusters can need a resolution above 10: raise the bracket's top first
        labels = _leiden(graph, high, seed)
        if labels.max() + 1 == n_clusters:
            return labels
        if labels.max() + 1 > n_clusters:
            if labels.max() + 1 - n_clusters < abs(best.max() + 1 - n_clusters):
                best = labels
            break
        best, low, high = labels, high, high * 4
    for _ in range(max_steps):
        mid = float(np.sqrt(low * high))
        labels = _leiden(graph, mid, seed)
        found = labels.max() + 1
        if abs(found - n_clusters) < abs(best.max() + 1 - n_clusters):
            best = labels
        if found == n_clusters:
            return labels
        if found < n_clusters:
            low = mid
        else:
            high = mid
    return best
