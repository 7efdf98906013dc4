"""k-means on an embedding (seeded, several restarts)."""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans


def kmeans(embedding: np.ndarray, n_clusters: int, *, seed: int = 0) -> np.ndarray:
    """Labels from k-means with 10 k-means++ restarts."""
    return KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit_predict(embedding)
