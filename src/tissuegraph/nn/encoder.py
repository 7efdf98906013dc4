"""STAIG's encoder: a GCN over the spatial graph followed by a small projection head."""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import GCNConv


class GraphContrastiveEncoder(nn.Module):
    """GCN layers (PReLU) then a two-layer ELU projection head; ``forward`` returns (embedding, projection)."""

    def __init__(self, in_dim: int, hidden_dims: tuple[int, ...] = (64,), proj_dim: int = 64) -> None:
        super().__init__()
        dims = (in_dim, *hidden_dims)
        self.convs = nn.ModuleList(GCNConv(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True))
        self.acts = nn.ModuleList(nn.PReLU(b) for b in dims[1:])
        self.projection = nn.Sequential(nn.Linear(dims[-1], proj_dim), nn.ELU(), nn.Linear(proj_dim, dims[-1]))

    def embed(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        for conv, act in zip(self.convs, self.acts, strict=True):
            x = act(conv(x, edge_index))
        return x

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.embed(x, edge_index)
        return h, self.projection(h)
