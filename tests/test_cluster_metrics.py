"""Clustering (GMM EEE, leiden with a target K, k-means), spatial refinement and the metrics."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning

from tissuegraph import cluster, metrics, tl
from tissuegraph.cluster import gmm as gmm_module
from tissuegraph.errors import InputError, TissuegraphWarning


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


def test_gmm_eee_ward_subsample_is_deterministic_per_seed(blobs) -> None:
    x, y = blobs
    labels = cluster.gmm_eee(x, 3, seed=4, ward_sample=200)
    np.testing.assert_array_equal(labels, cluster.gmm_eee(x, 3, seed=4, ward_sample=200))
    assert metrics.ari(y, labels) > 0.9
    # without cluster structure the result depends on which spots Ward saw, so only the seed keeps it fixed
    noise = np.random.default_rng(1).random((900, 2))
    same = cluster.gmm_eee(noise, 3, seed=4, ward_sample=100)
    np.testing.assert_array_equal(same, cluster.gmm_eee(noise, 3, seed=4, ward_sample=100))
    assert (same != cluster.gmm_eee(noise, 3, seed=5, ward_sample=100)).any()


@pytest.mark.parametrize("scale", [1e-4, 1e4])
def test_gmm_eee_does_not_depend_on_the_embedding_units(blobs, scale: float) -> None:
    """mclust's EEE model is the same in any units; a fixed regulariser added to a tiny covariance was not: at
    1e-4 it swamped the blobs' shared shape and the mixture split them like spherical k-means."""
    x, y = blobs
    labels = cluster.gmm_eee(x, 3, seed=0)
    assert metrics.ari(y, cluster.gmm_eee(x * scale, 3, seed=0)) > 0.9
    np.testing.assert_array_equal(labels, cluster.gmm_eee(x * scale, 3, seed=0))


def test_gmm_eee_runs_em_until_the_fit_stops_moving(monkeypatch) -> None:
    """Spots along a continuum (as layered tissue lies in an embedding) give EM long slow stretches; scikit-learn's
    default tolerance stopped on one, far from where the fit ends up. A tighter tolerance changes nothing now."""
    rng = np.random.default_rng(1)
    t = rng.uniform(0, 1, 1500)
    curve = np.column_stack([np.cos(3 * t), np.sin(3 * t), t, t**2, 0.3 * np.sin(7 * t), 0.3 * np.cos(5 * t)])
    x = curve + 0.15 * rng.normal(size=curve.shape)
    converged = cluster.gmm_eee(x, 5)
    monkeypatch.setattr(gmm_module, "EM_TOL", 1e-12)
    assert metrics.ari(converged, cluster.gmm_eee(x, 5)) > 0.999
    monkeypatch.setattr(gmm_module, "EM_TOL", 1e-3)  # scikit-learn's default
    assert metrics.ari(converged, cluster.gmm_eee(x, 5)) < 0.9


