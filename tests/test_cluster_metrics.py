"""Clustering (GMM EEE, leiden with a target K, k-means), spatial refinement and the metrics."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from tissuegraph import cluster, metrics


@pytest.fixture(scope="module")
def blobs():
    # elongated, correlated blobs: a shared full covariance is the right model, spherical k-means is not
    x, y = make_blobs(n_samples=900, centers=[[0, 0], [3, 3], [6, 0]], cluster_std=0.6, random_state=0)
    x = x @ np.array([[1.0, 0.0], [0.9, 0.3]])
    return x, y


def test_gmm_eee_recovers_blobs(blobs) -> None:
    x, y = blobs
    assert metrics.ari(y, cluster.gmm_eee(x, 3, seed=0)) > 0.9


def test_gmm_eee_with_ward_subsample_labels_every_spot(blobs) -> None:
    x, y = blobs
    labels = cluster.gmm_eee(x, 3, seed=0, ward_sample=200)
    assert labels.shape == (900,) and set(labels) == {0, 1, 2}
    assert metrics.ari(y, labels) > 0.9


def test_gmm_eee_is_deterministic_per_seed(blobs) -> None:
    x, _ = blobs
    np.testing.assert_array_equal(cluster.gmm_eee(x, 3, seed=4), cluster.gmm_eee(x, 3, seed=4))


@pytest.mark.parametrize("k", [2, 3, 5])
def test_leiden_search_hits_requested_number_of_clusters(blobs, k: int) -> None:
    x, _ = blobs
    assert len(np.unique(cluster.leiden_n_clusters(x, k, seed=0))) == k


def test_kmeans() -> None:
    x, y = make_blobs(n_samples=600, centers=[[0, 0], [4, 4], [8, 0]], cluster_std=0.8, random_state=1)
    assert metrics.ari(y, cluster.kmeans(x, 3, seed=0)) > 0.8


def test_refine_fixes_isolated_spots_and_keeps_ties() -> None:
    xs, ys = np.meshgrid(np.arange(10), np.arange(10))
    coords = np.stack([xs.ravel(), ys.ravel()], 1).astype(float)
    labels = np.where(coords[:, 0] < 5, "left", "right")
    noisy = labels.copy()
    noisy[22] = "right"  # a lone wrong spot inside the left half
    refined = cluster.refine_labels(noisy, coords, n_neighbors=8)
    assert refined[22] == "left"
    assert (refined == labels).mean() >= 0.95
    # spots of two slices are refined within their own slice only
    groups = (coords[:, 1] >= 5).astype(int)
    per_slice = cluster.refine_labels(noisy, coords, n_neighbors=8, groups=groups)
    assert per_slice[22] == "left"


def test_ari_nmi_skip_unannotated_spots() -> None:
    truth = np.array(["a", "a", "b", "b", None, np.nan], dtype=object)
    pred = np.array([1, 1, 2, 2, 1, 2])
    assert metrics.ari(truth, pred) == pytest.approx(1.0)
    assert metrics.nmi(truth, pred) == pytest.approx(1.0)
    assert metrics.ari(truth, np.array([1, 2, 1, 2, 1, 1])) < 0.1


def test_silhouette_and_davies_bouldin_rank_good_over_random(blobs) -> None:
    x, y = blobs
    rand = np.random.default_rng(0).integers(0, 3, size=y.size)
    assert metrics.silhouette(x, y) > metrics.silhouette(x, rand)
    assert metrics.davies_bouldin(x, y) < metrics.davies_bouldin(x, rand)
    # subsampling beyond max_spots stays close to the full value
    assert metrics.silhouette(x, y, max_spots=400) == pytest.approx(metrics.silhouette(x, y), abs=0.05)


def test_no_annotated_spot_gives_nan_and_label_free_scores() -> None:
    import anndata as ad

    labels = np.array([0, 0, 1, 1])
    assert np.isnan(metrics.ari([np.nan] * 4, labels)) and np.isnan(metrics.nmi([np.nan] * 4, labels))
    result = ad.AnnData(X=np.zeros((40, 2), dtype=np.float32))
    result.obs["ground_truth"] = np.nan  # an annotation column with nothing in it, as in unlabelled files
    result.obs["domain"] = np.repeat(["a", "b"], 20)
    result.obsm["X_tissuegraph"] = np.random.default_rng(0).normal(size=(40, 3)) + np.repeat([[0], [5]], 20, axis=0)
    scores = metrics.score(result)
    assert "ari" not in scores and scores["silhouette"] > 0.5


@pytest.mark.parametrize("labels", [np.zeros(30, dtype=int), np.arange(30)])
def test_label_free_scores_are_nan_where_undefined(labels: np.ndarray) -> None:
    x = np.random.default_rng(0).normal(size=(30, 4))
    assert np.isnan(metrics.silhouette(x, labels)) and np.isnan(metrics.davies_bouldin(x, labels))
