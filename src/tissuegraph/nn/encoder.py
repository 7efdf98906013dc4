"""STAIG's encoder: a GCN over the spatial graph followed by a small projection head."""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call
from torch_geometric.nn import GCNConv


class GraphContrastiveEncoder(nn.Module):
    """GCN layers (PReLU) then a two-layer ELU projection head; ``forward`` returns (embedding, projection)."""

    def __init__(self, in_dim: int, hidden_dims: tuple[int, ...] = (64,), proj_dim: int = 64) -> None:
        super().__init__()
        dims = (in_dim, *hidden_dims)
        self.convs = nn.ModuleList(GCNConv(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True))
        self.acts = nn.ModuleList(nn.PReLU(b) for b in dims[1:])
        self.projection = nn.Sequential(nn.Linear(dims[-1], proj_dim), nn.ELU(), nn.Linear(proj_dim, dims[-1]))

    def embed(
        self, x: torch.Tensor, edge_index: torch.Tensor, feature_keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """GCN embedding; ``feature_keep`` (0/1 per input feature) masks input columns via the first weights."""
        for layer, (conv, act) in enumerate(zip(self.convs, self.acts, strict=True)):
            if layer == 0 and feature_keep is not None:
                x = functional_call(conv, {"lin.weight": conv.lin.weight * feature_keep}, (x, edge_index))
            else:
                x = conv(x, edge_index)
            x = act(x)
        return x

    def forward(
        self, x: torch.Tensor, edge_index: torch.Tensor, feature_keep: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.embed(x, edge_index, feature_keep)
        return h, self.projection(h)
