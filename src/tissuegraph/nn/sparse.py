"""Sparse spot x gene features times a dense weight: the first layer's product at the cost of the non-zeros.

STAIG's features are scaled without centring, so the zeros of the counts stay zeros (Visium: about 8% of the
3000 HVG entries are non-zero). Reading only the non-zeros makes the first layer, the widest product of every
epoch, about 5x cheaper than the dense N x G matrix product, forwards and backwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import sparse


@dataclass(frozen=True)
class SparseRows:
    """A CSR matrix as torch tensors, kept together with its transpose so that both ``X @ W`` (forward) and
    ``X^T @ G`` (the weight's gradient) read only the non-zeros."""

    shape: tuple[int, int]
    indices: torch.Tensor
    offsets: torch.Tensor
    values: torch.Tensor
    t_indices: torch.Tensor
    t_offsets: torch.Tensor
    t_values: torch.Tensor

    @classmethod
    def from_array(cls, features: np.ndarray | sparse.spmatrix, device: torch.device | str = "cpu") -> SparseRows:
        # no sum_duplicates(): it would edit a caller's float32 CSR in place, and the bag sums add repeats anyway
        rows = sparse.csr_matrix(features, dtype=np.float32)
        columns = rows.T.tocsr()

        def tensors(matrix: sparse.csr_matrix) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            return (
                torch.as_tensor(matrix.indices, dtype=torch.long, device=device),
                torch.as_tensor(matrix.indptr[:-1], dtype=torch.long, device=device),
                torch.as_tensor(matrix.data, dtype=torch.float32, device=device),
            )

        return cls((rows.shape[0], rows.shape[1]), *tensors(rows), *tensors(columns))

    def matmul(self, weight: torch.Tensor) -> torch.Tensor:
        """``X @ weight`` for a (n_features, width) weight; differentiable in ``weight``."""
        if weight.shape[0] != self.shape[1]:
            raise ValueError(f"weight has {weight.shape[0]} rows, the features have {self.shape[1]} columns")
        # embedding_bag reads a transposed (strided) weight about 8x slower than a contiguous one
        return _SparseMatmul.apply(weight.contiguous(), self)


def _bag_product(
    indices: torch.Tensor, offsets: torch.Tensor, values: torch.Tensor, dense: torch.Tensor
) -> torch.Tensor:
    # embedding_bag sums value-weighted rows of ``dense`` per bag: one CSR row times a dense matrix, per bag
    return F.embedding_bag(indices, dense, offsets, mode="sum", per_sample_weights=values)


class _SparseMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weight: torch.Tensor, rows: SparseRows) -> torch.Tensor:
        ctx.rows = rows
        return _bag_product(rows.indices, rows.offsets, rows.values, weight)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        rows = ctx.rows
        return _bag_product(rows.t_indices, rows.t_offsets, rows.t_values, grad.contiguous()), None
