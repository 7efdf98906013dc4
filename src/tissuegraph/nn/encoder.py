"""STAIG's encoder: a GCN over the spatial graph followed by a small projection head."""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import GCNConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm

from tissuegraph.nn.sparse import SparseRows


class GraphContrastiveEncoder(nn.Module):
    """GCN layers (PReLU) then a two-layer ELU projection head; ``forward`` returns (embedding, projection).

    The head maps the embedding through ``proj_dim`` hidden units back to the embedding's width (METHODS 1.6:
    64 -> 64 -> 64), so ``proj_dim`` is the head's hidden width, not its output width.

    The input is a dense (N, G) tensor or ``SparseRows``. The first layer's product with the genes is taken
    here rather than inside ``GCNConv`` so that sparse features are read at the cost of their non-zeros; the
    layer's own propagation (symmetric normalisation with self loops) and bias then finish it.
    """

    def __init__(self, in_dim: int, hidden_dims: tuple[int, ...] = (64,), proj_dim: int = 64) -> None:
        super().__init__()
        dims = (in_dim, *hidden_dims)
        self.convs = nn.ModuleList(GCNConv(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True))
        self.acts = nn.ModuleList(nn.PReLU(b) for b in dims[1:])
        self.projection = nn.Sequential(nn.Linear(dims[-1], proj_dim), nn.ELU(), nn.Linear(proj_dim, dims[-1]))

    def embed(
        self, x: torch.Tensor | SparseRows, edge_index: torch.Tensor, feature_keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """GCN embedding; ``feature_keep`` (0/1 per input feature) masks input columns via the first weights."""
        first = self.convs[0]
        weight = first.lin.weight if feature_keep is None else first.lin.weight * feature_keep
        projected = x.matmul(weight.t()) if isinstance(x, SparseRows) else x @ weight.t()
        norm_index, norm_weight = gcn_norm(
            edge_index, None, projected.shape[0], first.improved, first.add_self_loops, first.flow, projected.dtype
        )
        h = self.acts[0](first.propagate(norm_index, x=projected, edge_weight=norm_weight) + first.bias)
        for conv, act in zip(self.convs[1:], self.acts[1:], strict=True):
            h = act(conv(h, edge_index))
        return h

    def forward(
        self, x: torch.Tensor | SparseRows, edge_index: torch.Tensor, feature_keep: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.embed(x, edge_index, feature_keep)
        return h, self.projection(h)
