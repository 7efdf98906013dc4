"""Read plain text tables (counts + coordinates), the lowest common denominator of spatial platforms."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from tissuegraph.errors import InputError, warn
from tissuegraph.io.validate import COORDINATE_NAMES, NUMERIC_KINDS, quote_examples, validate_spatial

_SEPARATORS = {".csv": ",", ".tsv": "\t", ".txt": "\t"}
#: Compressions pandas reads by extension (zstandard would need an extra package).
_COMPRESSED = (".gz", ".bz2", ".xz", ".zip")
#: Separators by name, and a tab as typed in a shell ('\t' arrives as a backslash and a t).
_NAMED_SEPARATORS = {"\\t": "\t", "tab": "\t", "comma": ",", "semicolon": ";", "space": " ", "pipe": "|"}
#: Name given to the empty field a delimiter ending every data line (but not the header) leaves.
_TRAILING = "__trailing_delimiter__"

#: Column names that hold spot or cell ids: found anywhere but first, the table's layout is off.
_ID_NAMES = ("barcode", "barcodes", "cell", "cell_id", "cells", "spot", "spot_id", "spots")
#: Per-spot columns of Space Ranger's tissue_positions that are integers but no genes.
SPOT_METADATA_NAMES = ("in_tissue", "array_row", "array_col")
#: Per-cell annotations that exports of imaging platforms and Seurat put beside the genes: depth, field of view,
#: library size, genes detected, segmentation size. Whole numbers often, varying across the tissue, never genes.
CELL_METADATA_NAMES = (
    "z", "z_location", "global_z", "fov", "field_of_view", "total_counts", "n_counts", "n_genes",
    "n_genes_by_counts", "transcript_counts", "control_probe_counts", "area", "cell_area", "nucleus_area",
    "volume", "cell_volume",
)  # fmt: skip
_CELL_METADATA_PREFIXES = ("ncount_", "nfeature_")  # Seurat's nCount_RNA, nFeature_Spatial, ...
#: Control probes that imaging platforms count beside the genes (MERSCOPE's Blank-*; Xenium's NegControlProbe_*,
#: UnassignedCodeword_*, antisense_* and Intergenic_Region_*; CosMx's NegPrb* and FalseCode*): they measure
#: background, not expression.
CONTROL_PROBE_PREFIXES = (
    "blank-", "blank_", "negcontrol", "negprb", "falsecode", "systemcontrol", "unassignedcodeword",
    "deprecatedcodeword", "antisense_", "intergenic_region",
)  # fmt: skip


def read_tables(
    counts_path: str | Path,
    coords_path: str | Path,
    *,
    sep: str | Sequence[str] | None = None,
    x: str | None = None,
    y: str | None = None,
) -> AnnData:
    """Build a validated AnnData from a spots x genes counts table and a spot coordinates table.

    Both tables have the spot id in the first column (R's ``write.table`` layout, whose header lacks that
    column, works too); counts have gene names as header. Coordinates are the columns ``x`` and ``y`` when
    given, else a pair with a well-known name (x/y, pxl_col_in_fullres/pxl_row_in_fullres, center_x/center_y,
    x_centroid/y_centroid, ..., col/row: x is the column), else the only two numeric columns, in file order;
    anything else is refused rather than guessed. The separator comes from the extension (.csv comma, .tsv/.txt
    tab, optionally compressed: .gz, .bz2, .xz, .zip) unless ``sep`` is given: one character (or its name: tab,
    comma, semicolon, space, pipe) for both tables, or a pair (counts, coordinates). Spots keep the counts' order;
    every spot must be in both tables so that nothing is dropped silently. One file may serve as both tables (spot
    id, x, y, then the genes): its coordinate columns, and Space Ranger's in_tissue / array_row / array_col, are
    then not read as genes, nor are per-cell annotations (z, fov, nCount_*, nFeature_*, total_counts, area, volume,
    ...: left out with a warning); a separate counts table holding any of those is refused. Control probes
    (Blank-*, NegControlProbe_*, NegPrb*, ...) are left out with a warning. A gene named in two columns is kept
    twice, the repeat renamed NAME-1, with a warning.
    """
    counts_path, coords_path = Path(counts_path), Path(coords_path)
    counts_sep, coords_sep = _separators(sep)
    counts = _read_table(counts_path, counts_sep, "counts table")
    coords = _read_table(coords_path, coords_sep, "coordinates table")
    _check_header(coords, coords_path)
    xy = _pick_xy(coords, coords_path, x, y)
    same_file = counts_path.resolve() == coords_path.resolve()
    counts = _without_coordinates(counts, counts_path, list(xy.columns), same_file=same_file)
    counts = _without_control_probes(counts, counts_path)
    _check_numeric(counts, counts_path)
    _warn_repeated_genes(counts.columns, counts_path)
    values = counts.to_numpy(dtype=np.float32)
    _check_whole(values, counts.columns, counts_path)
    _check_same_spots(counts, coords, counts_path, coords_path)
    with warnings.catch_warnings():  # repeated genes were named above; validate_spatial makes them unique
        warnings.filterwarnings("ignore", message="Variable names are not unique")
        adata = AnnData(
            sp.csr_matrix(values),
            obs=pd.DataFrame(index=counts.index),
            var=pd.DataFrame(index=counts.columns.astype(str)),
        )
    adata.obsm["spatial"] = xy.loc[counts.index].to_numpy(dtype=np.float64)
    return validate_spatial(adata, what=f"counts table '{counts_path}'")


def _separators(sep: str | Sequence[str] | None) -> tuple[str | None, str | None]:
    """The separator of the counts table and of the coordinates table: one for both, or a pair (R's write.table
    writes spaces, while the coordinates may be a .csv). Names and a shell-typed '\\t' are turned into the
    character; anything longer than one character is refused (pandas would read it as a regular expression)."""
    pair = [sep, sep] if sep is None or isinstance(sep, str) else list(sep)
    if len(pair) == 1:
        pair = pair * 2
    if len(pair) != 2:
        raise InputError(
            f"sep= takes one separator for both tables or two (counts, coordinates), got {len(pair)} "
            "(--sep SEP or --sep COUNTS_SEP COORDS_SEP)"
        )
    found = [None if s is None else _NAMED_SEPARATORS.get(str(s).lower(), str(s)) for s in pair]
    for given, char in zip(pair, found, strict=True):
        if char is not None and len(char) != 1:
            raise InputError(
                f"separator {given!r} is not one character; give the character (e.g. ',' or ';') or its name: "
                f"{', '.join(_NAMED_SEPARATORS)} (--sep)"
            )
    return found[0], found[1]


def _separator(path: Path) -> str:
    """Infer the separator from the extension, ignoring a trailing compression (.gz, .bz2, .xz, .zip)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSED:
        suffixes.pop()
    if suffixes and suffixes[-1] in _SEPARATORS:
        return _SEPARATORS[suffixes[-1]]
    raise InputError(
        f"cannot tell the column separator of '{path}' from its extension; name it .csv or .tsv "
        "(optionally .gz, .bz2, .xz or .zip) or pass sep=',' / sep='\\t' (--sep on the command line)"
    )


