"""Plots (matplotlib, no display needed): every function returns its figure and never shows it.

Domain colours come from ``domain_palette`` and are the same for a domain in every panel of every figure.
"""

from tissuegraph.pl.depth import library_sizes
from tissuegraph.pl.embedding import umap
from tissuegraph.pl.markers import marker_dotplot
from tissuegraph.pl.palette import domain_palette, match_labels, matched_palette
from tissuegraph.pl.spatial import domains
from tissuegraph.pl.training import loss_curve

__all__ = [
    "domains",
    "umap",
    "marker_dotplot",
    "loss_curve",
    "library_sizes",
    "domain_palette",
    "match_labels",
    "matched_palette",
]
