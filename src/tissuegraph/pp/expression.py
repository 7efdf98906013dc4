"""Expression features as STAIG uses them: seurat_v3 HVGs, total-count normalisation, log1p, unit-variance scaling.

The raw counts in ``X`` are never modified; the features land in ``obsm`` so every spot and gene stays in the
AnnData that is written back to the user.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import scanpy as sc
from anndata import AnnData
from scipy import sparse

from tissuegraph.errors import InputError, warn
from tissuegraph.io.validate import LIBRARY_SIZE_KEY, check_counts

#: loess spans for seurat_v3's fit of variance on mean: scanpy's default first, wider ones only when a small
#: slice (a few hundred spots or fewer) leaves the default fit singular.
LOESS_SPANS = (0.3, 0.5, 1.0)


def require_variation(counts: sparse.spmatrix | np.ndarray) -> int:
    """How many genes' counts differ between spots; refuses counts where none does, as they tell no spot apart."""
    counts = sparse.csr_matrix(counts)
    varying = int(np.count_nonzero(counts.max(axis=0).toarray() != counts.min(axis=0).toarray()))
    if varying:
        return varying
    if counts.shape[0] < 2:
        raise InputError("a single spot carries no variation to find domains in; give a slice with more spots")
    raise InputError(
        f"the expression carries no signal to find domains in: each of the {counts.shape[1]} genes has the same "
        f"count in all {counts.shape[0]} spots; check that X holds each spot's raw counts (was X overwritten, "
        "e.g. filled with a constant? was the wrong layer put in X?)"
    )


def _seurat_v3(adata: AnnData, n_top_genes: int) -> pd.DataFrame:
    """scanpy's seurat_v3 gene statistics (``var`` columns) on the raw counts of ``adata``.

    It reads the checked counts (CSR float32, an entry stored twice summed): scanpy's seurat_v3 crashes the
    interpreter on a matrix with duplicate entries and refuses float16.
    """
    counts = check_counts(adata)
    varying = require_variation(counts)
    # loess fits only the varying genes, and crashes the interpreter (segfault) when its window holds none of them
    spans = [span for span in LOESS_SPANS if varying * span >= 1]
    for span in spans:
        tmp = AnnData(X=counts)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the counts were validated as raw: scanpy's reminders say nothing
                sc.pp.highly_variable_genes(tmp, flavor="seurat_v3", n_top_genes=n_top_genes, span=span)
            return tmp.var
        except ValueError as err:  # the loess fit failed (singular): a wider span smooths over more genes
            failure = err
    raise InputError(
        f"seurat_v3 cannot rank the genes of these {adata.n_obs} spots ({varying} of {adata.n_vars} genes vary across "
        f"them): its loess fit of variance on mean fails even with span {spans[-1]} ({failure}); give a slice with "
        "more spots, or check that X holds the raw counts of every gene"
    ) from failure


def select_hvgs(adata: AnnData, n_top_genes: int) -> np.ndarray:
    """Boolean mask of highly variable genes (seurat_v3 on raw counts); all genes when there are few."""
    if adata.n_vars <= n_top_genes:
        return np.ones(adata.n_vars, dtype=bool)
    return _seurat_v3(adata, n_top_genes)["highly_variable"].to_numpy()


def hvg_ranks(adata: AnnData) -> np.ndarray | None:
    """Every gene's seurat_v3 rank among the genes of ``adata`` (0 = most variable; ``rank < n`` is exactly
    ``select_hvgs(adata, n)``), or None when seurat_v3 cannot rank them (too few or degenerate genes)."""
    try:
        return _seurat_v3(adata, adata.n_vars)["highly_variable_rank"].to_numpy(dtype=np.float32)
    except InputError:  # seurat_v3 cannot rank them, however wide the loess span
        return None


def library_sizes(adata: AnnData) -> np.ndarray | None:
    """Each spot's total count over all genes measured, when ``X`` holds only a subset of them.

    Files that keep a gene subset (e.g. repackaged Visium data) can store the true totals in
    ``obs['total_counts_all_genes']``; normalising by the subset's own total would make each spot's scale depend
    on how much of its expression the subset happens to cover. ``None`` (normalise by the counts in ``X``) when
    the column is absent, or, with a warning, when it is missing (NaN) for any spot (slices with and without it
    joined by an outer join).
    """
    if LIBRARY_SIZE_KEY not in adata.obs:
        return None
    values = adata.obs[LIBRARY_SIZE_KEY].to_numpy(dtype=np.float64, na_value=np.nan)
    missing = int(np.isnan(values).sum())
    if missing:
        warn(
            f"obs[{LIBRARY_SIZE_KEY!r}] is missing for {missing} of {values.size} spots (e.g. slices with and "
            "without it joined by an outer join); every spot is normalised by its counts in X instead"
        )
        return None
    return values


def library_size_source(library_size: np.ndarray | None) -> str:
    """Where the normalisation totals came from (what ``library_sizes`` returned), for ``uns['tissuegraph']``."""
    return "counts in X" if library_size is None else f"obs[{LIBRARY_SIZE_KEY!r}]"


