"""STAIG training on a small synthetic tissue: reproducible per seed, and it learns the spatial structure."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import torch

from tissuegraph import gr, metrics
from tissuegraph.cluster import gmm_eee
from tissuegraph.nn import GraphContrastiveEncoder, feature_keep_mask
from tissuegraph.nn.staig import train_staig


@pytest.fixture(scope="module")
def layered_tissue():
    """A 30 x 30 grid with three horizontal layers whose genes differ, plus heavy noise."""
    rng = np.random.default_rng(0)
    xs, ys = np.meshgrid(np.arange(30), np.arange(30))
    coords = np.stack([xs.ravel(), ys.ravel()], 1).astype(float)
    layer = (coords[:, 1] // 10).astype(int)
    profiles = rng.normal(size=(3, 40))
    features = (profiles[layer] + rng.normal(scale=2.5, size=(900, 40))).astype(np.float32)
    adata = ad.AnnData(X=np.abs(features))
    adata.obsm["spatial"] = coords
    gr.spatial_neighbors(adata, n_neighbors=6)
    edges = gr.undirected_edges(adata.obsp["spatial_connectivities"])
    prob = gr.edge_drop_probabilities(edges, features, 900)
    return features, edges, prob, layer


def _train(tissue, seed: int, epochs: int = 60, **kwargs):
    features, edges, prob, _ = tissue
    return train_staig(
        features, edges, prob, tau=1.0, epochs=epochs, feature_mask_rates=(0.05, 0.1), seed=seed, **kwargs
    )


def test_same_seed_same_embedding_other_seed_differs(layered_tissue) -> None:
    a, b, c = _train(layered_tissue, 0), _train(layered_tissue, 0), _train(layered_tissue, 1)
    np.testing.assert_array_equal(a.embedding, b.embedding)
    assert not np.allclose(a.embedding, c.embedding)


def test_training_lowers_the_loss_and_separates_the_layers(layered_tissue) -> None:
    result = _train(layered_tissue, 0, epochs=100, lr=5e-3)
    assert np.mean(result.losses[-10:]) < np.mean(result.losses[:10])
    noisy_only = metrics.ari(layered_tissue[3], gmm_eee(layered_tissue[0], 3))
    learned = metrics.ari(layered_tissue[3], gmm_eee(result.embedding, 3))
    assert learned > 0.8 and learned > noisy_only


def test_slice_groups_and_sampled_negatives_run_together(layered_tissue) -> None:
    groups = (np.arange(900) >= 450).astype(int)
    result = _train(layered_tissue, 0, epochs=5, groups=groups, denominator="sampled", n_negatives=64)
    assert result.embedding.shape == (900, 64) and np.isfinite(result.embedding).all()


def test_feature_keep_mask_equals_zeroing_input_columns() -> None:
    # masking the first layer's weight rows must give exactly the output and gradients of zeroed input columns
    torch.manual_seed(0)
    x = torch.rand(50, 30)
    edge_index = torch.tensor([[0, 1, 2, 3, 4], [1, 2, 3, 4, 0]])
    edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)
    keep = feature_keep_mask(30, 0.3, torch.Generator().manual_seed(1))
    assert 0 < keep.sum() < 30
    model = GraphContrastiveEncoder(30, (16,), 8)
    _, by_weights = model(x, edge_index, keep)
    by_weights.square().sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    _, by_input = model(x * keep, edge_index)
    by_input.square().sum().backward()
    assert torch.equal(by_weights, by_input)
    for grad, param in zip(grads, model.parameters(), strict=True):
        assert torch.equal(grad, param.grad)
