"""Expression features: normalise to 1e4, log1p, unit variance without centring, clip; HVG selection."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pytest
import scanpy as sc
from scipy import sparse

from tissuegraph import pp
from tissuegraph.errors import InputError, TissuegraphWarning
from tissuegraph.pp.expression import normalise_log_scale


def test_features_match_a_hand_computation() -> None:
    counts = np.array([[1, 3, 0], [2, 2, 4], [0, 5, 5]], dtype=np.float32)
    adata = ad.AnnData(X=sparse.csr_matrix(counts))
    pp.preprocess(adata, n_top_genes=3000)
    logged = np.log1p(counts / counts.sum(1, keepdims=True) * 1e4)
    expected = np.minimum(logged / logged.std(0, ddof=1), 10.0)
    np.testing.assert_allclose(adata.obsm["X_expr"], expected, rtol=1e-5)
    assert adata.var["highly_variable"].all()  # fewer genes than requested: all kept
    np.testing.assert_array_equal(adata.X.toarray(), counts)  # raw counts untouched


@pytest.mark.realdata
def test_hvg_selection_is_scanpys_seurat_v3_on_real_counts(dlpfc_151673) -> None:
    adata = dlpfc_151673.copy()
    pp.preprocess(adata, n_top_genes=500)
    reference = ad.AnnData(X=dlpfc_151673.X.copy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.pp.highly_variable_genes(reference, flavor="seurat_v3", n_top_genes=500)
    np.testing.assert_array_equal(adata.var["highly_variable"].to_numpy(), reference.var["highly_variable"].to_numpy())
    counts = dlpfc_151673.X.toarray()[:, reference.var["highly_variable"].to_numpy()]
    logged = np.log1p(counts / dlpfc_151673.X.sum(axis=1).A * 1e4)  # each spot to 1e4 of its counts in X
    expected = np.minimum(logged / logged.std(0, ddof=1), 10.0)
    np.testing.assert_allclose(adata.obsm["X_expr"], expected, rtol=1e-4, atol=1e-5)


def test_spots_without_counts_are_kept_with_zero_features_and_a_warning() -> None:
    counts = np.array([[1, 3, 0], [0, 0, 0], [0, 5, 5], [2, 1, 1]], dtype=np.float32)
    adata = ad.AnnData(X=sparse.csr_matrix(counts))
    with pytest.warns(TissuegraphWarning, match="1 spot.*no counts") as caught:
        pp.preprocess(adata)
    assert caught[0].filename == __file__  # the caller's line, not the module three calls down that found it
    assert adata.obsm["X_expr"].shape[0] == 4
    assert np.all(adata.obsm["X_expr"][1] == 0) and np.isfinite(adata.obsm["X_expr"]).all()


def test_stored_library_sizes_replace_the_counts_as_normaliser() -> None:
    """A file keeping a gene subset normalises by each spot's total over all genes, as the full matrix would."""
    full = np.array([[1, 3, 0, 6], [2, 2, 4, 0], [0, 5, 5, 2]], dtype=np.float32)
    subset = ad.AnnData(X=sparse.csr_matrix(full[:, :3]))
    subset.obs["total_counts_all_genes"] = full.sum(1)
    pp.preprocess(subset, library_size=pp.library_sizes(subset))
    logged = np.log1p(full / full.sum(1, keepdims=True) * 1e4)[:, :3]
    np.testing.assert_allclose(subset.obsm["X_expr"], np.minimum(logged / logged.std(0, ddof=1), 10.0), rtol=1e-5)
    without = ad.AnnData(X=sparse.csr_matrix(full[:, :3]))
    pp.preprocess(without, library_size=pp.library_sizes(without))
    assert not np.allclose(without.obsm["X_expr"], subset.obsm["X_expr"])


def test_library_sizes_known_for_only_some_spots_fall_back_to_the_counts() -> None:
    adata = ad.AnnData(X=sparse.csr_matrix(np.ones((3, 2), dtype=np.float32)))
    adata.obs["total_counts_all_genes"] = [10.0, np.nan, 12.0]  # slices joined from different files
    with pytest.warns(UserWarning, match="missing for 1 of 3 spots"):
        assert pp.library_sizes(adata) is None


def test_uncentred_pca_keeps_the_rows_own_geometry() -> None:
    """Rows spanning three axes (their mean among them): uncentred coordinates keep every inner product."""
    rng = np.random.default_rng(0)
    features = (rng.normal(loc=2.0, size=(60, 3)) @ rng.normal(size=(3, 12))).astype(np.float32)
    adata = ad.AnnData(X=sparse.csr_matrix((60, 12), dtype=np.float32))
    adata.obsm["X_log"] = features
    pp.pca(adata, 3, use_rep="X_log", key_added="uncentred", center=False)
    pp.pca(adata, 3, use_rep="X_log", key_added="centred")
    gram = features @ features.T
    uncentred, centred = adata.obsm["uncentred"], adata.obsm["centred"]
    np.testing.assert_allclose(uncentred @ uncentred.T, gram, rtol=1e-3, atol=1e-2)
    np.testing.assert_allclose(centred.mean(0), 0.0, atol=1e-3)
    assert not np.allclose(centred @ centred.T, gram, rtol=0.1)


