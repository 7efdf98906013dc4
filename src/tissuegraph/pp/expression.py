"""Expression features as STAIG uses them: seurat_v3 HVGs, total-count normalisation, log1p, unit-variance scaling.

The raw counts in ``X`` are never modified; the features land in ``obsm`` so every spot and gene stays in the
AnnData that is written back to the user.
"""

from __future__ import annotations

import warnings

import numpy as np
import scanpy as sc
from anndata import AnnData
from scipy import sparse

from tissuegraph.errors import InputError


def select_hvgs(adata: AnnData, n_top_genes: int, batch_key: str | None = None) -> np.ndarray:
    """Boolean mask of highly variable genes (seurat_v3 on raw counts); all genes when there are few."""
    n_genes = adata.n_vars
    if n_genes <= n_top_genes:
        return np.ones(n_genes, dtype=bool)
    tmp = AnnData(X=adata.X, obs=adata.obs[[batch_key]] if batch_key else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.pp.highly_variable_genes(tmp, flavor="seurat_v3", n_top_genes=n_top_genes, batch_key=batch_key)
    return tmp.var["highly_variable"].to_numpy()


def normalise_log(counts: sparse.csr_matrix | np.ndarray, genes: np.ndarray) -> np.ndarray:
    """Normalise each spot to 1e4 counts over all genes, log1p, and keep ``genes`` (dense float32)."""
    counts = sparse.csr_matrix(counts, dtype=np.float32)
    totals = np.asarray(counts.sum(axis=1)).ravel()
    empty = totals <= 0
    if empty.any():
        warnings.warn(
            f"{int(empty.sum())} spot(s) have no counts; they are kept with all-zero features and take their "
            "domain from their spatial neighbours (filter them out first if that is not wanted)",
            stacklevel=3,
        )
    scale = sparse.diags(np.where(empty, 0.0, 1e4 / np.maximum(totals, 1e-12)).astype(np.float32))
    logged = (scale @ counts).log1p()
    return np.asarray(logged[:, genes].todense(), dtype=np.float32)


def normalise_log_scale(counts: sparse.csr_matrix | np.ndarray, genes: np.ndarray, clip: float = 10.0) -> np.ndarray:
    """``normalise_log``, then scale each gene to unit variance (no centring) and clip at ``clip``."""
    dense = normalise_log(counts, genes)
    std = dense.std(axis=0, ddof=1) if dense.shape[0] > 1 else np.ones(dense.shape[1], dtype=np.float32)
    std[std == 0] = 1.0
    dense /= std
    np.minimum(dense, clip, out=dense)
    return dense


def preprocess(
    adata: AnnData,
    n_top_genes: int = 3000,
    *,
    batch_key: str | None = None,
    clip: float = 10.0,
    genes: np.ndarray | None = None,
    key_added: str = "X_expr",
) -> AnnData:
    """Compute the model's expression features into ``obsm[key_added]`` and flag genes in ``var['highly_variable']``.

    With ``batch_key`` the HVGs are ranked across slices (seurat_v3 per batch, then combined), as for
    multi-slice input; ``genes`` (a boolean mask) skips the selection and uses exactly those genes.
    """
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise InputError(f"the input is empty ({adata.n_obs} spots x {adata.n_vars} genes); give a slice with data.")
    if genes is None:
        genes = select_hvgs(adata, n_top_genes, batch_key)
    adata.var["highly_variable"] = genes
    adata.obsm[key_added] = normalise_log_scale(adata.X, genes, clip)
    return adata
