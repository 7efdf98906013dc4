"""Spatial graphs: sparse, per slice, block-diagonal across slices."""

from tissuegraph.gr.edge_drop import edge_drop_probabilities
from tissuegraph.gr.spatial import (
    check_slice_counts,
    check_slice_layouts,
    check_slice_sizes,
    spatial_neighbors,
    undirected_edges,
)

__all__ = [
    "check_slice_counts",
    "check_slice_layouts",
    "check_slice_sizes",
    "spatial_neighbors",
    "undirected_edges",
    "edge_drop_probabilities",
]
