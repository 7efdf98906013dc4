"""Read a Stereo-seq GEM file: one row per gene and DNB (x, y on the chip, 500 nm apart), summed into square bins.

A GEM file is a tab-separated table, gzipped or not, after '#' header lines: ``geneID`` (with ``geneName`` in newer
files), ``x``, ``y`` and the count (``MIDCount``; older files ``MIDCounts``, some ``UMICount``), possibly with more
columns (``ExonCount``, ``CellID``) that are not read. Single DNBs hold a few molecules each, so spots are square bins
of ``bin_size`` x ``bin_size`` DNBs (50: 25 um, Stereo-seq's usual 'bin50'). The file is read in chunks and summed as
it goes, so memory follows the bins x genes counts, not the rows of the file.
"""

from __future__ import annotations

import gzip
import numbers
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
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
_GZIP_MAGIC = b"\x1f\x8b"
#: Reading errors that mean a damaged or cut-off file rather than a wrong layout.
_DAMAGED = (EOFError, zlib.error, gzip.BadGzipFile)


def is_gem(path: Path) -> bool:
    return path.name.lower().endswith(GEM_SUFFIXES)


def read_gem(path: str | Path, *, bin_size: int = DEFAULT_BIN_SIZE) -> AnnData:
    """Sum a GEM file's counts into ``bin_size`` x ``bin_size`` DNB bins: one spot per bin holding any count, named
    ``'<bin x>_<bin y>'``, at the bin's centre in DNB units (``obsm['spatial']``: (bin + 0.5) x bin_size); genes
    in the order first met, named by ``geneName`` when the file has it (``var['gene_ids']``: ``geneID``)."""
    path = Path(path)
    if not isinstance(bin_size, numbers.Integral) or isinstance(bin_size, bool) or bin_size < 1:
        raise InputError(
            f"bin_size (--bin-size) must be a whole number of DNBs, at least 1 (got {bin_size!r}); 50 is 25 um"
        )
    if path.is_dir():
        raise InputError(f"'{path}' is a folder; give the GEM file itself (.gem or .gem.gz)")
    if not path.is_file():
        raise InputError(f"GEM file '{path}' not found; check the path")
    with path.open("rb") as handle:  # by content: a gzip named .gem, or plain text named .gem.gz, both happen
        compression = "gzip" if handle.read(2) == _GZIP_MAGIC else None
    with _reading(path):
        options = {"sep": "\t", "skiprows": _header_lines(path, compression), "compression": compression}
        names = list(pd.read_csv(path, nrows=0, **options).columns)
    count = next((name for name in _COUNT_NAMES if name in names), None)
    missing = [name for name in ("geneID", "x", "y") if name not in names] + ([] if count else ["MIDCount"])
    if missing:
        raise InputError(
            f"'{path}' lacks GEM columns {missing} (found {quote_examples(names, n=6)}); a GEM file has geneID, x, y "
            f"and MIDCount (or {', '.join(_COUNT_NAMES[1:])}), tab-separated, after its '#' header lines"
        )
    label = "geneName" if "geneName" in names else "geneID"
    genes: dict[str, int] = {}
    labels: dict[str, str] = {}
    folded, pending = None, []
    with _reading(path):
        for chunk in pd.read_csv(
            path,
            usecols=list(dict.fromkeys(["geneID", label, "x", "y", count])),
            dtype={"geneID": str, label: str},
            keep_default_na=False,  # a gene called NA or nan is a gene; empty numbers fail the numeric check
            chunksize=_CHUNK_ROWS,
            **options,
        ):
            pending.append(_binned(chunk, count, bin_size, genes, labels, label, path))
            if sum(len(part) for part in pending) > max(2 * _CHUNK_ROWS, 0 if folded is None else len(folded)):
                folded, pending = _summed(pd.concat([p for p in (folded, *pending) if p is not None]), sort=False), []
    parts = [part for part in (folded, *pending) if part is not None]
    if not parts or sum(len(part) for part in parts) == 0:
        raise InputError(f"GEM file '{path}' holds no counts")
    summed = _summed(pd.concat(parts), sort=True)  # folded when the rows outgrow the sums: O(rows) work in all
    bins = summed[["bx", "by"]].drop_duplicates().reset_index(drop=True)
    row = pd.MultiIndex.from_frame(bins).get_indexer(pd.MultiIndex.from_frame(summed[["bx", "by"]]))
    counts = sp.csr_matrix(
        (summed["count"].to_numpy(np.float32), (row, summed["gene"].to_numpy(np.int64))),
        shape=(len(bins), len(genes)),
    )
    var = pd.DataFrame(index=pd.Index([labels[gene] for gene in genes], dtype=str))
    if label != "geneID":
        var["gene_ids"] = list(genes)
    with warnings.catch_warnings():  # gene names may repeat (geneName); validate_spatial makes them unique
        warnings.filterwarnings("ignore", message="Variable names are not unique")
        obs = pd.DataFrame(index=(bins["bx"].astype(str) + "_" + bins["by"].astype(str)).to_numpy())
        adata = AnnData(counts, obs=obs, var=var)
    adata.obsm["spatial"] = (bins[["bx", "by"]].to_numpy(np.float64) + 0.5) * bin_size
    adata.uns["gem"] = {"bin_size": int(bin_size), "unit": "DNB (500 nm)"}
    return validate_spatial(adata, what=f"'{path}' in bins of {bin_size}")


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn pandas' and gzip's reading errors into named ones; an InputError from the rows passes through."""
    try:
        yield
    except InputError:
        raise
    except _DAMAGED as err:
        raise InputError(
            f"'{path}' is damaged or cut off ({type(err).__name__}: {err}); download or copy it again (gzip -t checks "
            "a .gz)"
        ) from err
    except pd.errors.EmptyDataError as err:
        raise InputError(f"GEM file '{path}' holds no column header and no rows after its '#' lines") from err
    except Exception as err:
        raise InputError(f"cannot read '{path}' as a GEM file ({type(err).__name__}: {err})") from err


def _header_lines(path: Path, compression: str | None) -> int:
    """How many '#' (and blank) lines open the file: Stereo-seq writes its chip, offsets and format there."""
    opener = gzip.open if compression == "gzip" else open
    lines = 0
    with opener(path, "rt", encoding="utf-8-sig") as handle:
        for line in handle:
            if line.strip() and not line.startswith("#"):
                break
            lines += 1
    return lines


def _binned(
    chunk: pd.DataFrame,
    count: str,
    bin_size: int,
    genes: dict[str, int],
    labels: dict[str, str],
    label: str,
    path: Path,
) -> pd.DataFrame:
    """One chunk summed per (bin, gene); genes get codes in the order first met, shared by every chunk."""
    values = chunk[["x", "y", count]].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(values).all(axis=1) | (values < 0).any(axis=1) | (values != np.rint(values)).any(axis=1)
    bad |= (chunk["geneID"].str.strip() == "").to_numpy() | (chunk[label].str.strip() == "").to_numpy()
    if bad.any():
        first, n = int(np.flatnonzero(bad)[0]), int(bad.sum())
        rows, example = f"{chunk.index[0] + 1}-{chunk.index[-1] + 1}", f"row {chunk.index[first] + 1}"
        raise InputError(
            f"'{path}' has rows without a gene, or with a coordinate or count that is missing, negative or not a whole "
            f"number ({n} of its data rows {rows}, e.g. {example}: {chunk.iloc[first].to_dict()}); x and y are DNB "
            f"positions and {count} molecule counts"
        )
    first_rows = chunk.drop_duplicates("geneID")
    for gene, name in zip(first_rows["geneID"], first_rows[label], strict=True):
        if gene not in genes:
            genes[gene] = len(genes)
            labels[gene] = name
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
