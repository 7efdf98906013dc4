"""Training loop of STAIG: two augmented views per epoch, neighbour contrastive loss, full batch Adam."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from tissuegraph.nn.augment import drop_edges, feature_keep_mask
from tissuegraph.nn.contrastive import neighbor_contrastive_loss, same_label_blocks
from tissuegraph.nn.encoder import GraphContrastiveEncoder
from tissuegraph.nn.runtime import pick_device, require_finite, seeded
from tissuegraph.nn.sparse import SparseRows


@dataclass
class StaigResult:
    """What training returns: per-spot embedding and projection, and the loss of every epoch."""

    embedding: np.ndarray
    projection: np.ndarray
    losses: list[float]


def train_staig(
    features: np.ndarray,
    edges: np.ndarray,
    drop_prob: np.ndarray,
    *,
    tau: float,
    epochs: int,
    feature_mask_rates: tuple[float, float],
    hidden_dims: tuple[int, ...] = (64,),
    proj_dim: int = 64,
    lr: float = 5e-4,
    weight_decay: float = 1e-5,
    groups: np.ndarray | None = None,
    pseudo_labels: np.ndarray | None = None,
    denominator: str = "exact",
    n_negatives: int = 512,
    tile_size: int = 1024,
    seed: int = 0,
    device: str | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> StaigResult:
    """Fit the encoder on one graph (block-diagonal for several slices) and return the spot embeddings.

    ``edges`` holds each undirected edge once (i < j) with its drop probability in ``drop_prob``. ``groups``
    (slice code per spot) restricts each denominator to the anchor's slice; ``pseudo_labels`` (image mode)
    removes spots of the anchor's slice sharing its label from the denominator.
    """
    dev = pick_device(device)
    with seeded(seed):
        generator = torch.Generator(device=dev).manual_seed(seed)
        x = SparseRows.from_array(features, dev)
        n_features = x.shape[1]
        edge_t = torch.as_tensor(edges, dtype=torch.long, device=dev)
        prob_t = torch.as_tensor(drop_prob, dtype=torch.float32, device=dev)
        full_edge_index = torch.cat([edge_t, edge_t.flip(1)], dim=0).t().contiguous()
        groups_t = None
        if groups is not None:
            groups_t = [torch.as_tensor(np.flatnonzero(groups == g), device=dev) for g in np.unique(groups)]
        label_blocks = None
        if pseudo_labels is not None:
            within_slice = np.unique(
                np.stack([np.zeros_like(pseudo_labels) if groups is None else groups, pseudo_labels], axis=1),
                axis=0,
                return_inverse=True,
            )[1]
            label_blocks = same_label_blocks(torch.as_tensor(within_slice.ravel(), device=dev))

        model = GraphContrastiveEncoder(n_features, hidden_dims, proj_dim).to(dev)
        optimiser = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        losses: list[float] = []
        model.train()
        for epoch in range(epochs):
            optimiser.zero_grad()
            keep1 = feature_keep_mask(n_features, feature_mask_rates[0], generator)
            _, p1 = model(x, drop_edges(edge_t, prob_t, generator), keep1)
            keep2 = feature_keep_mask(n_features, feature_mask_rates[1], generator)
            _, p2 = model(x, drop_edges(edge_t, prob_t, generator), keep2)
            loss = neighbor_contrastive_loss(
                p1,
                p2,
                full_edge_index,
                tau,
                groups=groups_t,
                denominator=denominator,
                n_negatives=n_negatives,
                tile_size=tile_size,
                generator=generator,
                label_blocks=label_blocks,
            )
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
            if on_epoch is not None:
                on_epoch(epoch, losses[-1])
        model.eval()
        with torch.no_grad():
            h, p = model(x, full_edge_index)
        require_finite(h, epochs, lr)
        return StaigResult(h.cpu().numpy(), p.cpu().numpy(), losses)