def test_pca_reads_sparse_features_as_dense_and_refuses_a_single_spot() -> None:
    rng = np.random.default_rng(0)
    features = rng.poisson(1.0, size=(40, 10)).astype(np.float32)
    adata = ad.AnnData(X=sparse.csr_matrix((40, 10), dtype=np.float32))
    adata.obsm["dense"], adata.obsm["sparse"] = features, sparse.csr_matrix(features)
    pp.pca(adata, 3, use_rep="dense", key_added="from_dense")
    pp.pca(adata, 3, use_rep="sparse", key_added="from_sparse")
    np.testing.assert_allclose(adata.obsm["from_sparse"], adata.obsm["from_dense"], atol=1e-5)
    with pytest.raises(InputError, match="PCA needs at least 2 spots"):
        pp.pca(adata[:1].copy(), 3, use_rep="dense")
    with pytest.raises(InputError, match=r"obsm\['X_expr'\], which this AnnData lacks \(obsm holds: 'dense', 'sparse'"):
        pp.pca(adata, 3)


def test_genes_given_as_a_series_or_positions_select_the_same_features() -> None:
    rng = np.random.default_rng(0)
    adata = ad.AnnData(X=sparse.csr_matrix(rng.poisson(3.0, size=(40, 12)).astype(np.float32)))
    adata.var["chosen"] = np.arange(12) % 3 == 0
    mask = pp.preprocess(adata.copy(), genes=adata.var["chosen"].to_numpy()).obsm["X_expr"]
    np.testing.assert_array_equal(pp.preprocess(adata.copy(), genes=adata.var["chosen"]).obsm["X_expr"], mask)
    np.testing.assert_array_equal(pp.preprocess(adata.copy(), genes=[0, 3, 6, 9]).obsm["X_expr"], mask)
    assert mask.shape == (40, 4)


@pytest.mark.parametrize(
    ("genes", "message"),
    [
        (np.ones(10, dtype=bool), "the genes mask has 10 entries but the data has 12 genes"),
        (np.array([0, 12]), r"gene positions must lie in 0\.\.11"),
        (np.array(["g1", "g2"]), "genes holds <U2 values"),
        (np.zeros(12, dtype=bool), "genes selects none of the 12 genes"),
        (np.ones((2, 6), dtype=bool), r"genes must be one-dimensional, got shape \(2, 6\)"),
    ],
)
def test_genes_that_do_not_select_from_the_data_are_refused(genes: np.ndarray, message: str) -> None:
    adata = ad.AnnData(X=sparse.csr_matrix(np.random.default_rng(0).poisson(3.0, size=(40, 12)).astype(np.float32)))
    with pytest.raises(InputError, match=message + ".*var_names.isin"):
        pp.preprocess(adata, genes=genes)


def test_preprocess_refuses_normalised_counts() -> None:
    adata = ad.AnnData(X=np.log1p(np.random.default_rng(0).poisson(3.0, size=(30, 8)).astype(np.float32) / 3))
    with pytest.raises(InputError, match="non-integer values.*log-transformed"):
        pp.preprocess(adata, 5)


@pytest.mark.realdata
def test_hvgs_of_a_small_slice_fall_back_to_a_wider_loess_span(dlpfc_151673) -> None:
    """seurat_v3's default loess fit is singular on a couple of hundred spots; a wider span still ranks the genes."""
    small = dlpfc_151673[np.random.default_rng(0).choice(dlpfc_151673.n_obs, 200, replace=False)].copy()
    pp.preprocess(small, 500)
    assert small.var["highly_variable"].sum() == 500 and np.isfinite(small.obsm["X_expr"]).all()


def _constant_counts(n_genes: int, varying: int = 0) -> ad.AnnData:
    """300 spots whose every count is 3 (X overwritten), but for the first ``varying`` genes."""
    counts = np.full((300, n_genes), 3.0, dtype=np.float32)
    counts[:, :varying] = np.random.default_rng(0).poisson(3.0, size=(300, varying))
    return ad.AnnData(X=counts)


@pytest.mark.parametrize(
    ("adata", "n_top_genes"),
    [
        (_constant_counts(33), 3000),  # few genes: all kept, no seurat_v3
        (_constant_counts(60), 20),  # seurat_v3, whose loess crashed the interpreter on no varying gene
        (ad.AnnData(X=sparse.csr_matrix(_constant_counts(60).X)), 20),
    ],
)
def test_counts_without_variation_are_refused_before_training(adata: ad.AnnData, n_top_genes: int) -> None:
    with pytest.raises(InputError, match="no signal to find domains in.*was X overwritten"):
        pp.preprocess(adata, n_top_genes)


def test_counts_without_variation_are_refused_with_the_other_input_checks() -> None:
    """The CLI runs these checks before the image encoder trains; constant counts were refused only after it."""
    from tissuegraph import tl

    adata = _constant_counts(60)
    adata.obsm["spatial"] = np.random.default_rng(0).uniform(0, 100, (300, 2))
    with pytest.raises(InputError, match="no signal to find domains in"):
        tl.check_domains_input(adata, 3)