def test_gmm_eee_warns_in_its_own_words_when_em_stops_short(monkeypatch) -> None:
    """A fit cut off by the step limit keeps its last partition and says so, as a tissuegraph warning that names
    the way out, instead of scikit-learn's ConvergenceWarning about n_init and tol (settings a user cannot reach)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(600, 4))
    monkeypatch.setattr(gmm_module, "EM_MAX_ITER", 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        labels = cluster.gmm_eee(x, 4)
    assert labels.shape == (600,)
    messages = [str(w.message) for w in caught if issubclass(w.category, TissuegraphWarning)]
    assert len(messages) == 1 and "still moving after 2 EM steps" in messages[0]
    assert not [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    monkeypatch.setattr(gmm_module, "EM_MAX_ITER", 2000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cluster.gmm_eee(x, 4)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_leiden_search_hits_requested_number_of_clusters(blobs, k: int) -> None:
    x, _ = blobs
    assert len(np.unique(cluster.leiden_n_clusters(x, k, seed=0))) == k


def test_leiden_search_raises_the_resolution_past_ten_when_many_clusters_are_asked() -> None:
    """120 clusters of 1,000 random points need a resolution of about 14; the search stopped at 10 (88 clusters)."""
    x = np.random.default_rng(0).normal(size=(1000, 8))
    assert len(np.unique(cluster.leiden_n_clusters(x, 120, seed=0))) == 120


def test_leiden_search_keeps_an_exact_count_found_at_the_top_of_its_bracket(monkeypatch) -> None:
    """Counts need not grow with the resolution: a hit at the bracket's top was dropped for a bisection that never
    met the count again (here 6 clusters just below 10, 5 from 10 up)."""
    resolutions = []

    def leiden(graph, resolution: float, seed: int) -> np.ndarray:
        resolutions.append(resolution)
        return np.arange(50) % (5 if resolution >= 10 else 6 if resolution > 5 else 3)

    monkeypatch.setattr(cluster.leiden, "_leiden", leiden)
    found = cluster.leiden_n_clusters(np.random.default_rng(0).normal(size=(50, 3)), 5)
    assert len(np.unique(found)) == 5 and max(resolutions) == 10.0


def test_a_domain_count_other_than_asked_gives_a_warning() -> None:
    # four far-apart groups: the kNN graph has four parts, so leiden cannot merge them into two
    x, _ = make_blobs(n_samples=200, centers=[[0, 0], [50, 0], [0, 50], [50, 50]], cluster_std=0.5, random_state=0)
    adata = ad.AnnData(X=sparse.csr_matrix((200, 3), dtype=np.float32))
    adata.obsm["X_image"] = x
    with pytest.warns(UserWarning, match="asked for 2 domains but leiden found 4"):
        tl.image_domains(adata, 2, cluster="leiden")
    assert adata.obs["image_domain"].nunique() == 4


def test_a_domain_the_refinement_absorbs_gives_a_warning_naming_the_refinement() -> None:
    import importlib

    assign_domains = importlib.import_module("tissuegraph.tl.domains").assign_domains
    xs, ys = np.meshgrid(np.arange(10), np.arange(10))
    adata = ad.AnnData(X=sparse.csr_matrix((100, 3), dtype=np.float32))
    adata.obsm["spatial"] = np.stack([xs.ravel(), ys.ravel()], 1).astype(float)
    embedding = np.where(adata.obsm["spatial"][:, :1] < 5, 0.0, 10.0) * np.ones((1, 2))
    embedding[[22, 77]] = [100.0, 100.0]  # a third group of two scattered spots: k-means finds it, no vote keeps it
    options = dict(cluster="kmeans", refine_neighbors=8, slices=None, seed=0, timings={})
    with pytest.warns(UserWarning, match="refinement absorbed 1 of the 3 domains found.*refine=False"):
        assign_domains(adata, embedding, 3, refine=True, **options)
    assert adata.obs["domain"].nunique() == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the clusterer found all three: no warning without the vote
        assign_domains(adata, embedding, 3, refine=False, **options)
    assert adata.obs["domain"].nunique() == 3


def test_kmeans() -> None:
    x, y = make_blobs(n_samples=600, centers=[[0, 0], [4, 4], [8, 0]], cluster_std=0.8, random_state=1)
    assert metrics.ari(y, cluster.kmeans(x, 3, seed=0)) > 0.8


def test_refine_fixes_isolated_spots() -> None:
    xs, ys = np.meshgrid(np.arange(10), np.arange(10))
    coords = np.stack([xs.ravel(), ys.ravel()], 1).astype(float)
    labels = np.where(coords[:, 0] < 5, "left", "right")
    noisy = labels.copy()
    noisy[22] = "right"  # a lone wrong spot inside the left half
    refined = cluster.refine_labels(noisy, coords, n_neighbors=8)
    assert refined[22] == "left"
    assert (refined == labels).mean() >= 0.95


def test_refine_counts_every_spot_tied_with_the_last_whatever_the_row_order() -> None:
    """On Visium's hexagons the 15th nearest spot is one of 6 equally near (the ring at twice the spacing); all 6
    vote, so reordering the rows reorders the result and changes nothing else."""
    rows, cols = np.meshgrid(np.arange(14), np.arange(14))
    coords = np.stack([cols.ravel() + 0.5 * (rows.ravel() % 2), rows.ravel() * np.sqrt(3) / 2], axis=1) * 137.3
    rng = np.random.default_rng(0)
    labels = rng.choice(np.array(["a", "b", "c"]), size=len(coords))
    refined = cluster.refine_labels(labels, coords)
    for seed in range(5):
        order = np.random.default_rng(seed).permutation(len(coords))
        np.testing.assert_array_equal(cluster.refine_labels(labels[order], coords[order]), refined[order])


def test_refine_tie_keeps_the_spot_own_label() -> None:
    # spot 0 votes over itself and its 3 nearest others: 'right' (itself, 2.2 away) 2, 'left' (1.0, 1.5 away) 2;
    # 'left' sorts first, so a plain argmax would flip it, and a vote over only 3 spots would give 'left' 2 to 1
    coords = np.array([[0.0, 0.0], [1.0, 0.0], [-1.5, 0.0], [2.2, 0.0]])
    labels = np.array(["right", "left", "left", "right"])
    assert cluster.refine_labels(labels, coords, n_neighbors=3)[0] == "right"


def test_refine_tie_between_other_labels_goes_to_the_nearer_one() -> None:
    # spot 0 ('C') votes over itself and 4 others: 'B' at distance 1 twice, 'A' at 1.5 twice; 'A' sorts first,
    # so a plain argmax would pick it, though 'B' surrounds the spot more closely
    coords = np.array([[0, 0], [1, 0], [-1, 0], [0, 1.5], [0, -1.5]], dtype=float)
    labels = np.array(["C", "B", "B", "A", "A"])
    assert cluster.refine_labels(labels, coords, n_neighbors=4)[0] == "B"
    assert cluster.refine_labels(labels, coords[[0, 3, 4, 1, 2]], n_neighbors=4)[0] == "A"  # now 'A' is nearer


def test_refine_votes_within_each_slice_only() -> None:
    # spot 0 of slice 0 is surrounded by its own slice's 'a' spots; slice 1's 'b' spots sit closer in the shared
    # coordinate frame (slices are aligned on top of each other), so they outvote it unless slices are kept apart
    coords = np.array(
        [[0, 0], [1.0, 0], [0, 1.1], [-1.2, 0], [0, -1.3], [0.1, 0], [0, 0.2], [-0.3, 0], [0, -0.4]], dtype=float
    )
    labels = np.array(["a"] * 5 + ["b"] * 4)
    groups = np.array([0] * 5 + [1] * 4)
    assert cluster.refine_labels(labels, coords, n_neighbors=4, groups=groups)[0] == "a"
    assert cluster.refine_labels(labels, coords, n_neighbors=4)[0] == "b"


def test_ari_nmi_skip_unannotated_spots() -> None:
    truth = np.array(["a", "a", "b", "b", None, np.nan], dtype=object)
    pred = np.array([1, 1, 2, 2, 1, 2])
    assert metrics.ari(truth, pred) == pytest.approx(1.0)
    assert metrics.nmi(truth, pred) == pytest.approx(1.0)
    assert metrics.ari(truth, np.array([1, 2, 1, 2, 1, 1])) < 0.1


def test_spots_without_a_domain_are_left_out_not_scored_as_a_domain_called_nan() -> None:
    truth = np.array(["a", "a", "a", "b", "b", "b"], dtype=object)
    for pred in (np.array([1, 1, np.nan, 2, 2, np.nan]), pd.array([1, 1, pd.NA, 2, 2, pd.NA], dtype="Int64")):
        assert metrics.ari(truth, pred) == pytest.approx(1.0)  # 'nan' as a third domain would give 0.5
        assert metrics.nmi(truth, pred) == pytest.approx(1.0)


def test_silhouette_and_davies_bouldin_rank_good_over_random(blobs) -> None:
    x, y = blobs
    rand = np.random.default_rng(0).integers(0, 3, size=y.size)
    assert metrics.silhouette(x, y) > metrics.silhouette(x, rand)
    assert metrics.davies_bouldin(x, y) < metrics.davies_bouldin(x, rand)
    # subsampling beyond max_spots stays close to the full value
    assert metrics.silhouette(x, y, max_spots=400) == pytest.approx(metrics.silhouette(x, y), abs=0.05)


def test_silhouette_and_davies_bouldin_leave_unlabelled_spots_out(blobs) -> None:
    x, y = blobs
    labels = pd.Series(y.astype(str), dtype=object)
    labels.iloc[::7] = np.nan
    kept = labels.notna().to_numpy()
    assert metrics.silhouette(x, labels) == pytest.approx(metrics.silhouette(x[kept], y[kept]))
    assert metrics.davies_bouldin(x, labels) == pytest.approx(metrics.davies_bouldin(x[kept], y[kept]))
    with pytest.raises(InputError, match="embedding has .* rows but there are"):
        metrics.silhouette(x[:-1], labels)


def test_label_free_scores_see_at_most_max_spots(monkeypatch) -> None:
    from tissuegraph.metrics import clustering

    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(900, 4)), rng.integers(0, 3, 900)
    seen: list[int] = []
    for name in ("silhouette_score", "davies_bouldin_score"):
        original = getattr(clustering.metrics, name)
        monkeypatch.setattr(clustering.metrics, name, lambda a, b, _f=original: seen.append(len(a)) or _f(a, b))
    metrics.silhouette(x, y, max_spots=400)
    metrics.davies_bouldin(x, y, max_spots=250)
    metrics.silhouette(x, y, max_spots=5000)
    assert seen == [400, 250, 900]


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


def test_excluded_cells_are_scored_as_unannotated() -> None:
    """osmFISH's 'Excluded' marks cells outside every region: scored as a region, it cut the ARI of a domains run
    by about 40% against the benchmark's (which drops it)."""
    import anndata as ad

    truth = np.array(["L1"] * 10 + ["L2"] * 10 + ["Excluded"] * 6, dtype=object)
    domains = np.array(["a"] * 10 + ["b"] * 10 + ["a", "b"] * 3, dtype=object)
    result = ad.AnnData(X=np.zeros((26, 2), dtype=np.float32))
    result.obs["ground_truth"], result.obs["domain"] = truth, domains
    assert metrics.score(result)["ari"] == pytest.approx(1.0)
    assert metrics.score(result, excluded=())["ari"] < 0.8


