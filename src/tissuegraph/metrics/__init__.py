"""Scores: agreement with annotation (ARI, NMI) and label-free quality (silhouette, Davies-Bouldin)."""

from tissuegraph.metrics.clustering import ari, davies_bouldin, nmi, silhouette

__all__ = ["ari", "nmi", "silhouette", "davies_bouldin"]
