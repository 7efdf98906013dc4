"""STAGATE's graph-attention autoencoder (the model STAligner trains), on an edge list: no N x N matrix exists.

Encoder: ``h = ELU(attend(x W1))`` then ``z = h W2``. The second layer is a plain linear map, as in STAGATE
(METHODS section 2: "genes -> 512 (graph attention, ELU) -> 30 (linear)"): one smoothing step over the spatial
graph, and the embedding is a linear read-out of it.

Decoder: tied weights, ``h' = ELU(attend(z W2^T))`` with the *encoder's* attention coefficients, then
``x_hat = h' W1^T``. The final map is linear like the last encoder layer, so the decoder mirrors the encoder and
the attention is re-used once ("re-uses the first layer's attention").

Attention, single head, for an edge j -> i (``edge_index[0] = j`` source, ``edge_index[1] = i`` destination):
``e_ij = sigmoid(a_s . W x_j + a_d . W x_i)``, softmax over i's incoming edges, message ``alpha_ij W x_j``
summed per destination. The layer neither adds nor requires self loops: the caller's graph is used as given, and
a node without incoming edges aggregates to zero. No biases: with tied weights a bias has no transposed twin.

Aggregation over edges is linear, so it commutes with the weight matrices (row vectors, ``x W``):
``attend(x W) = attend(x) W`` and ``(x_j W) . a = x_j . (W a)``. Each attended layer therefore gathers per-edge
messages on its narrower side (e.g. 100 PCA inputs rather than 512 hidden units, 30 embedding units rather than
512 in the decoder): the same model at a fraction of the per-edge memory traffic, the dominant cost on a CPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.utils import softmax

#: STAGATE's initial weights: Glorot (Xavier) normal with this gain.
INIT_GAIN = 1.414


def attention_coefficients(
    h: torch.Tensor, edge_index: torch.Tensor, att_src: torch.Tensor, att_dst: torch.Tensor
) -> torch.Tensor:
    """Per-edge weights alpha (E,): sigmoid of the source's ``h . att_src`` plus the destination's ``h . att_dst``,
    then a softmax over each destination's incoming edges."""
    src, dst = edge_index
    score = torch.sigmoid((h @ att_src).index_select(0, src) + (h @ att_dst).index_select(0, dst))
    return softmax(score, dst, num_nodes=h.shape[0])


def aggregate(values: torch.Tensor, edge_index: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Sum of ``alpha_ij * values_j`` over each node i's incoming edges (index_add: deterministic on the CPU).

    Gathers use ``index_select``, whose backward is a plain index_add, several times cheaper than the
    accumulating index_put behind ``values[src]``.
    """
    src, dst = edge_index
    out = torch.zeros_like(values)
    return out.index_add_(0, dst, values.index_select(0, src) * alpha[:, None])


def attend_linear(x: torch.Tensor, weight: torch.Tensor, edge_index: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """``aggregate(x @ weight)``, gathering messages on whichever side of ``weight`` is narrower."""
    if x.shape[1] <= weight.shape[1]:
        return aggregate(x, edge_index, alpha) @ weight
    return aggregate(x @ weight, edge_index, alpha)


class GraphAttentionAutoencoder(nn.Module):
    """Tied-weight graph-attention autoencoder; ``forward(x, edge_index)`` returns (embedding z, reconstruction).

    Parameters are W1 (in x hidden), W2 (hidden x out) and the two attention vectors: the decoder owns none.
    They start as STAGATE's do: normal, Glorot scale with gain 1.414 (the attention vectors as (1, 1, hidden)
    tensors, so at 1.414 / sqrt(hidden)). ``init_fan_in`` is the width whose scale W1 starts at: the number of genes
    when ``x`` holds their coordinates on fewer orthonormal axes, so that W1 starts as the published
    genes x hidden matrix seen on those axes (None: ``in_dim``).
    """

    def __init__(self, in_dim: int, hidden_dim: int = 512, out_dim: int = 30, *, init_fan_in: int | None = None):
        super().__init__()
        self.w1 = nn.Parameter(torch.empty(in_dim, hidden_dim))
        self.w2 = nn.Parameter(torch.empty(hidden_dim, out_dim))
        self.att_src = nn.Parameter(torch.empty(hidden_dim))
        self.att_dst = nn.Parameter(torch.empty(hidden_dim))
        self.init_fan_in = in_dim if init_fan_in is None else int(init_fan_in)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        hidden = self.w1.shape[1]
        nn.init.normal_(self.w1, std=INIT_GAIN * (2.0 / (self.init_fan_in + hidden)) ** 0.5)
        nn.init.xavier_normal_(self.w2, gain=INIT_GAIN)
        for att in (self.att_src, self.att_dst):
            nn.init.normal_(att, std=INIT_GAIN / hidden**0.5)

    def encode(self, x: torch.Tensor, edge_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embedding z (N, out) and the first layer's attention alpha (E,), which the decoder re-uses."""
        # The scores a . (W1 x) as x . (W1 a): no (N, hidden) projection is needed before the aggregation.
        att = torch.stack([self.att_src, self.att_dst], dim=1)
        alpha = attention_coefficients(x, edge_index, *(self.w1 @ att).unbind(1))
        h = F.elu(attend_linear(x, self.w1, edge_index, alpha))
        return h @ self.w2, alpha

    def decode(self, z: torch.Tensor, edge_index: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """Reconstruction (N, in) through the transposed weights and the encoder's attention."""
        h = F.elu(attend_linear(z, self.w2.t(), edge_index, alpha))
        return h @ self.w1.t()

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z, alpha = self.encode(x, edge_index)
        return z, self.decode(z, edge_index, alpha)