def test_seurat_v3_on_a_single_varying_gene_says_so_instead_of_crashing() -> None:
    with pytest.raises(InputError, match=r"seurat_v3 cannot rank.*\(1 of 60 genes vary"):
        pp.preprocess(_constant_counts(60, varying=1), 20)


def test_constant_genes_given_as_the_selection_are_refused() -> None:
    adata = _constant_counts(60, varying=30)
    with pytest.raises(InputError, match="no signal.*each of the 30 genes"):
        pp.preprocess(adata, genes=np.arange(60) >= 30)


@pytest.mark.parametrize("n_top_genes", [20, 3000])
def test_constant_genes_among_varying_ones_are_no_problem(n_top_genes: int) -> None:
    adata = _constant_counts(60, varying=30)
    pp.preprocess(adata, n_top_genes)
    assert np.isfinite(adata.obsm["X_expr"]).all()
    if n_top_genes < 30:  # seurat_v3 ranks every varying gene above the constant ones
        assert adata.var["highly_variable"].sum() == 20 and not adata.var["highly_variable"][30:].any()


def _duplicated_entries(matrix: sparse.csr_matrix) -> sparse.csr_matrix:
    """The same counts with every entry stored twice (halves that sum to it): valid scipy, not canonical."""
    indices, data = [], []
    for row in range(matrix.shape[0]):
        cut = slice(matrix.indptr[row], matrix.indptr[row + 1])
        half = np.floor(matrix.data[cut] / 2)
        indices += [matrix.indices[cut], matrix.indices[cut]]
        data += [half, matrix.data[cut] - half]
    return sparse.csr_matrix((np.concatenate(data), np.concatenate(indices), 2 * matrix.indptr), shape=matrix.shape)


@pytest.mark.parametrize("store", ["duplicate entries", "dense float16"])
def test_hvgs_read_the_checked_counts_however_they_are_stored(store: str) -> None:
    """seurat_v3 crashed the interpreter on duplicate entries and refused float16 with a bare scipy error."""
    rng = np.random.default_rng(0)
    counts = sparse.csr_matrix(rng.negative_binomial(2, 0.3, (300, 400)).astype(np.float32))
    stored = _duplicated_entries(counts) if store == "duplicate entries" else counts.toarray().astype(np.float16)
    assert store != "duplicate entries" or not stored.has_canonical_format
    odd, plain = ad.AnnData(X=stored), ad.AnnData(X=counts)
    pp.preprocess(odd, 100)
    pp.preprocess(plain, 100)
    assert odd.var["highly_variable"].sum() == 100
    np.testing.assert_array_equal(odd.var["highly_variable"], plain.var["highly_variable"])
    np.testing.assert_allclose(odd.obsm["X_expr"], plain.obsm["X_expr"], rtol=1e-6)


def test_a_gene_constant_after_normalisation_is_not_blown_up_to_the_clip() -> None:
    """float32's standard deviation of equal values can be 1e-6, not 0: dividing by it made the gene 10 everywhere."""
    rng = np.random.default_rng(0)
    varying = rng.poisson(0.5, 1000).astype(np.float32)
    counts = np.stack([varying, 995 - varying, np.full(1000, 5, np.float32)], axis=1)  # every library is 1000
    features = normalise_log_scale(sparse.csr_matrix(counts), np.ones(3, dtype=bool))
    np.testing.assert_allclose(features[:, 2], np.log1p(5 * 1e4 / 1000), rtol=1e-6)


def test_unit_variance_holds_to_float32_rounding_at_visium_hd_size() -> None:
    """numpy's float32 std adds 150k rows one at a time (relative error near 1e-3); the scaling must not drift."""
    rng = np.random.default_rng(0)
    counts = rng.poisson(rng.uniform(0.2, 5.0, 8), (150_000, 8)).astype(np.float32)
    counts[:, 0] += 1  # no empty spot
    features = normalise_log_scale(sparse.csr_matrix(counts), np.ones(8, dtype=bool), clip=np.inf)
    np.testing.assert_allclose(features.astype(np.float64).std(axis=0, ddof=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_library_size_that_is_not_finite_is_refused(bad: float) -> None:
    adata = ad.AnnData(X=sparse.csr_matrix(np.random.default_rng(0).poisson(3.0, (50, 30)).astype(np.float32)))
    library_size = np.full(50, 500.0)
    library_size[7] = bad
    with pytest.raises(InputError, match="1 non-finite value"):
        pp.preprocess(adata, 20, library_size=library_size)


def test_a_library_size_that_is_not_one_per_spot_is_refused() -> None:
    adata = ad.AnnData(X=sparse.csr_matrix(np.random.default_rng(0).poisson(3.0, (50, 30)).astype(np.float32)))
    with pytest.raises(InputError, match=r"one total per spot \(50\), not shape \(49,\)"):
        pp.preprocess(adata, 20, library_size=np.full(49, 500.0))
