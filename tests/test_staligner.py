"""STAligner: the attention autoencoder's structure, MNN triplets, and training that aligns two shifted slices."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.neighbors import NearestNeighbors
from torch.utils._python_dispatch import TorchDispatchMode

from tissuegraph.nn.attention_autoencoder import GraphAttentionAutoencoder, aggregate, attention_coefficients
from tissuegraph.nn.staligner import train_staligner
from tissuegraph.nn.triplet import mnn_triplets, slice_pairs


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These problems are tiny: one thread is as fast, and immune to a busy machine's oversubscription stalls."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _knn_edges(coords: np.ndarray, k: int) -> np.ndarray:
    """(E, 2) source -> destination edges from each spot's k nearest spots (itself included: a self loop)."""
    idx = NearestNeighbors(n_neighbors=k).fit(coords).kneighbors(coords, return_distance=False)
    return np.stack([idx.ravel(), np.repeat(np.arange(len(coords)), k)], axis=1)


# --- the autoencoder ---------------------------------------------------------------------------------------------


def test_attention_sums_to_one_over_incoming_edges_with_or_without_self_loops() -> None:
    torch.manual_seed(0)
    h = torch.randn(6, 4)
    att_src, att_dst = torch.randn(4), torch.randn(4)
    # Node 5 has no incoming edge; node 0 has a self loop, the others do not.
    edge_index = torch.tensor([[0, 1, 2, 0, 3, 4, 1, 2], [0, 0, 0, 1, 1, 2, 3, 4]])
    alpha = attention_coefficients(h, edge_index, att_src, att_dst)
    assert alpha.shape == (edge_index.shape[1],) and (alpha > 0).all()
    totals = torch.zeros(6).index_add_(0, edge_index[1], alpha)
    torch.testing.assert_close(totals[:5], torch.ones(5))
    assert totals[5] == 0

    model = GraphAttentionAutoencoder(3, 8, 2)
    z, reconstruction = model(torch.randn(6, 3), edge_index)
    assert z.shape == (6, 2) and reconstruction.shape == (6, 3) and torch.isfinite(reconstruction).all()


def test_decoder_has_no_weights_of_its_own_and_trains_the_encoder_weights() -> None:
    model = GraphAttentionAutoencoder(20, 16, 4)
    assert sum(p.numel() for p in model.parameters()) == 20 * 16 + 16 * 4 + 2 * 16
    x = torch.randn(10, 20)
    edge_index = torch.as_tensor(_knn_edges(np.random.default_rng(0).normal(size=(10, 2)), 3).T)
    z, alpha = model.encode(x, edge_index)
    # Cut the encoder off: any gradient that reaches W1 and W2 now comes through the decoder's tied weights.
    model.decode(z.detach(), edge_index, alpha.detach()).square().sum().backward()
    assert model.w1.grad is not None and model.w1.grad.abs().sum() > 0
    assert model.w2.grad is not None and model.w2.grad.abs().sum() > 0
    assert model.att_src.grad is None and model.att_dst.grad is None


@pytest.mark.parametrize("in_dim", [5, 40])
def test_attending_on_the_narrow_side_is_the_textbook_model(in_dim: int) -> None:
    """Projection first, then attention and aggregation (as the method is written) gives the same output."""
    torch.manual_seed(0)
    model = GraphAttentionAutoencoder(in_dim, 16, 4).double()
    x = torch.randn(30, in_dim, dtype=torch.float64)
    edge_index = torch.as_tensor(_knn_edges(np.random.default_rng(0).normal(size=(30, 2)), 5).T)
    h = x @ model.w1
    alpha = attention_coefficients(h, edge_index, model.att_src, model.att_dst)
    z = F.elu(aggregate(h, edge_index, alpha)) @ model.w2
    h = F.elu(aggregate(z @ model.w2.t(), edge_index, alpha))
    expected = h @ model.w1.t()
    z_model, reconstruction = model(x, edge_index)
    torch.testing.assert_close(z_model, z)
    torch.testing.assert_close(reconstruction, expected)