def normalise_log(
    counts: sparse.csr_matrix | np.ndarray, genes: np.ndarray, library_size: np.ndarray | None = None
) -> np.ndarray:
    """Normalise each spot to 1e4 counts, log1p, and keep ``genes`` (dense float32).

    The total is ``library_size`` when given (see ``library_sizes``), else each spot's counts over all genes in
    ``counts``.
    """
    counts = sparse.csr_matrix(counts, dtype=np.float32)
    in_x = np.asarray(counts.sum(axis=1)).ravel()
    totals = in_x if library_size is None else np.asarray(library_size, dtype=np.float64)
    if totals.shape != in_x.shape:
        raise InputError(
            f"library_size must hold one total per spot ({in_x.size}), not shape {totals.shape}: pass each spot's "
            "total count, or None to use the counts in X"
        )
    if not np.isfinite(totals).all():
        raise InputError(
            f"library_size has {int((~np.isfinite(totals)).sum())} non-finite value(s) (NaN or infinite): pass each "
            "spot's total count, or None to use the counts in X"
        )
    empty = (in_x <= 0) | (totals <= 0)
    if empty.any():
        warn(
            f"{int(empty.sum())} spot(s) have no counts; they are kept with all-zero features and take their "
            "domain from their spatial neighbours (filter them out first if that is not wanted)"
        )
    scale = sparse.diags(np.where(empty, 0.0, 1e4 / np.maximum(totals, 1e-12)).astype(np.float32))
    logged = (scale @ counts).log1p()
    return np.asarray(logged[:, genes].todense(), dtype=np.float32)


def _column_std(x: np.ndarray, rows_per_block: int = 4096) -> np.ndarray:
    """Each column's sample standard deviation (ddof 1), summed in float64 over blocks of rows.

    numpy's float32 reduction down the rows adds one row at a time, so its error grows with the number of spots
    (relative 1e-4 to 1e-3 per gene at 40k-150k spots); float64 blocks keep it at rounding without a float64 copy
    of the whole matrix.
    """
    mean = x.sum(axis=0, dtype=np.float64) / x.shape[0]
    squares = np.zeros(x.shape[1])
    for start in range(0, x.shape[0], rows_per_block):
        centred = x[start : start + rows_per_block].astype(np.float64) - mean
        squares += np.einsum("ij,ij->j", centred, centred)
    return np.sqrt(squares / (x.shape[0] - 1)).astype(np.float32)


def normalise_log_scale(
    counts: sparse.csr_matrix | np.ndarray,
    genes: np.ndarray,
    clip: float = 10.0,
    library_size: np.ndarray | None = None,
) -> np.ndarray:
    """``normalise_log``, then scale each gene to unit variance (no centring) and clip at ``clip``."""
    dense = normalise_log(counts, genes, library_size)
    std = _column_std(dense) if dense.shape[0] > 1 else np.ones(dense.shape[1], dtype=np.float32)
    # a constant gene: float32's std of equal values can be 1e-6 rather than 0, which would blow it up to the clip
    std[(std == 0) | (dense.max(axis=0) == dense.min(axis=0))] = 1.0
    dense /= std
    np.minimum(dense, clip, out=dense)
    return dense


def _gene_mask(genes, n_vars: int) -> np.ndarray:
    """``genes`` given to ``preprocess`` as a boolean mask over the ``n_vars`` genes: a mask (array, list or Series,
    e.g. ``adata.var['highly_variable']``) or integer positions; anything else is refused before it indexes X."""
    given = np.asarray(genes)
    fix = "give a boolean mask over the genes (e.g. adata.var_names.isin(names)) or their integer positions"
    if given.ndim != 1:
        raise InputError(f"genes must be one-dimensional, got shape {given.shape}; {fix}")
    if given.dtype == bool:
        if given.size != n_vars:
            raise InputError(f"the genes mask has {given.size} entries but the data has {n_vars} genes; {fix}")
        mask = given.copy()
    elif np.issubdtype(given.dtype, np.integer) or given.size == 0:
        positions = given.astype(np.int64)
        if positions.size and (positions.min() < -n_vars or positions.max() >= n_vars):
            raise InputError(f"gene positions must lie in 0..{n_vars - 1} (the data has {n_vars} genes); {fix}")
        mask = np.zeros(n_vars, dtype=bool)
        mask[positions] = True
    else:
        raise InputError(f"genes holds {given.dtype} values; {fix}")
    if not mask.any():
        raise InputError(f"genes selects none of the {n_vars} genes; {fix}")
    return mask


def preprocess(
    adata: AnnData,
    n_top_genes: int = 3000,
    *,
    clip: float = 10.0,
    genes: np.ndarray | None = None,
    library_size: np.ndarray | None = None,
    key_added: str = "X_expr",
) -> AnnData:
    """Compute the model's expression features into ``obsm[key_added]`` and flag genes in ``var['highly_variable']``.

    ``genes`` (a boolean mask over the genes, e.g. ``per_slice_hvgs`` for several slices or
    ``adata.var_names.isin(names)``, or their integer positions) skips the selection and uses exactly those genes.
    ``library_size`` (one total per spot) replaces the counts in ``X`` as the normaliser, see ``library_sizes``.
    """
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise InputError(f"the input is empty ({adata.n_obs} spots x {adata.n_vars} genes); give a slice with data.")
    counts = check_counts(adata)  # seurat_v3 and the normalisation below assume raw counts
    genes = select_hvgs(adata, n_top_genes) if genes is None else _gene_mask(genes, adata.n_vars)
    require_variation(counts[:, genes])  # constant genes would train a model on nothing, into one domain
    adata.var["highly_variable"] = genes
    adata.obsm[key_added] = normalise_log_scale(counts, genes, clip, library_size)
    return adata
