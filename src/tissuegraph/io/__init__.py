"""Input and output: every reader returns a validated AnnData in one layout.

X holds raw counts as CSR float32, obsm['spatial'] the x, y coordinates (float64), obs_names the spot ids,
var_names unique gene names and, for Visium, uns['spatial'][library_id] the images and scale factors.
"""

from __future__ import annotations

from pathlib import Path

from anndata import AnnData

from tissuegraph.errors import InputError
from tissuegraph.io.gem import is_gem, read_gem
from tissuegraph.io.h5ad import read_h5ad
from tissuegraph.io.spaceranger import read_visium
from tissuegraph.io.tables import read_tables
from tissuegraph.io.validate import validate_spatial
from tissuegraph.io.write import check_writable, write_h5ad
from tissuegraph.io.xenium import is_xenium, read_xenium

__all__ = [
    "read",
    "read_h5ad",
    "read_tables",
    "read_visium",
    "read_xenium",
    "read_gem",
    "validate_spatial",
    "write_h5ad",
    "check_writable",
]


def read(path: str | Path) -> AnnData:
    """Read one slice from a Space Ranger or Xenium output folder, an .h5ad file or a Stereo-seq GEM file (in bins of
    50 DNBs: ``read_gem`` for another size), chosen by what ``path`` is."""
    path = Path(path)
    if path.is_dir():
        return read_xenium(path) if is_xenium(path) else read_visium(path)
    if path.suffix.lower() == ".h5ad":
        return read_h5ad(path)
    if is_gem(path):
        return read_gem(path)
    if not path.exists():
        raise InputError(f"'{path}' not found; check the path")
    hint = (
        "; a 10x .h5 alone has no spot positions: pass the Space Ranger folder that holds it and spatial/"
        if path.suffix.lower() == ".h5"
        else ""
    )
    raise InputError(
        f"cannot read '{path}': supported inputs are an .h5ad file with obsm['spatial'], a Space Ranger output "
        "folder, a Xenium output folder or a Stereo-seq .gem(.gz) file; turn counts + coordinates text tables into "
        "one with `tissuegraph read-tables COUNTS COORDS --out slice.h5ad` (Python: tissuegraph.io.read_tables)" + hint
    )