class _LargestTensor(TorchDispatchMode):
    """Records the largest tensor any torch operation produces."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_forward_and_backward_stay_on_the_edge_list() -> None:
    n, in_dim, hidden = 2000, 8, 16
    coords = np.random.default_rng(0).uniform(size=(n, 2))
    edge_index = torch.as_tensor(_knn_edges(coords, 7).T)
    model = GraphAttentionAutoencoder(in_dim, hidden, 4)
    x = torch.randn(n, in_dim)
    with _LargestTensor() as probe:
        _, reconstruction = model(x, edge_index)
        F.mse_loss(reconstruction, x).backward()
    # The largest legitimate tensors are per-edge messages, E x hidden; N x N would be 50 times that.
    assert probe.largest <= edge_index.shape[1] * hidden < n * n // 10


# --- triplets -----------------------------------------------------------------------------------------------------


def test_slice_pairs_modes_and_errors() -> None:
    assert slice_pairs(4) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    assert slice_pairs(4, "star", reference=2) == [(2, 0), (2, 1), (2, 3)]
    assert slice_pairs(4, "chain") == [(0, 1), (1, 2), (2, 3)]
    assert slice_pairs(1) == slice_pairs(1, "star") == slice_pairs(1, "chain") == []
    with pytest.raises(ValueError, match="mode"):
        slice_pairs(3, "ring")
    for bad in (3, -1):
        with pytest.raises(ValueError, match="reference"):
            slice_pairs(3, "star", reference=bad)
        assert slice_pairs(3, "all", reference=bad) == slice_pairs(3)  # the reference only matters to a star
    with pytest.raises(ValueError, match="n_slices must be at least 1"):
        slice_pairs(0)


def test_each_anchors_positive_is_its_twin_in_the_other_slice() -> None:
    rng = np.random.default_rng(0)
    points = rng.normal(size=(20, 5))
    # Slice 1 holds the same spots, slightly jittered: each spot's twin is its nearest spot of the other slice.
    # Slices are interleaved in the global order to check the local -> global conversion.
    order = rng.permutation(40)
    embedding = np.empty((40, 5))
    codes = np.empty(40, dtype=int)
    embedding[order[:20]], codes[order[:20]] = points, 0
    embedding[order[20:]], codes[order[20:]] = points + rng.normal(scale=1e-3, size=points.shape), 1
    twin = np.empty(40, dtype=np.int64)
    twin[order[:20]], twin[order[20:]] = order[20:], order[:20]

    triplets = mnn_triplets(embedding, codes, [(0, 1)], k=3, generator=np.random.default_rng(1))
    assert triplets.dtype == np.int64 and triplets.shape == (40, 3)
    assert sorted(triplets[:, 0]) == list(range(40))  # every spot is an anchor once: both directions
    np.testing.assert_array_equal(triplets[:, 1], twin[triplets[:, 0]])
    np.testing.assert_array_equal(codes[triplets[:, 2]], codes[triplets[:, 0]])


def test_negatives_come_from_the_anchors_slice_and_small_slices_are_fine() -> None:
    rng = np.random.default_rng(2)
    sizes = (60, 5, 40)  # the 5-spot slice is far below k
    codes = np.repeat(np.arange(3), sizes)
    embedding = rng.normal(size=(len(codes), 8)) + 0.3 * codes[:, None]
    triplets = mnn_triplets(embedding, codes, slice_pairs(3), k=50, generator=rng)
    assert len(triplets) > 0
    assert triplets.min() >= 0 and triplets.max() < len(codes)
    np.testing.assert_array_equal(codes[triplets[:, 2]], codes[triplets[:, 0]])
    assert (codes[triplets[:, 1]] != codes[triplets[:, 0]]).all()
    assert 1 in codes[triplets[:, 0]] and 1 in codes[triplets[:, 1]]
    assert mnn_triplets(embedding, codes, [], k=50, generator=rng).shape == (0, 3)
    assert mnn_triplets(embedding, codes, [(0, 7)], k=50, generator=rng).shape == (0, 3)  # slice 7 has no spot


# --- training -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shifted_slices():
    """Two 10 x 15 slices with the same three bands of spots; slice 1 carries a batch offset on all 20 features.

    Spot i of slice 0 and spot 150 + i of slice 1 are twins: same place, same band, independent noise.
    """
    rng = np.random.default_rng(0)
    xs, ys = np.meshgrid(np.arange(10), np.arange(15))
    coords = np.stack([xs.ravel(), ys.ravel()], 1).astype(float)
    band = (coords[:, 1] // 5).astype(int)
    base = rng.normal(scale=2.0, size=(3, 20))[band]
    offset = rng.normal(scale=3.0, size=20)
    features = np.concatenate(
        [base + rng.normal(scale=0.5, size=base.shape), base + offset + rng.normal(scale=0.5, size=base.shape)]
    ).astype(np.float32)
    edges = _knn_edges(coords, 7)
    return features, np.concatenate([edges, edges + 150]), np.repeat([0, 1], 150)


def _train(data, **kwargs):
    features, edges, codes = data
    settings = dict(hidden_dim=64, out_dim=10, pretrain_epochs=100, triplet_epochs=100, mnn_every=20, mnn_k=10)
    settings.update(lr=5e-3, **kwargs)
    return train_staligner(features, edges, codes, **settings)


def _twin_distance(embedding: np.ndarray) -> float:
    """Mean distance between twins over the mean distance between random cross-slice pairs (scale-free)."""
    shuffled = embedding[150:][np.random.default_rng(1).permutation(150)]
    twins = np.linalg.norm(embedding[:150] - embedding[150:], axis=1).mean()
    return float(twins / np.linalg.norm(embedding[:150] - shuffled, axis=1).mean())


def test_same_seed_same_embedding_other_seed_differs(shifted_slices) -> None:
    # on the CPU: a seed fixes the result bit for bit only on a given device
    short = dict(pretrain_epochs=20, triplet_epochs=20, mnn_every=10, device="cpu")
    a = _train(shifted_slices, **short)
    b = _train(shifted_slices, **short)
    c = _train(shifted_slices, **short, seed=1)
    np.testing.assert_array_equal(a.embedding, b.embedding)
    assert a.losses == b.losses and a.n_triplets == b.n_triplets
    assert not np.allclose(a.embedding, c.embedding)


def test_weights_start_at_the_published_scale() -> None:
    """STAGATE's Glorot normal with gain 1.414; on fewer axes, W1 starts at the genes x hidden matrix's scale."""
    torch.manual_seed(0)
    on_axes = GraphAttentionAutoencoder(50, 512, 30, init_fan_in=3000)
    genes = GraphAttentionAutoencoder(3000, 512, 30)
    for model in (on_axes, genes):
        assert model.w1.std().item() == pytest.approx(1.414 * (2 / 3512) ** 0.5, rel=0.02)
        assert model.w2.std().item() == pytest.approx(1.414 * (2 / 542) ** 0.5, rel=0.05)
        assert model.att_src.std().item() == pytest.approx(1.414 / 512**0.5, rel=0.1)
    assert GraphAttentionAutoencoder(50, 512, 30).w1.std().item() == pytest.approx(1.414 * (2 / 562) ** 0.5, rel=0.05)


def test_pretraining_reconstructs_and_triplets_bring_the_twins_together(shifted_slices) -> None:
    seen: list[int] = []
    pretrained = _train(shifted_slices, triplet_epochs=0, device="cpu")  # compared bit for bit below: one device
    aligned = _train(shifted_slices, device="cpu", on_epoch=lambda epoch, _: seen.append(epoch))
    assert pretrained.embedding.dtype == np.float32 and pretrained.embedding.shape == (300, 10)
    assert pretrained.n_triplets == [] and len(pretrained.losses) == 100
    assert np.mean(pretrained.losses[-5:]) < 0.2 * np.mean(pretrained.losses[:5])
    assert aligned.losses[:100] == pretrained.losses  # same seed: phase 1 is the same run
    assert seen == list(range(200)) and len(aligned.n_triplets) == 5 and min(aligned.n_triplets) > 0
    assert _twin_distance(aligned.embedding) < 0.7 * _twin_distance(pretrained.embedding)  # 0.65 at the published init


def test_a_single_slice_trains_on_reconstruction_only(shifted_slices) -> None:
    features, edges, _ = shifted_slices

    def fit(**settings):
        one_slice = (features[:150], edges[: len(edges) // 2], np.zeros(150, dtype=int))
        return train_staligner(*one_slice, **{"hidden_dim": 16, "out_dim": 4, "device": "cpu", **settings})

    result = fit(pretrain_epochs=5, triplet_epochs=5, mnn_every=2)
    assert result.n_triplets == [] and len(result.losses) == 10 and np.isfinite(result.embedding).all()
    quarter = fit(pretrain_epochs=1, triplet_epochs=0, reconstruction_weight=0.25)
    assert quarter.losses[0] == pytest.approx(0.25 * result.losses[0], rel=1e-6)  # same start, loss scaled
    with pytest.raises(ValueError, match="mode"):
        train_staligner(features, edges, np.repeat([0, 1], 150), pair_mode="ring", pretrain_epochs=1)
    with pytest.raises(ValueError, match=r"grad_clip must be None \(no clipping\) or positive \(got 0\)"):
        fit(pretrain_epochs=1, triplet_epochs=0, grad_clip=0)
    # refused before any epoch: mnn_k=0 used to fail only at the first MNN search, hidden_dim=0 as a division
    # by zero, and a negative phase shifted the MNN schedule so that no triplet was ever mined
    for bad in ({"mnn_k": 0}, {"hidden_dim": 0}, {"out_dim": 0}, {"mnn_every": 0}, {"pretrain_epochs": -5}):
        ((name, value),) = bad.items()
        least = 0 if name == "pretrain_epochs" else 1
        with pytest.raises(ValueError, match=rf"{name} must be at least {least} \(got {value}\)"):
            fit(**{"triplet_epochs": 1, **bad})