def _read_table(path: Path, sep: str | None, what: str) -> pd.DataFrame:
    """Read a table indexed by its first column, with ids read as text so both tables join.

    Parsing ids as numbers would turn '0010' into '10' and match '007' in one table to '7' in the other.
    """
    if not path.is_file():
        raise InputError(f"{what} '{path}' not found; check the path")
    sep = sep or _separator(path)
    options = {"sep": sep, "skipinitialspace": True}
    try:
        names = list(pd.read_csv(path, nrows=0, **options).columns)
        written = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False, **options).iloc[0]
        # pandas numbers a name written twice ('G', 'G.1'); map back to the header as written
        repeated = {name: str(raw) for name, raw in zip(names, written, strict=True) if raw and name != raw}
        first_row = pd.read_csv(path, header=None, skiprows=1, nrows=1, **options)
        fields, ends_empty = first_row.shape[1], first_row.iloc[0].isna().iloc[-1]
        if fields == len(names) + 1 and not ends_empty:
            names = [_unused_name(names), *names]  # R's write.table: the header has no field for the row names
        elif fields == len(names) + 1:
            names = [*names, _TRAILING]  # a delimiter at the end of every data line, not of the header
        elif fields == len(names) + 2 and ends_empty:  # both: no row-name field, and a delimiter ending each line
            names = [_unused_name(names), *names, _TRAILING]
        elif fields > len(names):  # pandas would drop the extra fields, shifting every value to another column
            raise InputError(
                f"{what} '{path}': its first data row has {fields} fields but the header names {len(names)} "
                "columns; every row needs one field per header column (plus the spot id when the header has no "
                "field for it)"
            )
        with warnings.catch_warnings():  # a row longer than the header must fail, not lose its extra fields
            warnings.simplefilter("error", pd.errors.ParserWarning)
            # ids stay text as written: no number parsing, and no 'NA' / 'null' / '' turned into one shared NaN
            table = pd.read_csv(
                path, header=None, skiprows=1, names=names, index_col=False, converters={names[0]: str}, **options
            )
    except InputError:
        raise
    except UnicodeDecodeError as err:
        raise InputError(
            f"{what} '{path}' is not UTF-8 text (byte {err.object[err.start : err.start + 1]!r} at position "
            f"{err.start}); save it as UTF-8 (e.g. iconv -f latin1 -t utf-8, or 'CSV UTF-8' in a spreadsheet)"
        ) from err
    except pd.errors.EmptyDataError as err:
        raise InputError(
            f"{what} '{path}' has no rows (or is empty); it needs a header row and one row per spot"
        ) from err
    except Exception as err:
        raise InputError(
            f"cannot read {what} '{path}' ({type(err).__name__}: {err}); it must be a delimited text table "
            "with spot ids in the first column and a header row"
        ) from err
    blank = np.flatnonzero(table[names[0]].str.strip() == "")
    if len(blank):
        raise InputError(
            f"{what} '{path}' has {len(blank)} rows without a spot id (the first is data row {blank[0] + 1}); "
            "every row needs its spot id in the first column"
        )
    misplaced = [name for name in names[1:] if str(name).lower() in _ID_NAMES]
    if "cell_ID" in misplaced and "fov" in names:  # CosMx: cell_ID counts within each field of view
        raise InputError(
            f"{what} '{path}' looks like a CosMx export: its cell_ID counts cells within each fov, so it is no spot "
            "id; give each cell one id made of both (e.g. df.index = df.fov.astype(str) + '_' + "
            "df.cell_ID.astype(str), or AtoMx's 'cell' column) in the first column of both tables, drop the fov and "
            "cell_ID columns from the counts and the cell_ID 0 rows (transcripts outside cells); coordinates: "
            "--x CenterX_global_px --y CenterY_global_px"
        )
    if misplaced:  # the first column would be taken for the ids, and the ids for a gene or a coordinate
        raise InputError(
            f"{what} '{path}' has its spot ids in column {misplaced[0]!r}, not in the first column ({names[0]!r}); "
            f"spot ids must come first: move column {misplaced[0]!r} to the front (a leading 0, 1, 2, ... column "
            "written by pandas can go)"
        )
    blank = [i for i, name in enumerate(names[1:], start=2) if isinstance(name, str) and name and not name.strip()]
    if blank:  # a quoted " " in the header: no name, but not empty to pandas either
        raise InputError(
            f"{what} '{path}' has a blank name in its header (column {blank[0]}); give every column a name"
        )
    table = table.set_index(names[0]).rename_axis(None)
    trailing = [c for c in table.columns if str(c).startswith("Unnamed:") or c == _TRAILING]
    if any(table[c].notna().any() for c in trailing):
        raise InputError(
            f"{what} '{path}' has values in a column without a name in the header; give every column a "
            "header field (a delimiter ending every line is fine)"
        )
    table = table.drop(columns=trailing)  # a delimiter at the end of every line
    if table.shape[1] == 0:
        raise InputError(
            f"{what} '{path}' has a single column when split at {sep!r}; the columns must be separated by "
            f"{sep!r}, or pass sep= (--sep) with the separator the file uses"
        )
    table.index = table.index.astype(str)
    if repeated:  # kept as written, so a repeated gene is named, then made unique as anywhere else
        table.columns = [repeated.get(c, c) for c in table.columns]
    return table


