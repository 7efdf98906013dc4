"""Read plain text tables (counts + coordinates), the lowest common denominator of spatial platforms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from tissuegraph.errors import InputError
from tissuegraph.io.validate import NUMERIC_KINDS, quote_examples, validate_spatial

_SEPARATORS = {".csv": ",", ".tsv": "\t", ".txt": "\t"}


def read_tables(counts_path: str | Path, coords_path: str | Path, *, sep: str | None = None) -> AnnData:
    """Build a validated AnnData from a spots x genes counts table and a spot coordinates table.

    Both tables have the spot id in the first column; counts have gene names as header. Coordinates are
    the columns named x and y, else the first two numeric columns. The separator comes from the extension
    (.csv comma, .tsv/.txt tab, optionally .gz) unless ``sep`` is given. Spots keep the counts' order;
    every spot must be in both tables so that nothing is dropped silently.
    """
    counts_path, coords_path = Path(counts_path), Path(coords_path)
    counts = _read_table(counts_path, sep, "counts table")
    coords = _read_table(coords_path, sep, "coordinates table")
    _check_numeric(counts, counts_path)
    xy = _pick_xy(coords, coords_path)
    _check_same_spots(counts, coords, counts_path, coords_path)
    adata = AnnData(
        sp.csr_matrix(counts.to_numpy(dtype=np.float32)),
        obs=pd.DataFrame(index=counts.index),
        var=pd.DataFrame(index=counts.columns.astype(str)),
    )
    adata.obsm["spatial"] = xy.loc[counts.index].to_numpy(dtype=np.float64)
    return validate_spatial(adata, what=f"counts table '{counts_path}'")


def _separator(path: Path) -> str:
    """Infer the separator from the extension, ignoring a trailing .gz."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    if suffixes and suffixes[-1] in _SEPARATORS:
        return _SEPARATORS[suffixes[-1]]
    raise InputError(
        f"cannot tell the column separator of '{path}' from its extension; name it .csv or .tsv "
        "(optionally .gz) or pass sep=',' / sep='\\t'"
    )


def _read_table(path: Path, sep: str | None, what: str) -> pd.DataFrame:
    """Read a table indexed by its first column, with ids read as text so both tables join.

    Parsing ids as numbers would turn '0010' into '10' and match '007' in one table to '7' in the other.
    """
    if not path.is_file():
        raise InputError(f"{what} '{path}' not found; check the path")
    sep = sep or _separator(path)
    try:
        # dtype= goes by column name, and an empty id header is only named ('Unnamed: 0') once read
        first = pd.read_csv(path, sep=sep, nrows=0).columns[0]
        table = pd.read_csv(path, sep=sep, dtype={first: str}).set_index(first).rename_axis(None)
    except Exception as err:
        raise InputError(
            f"cannot read {what} '{path}' ({type(err).__name__}: {err}); it must be a delimited text table "
            "with spot ids in the first column and a header row"
        ) from err
    table.index = table.index.astype(str)
    return table


def _check_numeric(counts: pd.DataFrame, path: Path) -> None:
    """Name the first column holding text, the usual sign of an annotation column or a wrong separator."""
    for name, column in counts.items():
        if column.dtype.kind not in NUMERIC_KINDS:
            values = column[pd.to_numeric(column, errors="coerce").isna() & column.notna()]
            example = f" (e.g. {values.iloc[0]!r} for spot {values.index[0]!r})" if len(values) else ""
            raise InputError(
                f"counts table '{path}' has non-numeric values in column {name!r}{example}; it must be "
                "spots x genes with the spot id in the first column and only counts after it: drop "
                "annotation columns, or pass sep= if the columns were split wrongly"
            )


def _pick_xy(coords: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Take the columns named x/y (any case), else the first two numeric columns."""
    by_name = {str(c).lower(): c for c in coords.columns}
    if "x" in by_name and "y" in by_name:
        xy = coords[[by_name["x"], by_name["y"]]]
    else:
        numeric = [c for c in coords.columns if coords[c].dtype.kind in NUMERIC_KINDS]
        if len(numeric) < 2:
            raise InputError(
                f"coordinates table '{path}' has no x, y columns (columns: {list(coords.columns)}); "
                "name the coordinate columns x and y, or make them the first two numeric columns"
            )
        xy = coords[numeric[:2]]
    if any(xy[c].dtype.kind not in NUMERIC_KINDS for c in xy.columns):
        raise InputError(
            f"coordinates table '{path}' has non-numeric values in {list(xy.columns)}; x and y must be numbers"
        )
    return xy


def _check_same_spots(counts: pd.DataFrame, coords: pd.DataFrame, counts_path: Path, coords_path: Path) -> None:
    """Both tables must list the same spots once, or coordinates would be attached to the wrong counts."""
    duplicated = coords.index[coords.index.duplicated()].unique()
    if len(duplicated):
        raise InputError(
            f"coordinates table '{coords_path}' lists {len(duplicated)} spot ids more than once "
            f"(e.g. {quote_examples(list(duplicated))}); give each spot one row"
        )
    in_coords = counts.index.isin(coords.index)
    if not in_coords.any() and coords.index.isin(counts.columns.astype(str)).any():
        raise InputError(
            f"counts table '{counts_path}' looks transposed: its columns, not its rows, are the spot ids of "
            f"'{coords_path}'; tissuegraph needs spots as rows and genes as columns: transpose it (df.T)"
        )
    for missing, source, target in (
        (counts.index[~in_coords], counts_path, coords_path),
        (coords.index[~coords.index.isin(counts.index)], coords_path, counts_path),
    ):
        if len(missing):
            raise InputError(
                f"{len(missing)} spot ids in '{source}' are missing from '{target}' "
                f"(e.g. {quote_examples(list(missing))}); both tables must list the same spots: "
                f"add or drop those rows so the ids match"
            )
