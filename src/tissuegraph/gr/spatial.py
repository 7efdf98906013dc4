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

from tissuegraph.errors import InputError, warn
from tissuegraph.io.validate import check_coordinates, quote_examples

#: The column that names each spot's slice unless told otherwise; an input without it is one slice.
DEFAULT_BATCH_KEY = "batch"


def slice_column(adata: AnnData, batch_key: str | None) -> pd.Series | None:
    """``obs[batch_key]``, or None for a single slice (no key, or the default column absent).

    A column named on purpose that is missing is refused: treating the input as one slice would silently join
    slices that share a coordinate frame with edges between them. So are missing labels (NaN, None): read as text
    they would become a slice called 'nan'.
    """
    if batch_key is None or (batch_key not in adata.obs and batch_key == DEFAULT_BATCH_KEY):
        return None
    if batch_key not in adata.obs:
        raise InputError(
            f"obs has no column {batch_key!r} naming the slices (columns: "
            f"{quote_examples(list(adata.obs.columns), n=8) or 'none'}); pass batch_key= the column that holds "
            "each spot's slice, or None for a single slice"
        )
    column = adata.obs[batch_key]
    missing = adata.obs_names[column.isna().to_numpy()]
    if len(missing):
        raise InputError(
            f"{len(missing)} of {adata.n_obs} spots (e.g. {quote_examples(list(missing))}) have no slice label (NaN "
            f"or None in obs[{batch_key!r}]); every spot needs its slice: fill those labels or drop those spots"
        )
    return column


def slice_groups(adata: AnnData, batch_key: str | None) -> list[np.ndarray]:
    """Row indices of each slice, in order of first appearance (one group when there is no batch column)."""
    column = slice_column(adata, batch_key)
    if column is None:
        return [np.arange(adata.n_obs)]
    codes, _ = pd.factorize(column.astype(str), sort=False)
    return [np.flatnonzero(codes == c) for c in range(codes.max() + 1)]


def _slice_name(adata: AnnData, batch_key: str | None, rows: np.ndarray) -> str:
    column = slice_column(adata, batch_key)
    return "input" if column is None else str(column.iloc[rows[0]])


def check_slice_sizes(adata: AnnData, n_neighbors: int, batch_key: str | None = "batch") -> None:
    """Refuse, by name and before any work, a slice with too few spots for its ``n_neighbors``-NN graph."""
    for rows in slice_groups(adata, batch_key):
        if rows.size <= n_neighbors:
            raise InputError(
                f"slice {_slice_name(adata, batch_key, rows)!r} has {rows.size} spots but a {n_neighbors}-nearest-"
                f"neighbour graph needs at least {n_neighbors + 1}; lower n_neighbors (--k) or drop this slice"
            )


def check_slice_layouts(adata: AnnData, batch_key: str | None = "batch", n_neighbors: int = 6) -> None:
    """Refuse, by name and before any work, a slice whose spots all sit at one position (the check on the whole
    input passes when other slices spread out, yet this slice's graph would follow the order of its rows), or with
    more spots at one position than a spot has neighbours plus itself: placeholder coordinates such as (0, 0) for
    cells without a position, whose graph would link them only to each other and make them a domain of their own."""
    coords = check_coordinates(adata, "input")
    groups = slice_groups(adata, batch_key)
    for rows in groups:
        if len(groups) > 1 and rows.size > 1 and not np.ptp(coords[rows], axis=0).any():
            x, y = coords[rows[0]]
            raise InputError(
                f"slice {_slice_name(adata, batch_key, rows)!r}: all {rows.size} of its spots sit at the same position "
                f"({x:g}, {y:g}) in obsm['spatial'], so it has no layout to build a graph from; store each spot's own "
                "x, y coordinates, or drop this slice"
            )
        positions, counts = np.unique(coords[rows], axis=0, return_counts=True)
        if counts.max() > n_neighbors + 1:
            x, y = positions[np.argmax(counts)]
            where = "the input" if len(groups) == 1 else f"slice {_slice_name(adata, batch_key, rows)!r}"
            raise InputError(
                f"{where}: {counts.max()} of its {rows.size} spots sit at the same position ({x:g}, {y:g}) in "
                f"obsm['spatial'] (placeholder coordinates?), more than a spot's {n_neighbors} neighbours plus "
                "itself, so their graph would link them only to each other; store their real positions, or drop "
                f"them: adata = adata[~(adata.obsm['spatial'] == ({x:g}, {y:g})).all(axis=1)].copy()"
            )


def check_slice_counts(adata: AnnData, batch_key: str | None = "batch") -> None:
    """Refuse, by name and before any work, a slice whose spots hold no counts at all, or the same counts in every
    spot: in a file of several slices the matrix as a whole varies, yet that slice would train on features that
    tell none of its spots apart and come out as one domain."""
    counted = np.asarray(adata.X.getnnz(axis=1) if sparse.issparse(adata.X) else np.count_nonzero(adata.X, axis=1))
    groups = slice_groups(adata, batch_key)
    if len(groups) < 2:  # one slice: the checks on the whole input cover it
        return
    for rows in groups:
        if not counted[rows].any():
            raise InputError(
                f"slice {_slice_name(adata, batch_key, rows)!r} holds no counts: all {rows.size} of its spots are 0 "
                "in X; check that its counts were read from the right matrix, or drop this slice"
            )
        block = sparse.csr_matrix(adata.X[rows])
        if rows.size > 1 and (block.max(axis=0).toarray() == block.min(axis=0).toarray()).all():
            raise InputError(
                f"slice {_slice_name(adata, batch_key, rows)!r} has the same counts in all {rows.size} of its spots, "
                "so nothing tells them apart; check that its counts were read from the right matrix (was X "
                "overwritten?), or drop this slice"
            )


