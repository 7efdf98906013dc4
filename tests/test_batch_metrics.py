"""Batch-mixing scores (iLISI, batch KL, batch ASW) on toy embeddings whose mixing is known, and per-slice ARI/NMI."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from sklearn import metrics as sk_metrics

from tissuegraph import metrics
from tissuegraph.errors import InputError
from tissuegraph.metrics import batch as batch_module


@pytest.fixture(scope="module")
def toy():
    """The same 300 points once per batch (perfectly mixed), and the copy moved far away (fully separated)."""
    points = np.random.default_rng(0).normal(size=(300, 5))
    batches = np.repeat(["a", "b"], 300)
    mixed = np.vstack([points, points])
    separated = np.vstack([points, points + 100.0])
    return mixed, separated, batches


def test_ilisi_counts_batches_present_nearby(toy) -> None:
    _, separated, batches = toy
    rng = np.random.default_rng(4)
    mixed = rng.normal(size=(600, 5))  # both batches drawn from one cloud (exact twins would over-weight each other)
    assert metrics.median_ilisi(mixed, batches) == pytest.approx(2.0, abs=0.15)
    assert metrics.median_ilisi(separated, batches) == pytest.approx(1.0, abs=1e-6)
    scores = metrics.ilisi(mixed, batches, perplexity=10)
    assert scores.shape == (600,) and np.all(scores >= 1 - 1e-9) and np.all(scores <= 2 + 1e-9)
    # three batches evenly spread over the same cloud: close to 3
    cloud = np.random.default_rng(1).normal(size=(900, 3))
    three = np.tile(["a", "b", "c"], 300)
    assert metrics.median_ilisi(cloud, three) > 2.6


def test_ilisi_one_batch_and_bad_input() -> None:
    x = np.random.default_rng(2).normal(size=(20, 2))
    np.testing.assert_array_equal(metrics.ilisi(x, np.zeros(20)), np.ones(20))
    with pytest.raises(InputError, match="one per spot"):
        metrics.ilisi(x, np.zeros(19))
    with pytest.raises(InputError, match="perplexity"):
        metrics.ilisi(x, np.arange(20) % 2, perplexity=0)


def test_batch_kl_zero_when_mixed_large_when_separated(toy) -> None:
    mixed, separated, batches = toy
    assert metrics.batch_kl(mixed, batches) < 0.01
    # every neighbourhood holds one batch only: KL = log2(2) = 1 bit against the 50/50 global mix
    assert metrics.batch_kl(separated, batches) == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(InputError, match="one batch"):
        metrics.batch_kl(mixed, np.zeros(600))


def test_batch_kl_of_a_partly_mixed_embedding_is_the_separated_share() -> None:
    """200 spots per batch at the same places (mixed) plus 100 spots per batch alone in their own far cluster.

    As published, a spot's neighbourhood is itself and its nearest spots, 5 per batch (10 here): a spot of a lone
    cluster sees only its own batch, KL = 1 bit against the 50/50 global mix; a shared spot sees its twin of the
    other batch at distance 0, then twins in pairs, KL 0. A third of the spots are lone, so the bootstrap mean is
    close to 1/3, strictly between the two extremes.
    """
    rng = np.random.default_rng(3)
    shared = rng.normal(size=(200, 5))
    x = np.vstack([shared, rng.normal(size=(100, 5)) + 30.0, shared, rng.normal(size=(100, 5)) - 30.0])
    batches = np.repeat(["a", "b"], 300)
    seven = metrics.batch_kl(x, batches, seed=7)
    eight = metrics.batch_kl(x, batches, seed=8)
    assert 0.0 < seven < 1.0 and 0.0 < eight < 1.0
    assert seven == pytest.approx(1 / 3, abs=0.02)
    # the seed picks the drawn spots: another seed gives another (close) estimate
    assert seven != eight and abs(seven - eight) < 0.02


def test_batch_kl_looks_at_the_spot_itself_and_5_neighbours_per_batch() -> None:
    """Pairs of tight 6-spot clusters, one per batch, the pairs far apart. With k = 10 (5 per batch, the spot itself
    included) a spot sees its own 6 and 4 of the other cluster: KL = 0.6 log2(1.2) + 0.4 log2(0.8) bits. Left out,
    or with 100 neighbours, the share would be other; n_neighbors=4 keeps a spot inside its own cluster: 1 bit."""
    rng = np.random.default_rng(6)
    centres = np.repeat(np.arange(40)[:, None] * 100.0, 5, axis=1)
    own = np.repeat(centres, 6, axis=0) + rng.normal(scale=0.01, size=(240, 5))
    other = np.repeat(centres + 1.0, 6, axis=0) + rng.normal(scale=0.01, size=(240, 5))
    x, batches = np.vstack([own, other]), np.repeat(["a", "b"], 240)
    expected = 0.6 * np.log2(1.2) + 0.4 * np.log2(0.8)
    assert metrics.batch_kl(x, batches) == pytest.approx(expected, abs=1e-9)
    assert metrics.batch_kl(x, batches, n_neighbors=4) == pytest.approx(1.0, abs=1e-9)


def test_batch_asw_one_when_mixed_zero_when_separated(toy) -> None:
    mixed, separated, batches = toy
    assert metrics.batch_asw(mixed, batches) > 0.95
    assert metrics.batch_asw(separated, batches) < 0.05
    # within labels: two domains far apart, each mixed across batches, still scores as mixed
    domains = np.tile(np.repeat(["d1", "d2"], 150), 2)
    shifted = mixed + np.where(domains == "d2", 50.0, 0.0)[:, None]
    assert metrics.batch_asw(shifted, batches, labels=domains) > 0.95
    with pytest.raises(InputError, match="one batch"):
        metrics.batch_asw(mixed, np.zeros(600))


def test_batch_asw_silhouettes_at_most_max_spots(toy, monkeypatch) -> None:
    """The silhouette itself sees no more than max_spots rows, and the subsampled score stays close."""
    mixed, separated, batches = toy
    full = metrics.batch_asw(separated, batches)
    received: list[int] = []

    def counting_silhouette_samples(x, labels, **kwargs):
        received.append(x.shape[0])
        return sk_metrics.silhouette_samples(x, labels, **kwargs)

    monkeypatch.setattr(batch_module, "metrics", SimpleNamespace(silhouette_samples=counting_silhouette_samples))
    assert metrics.batch_asw(separated, batches, max_spots=1000) == pytest.approx(full)
    assert received == [600]  # below the cap: every spot
    received.clear()
    assert metrics.batch_asw(separated, batches, max_spots=200) == pytest.approx(full, abs=0.05)
    assert received == [200]
    # within labels the cap holds over all labels together
    received.clear()
    domains = np.tile(np.repeat(["d1", "d2"], 150), 2)
    metrics.batch_asw(mixed + np.where(domains == "d2", 50.0, 0.0)[:, None], batches, labels=domains, max_spots=300)
    assert len(received) == 2 and sum(received) <= 300


def test_per_slice_scores_by_hand() -> None:
    truth = np.array(["x", "x", "y", "y", "x", "x", "y", "y", np.nan], dtype=object)
    pred = np.array([0, 0, 1, 1, 0, 1, 0, 1, 1])
    batches = np.array(["s1"] * 4 + ["s2"] * 5)
    scores = metrics.per_slice_scores(truth, pred, batches)
    assert list(scores) == ["s1", "s2"]
    assert scores["s1"] == {"ari": pytest.approx(1.0), "nmi": pytest.approx(1.0)}
    # s2: x -> {0, 1}, y -> {0, 1} once each; the NaN spot is left out
    assert scores["s2"]["ari"] == pytest.approx(-0.5)
    assert scores["s2"]["nmi"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(InputError, match="one per spot"):
        metrics.per_slice_scores(truth, pred[:-1], batches)


def test_spots_without_a_slice_label_are_refused() -> None:
    x = np.random.default_rng(5).normal(size=(30, 3))
    batches = np.array(["a", "b", None] * 10, dtype=object)
    for score in (metrics.ilisi, metrics.batch_kl):
        with pytest.raises(InputError, match="10 spots have no slice label"):
            score(x, batches)
    labels = np.array([0, 1, 2] * 10)
    with pytest.raises(InputError, match="10 spots have no slice label .*to be scored per slice"):
        metrics.per_slice_scores(labels, labels, batches)  # was scored as a slice named 'nan'


def test_an_embedding_with_nan_rows_is_refused_by_every_score() -> None:
    """A NaN row (another tool's L2-normalised all-zero spot) has no distances: named, not a scikit-learn error."""
    x = np.random.default_rng(6).normal(size=(30, 3))
    x[[4, 9]] = np.nan
    batches, labels = np.array(["a", "b"] * 15), np.arange(30) % 3
    scores = (metrics.ilisi, metrics.median_ilisi, metrics.batch_kl, metrics.batch_asw)
    for score in scores:
        with pytest.raises(InputError, match=r"NaN or infinite values for 2 of 30 spots \(rows '4', '9'\)"):
            score(x, batches)
    for score in (metrics.silhouette, metrics.davies_bouldin):
        with pytest.raises(InputError, match="NaN or infinite values for 2 of 30 spots"):
            score(x, labels)
