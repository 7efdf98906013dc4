"""Read a 10x count matrix, the format Space Ranger (Visium, Visium HD) and Xenium write their counts in."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import scanpy as sc
import scipy.io
import scipy.sparse as sp
from anndata import AnnData

from tissuegraph.errors import InputError

_GENE_EXPRESSION = "Gene Expression"


def read_10x_matrix(path: Path) -> AnnData:
    """Read a 10x count matrix (.h5 or mtx folder, as Space Ranger and Xenium write them) into spots x genes,
    'Gene Expression' features only."""
    with warnings.catch_warnings():
        # 10x matrices often repeat gene symbols; validate_spatial makes them unique, so anndata's advice
        # to do so would only confuse
        warnings.filterwarnings("ignore", message="Variable names are not unique")
        if path.is_dir():
            return _read_mtx(path)
        try:
            return sc.read_10x_h5(path)  # keeps only 'Gene Expression' features (gex_only=True)
        except Exception as err:
            raise InputError(
                f"cannot read '{path}' as a 10x count matrix ({type(err).__name__}: {err}); give the {path.name} "
                "the instrument's software wrote (re-copy it if it may be truncated)"
            ) from err


def _first_file(folder: Path, stem: str) -> Path | None:
    """Space Ranger gzips its mtx files, users often unzip them: accept either, but not both (which is stale?)."""
    found = [p for p in (folder / stem, folder / f"{stem}.gz") if p.is_file()]
    if len(found) == 2:
        raise InputError(
            f"'{folder}' holds both {stem} and {stem}.gz, which may differ; keep one of them (Space Ranger "
            "writes the .gz)"
        )
    return found[0] if found else None


def _read_mtx(folder: Path) -> AnnData:
    """Read a 10x mtx folder; written here because scanpy's reader accepts only the gzipped v3 layout."""
    matrix = _first_file(folder, "matrix.mtx")
    barcodes = _first_file(folder, "barcodes.tsv")
    features = _first_file(folder, "features.tsv") or _first_file(folder, "genes.tsv")
    if matrix is None or barcodes is None or features is None:
        raise InputError(
            f"incomplete mtx folder '{folder}': needs matrix.mtx(.gz), barcodes.tsv(.gz) and "
            f"features.tsv(.gz) (or genes.tsv); copy the whole {folder.name} folder"
        )
    try:
        counts = sp.csr_matrix(scipy.io.mmread(matrix).T)
        # text as written: a gene symbol 'NA' or 'nan' (Drosophila's nan) is a name, not a missing value
        barcode_ids = pd.read_csv(barcodes, sep="\t", header=None, dtype=str, keep_default_na=False)[0]
        feature_table = pd.read_csv(features, sep="\t", header=None, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError as err:
        raise InputError(
            f"the mtx folder '{folder}' has an empty barcodes.tsv or features.tsv: the slice has no spots or no "
            f"genes; re-copy the {folder.name} folder from the instrument's output"
        ) from err
    except Exception as err:
        raise InputError(
            f"cannot read the mtx folder '{folder}' ({type(err).__name__}: {err}); re-copy the {folder.name} folder "
            "from the instrument's output"
        ) from err
    if counts.shape != (len(barcode_ids), len(feature_table)):
        raise InputError(
            f"mtx folder '{folder}' does not fit together: matrix is {counts.shape[1]} features x "
            f"{counts.shape[0]} barcodes but there are {len(feature_table)} features and {len(barcode_ids)} "
            "barcodes; the three files must come from the same Space Ranger run"
        )
    names = feature_table[1 if feature_table.shape[1] > 1 else 0]
    names = names.where(names.str.strip() != "", feature_table[0])  # no symbol: the id
    var = pd.DataFrame({"gene_ids": feature_table[0].to_numpy()}, index=pd.Index(names.astype(str).to_numpy()))
    if feature_table.shape[1] > 2:
        var["feature_types"] = feature_table[2].to_numpy()
    adata = AnnData(counts, obs=pd.DataFrame(index=pd.Index(barcode_ids.to_numpy(), dtype=str)), var=var)
    if "feature_types" in var:
        adata = adata[:, adata.var["feature_types"] == _GENE_EXPRESSION].copy()
    return adata
