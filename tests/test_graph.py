"""Spatial graphs and edge-drop probabilities."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
from scipy import sparse

from tissuegraph import gr
from tissuegraph.errors import InputError


def _grid(n_side: int, batch: list[str] | None = None) -> ad.AnnData:
    xs, ys = np.meshgrid(np.arange(n_side), np.arange(n_side))
    coords = np.stack([xs.ravel(), ys.ravel()], 1).astype(float)
    adata = ad.AnnData(X=sparse.csr_matrix(np.ones((coords.shape[0], 3), dtype=np.float32)))
    adata.obsm["spatial"] = coords
    if batch is not None:
        adata.obs["batch"] = batch
    return adata


def test_knn_graph_is_symmetric_sparse_without_self_loops() -> None:
    adata = gr.spatial_neighbors(_grid(10), n_neighbors=4)
    graph = adata.obsp["spatial_connectivities"]
    assert sparse.issparse(graph)
    assert (graph != graph.T).nnz == 0
    assert graph.diagonal().sum() == 0
    # On a unit grid the 4 nearest neighbours of an interior node are its 4 axis neighbours.
    interior = 5 * 10 + 5
    assert sorted(graph[interior].indices) == [interior - 10, interior - 1, interior + 1, interior + 10]


def test_a_grid_keeps_every_neighbour_tied_with_the_kth_whatever_the_row_order() -> None:
    """Visium HD / Stereo-seq bins: the 6th nearest bin is one of 4 equally near diagonals; all 4 are kept (8 in
    all), and reordering the rows gives the same graph. Visium's hexagonal ring stays 6."""
    adata = _grid(12)
    graph = gr.spatial_neighbors(adata, n_neighbors=6).obsp["spatial_connectivities"]
    xy = adata.obsm["spatial"]
    interior = np.flatnonzero(((xy > 2) & (xy < 9)).all(axis=1))  # a border bin reaches 2 bins in
    assert (graph[interior].getnnz(axis=1) == 8).all()
    order = np.random.default_rng(0).permutation(adata.n_obs)
    shuffled = gr.spatial_neighbors(adata[order].copy(), n_neighbors=6).obsp["spatial_connectivities"]
    assert (shuffled != graph[order][:, order]).nnz == 0
    rows, cols = np.meshgrid(np.arange(12), np.arange(12))
    hexagons = np.stack([cols.ravel() + 0.5 * (rows.ravel() % 2), rows.ravel() * np.sqrt(3) / 2], axis=1) * 137.3
    adata.obsm["spatial"] = hexagons
    graph = gr.spatial_neighbors(adata, n_neighbors=6).obsp["spatial_connectivities"]
    inside = np.flatnonzero((rows.ravel() > 2) & (rows.ravel() < 9) & (cols.ravel() > 2) & (cols.ravel() < 9))
    assert (graph[inside].getnnz(axis=1) == 6).all()


def test_radius_graph_matches_distance() -> None:
    adata = gr.spatial_neighbors(_grid(6), radius=1.5, n_neighbors=None)
    graph = adata.obsp["spatial_connectivities"]
    # interior node: 8 neighbours within sqrt(2) < 1.5
    assert graph[2 * 6 + 2].nnz == 8


def test_slices_never_share_edges_even_when_coordinates_overlap() -> None:
    one = _grid(5)
    both = ad.concat([one, one], index_unique="-")
    both.obs["batch"] = ["a"] * 25 + ["b"] * 25
    graph = gr.spatial_neighbors(both, n_neighbors=4).obsp["spatial_connectivities"].tocoo()
    batch = both.obs["batch"].to_numpy()
    assert graph.nnz > 0
    assert np.all(batch[graph.row] == batch[graph.col])


def test_fewer_spots_than_neighbours_is_a_clear_error() -> None:
    adata = _grid(2)
    with pytest.raises(InputError, match="needs at least 7"):
        gr.spatial_neighbors(adata, n_neighbors=6)