def test_per_slice_scores_need_no_embedding() -> None:
    import anndata as ad
    from sklearn.metrics import adjusted_rand_score

    truth = np.array(["L1"] * 10 + ["L2"] * 10 + ["L1"] * 10 + ["L2"] * 10, dtype=object)
    domains = truth.copy()
    domains[[0, 1, 2]] = "L2"  # slice s1 has three wrong spots, slice s2 one
    domains[25] = "L2"
    batches = np.repeat(["s1", "s2"], 20)
    result = ad.AnnData(X=np.zeros((40, 2), dtype=np.float32))
    result.obs["ground_truth"], result.obs["domain"], result.obs["batch"] = truth, domains, batches
    per_slice = metrics.score(result)["per_slice"]
    assert list(per_slice) == ["s1", "s2"]
    for name in ("s1", "s2"):
        rows = batches == name
        assert per_slice[name]["ari"] == pytest.approx(adjusted_rand_score(truth[rows], domains[rows]))
    assert per_slice["s1"]["ari"] < per_slice["s2"]["ari"] < 1.0


@pytest.mark.parametrize("labels", [np.zeros(30, dtype=int), np.arange(30)])
def test_label_free_scores_are_nan_where_undefined(labels: np.ndarray) -> None:
    x = np.random.default_rng(0).normal(size=(30, 4))
    assert np.isnan(metrics.silhouette(x, labels)) and np.isnan(metrics.davies_bouldin(x, labels))


