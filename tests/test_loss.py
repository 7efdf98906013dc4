"""The tiled neighbour contrastive loss against a dense N x N reference, and its sampled estimate."""

from __future__ import annotations

import pytest
import torch

from tissuegraph.nn import contrastive, dense_neighbor_contrastive_loss, neighbor_contrastive_loss
from tissuegraph.nn.contrastive import NeighbourExpSums, same_label_blocks


def _problem(n: int = 200, dim: int = 16, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, dim, generator=gen, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(n, dim, generator=gen, dtype=torch.float64, requires_grad=True)
    pairs = torch.randint(0, n, (2, 4 * n), generator=gen)
    pairs = torch.unique(pairs[:, pairs[0] < pairs[1]], dim=1)
    return z1, z2, torch.cat([pairs, pairs.flip(0)], dim=1)


@pytest.mark.parametrize("tau", [0.5, 35.0])
@pytest.mark.parametrize("tile", [7, 64, 1000])
@pytest.mark.parametrize("edge_chunk", [13, contrastive.EDGE_CHUNK])
def test_tiled_loss_and_gradients_equal_dense_reference(tau: float, tile: int, edge_chunk: int, monkeypatch) -> None:
    monkeypatch.setattr(contrastive, "EDGE_CHUNK", edge_chunk)  # 13: the positives span many edge chunks
    z1, z2, edges = _problem()
    dense = dense_neighbor_contrastive_loss(z1, z2, edges, tau)
    dense_grads = torch.autograd.grad(dense, [z1, z2])
    tiled = neighbor_contrastive_loss(z1, z2, edges, tau, tile_size=tile)
    tiled_grads = torch.autograd.grad(tiled, [z1, z2])
    assert tiled.item() == pytest.approx(dense.item(), rel=1e-10)
    for a, b in zip(tiled_grads, dense_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-12)


def test_neighbour_sums_backward_passes_gradcheck_across_chunks() -> None:
    z1, z2, edges = _problem(n=30, dim=4)
    a, b = (torch.nn.functional.normalize(z, dim=1).detach().requires_grad_() for z in (z1, z2))
    assert torch.autograd.gradcheck(
        lambda a, b: NeighbourExpSums.apply(a, b, edges[0], edges[1], 1 / 3, 5), (a, b), eps=1e-6, atol=1e-8
    )


def test_slice_restricted_denominator_equals_dense_reference() -> None:
    z1, z2, edges = _problem()
    slice_of = (torch.arange(200) >= 70).long()
    edges = edges[:, slice_of[edges[0]] == slice_of[edges[1]]]
    dense = dense_neighbor_contrastive_loss(z1, z2, edges, 2.0, groups=slice_of)
    groups = [torch.nonzero(slice_of == s).ravel() for s in (0, 1)]
    tiled = neighbor_contrastive_loss(z1, z2, edges, 2.0, groups=groups, tile_size=32)
    assert tiled.item() == pytest.approx(dense.item(), rel=1e-10)
    torch.testing.assert_close(torch.autograd.grad(tiled, [z1])[0], torch.autograd.grad(dense, [z1])[0])
    # restricting the denominator changes the loss: the test would notice a silently ignored restriction
    assert abs(dense.item() - dense_neighbor_contrastive_loss(z1, z2, edges, 2.0).item()) > 1e-3


def test_sampled_denominator_is_close_to_exact_and_unbiased() -> None:
    z1, z2, edges = _problem(n=2000, dim=8)
    exact = neighbor_contrastive_loss(z1, z2, edges, 1.0).item()
    gen = torch.Generator().manual_seed(1)
    estimates = [
        neighbor_contrastive_loss(z1, z2, edges, 1.0, denominator="sampled", n_negatives=256, generator=gen).item()
        for _ in range(20)
    ]
    mean = sum(estimates) / len(estimates)
    assert mean == pytest.approx(exact, rel=2e-3)
    assert max(estimates) != min(estimates)  # really sampled


def test_loss_is_float32_safe_with_small_tau() -> None:
    z1, z2, edges = _problem()
    loss = neighbor_contrastive_loss(z1.float(), z2.float(), edges, 0.05)
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(dense_neighbor_contrastive_loss(z1, z2, edges, 0.05).item(), rel=1e-4)


@pytest.mark.parametrize("tau", [10.0, 30.0])
def test_moment_expansion_matches_dense_reference_for_soft_temperatures(tau: float) -> None:
    z1, z2, edges = _problem()
    dense = dense_neighbor_contrastive_loss(z1, z2, edges, tau)
    moments = neighbor_contrastive_loss(z1, z2, edges, tau, denominator="moments")
    assert moments.item() == pytest.approx(dense.item(), rel=1e-6)
    dense_grad = torch.autograd.grad(dense, [z1])[0]
    moment_grad = torch.autograd.grad(moments, [z1])[0]
    assert (moment_grad - dense_grad).abs().max() <= 1e-4 * dense_grad.abs().max()


def test_moment_expansion_respects_slices_and_refuses_sharp_temperatures() -> None:
    z1, z2, edges = _problem()
    slice_of = (torch.arange(200) >= 70).long()
    edges = edges[:, slice_of[edges[0]] == slice_of[edges[1]]]
    groups = [torch.nonzero(slice_of == s).ravel() for s in (0, 1)]
    dense = dense_neighbor_contrastive_loss(z1, z2, edges, 20.0, groups=slice_of)
    moments = neighbor_contrastive_loss(z1, z2, edges, 20.0, groups=groups, denominator="moments")
    assert moments.item() == pytest.approx(dense.item(), rel=1e-6)
    with pytest.raises(ValueError, match="tau >= 10"):
        neighbor_contrastive_loss(z1, z2, edges, 2.0, denominator="moments")


def test_same_label_blocks_hold_each_label_once_padded_to_a_power_of_two() -> None:
    labels = torch.tensor([2, 0, 2, 1, 0, 2, 5])
    blocks = same_label_blocks(labels)
    rows = sorted(tuple(sorted(i for i in row if i >= 0)) for block in blocks for row in block.tolist())
    assert rows == [(0, 2, 5), (1, 4), (3,), (6,)]
    assert sorted(block.shape[1] for block in blocks) == [1, 2, 4]


@pytest.mark.parametrize(
    ("tau", "denominator", "tile"), [(0.7, "exact", 16), (20.0, "exact", 16), (20.0, "moments", 16), (20.0, "exact", 2)]
)
def test_pseudo_label_negatives_removed_as_in_dense_reference(tau: float, denominator: str, tile: int) -> None:
    """Image mode: same-label nodes leave the denominator, per slice, without any N x N mask."""
    z1, z2, edges = _problem()
    slice_of = (torch.arange(200) >= 70).long()
    edges = edges[:, slice_of[edges[0]] == slice_of[edges[1]]]
    pseudo = torch.randint(0, 9, (200,), generator=torch.Generator().manual_seed(1)) + 100 * slice_of
    dense = dense_neighbor_contrastive_loss(z1, z2, edges, tau, groups=slice_of, pseudo_labels=pseudo)
    groups = [torch.nonzero(slice_of == s).ravel() for s in (0, 1)]
    tiled = neighbor_contrastive_loss(
        z1,
        z2,
        edges,
        tau,
        groups=groups,
        denominator=denominator,
        tile_size=tile,  # tile 2: same-label blocks are summed one anchor row at a time
        label_blocks=same_label_blocks(pseudo),
    )
    rel = 1e-10 if denominator == "exact" else 1e-5
    assert tiled.item() == pytest.approx(dense.item(), rel=rel)
    torch.testing.assert_close(
        torch.autograd.grad(tiled, [z1])[0], torch.autograd.grad(dense, [z1])[0], rtol=rel * 100, atol=1e-9
    )
    without = dense_neighbor_contrastive_loss(z1, z2, edges, tau, groups=slice_of)
    assert abs(dense.item() - without.item()) > 1e-3  # the exclusion really changes the loss


def test_sampled_denominator_stays_positive_and_close_at_sharp_temperatures() -> None:
    """The anchor's own terms are not sampled: an estimate that went negative (this loss came out at -32) is a sum
    of positive terms, close to the exact loss (the log of an estimate runs a little low at sharp tau)."""
    z1, noise, edges = _problem(n=2000, dim=8)
    z2 = z1 + 0.05 * noise  # two views of one embedding: the own copy dominates each denominator
    reference = dense_neighbor_contrastive_loss(z1, z2, edges, 0.05).item()
    gen = torch.Generator().manual_seed(1)
    for _ in range(5):
        estimate = neighbor_contrastive_loss(
            z1.float(), z2.float(), edges, 0.05, denominator="sampled", n_negatives=256, generator=gen
        ).item()
        assert estimate == pytest.approx(reference, rel=0.15)


def test_sampled_denominator_never_counts_the_anchors_pseudo_label_at_sharp_temperatures() -> None:
    """Image mode at tau 0.1: subtracting the exact same-label sums from a sampled estimate clamped most anchors at
    their own copy (mean loss 1.33 against 1.05 exact); the estimate now leaves sampled same-label nodes out. One
    slice no larger than the sample takes the exact sum, the other is sampled."""
    gen = torch.Generator().manual_seed(0)
    n = 1500
    slice_of = (torch.arange(n) >= 200).long()
    labels = torch.randint(0, 15, (n,), generator=gen) + 15 * slice_of
    centres = torch.randn(30, 16, generator=gen, dtype=torch.float64)
    z1 = centres[labels] + 0.2 * torch.randn(n, 16, generator=gen, dtype=torch.float64)  # histology-like groups
    z2 = z1 + 0.2 * torch.randn(n, 16, generator=gen, dtype=torch.float64)
    pairs = torch.randint(0, n, (2, 4 * n), generator=gen)
    pairs = torch.unique(pairs[:, (pairs[0] < pairs[1]) & (slice_of[pairs[0]] == slice_of[pairs[1]])], dim=1)
    edges = torch.cat([pairs, pairs.flip(0)], dim=1)
    reference = dense_neighbor_contrastive_loss(z1, z2, edges, 0.1, groups=slice_of, pseudo_labels=labels).item()
    groups = [torch.nonzero(slice_of == s).ravel() for s in (0, 1)]
    draw = torch.Generator().manual_seed(3)
    estimates = [
        neighbor_contrastive_loss(
            z1,
            z2,
            edges,
            0.1,
            groups=groups,
            denominator="sampled",
            n_negatives=256,
            generator=draw,
            label_blocks=same_label_blocks(labels),
        ).item()
        for _ in range(10)
    ]
    assert sum(estimates) / len(estimates) == pytest.approx(reference, rel=0.03)


def test_exact_denominator_leaves_the_self_pair_out_without_cancellation() -> None:
    """At tau 0.02 the self term is e^50 times most others: subtracting it after summing left float32 noise."""
    z1, z2, edges = _problem(n=300, dim=8)
    reference = dense_neighbor_contrastive_loss(z1, z2, edges, 0.02).item()
    assert neighbor_contrastive_loss(z1.float(), z2.float(), edges, 0.02).item() == pytest.approx(reference, rel=1e-5)


@pytest.mark.parametrize(("tau", "denominator"), [(0.5, "exact"), (0.5, "sampled"), (20.0, "moments")])
def test_an_all_zero_output_row_is_scored_as_in_the_dense_reference(tau: float, denominator: str) -> None:
    """A zero row normalises to zero: its self term is exp(-1 / tau), not the 1 of a unit row."""
    z1, z2, edges = _problem()
    with torch.no_grad():
        z1[3] = 0.0
    dense = dense_neighbor_contrastive_loss(z1, z2, edges, tau).item()
    loss = neighbor_contrastive_loss(z1, z2, edges, tau, denominator=denominator, n_negatives=1000).item()
    assert loss == pytest.approx(dense, rel=1e-10 if denominator != "moments" else 1e-6)


def test_one_sampled_negative_is_refused() -> None:
    """The one sampled node, as an anchor, has no other sampled node left: its estimate was inf * 0 = NaN."""
    z1, z2, edges = _problem()
    with pytest.raises(ValueError, match=r"needs n_negatives >= 2 \(got 1\)"):
        neighbor_contrastive_loss(z1, z2, edges, 0.5, denominator="sampled", n_negatives=1)
    two = neighbor_contrastive_loss(z1, z2, edges, 0.5, denominator="sampled", n_negatives=2)
    assert torch.isfinite(two)


def test_dense_reference_builds_its_masks_on_the_inputs_device() -> None:
    z = torch.randn(5, 4, device="meta")  # stands in for CUDA: mixing devices raises the same way
    edges = torch.tensor([[0, 1], [1, 0]], device="meta")
    assert dense_neighbor_contrastive_loss(z, z, edges, 1.0).device.type == "meta"