def test_a_slice_too_small_for_its_graph_is_named() -> None:
    adata = _grid(4, batch=["big"] * 11 + ["small"] * 5)
    gr.check_slice_sizes(adata, 3)
    with pytest.raises(InputError, match=r"slice 'small' has 5 spots but a 6-nearest-neighbour graph needs at least 7"):
        gr.check_slice_sizes(adata, 6)
    with pytest.raises(InputError, match="slice 'small'"):
        gr.spatial_neighbors(adata, n_neighbors=6)


def test_placeholder_positions_shared_by_more_spots_than_a_neighbourhood_are_refused() -> None:
    """Cells exported at (0, 0) for want of a position formed a domain of their own, silently. Up to k + 1 spots
    at one position still reach real neighbours; one more and they link only to each other."""
    adata = _grid(10, batch=["a"] * 50 + ["b"] * 50)
    adata.obsm["spatial"][50:57] = 0.0  # 7 spots of slice 'b' at (0, 0): k + 1 for k = 6
    gr.spatial_neighbors(adata, n_neighbors=6)
    adata.obsm["spatial"][57] = 0.0
    with pytest.raises(InputError, match=r"slice 'b': 8 of its 50 spots sit at the same position \(0, 0\)"):
        gr.spatial_neighbors(adata, n_neighbors=6)
    gr.spatial_neighbors(adata, n_neighbors=7)
    alone = _grid(10)
    alone.obsm["spatial"][:20] = (30.5, 40.5)
    with pytest.raises(InputError, match=r"the input: 20 of its 100 .* \(30.5, 40.5\).*drop them: adata = adata\[~"):
        gr.spatial_neighbors(alone, radius=1.5, n_neighbors=None)


def test_a_named_slice_column_that_is_missing_is_refused_not_read_as_one_slice() -> None:
    one = _grid(5)
    both = ad.concat([one, one], index_unique="-")  # two slices in one coordinate frame
    both.obs["slice"] = ["a"] * 25 + ["b"] * 25
    with pytest.raises(InputError, match=r"no column 'sample' naming the slices \(columns: 'slice'\)"):
        gr.spatial_neighbors(both, n_neighbors=4, batch_key="sample")
    # only the default column may be absent: the input is then one slice
    assert gr.spatial_neighbors(_grid(5), n_neighbors=4).obsp["spatial_connectivities"].nnz > 0


@pytest.mark.parametrize("missing", [np.nan, None])
def test_spots_without_a_slice_label_are_refused_not_made_a_slice_called_nan(missing: object) -> None:
    adata = _grid(4, batch=["a"] * 8 + ["b"] * 8)
    adata.obs["sample"] = adata.obs["batch"].astype(object)
    adata.obs.iloc[[3, 12], adata.obs.columns.get_loc("sample")] = missing
    with pytest.raises(InputError, match=r"2 of 16 spots \(e.g. '3', '12'\) have no slice label .*obs\['sample'\]"):
        gr.spatial_neighbors(adata, n_neighbors=3, batch_key="sample")
    with pytest.raises(InputError, match="fill those labels or drop those spots"):
        gr.check_slice_sizes(adata, 3, batch_key="sample")


@pytest.mark.parametrize(
    ("coords", "n_neighbors", "message"),
    [
        (np.full((25, 2), np.nan), 4, "NaN or infinite coordinates"),
        (np.zeros((25, 3)) + np.arange(25)[:, None], 4, "exactly 2 columns"),
        (None, 2.5, r"positive integer \(got 2.5\)"),
        (None, True, "positive integer"),
    ],
)
def test_spatial_neighbors_checks_its_input(coords: np.ndarray | None, n_neighbors: object, message: str) -> None:
    adata = _grid(5)
    if coords is not None:
        adata.obsm["spatial"] = coords
    with pytest.raises(InputError, match=message):
        gr.spatial_neighbors(adata, n_neighbors=n_neighbors)


