"""Training loop of STAligner: reconstruction pre-training, then reconstruction plus MNN triplet alignment.

Full batch, one block-diagonal graph for all slices. Phase 1 fits the graph-attention autoencoder alone; phase 2
adds the triplet margin loss (weight 1:1) on triplets re-mined every ``mnn_every`` epochs from the current
embedding, which pulls each spot towards its mutual nearest neighbour in the other slices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from tissuegraph.nn.attention_autoencoder import GraphAttentionAutoencoder
from tissuegraph.nn.runtime import pick_device, require_finite, seeded
from tissuegraph.nn.triplet import mnn_triplets, slice_pairs


@dataclass
class StalignerResult:
    """Per-spot embedding, the loss of every epoch, the number of triplets found at each refresh, the fitted model."""

    embedding: np.ndarray
    losses: list[float]
    n_triplets: list[int]
    model: GraphAttentionAutoencoder


def _check_inputs(features: np.ndarray, edges: np.ndarray, slice_codes: np.ndarray) -> None:
    if features.ndim != 2:
        raise ValueError(f"features must be (N, G) (got shape {features.shape})")
    n = features.shape[0]
    if slice_codes.shape != (n,):
        raise ValueError(f"need one slice code per spot ({n}), got shape {slice_codes.shape}")
    if edges.ndim != 2 or edges.shape[1] != 2:
        raise ValueError(f"edges must be an (E, 2) edge list (got shape {edges.shape})")
    if len(edges) and (edges.min() < 0 or edges.max() >= n):
        raise ValueError(f"edge endpoints must lie in 0..{n - 1}")


def train_staligner(
    features: np.ndarray,
    edges: np.ndarray,
    slice_codes: np.ndarray,
    *,
    hidden_dim: int = 512,
    out_dim: int = 30,
    pretrain_epochs: int = 500,
    triplet_epochs: int = 500,
    mnn_every: int = 100,
    mnn_k: int = 50,
    pair_mode: str = "all",
    reference: int = 0,
    margin: float = 1.0,
    reconstruction_weight: float = 1.0,
    n_genes: int | None = None,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    grad_clip: float | None = 5.0,
    seed: int = 0,
    device: str | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> StalignerResult:
    """Fit STAligner on all slices at once and return the (N, out_dim) float32 embedding.

    ``edges`` rows are (source, destination), used as given: include self loops and both directions of each
    spatial edge. Slices are the distinct ``slice_codes`` in sorted order; ``reference`` (star mode) indexes that
    order. With a single slice there is nothing to align: phase 2 is reconstruction only and ``n_triplets`` stays
    empty. Epochs are numbered across both phases for ``on_epoch``. The loss is
    ``reconstruction_weight * MSE + triplet loss``. ``n_genes``: how many genes ``features`` hold on fewer axes, so
    that the first weight matrix starts at the published genes x hidden matrix's scale (None: the features are
    the genes).
    """
    features = np.asarray(features)
    edges = np.asarray(edges)
    slice_codes = np.asarray(slice_codes)
    _check_inputs(features, edges, slice_codes)
    least = {"mnn_every": (mnn_every, 1), "mnn_k": (mnn_k, 1), "hidden_dim": (hidden_dim, 1), "out_dim": (out_dim, 1)}
    least |= {"pretrain_epochs": (pretrain_epochs, 0), "triplet_epochs": (triplet_epochs, 0)}
    for name, (value, minimum) in least.items():  # now, not after 500 epochs (mnn_k) or as a division by zero
        if value < minimum:
            raise ValueError(f"{name} must be at least {minimum} (got {value})")
    if grad_clip is not None and not grad_clip > 0:  # clipping to a norm of 0 would zero every gradient
        raise ValueError(f"grad_clip must be None (no clipping) or positive (got {grad_clip})")
    _, codes = np.unique(slice_codes, return_inverse=True)
    n_slices = int(codes.max()) + 1 if len(codes) else 0
    pairs = slice_pairs(n_slices, pair_mode, reference) if n_slices else []

    dev = pick_device(device)
    with seeded(seed):
        rng = np.random.default_rng(seed)
        x = torch.as_tensor(features, dtype=torch.float32, device=dev)
        edge_index = torch.as_tensor(edges, dtype=torch.long, device=dev).t().contiguous()
        model = GraphAttentionAutoencoder(x.shape[1], hidden_dim, out_dim, init_fan_in=n_genes).to(dev)
        optimiser = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        losses: list[float] = []
        n_triplets: list[int] = []
        triplets: torch.Tensor | None = None

        for epoch in range(pretrain_epochs + triplet_epochs):
            phase2_epoch = epoch - pretrain_epochs
            if pairs and phase2_epoch >= 0 and phase2_epoch % mnn_every == 0:
                model.eval()
                with torch.no_grad():
                    z, _ = model.encode(x, edge_index)
                require_finite(z, epoch, lr)
                found = mnn_triplets(z.cpu().numpy(), codes, pairs, mnn_k, rng)
                n_triplets.append(len(found))
                triplets = torch.as_tensor(found, device=dev) if len(found) else None
            model.train()
            optimiser.zero_grad()
            z, reconstruction = model(x, edge_index)
            loss = reconstruction_weight * F.mse_loss(reconstruction, x)
            if phase2_epoch >= 0 and triplets is not None:
                anchor, positive, negative = z[triplets[:, 0]], z[triplets[:, 1]], z[triplets[:, 2]]
                loss = loss + F.triplet_margin_loss(anchor, positive, negative, margin=margin)
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimiser.step()
            losses.append(float(loss.detach()))
            if on_epoch is not None:
                on_epoch(epoch, losses[-1])

        model.eval()
        with torch.no_grad():
            z, _ = model.encode(x, edge_index)
        require_finite(z, pretrain_epochs + triplet_epochs, lr)
        return StalignerResult(z.cpu().numpy().astype(np.float32), losses, n_triplets, model)
