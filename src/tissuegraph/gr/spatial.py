"""Spatial neighbour graphs built per slice with KD-trees, stored as sparse matrices (never N x N dense).

Slices are placed block-diagonally: two slices never share an edge, even when their coordinates overlap, so
slices need no common coordinate frame.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse
from sklearn.neighbors import NearestNeighbors

from tissuegraph.errors import InputError


def slice_groups(adata: AnnData, batch_key: str | None) -> list[np.ndarray]:
    """Row indices of each slice, in order of first appearance (one group when there is no batch column)."""
    if batch_key is None or batch_key not in adata.obs:
        return [np.arange(adata.n_obs)]
    codes, _ = pd.factorize(adata.obs[batch_key].astype(str), sort=False)
    return [np.flatnonzero(codes == c) for c in range(codes.max() + 1)]


def _slice_name(adata: AnnData, batch_key: str | None, rows: np.ndarray) -> str:
    return str(adata.obs[batch_key].iloc[rows[0]]) if batch_key is not None and batch_key in adata.obs else "input"


def check_slice_sizes(adata: AnnData, n_neighbors: int, batch_key: str | None = "batch") -> None:
    """Refuse, by name and before any work, a slice with too few spots for its ``n_neighbors``-NN graph."""
    for rows in slice_groups(adata, batch_key):
        if rows.size <= n_neighbors:
            raise InputError(
                f"slice {_slice_name(adata, batch_key, rows)!r} has {rows.size} spots but a {n_neighbors}-nearest-"
                f"neighbour graph needs at least {n_neighbors + 1}; lower n_neighbors (--k) or drop this slice"
            )


def _slice_graph(coords: np.ndarray, n_neighbors: int | None, radius: float | None) -> sparse.csr_matrix:
    if radius is not None:
        nn = NearestNeighbors(radius=radius).fit(coords)
        graph = nn.radius_neighbors_graph(coords, mode="connectivity")
    else:
        nn = NearestNeighbors(n_neighbors=n_neighbors + 1).fit(coords)
        graph = nn.kneighbors_graph(coords, mode="connectivity")
    graph = graph.maximum(graph.T).tocsr()
    graph.setdiag(0)
    graph.eliminate_zeros()
    return graph.astype(np.float32)


def spatial_neighbors(
    adata: AnnData,
    *,
    n_neighbors: int | None = 6,
    radius: float | None = None,
    batch_key: str | None = "batch",
    key_added: str = "spatial_connectivities",
) -> AnnData:
    """Symmetric kNN (or radius) graph on ``obsm['spatial']`` per slice into ``obsp[key_added]``; no self loops."""
    if "spatial" not in adata.obsm:
        raise InputError("no coordinates: obsm['spatial'] is missing; set it to an (n_spots, 2) array of x, y.")
    if radius is None and (n_neighbors is None or n_neighbors < 1):
        raise InputError(f"n_neighbors must be a positive integer (got {n_neighbors}), or give a radius instead.")
    if radius is None:
        check_slice_sizes(adata, n_neighbors, batch_key)
    coords = np.asarray(adata.obsm["spatial"], dtype=np.float64)[:, :2]
    blocks = []
    for rows in slice_groups(adata, batch_key):
        block = _slice_graph(coords[rows], n_neighbors, radius).tocoo()
        blocks.append((rows[block.row], rows[block.col]))
    row = np.concatenate([b[0] for b in blocks])
    col = np.concatenate([b[1] for b in blocks])
    graph = sparse.csr_matrix((np.ones(row.size, dtype=np.float32), (row, col)), shape=(adata.n_obs, adata.n_obs))
    adata.obsp[key_added] = graph
    adata.uns.setdefault("tissuegraph_graph", {})[key_added] = {
        "n_neighbors": n_neighbors if radius is None else None,
        "radius": radius,
        "mean_degree": float(graph.nnz / max(adata.n_obs, 1)),
    }
    return adata


def undirected_edges(graph: sparse.spmatrix) -> np.ndarray:
    """Each undirected edge of a symmetric graph once, as an (E, 2) array with i < j."""
    upper = sparse.triu(graph, k=1).tocoo()
    return np.stack([upper.row, upper.col], axis=1).astype(np.int64)
