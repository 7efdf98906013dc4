"""tissuegraph: spatial domains and alignment-free integration of spatial transcriptomics slices.

The public surface, scanpy style: readers at the top level, then ``pp`` (preprocessing), ``gr`` (graphs),
``im`` (H&E image features), ``tl`` (tools), ``cluster``, ``metrics``, ``pl`` (figures), ``datasets`` and
``report`` (the HTML report of a result).
"""

from tissuegraph import cluster, datasets, gr, im, metrics, pl, pp, report, tl
from tissuegraph.errors import InputError
from tissuegraph.io import read, read_h5ad, read_tables, read_visium, write_h5ad

__version__ = "0.1.0"

__all__ = [
    "read",
    "read_h5ad",
    "read_visium",
    "read_tables",
    "write_h5ad",
    "pp",
    "gr",
    "im",
    "tl",
    "pl",
    "cluster",
    "metrics",
    "datasets",
    "report",
    "InputError",
]
