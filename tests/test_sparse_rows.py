"""The sparse first-layer product: the same values and weight gradients as the dense product."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import sparse

from tissuegraph.nn import GraphContrastiveEncoder
from tissuegraph.nn.sparse import SparseRows


def _sparse_features(rng: np.random.Generator) -> np.ndarray:
    features = rng.random((40, 25)).astype(np.float32)
    features[features < 0.8] = 0.0
    features[3] = 0.0  # a spot without counts
    features[:, 7] = 0.0  # a gene never seen
    return features


def test_matmul_and_weight_gradient_equal_the_dense_product() -> None:
    rng = np.random.default_rng(0)
    features = _sparse_features(rng)
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(25, 6, generator=generator, requires_grad=True)
    upstream = torch.randn(40, 6, generator=generator)
    SparseRows.from_array(sparse.csr_matrix(features)).matmul(weight).backward(upstream)
    sparse_grad = weight.grad.clone()
    weight.grad = None
    dense = torch.as_tensor(features) @ weight
    dense.backward(upstream)
    torch.testing.assert_close(SparseRows.from_array(features).matmul(weight), dense)
    torch.testing.assert_close(sparse_grad, weight.grad)
    assert torch.equal(sparse_grad[7], torch.zeros(6))


def test_all_zero_features_give_zeros_and_a_wrong_width_is_refused() -> None:
    generator = torch.Generator().manual_seed(0)
    rows = SparseRows.from_array(np.zeros((5, 4), dtype=np.float32))
    assert torch.equal(rows.matmul(torch.randn(4, 3, generator=generator)), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="3 rows, the features have 4 columns"):
        rows.matmul(torch.randn(3, 3, generator=generator))


def test_encoder_reads_sparse_rows_like_the_dense_matrix() -> None:
    rng = np.random.default_rng(1)
    features = _sparse_features(rng)
    edge_index = torch.tensor([[0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 0]])
    edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)
    keep = torch.ones(25)
    keep[[2, 11]] = 0.0
    torch.manual_seed(0)
    model = GraphContrastiveEncoder(25, (16,), 8)
    _, from_sparse = model(SparseRows.from_array(features), edge_index, keep)
    from_sparse.square().sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    _, from_dense = model(torch.as_tensor(features), edge_index, keep)
    from_dense.square().sum().backward()
    torch.testing.assert_close(from_sparse, from_dense)
    for grad, param in zip(grads, model.parameters(), strict=True):
        torch.testing.assert_close(grad, param.grad)
