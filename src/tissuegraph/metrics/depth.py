"""Do the domains follow sequencing depth? Library size per domain, and the share of it the domains explain.

Capture efficiency varies across a slide (section thickness, permeabilisation, damage) and log-normalised
expression still carries it (a shallow spot has more zero counts), so an embedding can learn depth along with
tissue structure. Tissue regions differ in depth too (white matter is shallower than grey matter), so no
threshold tells biology from artefact: a domain set apart mainly by its library size, without marker genes of
its own, deserves a second look.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from tissuegraph.errors import InputError
from tissuegraph.gr.spatial import slice_column
from tissuegraph.labels import sorted_labels
from tissuegraph.pp.expression import library_sizes


def _domains(adata: AnnData, domain_key: str) -> pd.Series:
    """The labels as strings, missing ones (e.g. unannotated spots of a ground truth) as None."""
    if domain_key not in adata.obs:
        raise InputError(f"obs[{domain_key!r}] not found; run tl.domains or tl.integrate first")
    labels = adata.obs[domain_key]
    return labels.astype(str).where(labels.notna().to_numpy(), None).reset_index(drop=True)


def _counts_per_spot(adata: AnnData) -> tuple[np.ndarray, np.ndarray]:
    """Each spot's total count and number of detected genes in ``X``."""
    x = sparse.csr_matrix(adata.X)
    return np.asarray(x.sum(axis=1), dtype=np.float64).ravel(), np.asarray((x > 0).sum(axis=1)).ravel()


def library_size(adata: AnnData) -> np.ndarray:
    """Each spot's library size: the all-gene total the file stores (``pp.library_sizes``), else its counts in X."""
    stored = library_sizes(adata)
    return stored if stored is not None else _counts_per_spot(adata)[0]


def depth_explained(adata: AnnData, *, domain_key: str = "domain", batch_key: str = "batch") -> float:
    """Share (0-1) of the within-slice variance of log library size that the domains explain (eta squared).

    Computed within each slice and pooled, so slices sequenced to different depths do not count as the
    domains' doing. Spots without a label are left out. NaN when no spot's library size differs from its
    slice's mean.
    """
    column = slice_column(adata, batch_key)
    frame = pd.DataFrame(
        {
            "depth": np.log1p(library_size(adata)),
            "slice": "" if column is None else column.astype(str).to_numpy(),
            "domain": _domains(adata, domain_key),
        }
    ).dropna(subset=["domain"])
    around_slice = frame["depth"] - frame.groupby("slice")["depth"].transform("mean")
    around_domain = frame["depth"] - frame.groupby(["slice", "domain"])["depth"].transform("mean")
    total = float((around_slice**2).sum())
    return float("nan") if total <= 0 else 1.0 - float((around_domain**2).sum()) / total


def library_size_by_domain(adata: AnnData, *, domain_key: str = "domain") -> pd.DataFrame:
    """One row per domain (sorted naturally): spots, median library size and median genes detected in ``X``;
    spots without a label are left out."""
    domains = _domains(adata, domain_key)
    _, detected = _counts_per_spot(adata)
    frame = pd.DataFrame({"domain": domains, "library_size": library_size(adata), "genes_detected": detected})
    grouped = frame.dropna(subset=["domain"]).groupby("domain")
    table = pd.DataFrame(
        {
            "spots": grouped.size(),
            "median_library_size": grouped["library_size"].median(),
            "median_genes_detected": grouped["genes_detected"].median(),
        }
    )
    return table.loc[sorted_labels(table.index)]
