"""Expression features: normalise to 1e4, log1p, unit variance without centring, clip; HVG selection."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
from scipy import sparse

from tissuegraph import pp


def test_features_match_a_hand_computation() -> None:
    counts = np.array([[1, 3, 0], [2, 2, 4], [0, 5, 5]], dtype=np.float32)
    adata = ad.AnnData(X=sparse.csr_matrix(counts))
    pp.preprocess(adata, n_top_genes=3000)
    logged = np.log1p(counts / counts.sum(1, keepdims=True) * 1e4)
    expected = np.minimum(logged / logged.std(0, ddof=1), 10.0)
    np.testing.assert_allclose(adata.obsm["X_expr"], expected, rtol=1e-5)
    assert adata.var["highly_variable"].all()  # fewer genes than requested: all kept
    np.testing.assert_array_equal(adata.X.toarray(), counts)  # raw counts untouched


def test_hvg_selection_keeps_the_requested_number_on_real_counts(dlpfc_151673) -> None:
    adata = dlpfc_151673.copy()
    pp.preprocess(adata, n_top_genes=500)
    assert adata.var["highly_variable"].sum() == 500
    assert adata.obsm["X_expr"].shape == (adata.n_obs, 500)
    assert adata.obsm["X_expr"].max() <= 10.0 and adata.obsm["X_expr"].min() >= 0.0


def test_spots_without_counts_are_kept_with_zero_features_and_a_warning() -> None:
    counts = np.array([[1, 3, 0], [0, 0, 0], [0, 5, 5], [2, 1, 1]], dtype=np.float32)
    adata = ad.AnnData(X=sparse.csr_matrix(counts))
    with pytest.warns(UserWarning, match="1 spot.*no counts"):
        pp.preprocess(adata)
    assert adata.obsm["X_expr"].shape[0] == 4
    assert np.all(adata.obsm["X_expr"][1] == 0) and np.isfinite(adata.obsm["X_expr"]).all()