def _scored_result() -> ad.AnnData:
    result = ad.AnnData(X=np.zeros((40, 2), dtype=np.float32))
    result.obs["domain"] = np.repeat(["a", "b"], 20)
    result.obsm["X_tissuegraph"] = np.random.default_rng(0).normal(size=(40, 3)) + np.repeat([[0], [5]], 20, axis=0)
    return result


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({}, "obs has no 'domain' holding the domains.*run tl.domains or tl.integrate first, or pass domain_key="),
        ({"domain_key": "leiden"}, "obs has no 'leiden'.*it has: 'domain'"),
        ({"truth_key": "layer"}, "obs has no 'layer' holding the annotation.*pass truth_key="),
        ({"use_rep": "X_pca"}, "obsm has no 'X_pca' holding the embedding.*it has: 'X_tissuegraph'.*pass use_rep="),
    ],
)
def test_score_refuses_a_missing_column_it_was_asked_for(keys: dict, message: str) -> None:
    result = _scored_result()
    if not keys:
        del result.obs["domain"]
    with pytest.raises(InputError, match=message):
        metrics.score(result, **keys)


def test_score_without_the_default_annotation_or_embedding_scores_what_there_is() -> None:
    result = _scored_result()
    assert set(metrics.score(result)) == {"silhouette", "davies_bouldin"}  # no obs['ground_truth']: unlabelled
    del result.obsm["X_tissuegraph"]
    assert metrics.score(result) == {}


