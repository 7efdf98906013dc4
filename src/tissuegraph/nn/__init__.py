"""Torch modules, losses and training loops (no file access, no AnnData: arrays and tensors in, arrays out)."""

from tissuegraph.nn.attention_autoencoder import GraphAttentionAutoencoder
from tissuegraph.nn.augment import drop_edges, feature_keep_mask
from tissuegraph.nn.contrastive import dense_neighbor_contrastive_loss, neighbor_contrastive_loss
from tissuegraph.nn.encoder import GraphContrastiveEncoder
from tissuegraph.nn.staig import StaigResult, train_staig
from tissuegraph.nn.staligner import StalignerResult, train_staligner
from tissuegraph.nn.triplet import mnn_triplets, slice_pairs

__all__ = [
    "GraphContrastiveEncoder",
    "GraphAttentionAutoencoder",
    "neighbor_contrastive_loss",
    "dense_neighbor_contrastive_loss",
    "drop_edges",
    "feature_keep_mask",
    "train_staig",
    "StaigResult",
    "train_staligner",
    "StalignerResult",
    "mnn_triplets",
    "slice_pairs",
]
