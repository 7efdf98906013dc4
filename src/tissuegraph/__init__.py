"""tissuegraph: spatial domains and alignment-free integration of spatial transcriptomics slices.

The public surface, scanpy style: readers at the top level, then ``pp`` (preprocessing), ``gr`` (graphs),
``im`` (H&E image features), ``tl`` (tools), ``cluster``, ``metrics``, ``pl`` (figures), ``datasets``,
``report`` (the HTML report of a result) and ``nn`` (the torch models and training loops under ``tl``).

Submodules load on first use (``tg.tl`` imports torch when first touched), so importing the package, and the
command line's ``--help``, costs well under a second instead of several.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import version
from typing import TYPE_CHECKING

from tissuegraph.errors import InputError, TissuegraphWarning

if TYPE_CHECKING:
    from tissuegraph import cluster, datasets, gr, im, io, metrics, nn, pl, pp, report, tl
    from tissuegraph.io import read, read_gem, read_h5ad, read_tables, read_visium, read_xenium, write_h5ad

__version__ = version("tissuegraph")  # pyproject.toml is the one place the version is written

_SUBMODULES = ("pp", "gr", "im", "tl", "pl", "cluster", "metrics", "datasets", "report", "io", "nn")
_READERS = ("read", "read_h5ad", "read_visium", "read_xenium", "read_gem", "read_tables", "write_h5ad")

__all__ = [
    "read",
    "read_h5ad",
    "read_visium",
    "read_xenium",
    "read_gem",
    "read_tables",
    "write_h5ad",
    "io",
    "pp",
    "gr",
    "im",
    "tl",
    "pl",
    "cluster",
    "metrics",
    "datasets",
    "report",
    "nn",
    "InputError",
    "TissuegraphWarning",
]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return import_module(f"tissuegraph.{name}")
    if name in _READERS:
        return getattr(import_module("tissuegraph.io"), name)
    raise AttributeError(f"module 'tissuegraph' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_SUBMODULES, *_READERS})
