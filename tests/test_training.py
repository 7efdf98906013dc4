"""STAIG training on a small synthetic tissue: reproducible per seed, and it learns the spatial structure."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import torch

from tissuegraph import gr, metrics
from tissuegraph.cluster import gmm_eee
from tissuegraph.errors import InputError
from tissuegraph.nn import GraphContrastiveEncoder, feature_keep_mask
from tissuegraph.nn import staig as staig_module
from tissuegraph.nn.augment import drop_edges
from tissuegraph.nn.contrastive import dense_neighbor_contrastive_loss, neighbor_contrastive_loss
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
    # on the CPU: bit-exact reproducibility is only promised on a given device
    a, b, c = (_train(layered_tissue, seed, device="cpu") for seed in (0, 0, 1))
    np.testing.assert_array_equal(a.embedding, b.embedding)
    assert not np.allclose(a.embedding, c.embedding)


def test_training_lowers_the_loss_and_separates_the_layers() -> None:
    """Ten genes carry the layers and 200 louder genes only noise. An untrained GCN already averages each spot with
    its neighbours, which is enough on the tissue above; here it mixes the noise genes in as much as the layer genes,
    so only training (neighbours as positives favour the genes that vary smoothly in space) finds the layers."""
    rng = np.random.default_rng(0)
    xs, ys = np.meshgrid(np.arange(30), np.arange(30))
    coords = np.stack([xs.ravel(), ys.ravel()], 1).astype(float)
    layer = (coords[:, 1] // 10).astype(int)
    layer_genes = rng.normal(size=(3, 10))[layer] + rng.normal(size=(900, 10))
    features = np.hstack([layer_genes, rng.normal(scale=2.0, size=(900, 200))]).astype(np.float32)
    adata = ad.AnnData(X=np.abs(features))
    adata.obsm["spatial"] = coords
    gr.spatial_neighbors(adata, n_neighbors=4)  # the square ring: 4 neighbours, no ties
    edges = gr.undirected_edges(adata.obsp["spatial_connectivities"])
    tissue = (features, edges, gr.edge_drop_probabilities(edges, features, 900), layer)
    untrained = _train(tissue, 0, epochs=1, lr=5e-3)
    result = _train(tissue, 0, epochs=100, lr=5e-3)
    assert np.mean(result.losses[-10:]) < np.mean(result.losses[:10])
    before = metrics.ari(layer, gmm_eee(untrained.embedding, 3))
    learned = metrics.ari(layer, gmm_eee(result.embedding, 3))
    assert learned > 0.6 and learned > before + 0.3  # measured: 0.93 after 100 epochs, 0.13 after one


@pytest.mark.parametrize(("denominator", "tolerance"), [("exact", 1e-4), ("sampled", 0.1)])
def test_slice_groups_give_the_dense_reference_loss_restricted_to_each_slice(
    layered_tissue, monkeypatch, denominator: str, tolerance: float
) -> None:
    """The first epoch's loss equals the dense N x N reference with groups, computed on the same two views.

    Restricting each denominator to the anchor's half of the spots roughly halves it, so the loss with groups sits
    about log 2 below the loss without: far more than the tolerance. "sampled" estimates each slice's denominator
    from 64 of its 450 spots, so it gets a tolerance of a few times its relative error (about 1 / sqrt(64) of the
    terms' spread, well under 0.1 at tau = 1), still a small part of that gap.
    """
    groups = (np.arange(900) >= 450).astype(int)
    views: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def recording_loss(p1, p2, edge_index, tau, **kwargs):
        views.append((p1.detach().clone(), p2.detach().clone(), edge_index.clone()))
        return neighbor_contrastive_loss(p1, p2, edge_index, tau, **kwargs)

    monkeypatch.setattr(staig_module, "neighbor_contrastive_loss", recording_loss)
    settings = dict(epochs=3, denominator=denominator, n_negatives=64, device="cpu")
    with_groups = _train(layered_tissue, 0, groups=groups, **settings)
    p1, p2, edge_index = views[0]
    assert len(views) == 3
    reference = float(dense_neighbor_contrastive_loss(p1, p2, edge_index, 1.0, groups=torch.as_tensor(groups)))
    ungrouped_reference = float(dense_neighbor_contrastive_loss(p1, p2, edge_index, 1.0))
    assert ungrouped_reference - reference > 0.4  # the groups matter for this loss
    assert with_groups.losses[0] == pytest.approx(reference, abs=tolerance)

    views.clear()
    without_groups = _train(layered_tissue, 0, **settings)
    torch.testing.assert_close(views[0][0], p1)  # same seed: the same first views
    assert without_groups.losses[0] == pytest.approx(ungrouped_reference, abs=tolerance)
    assert not np.allclose(with_groups.embedding, without_groups.embedding)


def test_drop_edges_keeps_each_edge_with_one_minus_its_drop_probability() -> None:
    n_nodes = 16
    edges = torch.tensor([(i, j) for i in range(n_nodes) for j in (i + 1, i + 3) if j < n_nodes])
    n_edges = len(edges)
    drop_prob = torch.linspace(0.0, 1.0, n_edges)  # from never dropped to always dropped
    generator = torch.Generator().manual_seed(0)
    draws = 4000
    kept = torch.zeros(n_edges)
    for _ in range(draws):
        edge_index = drop_edges(edges, drop_prob, generator)
        assert edge_index.shape[0] == 2 and edge_index.shape[1] % 2 == 0
        # every kept edge comes in both directions, and nothing else comes out
        adjacency = torch.zeros(n_nodes, n_nodes)
        adjacency.index_put_((edge_index[0], edge_index[1]), torch.ones(edge_index.shape[1]), accumulate=True)
        assert torch.equal(adjacency, adjacency.t()) and adjacency.max() <= 1
        kept += adjacency[edges[:, 0], edges[:, 1]]
        assert adjacency.sum() == 2 * adjacency[edges[:, 0], edges[:, 1]].sum()
    frequency = kept / draws
    expected = 1.0 - drop_prob
    # 4.5 binomial standard errors: a chance failure anywhere among the edges is below 1e-3
    bound = 4.5 * torch.sqrt(expected * (1 - expected) / draws)
    assert (torch.abs(frequency - expected) <= bound + 1e-6).all(), (frequency - expected).abs().max()
    assert frequency[0] == 1.0 and frequency[-1] == 0.0  # p = 0: always kept, p = 1: never kept


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


def test_pseudo_labels_give_the_dense_reference_loss_without_same_label_negatives(layered_tissue, monkeypatch) -> None:
    """Image mode's histology pseudo-labels take same-label spots out of each anchor's denominator: the first epoch's
    loss equals the dense reference with those labels (the other view's copy and the neighbours stay positives)."""
    labels = (np.arange(900) // 15) % 20  # 20 labels of 45 spots, as image mode makes them
    views: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def recording_loss(p1, p2, edge_index, tau, **kwargs):
        views.append((p1.detach().clone(), p2.detach().clone(), edge_index.clone()))
        return neighbor_contrastive_loss(p1, p2, edge_index, tau, **kwargs)

    monkeypatch.setattr(staig_module, "neighbor_contrastive_loss", recording_loss)
    labelled = _train(layered_tissue, 0, epochs=1, denominator="exact", pseudo_labels=labels, device="cpu")
    p1, p2, edge_index = views[0]
    reference = float(dense_neighbor_contrastive_loss(p1, p2, edge_index, 1.0, pseudo_labels=torch.as_tensor(labels)))
    unlabelled = float(dense_neighbor_contrastive_loss(p1, p2, edge_index, 1.0))
    assert unlabelled - reference > 0.03  # the labels matter for this loss (0.05 here), far beyond the tolerance
    assert labelled.losses[0] == pytest.approx(reference, abs=1e-4)


def test_a_diverged_run_is_refused_not_clustered(layered_tissue) -> None:
    """A NaN embedding used to reach the mixture and fail there, in scikit-learn's words about missing values."""
    with pytest.raises(InputError, match="training diverged: after 20 epochs at learning rate 1e\\+12"):
        _train(layered_tissue, 0, epochs=20, lr=1e12)
