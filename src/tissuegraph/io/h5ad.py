"""Read an AnnData ``.h5ad`` file, the format most spatial datasets are shared in."""

from __future__ import annotations

import warnings
from pathlib import Path

import anndata as ad
from anndata import AnnData

from tissuegraph.errors import InputError
from tissuegraph.io.validate import validate_spatial

_COORDINATE_COLUMNS = (("x", "y"), ("X", "Y"))


def read_h5ad(path: str | Path) -> AnnData:
    """Load ``path`` fully into memory and validate it.

    Coordinates must already be in obsm['spatial']: when only obs columns x/y exist we refuse to guess,
    because which column is x and in which units is the user's call.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"file not found: '{path}'; check the path (is the drive mounted, is it a typo?)")
    if path.is_dir():
        raise InputError(f"'{path}' is a folder, not an .h5ad file; for a Space Ranger output folder use read_visium")
    try:
        with warnings.catch_warnings():
            # repeated gene names are made unique and repeated spot ids refused by validate_spatial, in its own
            # words: anndata's advice on them would only confuse
            warnings.filterwarnings("ignore", message="(Variable|Observation) names are not unique")
            adata = ad.read_h5ad(path)
    except Exception as err:
        raise InputError(
            f"cannot read '{path}' as .h5ad ({type(err).__name__}: {err}); make sure it is an AnnData file "
            "written by anndata/scanpy and was copied completely (re-download or re-export it)"
        ) from err
    if "spatial" not in adata.obsm:
        for cols in _COORDINATE_COLUMNS:
            if all(c in adata.obs.columns for c in cols):
                raise InputError(
                    f"'{path}' has no obsm['spatial'] but obs has columns {list(cols)}; tissuegraph does "
                    "not guess coordinates: if these are the spot positions, set "
                    f"adata.obsm['spatial'] = adata.obs[{list(cols)!r}].to_numpy() and save the file again"
                )
    return validate_spatial(adata, what=f"'{path}'")