def _without_coordinates(counts: pd.DataFrame, path: Path, xy: list[str], *, same_file: bool) -> pd.DataFrame:
    """The counts without the coordinate (and Space Ranger position) columns when one file holds both; elsewhere
    such columns are refused: whole numbers that vary across the tissue, read as genes they would pass every count
    check and steer the domains."""
    names = {name.lower() for pair in COORDINATE_NAMES for name in pair} | {str(c).lower() for c in xy}
    found = [c for c in counts.columns if str(c).lower() in names | set(SPOT_METADATA_NAMES)]
    annotations = [
        c
        for c in counts.columns
        if str(c).lower() in CELL_METADATA_NAMES or str(c).lower().startswith(_CELL_METADATA_PREFIXES)
    ]
    if same_file:
        if annotations:
            warn(
                f"'{path}': columns {quote_examples(annotations, n=6)} are per-spot annotations, not genes; they "
                "are left out of the counts"
            )
        return counts.drop(columns=found + annotations)
    if found or annotations:
        raise InputError(
            f"counts table '{path}' has coordinate, position or annotation columns "
            f"({quote_examples(found + annotations, n=6)}); it must hold only counts after the spot id: drop them, "
            "or pass the same file as both tables when it holds the coordinates"
        )
    return counts


def _without_control_probes(counts: pd.DataFrame, path: Path) -> pd.DataFrame:
    """The counts without control-probe columns, which would be read as genes of pure background, with a warning."""
    probes = [c for c in counts.columns if str(c).lower().startswith(CONTROL_PROBE_PREFIXES)]
    if len(probes) == counts.shape[1]:
        raise InputError(f"counts table '{path}' holds only control probes ({quote_examples(probes)}); it has no genes")
    if probes:
        warn(
            f"'{path}': {_count(len(probes), 'column')} of control probes, not genes ({quote_examples(probes, n=4)}), "
            "left out of the counts"
        )
    return counts.drop(columns=probes)