@pytest.mark.realdata
def test_gmm_on_fewer_spots_than_embedding_dimensions(dlpfc_151673) -> None:
    """30 spots, 64 dimensions: the pooled covariance is singular and its pseudo-inverse came out asymmetric in
    the last digits, which scikit-learn refused after training ('tied precision' should be symmetric)."""
    centre = dlpfc_151673.obsm["spatial"].mean(axis=0)
    nearest = np.sort(np.argsort(((dlpfc_151673.obsm["spatial"] - centre) ** 2).sum(axis=1))[:30])
    small = dlpfc_151673[nearest].copy()
    del small.uns["spatial"]  # gene mode
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tl.domains(small, 2, epochs=2)
    assert small.obs["domain"].nunique() == 2


def test_numbers_that_cannot_work_are_refused_before_any_work() -> None:
    rng = np.random.default_rng(0)
    adata = ad.AnnData(X=sparse.csr_matrix(rng.poisson(3.0, (40, 12)).astype(np.float32)))
    adata.obsm["spatial"] = rng.uniform(0, 10, (40, 2))
    for n_pcs in (0, 2.5):
        with pytest.raises(InputError, match=rf"n_pcs must be a whole number >= 1 \(got {n_pcs}\)"):
            tl.expression_domains(adata, 3, n_pcs=n_pcs)
    with pytest.raises(InputError, match=r"n_top_genes must be a whole number >= 1 \(got -5\)"):
        tl.expression_domains(adata, 3, n_top_genes=-5)  # was accepted; 0 was called a constant-count matrix
    with pytest.raises(InputError, match=r"n_comps \(the number of principal components\) must be a whole number"):
        from tissuegraph import pp

        pp.pca(adata, 0, use_rep="spatial")


def test_a_numpy_integer_seed_runs_as_that_seed() -> None:
    """check_seed accepts numpy integers; torch's generator does not, so the checked int must be the one used."""
    rng = np.random.default_rng(0)
    adata = ad.AnnData(X=sparse.csr_matrix(rng.poisson(3.0, (60, 12)).astype(np.float32)))
    adata.obsm["spatial"] = np.stack(np.meshgrid(np.arange(10), np.arange(6)), axis=-1).reshape(-1, 2).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        as_numpy = tl.domains(adata.copy(), 3, epochs=2, seed=np.int64(5))
        as_int = tl.domains(adata.copy(), 3, epochs=2, seed=5)
    np.testing.assert_array_equal(as_numpy.obsm["X_tissuegraph"], as_int.obsm["X_tissuegraph"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other = tl.domains(adata.copy(), 3, epochs=2, seed=6)
    assert not np.allclose(other.obsm["X_tissuegraph"], as_int.obsm["X_tissuegraph"])  # the seed is not ignored
