"""tissuegraph: spatial domains and alignment-free integration of spatial transcriptomics slices.

The public surface, scanpy style: readers at the top level, then ``pp`` (preprocessing), ``gr`` (graphs),
``tl`` (tools), ``cluster``, ``metrics`` and ``datasets``.
"""

from tissuegraph import cluster, datasets, gr, metrics, pp, tl
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
    "tl",
    "cluster",
    "metrics",
    "datasets",
    "InputError",
]
