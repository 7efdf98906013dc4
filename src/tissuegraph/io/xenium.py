"""Read a 10x Xenium output folder: the cell x gene matrix and each cell's centroid (in microns).

Xenium writes the counts as a 10x matrix (``cell_feature_matrix.h5`` or the ``cell_feature_matrix/`` mtx folder,
control probes and codewords marked as other feature types and left out) and the cells, with their centroids
``x_centroid`` / ``y_centroid``, in ``cells.parquet`` or ``cells.csv.gz``. The morphology images are not read: image
mode needs an H&E.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from tissuegraph.errors import InputError
from tissuegraph.io.matrix10x import read_10x_matrix
from tissuegraph.io.validate import quote_examples, validate_spatial

MATRIX_FILES = ("cell_feature_matrix.h5", "cell_feature_matrix")
CELLS_FILES = ("cells.parquet", "cells.csv.gz", "cells.csv")
_CENTROIDS = ["x_centroid", "y_centroid"]
#: Files only a Xenium output holds: any of them sends a folder to read_xenium, whose error names what is missing.
_MARKERS = ("experiment.xenium", *MATRIX_FILES, "cell_feature_matrix.zarr.zip", *CELLS_FILES, "cells.zarr.zip")


def is_xenium(folder: Path) -> bool:
    """Whether ``folder`` looks like a Xenium output (holds any file only Xenium writes)."""
    return any((folder / name).exists() for name in _MARKERS)


def read_xenium(folder: str | Path) -> AnnData:
    """Read the Xenium output folder ``folder`` into a validated AnnData: counts of the genes (control probes and
    codewords left out), ``obsm['spatial']`` the cell centroids in microns, cells in the matrix's order."""
    folder = Path(folder)
    matrix = next((folder / name for name in MATRIX_FILES if (folder / name).exists()), None)
    cells_path = next((folder / name for name in CELLS_FILES if (folder / name).is_file()), None)
    if matrix is None or cells_path is None:
        raise InputError(
            f"'{folder}' is not a complete Xenium output folder: it needs {' or '.join(MATRIX_FILES)} and one of "
            f"{', '.join(CELLS_FILES)} (the .zarr.zip files are for Xenium Explorer and are not read); copy them "
            "from the Xenium output"
        )
    adata = read_10x_matrix(matrix)
    cells = _read_cells(cells_path)
    unplaced = adata.obs_names[~adata.obs_names.isin(cells.index)]
    if len(unplaced):
        raise InputError(
            f"'{folder}': {len(unplaced)} of {adata.n_obs} cells of {matrix.name} have no row in {cells_path.name} "
            f"(e.g. {quote_examples(list(unplaced))}); both must come from the same Xenium run: copy the matching files"
        )
    adata.obsm["spatial"] = cells.loc[adata.obs_names, _CENTROIDS].to_numpy(dtype=np.float64)
    return validate_spatial(adata, what=f"'{folder}'")


def _read_cells(path: Path) -> pd.DataFrame:
    """The cells table indexed by cell id (as text, as in the matrix), with numeric centroids."""
    try:
        table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype={"cell_id": str})
    except Exception as err:
        raise InputError(
            f"cannot read '{path}' ({type(err).__name__}: {err}); re-copy it from the Xenium output"
        ) from err
    missing = [name for name in ["cell_id", *_CENTROIDS] if name not in table.columns]
    if missing:
        raise InputError(
            f"'{path}' lacks columns {missing} (found {quote_examples(list(table.columns), n=6)}); a Xenium cells "
            "table has cell_id, x_centroid and y_centroid"
        )
    ids = table["cell_id"].map(lambda v: v.decode() if isinstance(v, bytes) else str(v))  # older parquet: bytes
    duplicated = ids[ids.duplicated()].unique()
    if len(duplicated):
        raise InputError(
            f"'{path}' lists {len(duplicated)} cell ids more than once (e.g. {quote_examples(list(duplicated))}); "
            "re-copy it from the Xenium output"
        )
    centroids = table[_CENTROIDS].apply(pd.to_numeric, errors="coerce")
    centroids.index = pd.Index(ids.to_numpy(), dtype=str)
    return centroids