def test_a_radius_that_leaves_spots_isolated_warns_with_the_spot_spacing() -> None:
    adata = _grid(6)
    adata.obsm["spatial"] *= 100.0  # spots 100 units apart, radius given as if in spot spacings
    with pytest.warns(UserWarning, match=r"0\.00 neighbours on average.*nearest neighbour is 100"):
        gr.spatial_neighbors(adata, radius=1.5, n_neighbors=None)
    with pytest.raises(InputError, match="radius must be a positive distance"):
        gr.spatial_neighbors(adata, radius=0.0, n_neighbors=None)
    # two slices in one coordinate frame: the spacing is measured within each, not 0 across them
    both = ad.concat([adata, adata], index_unique="-")
    both.obs["batch"] = ["a"] * 36 + ["b"] * 36
    with pytest.warns(UserWarning, match="nearest neighbour is 100"):
        gr.spatial_neighbors(both, radius=1.5, n_neighbors=None)


def test_undirected_edges_lists_each_edge_once() -> None:
    graph = gr.spatial_neighbors(_grid(4), n_neighbors=4).obsp["spatial_connectivities"]
    edges = gr.undirected_edges(graph)
    assert np.all(edges[:, 0] < edges[:, 1])
    assert 2 * edges.shape[0] == graph.nnz


@pytest.mark.parametrize("weighting", ["softmax", "proportional"])
def test_edge_drop_probabilities_favour_dissimilar_neighbours(weighting: str) -> None:
    # a path 0-1-2: node 2 looks unlike 0 and 1, so the edge 1-2 must be dropped more often than 0-1
    edges = np.array([[0, 1], [1, 2]])
    emb = np.array([[1.0, 0.1], [1.0, 0.2], [-1.0, 1.0]])
    prob = gr.edge_drop_probabilities(edges, emb, 3, weighting=weighting)
    assert prob.shape == (2,)
    assert prob[1] > prob[0]
    # node 1's two edges share its unit of probability (p_10 + p_12 = 1); nodes 0 and 2 have one edge each
    dist = 1 - (emb[edges[:, 0]] * emb[edges[:, 1]]).sum(1) / (
        np.linalg.norm(emb[edges[:, 0]], axis=1) * np.linalg.norm(emb[edges[:, 1]], axis=1)
    )
    share = np.exp(dist) / np.exp(dist).sum() if weighting == "softmax" else dist / dist.sum()
    assert prob[1] == pytest.approx(0.5 * (share[1] + 1.0), rel=1e-5)
    assert prob[0] == pytest.approx(0.5 * (share[0] + 1.0), rel=1e-5)


def test_edge_drop_softmax_matches_per_spot_softmax_and_survives_large_distances() -> None:
    # a star: spot 0 linked to 1..4 at euclidean distances 1000..4000; exp(d) alone would overflow
    edges = np.array([[0, 1], [0, 2], [0, 3], [0, 4]])
    emb = np.array([[0.0], [1000.0], [2000.0], [3000.0], [4000.0]])
    prob = gr.edge_drop_probabilities(edges, emb, 5, metric="euclidean", weighting="softmax")
    assert np.all(np.isfinite(prob))
    centre_share = np.exp(np.array([1000.0, 2000.0, 3000.0, 4000.0]) - 4000.0)
    centre_share /= centre_share.sum()
    np.testing.assert_allclose(prob, 0.5 * (centre_share + 1.0), rtol=1e-5)


def test_edge_drop_probabilities_reject_an_unknown_weighting_or_distance() -> None:
    with pytest.raises(InputError, match="unknown weighting"):
        gr.edge_drop_probabilities(np.array([[0, 1]]), np.eye(2), 2, weighting="uniform")
    with pytest.raises(InputError, match="unknown distance 'manhattan'"):  # it used to be taken as euclidean
        gr.edge_drop_probabilities(np.array([[0, 1]]), np.eye(2), 2, metric="manhattan")
