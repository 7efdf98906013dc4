"""Shared fixtures: where the real datasets live, and small real slices for fast end-to-end tests."""

from __future__ import annotations

import os
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
from scipy import sparse

DATA_DIR = Path(os.environ.get("TISSUEGRAPH_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def unsorted_csr(dense: np.ndarray) -> sparse.csr_matrix:
    """``dense`` as CSR with each row's columns stored in reverse order (as ``b[:, shared_genes]`` can leave them)."""
    ordered = sparse.csr_matrix(dense)
    rows = zip(ordered.indptr[:-1], ordered.indptr[1:], strict=True)
    reverse = np.concatenate([np.arange(a, b)[::-1] for a, b in rows])
    matrix = sparse.csr_matrix((ordered.data[reverse], ordered.indices[reverse], ordered.indptr), shape=dense.shape)
    assert not matrix.has_sorted_indices
    return matrix


def real_data(name: str) -> Path:
    """Path of a shared real dataset; the test is skipped, with the reason shown, when it is absent."""
    path = DATA_DIR / name
    if not path.exists():
        pytest.skip(f"real data not found at {path}; set TISSUEGRAPH_DATA to the shared data folder")
    return path


@pytest.fixture(scope="session")
def dlpfc_151673() -> ad.AnnData:
    return ad.read_h5ad(real_data("dlpfc_151673.h5ad"))


@pytest.fixture(scope="session")
def starmap() -> ad.AnnData:
    return ad.read_h5ad(real_data("starmap_mpfc_3slices.h5ad"))
