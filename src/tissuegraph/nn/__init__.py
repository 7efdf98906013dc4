"""Torch modules and losses (no file access, no AnnData: tensors in, tensors out)."""

from tissuegraph.nn.augment import drop_edges, feature_keep_mask
from tissuegraph.nn.contrastive import dense_neighbor_contrastive_loss, neighbor_contrastive_loss
from tissuegraph.nn.encoder import GraphContrastiveEncoder

__all__ = [
    "GraphContrastiveEncoder",
    "neighbor_contrastive_loss",
    "dense_neighbor_contrastive_loss",
    "drop_edges",
    "feature_keep_mask",
]