#: Distances equal to the k-th within this relative tolerance are ties (float rounding of grid coordinates).
TIE_TOLERANCE = 1e-6


def nearest_with_ties(coords: np.ndarray, n_neighbors: int) -> tuple[np.ndarray, np.ndarray]:
    """Each spot's ``n_neighbors`` nearest other spots plus every spot tied with the last of them (up to twice as
    many), as ``(neighbours, kept)``: indices nearest first and a mask of those that count.

    On a grid the k-th distance is shared: a square grid's 6th nearest bin is one of 4 equally near diagonals, and
    which 2 a KD-tree returned depended on the order of the rows, so the graph, and the domains, changed when the
    spots were reordered, and its diagonals all leaned one way. Keeping the ties gives the 8 neighbours of the
    square ring (Visium HD, Stereo-seq bins), still 6 on Visium's hexagons, and the same result in any row order.
    """
    n_query = min(2 * n_neighbors, coords.shape[0] - 1)
    # Querying the fitted points themselves (None) leaves each spot out of its own list even when several
    # spots share its position; passing coords again could drop the spot's self-match instead.
    distances, neighbours = NearestNeighbors(n_neighbors=n_query).fit(coords).kneighbors(None)
    kept = distances <= distances[:, n_neighbors - 1 : n_neighbors] * (1 + TIE_TOLERANCE)
    return neighbours, kept


def _knn_with_ties(coords: np.ndarray, n_neighbors: int) -> sparse.csr_matrix:
    """The directed kNN graph of ``nearest_with_ties``."""
    neighbours, kept = nearest_with_ties(coords, n_neighbors)
    rows = np.broadcast_to(np.arange(coords.shape[0])[:, None], kept.shape)[kept]
    ones = np.ones(rows.size, dtype=np.float32)
    return sparse.csr_matrix((ones, (rows, neighbours[kept])), shape=(coords.shape[0], coords.shape[0]))


def _slice_graph(coords: np.ndarray, n_neighbors: int | None, radius: float | None) -> sparse.csr_matrix:
    if radius is not None:
        nn = NearestNeighbors(radius=radius).fit(coords)
        graph = nn.radius_neighbors_graph(coords, mode="connectivity")
    else:
        graph = _knn_with_ties(coords, n_neighbors)
    graph = graph.maximum(graph.T).tocsr()
    graph.setdiag(0)
    graph.eliminate_zeros()
    return graph.astype(np.float32)


def _median_spacing(slices: list[np.ndarray]) -> float:
    """Median distance from a spot to its nearest neighbour within its own slice (slices may share a frame)."""
    distances = [NearestNeighbors(n_neighbors=1).fit(xy).kneighbors(None)[0].ravel() for xy in slices if len(xy) > 1]
    return float(np.median(np.concatenate(distances))) if distances else 0.0


def spatial_neighbors(
    adata: AnnData,
    *,
    n_neighbors: int | None = 6,
    radius: float | None = None,
    batch_key: str | None = "batch",
    key_added: str = "spatial_connectivities",
) -> AnnData:
    """Symmetric kNN (or radius) graph on ``obsm['spatial']`` per slice into ``obsp[key_added]``; no self loops.

    A radius that leaves spots with less than one neighbour on average (coordinates in other units than the
    radius, say) gives a warning: the model would train with almost no spatial information.
    """
    coords = check_coordinates(adata, "input")
    if radius is None:
        if isinstance(n_neighbors, bool) or not isinstance(n_neighbors, int | np.integer) or n_neighbors < 1:
            raise InputError(f"n_neighbors must be a positive integer (got {n_neighbors!r}), or give a radius instead.")
        check_slice_sizes(adata, n_neighbors, batch_key)
    elif not radius > 0:
        raise InputError(f"radius must be a positive distance in the units of obsm['spatial'] (got {radius!r}).")
    check_slice_layouts(adata, batch_key, n_neighbors if radius is None else 6)
    blocks = []
    groups = slice_groups(adata, batch_key)
    for rows in groups:
        block = _slice_graph(coords[rows], n_neighbors, radius).tocoo()
        blocks.append((rows[block.row], rows[block.col]))
    row = np.concatenate([b[0] for b in blocks])
    col = np.concatenate([b[1] for b in blocks])
    graph = sparse.csr_matrix((np.ones(row.size, dtype=np.float32), (row, col)), shape=(adata.n_obs, adata.n_obs))
    mean_degree = float(graph.nnz / max(adata.n_obs, 1))
    if radius is not None and mean_degree < 1:
        spacing = _median_spacing([coords[rows] for rows in groups])
        warn(
            f"radius {radius:g} gives spots {mean_degree:.2f} neighbours on average, so the graph holds almost no "
            f"spatial information; the median distance to a spot's nearest neighbour is {spacing:g}: choose a radius "
            "of a few times that, in the units of obsm['spatial']"
        )
    adata.obsp[key_added] = graph
    adata.uns.setdefault("tissuegraph_graph", {})[key_added] = {
        "n_neighbors": n_neighbors if radius is None else None,
        "radius": radius,
        "mean_degree": mean_degree,
    }
    return adata


def undirected_edges(graph: sparse.spmatrix) -> np.ndarray:
    """Each undirected edge of a symmetric graph once, as an (E, 2) array with i < j."""
    upper = sparse.triu(graph, k=1).tocoo()
    return np.stack([upper.row, upper.col], axis=1).astype(np.int64)
