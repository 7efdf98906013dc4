"""Clustering of embeddings into K domains, and spatial smoothing of the labels."""

from tissuegraph.cluster.gmm import gmm_eee
from tissuegraph.cluster.kmeans import kmeans
from tissuegraph.cluster.leiden import leiden_n_clusters
from tissuegraph.cluster.refine import refine_labels

__all__ = ["gmm_eee", "kmeans", "leiden_n_clusters", "refine_labels"]
