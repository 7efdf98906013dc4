"""Read a Stereo-seq GEM file: one row per gene and DNB (x, y on the chip, 500 nm apart), summed into square bins.

A GEM file is a tab-separated table, optionally gzipped, after '#' header lines: ``geneID``, ``x``, ``y`` and the
count (``MIDCount``; older files ``MIDCounts``, some ``UMICount``), possibly with more columns (``ExonCount``,
``CellID``) that are not read. Single DNBs hold a few molecules each, so spots are square bins of ``bin_size`` x
``bin_size`` DNBs (50: 25 um, Stereo-seq's usual 'bin50'). The file is read in chunks and summed as it goes, so
memory follows the bins x genes counts, not the rows of the file.
"""

from __future__ import annotations

import gzip
import numbers
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from tissuegraph.errors import InputError
from tissuegraph.io.validate import quote_examples, validate_spatial

DEFAULT_BIN_SIZE = 50
GEM_SUFFIXES = (".gem", ".gem.gz")
_COUNT_NAMES = ("MIDCount", "MIDCounts", "UMICount", "UMICounts")
_CHUNK_ROWS = 2_000_000


def is_gem(path: Path) -> bool:
    return path.name.lower().endswith(GEM_SUFFIXES)


def read_gem(path: str | Path, *, bin_size: int = DEFAULT_BIN_SIZE) -> AnnData:
    """Sum a GEM file's counts into ``bin_size`` x ``bin_size`` DNB bins: one spot per bin holding any count, named
    ``'<bin x>_<bin y>'``, at the bin's centre in DNB units (``obsm['spatial']``); genes in the file's order."""
    path = Path(path)
    if not isinstance(bin_size, numbers.Integral) or isinstance(bin_size, bool) or bin_size < 1:
        raise InputError(f"bin_size must be a whole number of DNBs, at least 1 (got {bin_size!r}); 50 is 25 um")
    if not path.is_file():
        raise InputError(f"GEM file '{path}' not found; check the path")
    header_lines = _header_lines(path)
    try:
        names = list(pd.read_csv(path, sep="\t", skiprows=header_lines, nrows=0).columns)
    except Exception as err:
        raise InputError(f"cannot read '{path}' as a GEM file ({type(err).__name__}: {err})") from err
    count = next((name for name in _COUNT_NAMES if name in names), None)
    missing = [name for name in ("geneID", "x", "y") if name not in names] + ([] if count else ["MIDCount"])
    if missing:
        raise InputError(
            f"'{path}' lacks GEM columns {missing} (found {quote_examples(names, n=6)}); a GEM file has geneID, x, y "
            "and MIDCount, tab-separated, after its '#' header lines"
        )
    genes: dict[str, int] = {}
    parts = []
    reader = pd.read_csv(
        path,
        sep="\t",
        skiprows=header_lines,
        usecols=["geneID", "x", "y", count],
        dtype={"geneID": str},
        chunksize=_CHUNK_ROWS,
    )
    try:
        for chunk in reader:
            parts.append(_binned(chunk, count, bin_size, genes, path))
            if sum(len(part) for part in parts) > 2 * _CHUNK_ROWS:  # fold the sums so far: a bin's genes recur
                parts = [_summed(pd.concat(parts), sort=False)]
    except InputError:
        raise
    except Exception as err:
        raise InputError(f"cannot read '{path}' as a GEM file ({type(err).__name__}: {err})") from err
    if not parts or sum(len(part) for part in parts) == 0:
        raise InputError(f"GEM file '{path}' holds no counts")
    summed = _summed(pd.concat(parts), sort=True)
    bins = summed[["bx", "by"]].drop_duplicates().reset_index(drop=True)
    row = pd.MultiIndex.from_frame(bins).get_indexer(pd.MultiIndex.from_frame(summed[["bx", "by"]]))
    counts = sp.csr_matrix(
        (summed["count"].to_numpy(np.float32), (row, summed["gene"].to_numpy())), shape=(len(bins), len(genes))
    )
    adata = AnnData(
        counts,
        obs=pd.DataFrame(index=(bins["bx"].astype(str) + "_" + bins["by"].astype(str)).to_numpy()),
        var=pd.DataFrame(index=pd.Index(list(genes), dtype=str)),
    )
    adata.obsm["spatial"] = (bins[["bx", "by"]].to_numpy(np.float64) + 0.5) * bin_size
    adata.uns["gem"] = {"bin_size": int(bin_size), "unit": "DNB (500 nm)"}
    return validate_spatial(adata, what=f"'{path}' in bins of {bin_size}")


def _header_lines(path: Path) -> int:
    """How many '#' lines open the file (Stereo-seq writes its chip, offsets and format there)."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    lines = 0
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            for line in handle:
                if not line.startswith("#"):
                    break
                lines += 1
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read '{path}' as a GEM file ({type(err).__name__}: {err})") from err
    return lines


def _binned(chunk: pd.DataFrame, count: str, bin_size: int, genes: dict[str, int], path: Path) -> pd.DataFrame:
    """One chunk summed per (bin, gene); genes get codes in the order first met, shared by every chunk."""
    values = chunk[["x", "y", count]].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(values).all(axis=1) | (values < 0).any(axis=1) | (values[:, 2] != np.rint(values[:, 2]))
    bad |= chunk["geneID"].isna().to_numpy()
    if bad.any():
        example, n = chunk.iloc[int(np.flatnonzero(bad)[0])], int(bad.sum())
        raise InputError(
            f"'{path}' has {n} row{'' if n == 1 else 's'} without a gene, with a coordinate or count that is missing, "
            f"negative or (for the count) not whole (e.g. {example.to_dict()}); x and y are DNB positions and "
            f"{count} molecule counts"
        )
    for gene in pd.unique(chunk["geneID"]):
        genes.setdefault(gene, len(genes))
    frame = pd.DataFrame(
        {
            "bx": (values[:, 0] // bin_size).astype(np.int64),
            "by": (values[:, 1] // bin_size).astype(np.int64),
            "gene": chunk["geneID"].map(genes).to_numpy(np.int64),
            "count": values[:, 2],
        }
    )
    return _summed(frame, sort=False)


def _summed(frame: pd.DataFrame, *, sort: bool) -> pd.DataFrame:
    """One row per (bin, gene) with its total count."""
    return frame.groupby(["bx", "by", "gene"], sort=sort)["count"].sum().reset_index()
