"""The two random views of each epoch: edges dropped by their probabilities, gene columns masked."""

from __future__ import annotations

import torch


def drop_edges(edges: torch.Tensor, drop_prob: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Keep each undirected edge (E, 2) with probability 1 - p; return both directions as a (2, E') edge_index."""
    keep = torch.rand(drop_prob.shape, generator=generator, device=drop_prob.device) >= drop_prob
    kept = edges[keep]
    return torch.cat([kept, kept.flip(1)], dim=0).t().contiguous()


def feature_keep_mask(n_features: int, rate: float, generator: torch.Generator) -> torch.Tensor:
    """A 0/1 vector that masks a random ``rate`` share of feature columns (the same columns for every spot).

    The encoder applies it to its first layer's weights, which equals zeroing those columns of the input
    (bit for bit) without copying the N x G feature matrix every view.
    """
    return (torch.rand(n_features, generator=generator, device=generator.device) >= rate).float()