def _check_header(coords: pd.DataFrame, path: Path) -> None:
    """A coordinates table whose column names are all numbers has no header row: its first spot was read as one."""
    names = [str(name) for name in coords.columns]
    if names and all(_is_number(name) for name in names):
        raise InputError(
            f"coordinates table '{path}' seems to have no header row: the values of its first line "
            f"({', '.join(names[:4])}{', ...' if len(names) > 4 else ''}) were read as column names; add a header "
            "line naming the columns (e.g. spot,x,y). Space Ranger's tissue_positions_list.csv has none: give the "
            "Space Ranger output folder itself instead"
        )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _unused_name(names: list[str]) -> str:
    return next(name for name in ("spot", "spot_id", "__spot_id__") if name not in names)


def _check_numeric(counts: pd.DataFrame, path: Path) -> None:
    """Name the first column holding text, the usual sign of an annotation column or a wrong separator."""
    for name, column in counts.items():
        if column.dtype.kind not in NUMERIC_KINDS:
            values = column[pd.to_numeric(column, errors="coerce").isna() & column.notna()]
            example = f" (e.g. {values.iloc[0]!r} for spot {values.index[0]!r})" if len(values) else ""
            raise InputError(
                f"counts table '{path}' has non-numeric values in column {name!r}{example}; it must be "
                "spots x genes with the spot id in the first column and only counts after it: drop "
                "annotation columns, or pass sep= (--sep) if the columns were split wrongly"
            )


def _warn_repeated_genes(columns: pd.Index, path: Path) -> None:
    """Gene names written more than once (symbols of different Ensembl genes, or columns pasted twice) are kept as
    separate genes; say so, since their names change ('G', 'G-1', as anndata makes names unique)."""
    repeated = columns[columns.duplicated()].unique()
    if len(repeated):
        warn(
            f"counts table '{path}' names {_count(len(repeated), 'gene')} in more than one column "
            f"({quote_examples(list(repeated), n=4)}); each column is kept as a gene of its own, the repeats numbered "
            "as anndata's var_names_make_unique does (NAME-1, NAME-2, ... unless those names are taken): if a column "
            "was pasted twice, drop the copy"
        )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _check_whole(values: np.ndarray, columns: pd.Index, path: Path) -> None:
    """Name the columns holding fractions (a cell volume, say): the check on the AnnData can only name spots."""
    fractional = columns[(np.isfinite(values) & (values != np.rint(values))).any(axis=0)]
    if len(fractional):
        raise InputError(
            f"counts table '{path}' has non-integer values in {len(fractional)} of its {len(columns)} columns "
            f"({quote_examples(list(fractional), n=4)}); counts are whole numbers: drop annotation columns (areas, "
            "volumes, scores), or give the raw counts if the table holds normalised values"
        )


def _pick_xy(coords: pd.DataFrame, path: Path, x: str | None, y: str | None) -> pd.DataFrame:
    """The columns named by the caller, else a well-known coordinate pair, else the only two numeric columns."""
    if (x is None) != (y is None):
        raise InputError("give both x= and y= (--x and --y: the names of the coordinate columns), or neither")
    if x is not None and x == y:
        raise InputError(f"x= and y= (--x, --y) both name column {x!r}; they must name two different columns")
    if x is not None:
        missing = [name for name in (x, y) if name not in coords.columns]
        if missing:
            raise InputError(
                f"coordinates table '{path}' has no column {missing[0]!r} (columns: {list(coords.columns)}); "
                "pass the names of its coordinate columns as x= and y= (--x and --y)"
            )
        pair = [x, y]
    else:
        by_name: dict[str, list] = {}
        for column in coords.columns:
            by_name.setdefault(str(column).lower(), []).append(column)
        known = next(((a, b) for a, b in COORDINATE_NAMES if a in by_name and b in by_name), None)
        clash = [] if known is None else [by_name[n] for n in known if len(by_name[n]) > 1]
        if clash:
            raise InputError(
                f"coordinates table '{path}' has columns {clash[0]} for one coordinate (names are matched ignoring "
                "case): rename or drop all but one, or pass the coordinate columns as x='<column>', y='<column>' "
                "(--x, --y) if they are named apart"
            )
        numeric = [c for c in coords.columns if coords[c].dtype.kind in NUMERIC_KINDS]
        if known is not None:
            pair = [by_name[known[0]][0], by_name[known[1]][0]]
        elif len(numeric) == 2:
            pair = numeric
        else:
            raise InputError(
                f"cannot tell which columns of coordinates table '{path}' are x and y: none has a known name "
                f"and it has {len(numeric)} numeric columns ({', '.join(map(str, numeric)) or 'none'}); name the "
                "coordinate columns x and y, or pass x='<column>', y='<column>' (--x, --y)"
            )
    repeated = [name for name in pair if (coords.columns == name).sum() > 1]
    if repeated:
        raise InputError(
            f"coordinates table '{path}' has {(coords.columns == repeated[0]).sum()} columns named {repeated[0]!r}, "
            "so x and y are ambiguous; rename or drop all but one"
        )
    xy = coords[pair]
    if any(xy[c].dtype.kind not in NUMERIC_KINDS for c in xy.columns):
        raise InputError(
            f"coordinates table '{path}' has non-numeric values in {list(xy.columns)}; x and y must be numbers"
        )
    return xy


def _check_same_spots(counts: pd.DataFrame, coords: pd.DataFrame, counts_path: Path, coords_path: Path) -> None:
    """Both tables must list the same spots once, or coordinates would be attached to the wrong counts."""
    for table, path, what in ((counts, counts_path, "counts"), (coords, coords_path, "coordinates")):
        duplicated = table.index[table.index.duplicated()].unique()
        if len(duplicated):
            raise InputError(
                f"{what} table '{path}' lists {len(duplicated)} spot ids more than once "
                f"(e.g. {quote_examples(list(duplicated))}); give each spot one row (the first column must hold the "
                "spot ids: a table saved without them, e.g. pandas' index=False, has none)"
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
