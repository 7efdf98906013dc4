"""Read a 10x Visium Space Ranger output folder (counts, spot positions, images, scale factors).

Visium HD writes one such folder per bin size (``outs/binned_outputs/square_016um`` ...), with the positions in
``tissue_positions.parquet``; a bin folder reads like a Visium folder, each bin a spot.

The result follows scanpy's layout so images and coordinates line up the same way they do in scanpy:
obsm['spatial'] = (pxl_col_in_fullres, pxl_row_in_fullres) = (x, y) in full-resolution pixels and
uns['spatial'][library_id] = {'images': {...}, 'scalefactors': {...}}.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from PIL import Image

from tissuegraph.errors import InputError, warn
from tissuegraph.io.matrix10x import read_10x_matrix
from tissuegraph.io.validate import check_image_cover, quote_examples, validate_spatial

_COUNTS_CANDIDATES = ("filtered_feature_bc_matrix.h5", "filtered_feature_bc_matrix")
_POSITIONS_FILES = ("tissue_positions.csv", "tissue_positions_list.csv", "tissue_positions.parquet")
_HD_BINS = "binned_outputs"  # Visium HD: one Space Ranger folder per bin size inside
_POSITION_COLUMNS = (
    "barcode",
    "in_tissue",
    "array_row",
    "array_col",
    "pxl_row_in_fullres",
    "pxl_col_in_fullres",
)
_SCALEFACTORS_FILE = "scalefactors_json.json"
_IMAGES = {"hires": "tissue_hires_image.png", "lowres": "tissue_lowres_image.png"}
_OTHER_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".tif", ".tiff", ".png")  # an image saved under another name or format
_QC_IMAGES = ("aligned_fiducials.jpg", "detected_tissue_image.jpg")  # Space Ranger's own, never the H&E to read
_SIDE_TOLERANCE = 0.02  # hires and lowres scaled back to full resolution; Space Ranger rounds each image's side


def read_visium(folder: str | Path, *, counts_file: str | None = None) -> AnnData:
    """Read the Space Ranger ``outs`` folder ``folder`` (for Visium HD: one bin size's folder, such as
    ``outs/binned_outputs/square_016um``) into a validated AnnData.

    ``counts_file`` (relative to ``folder``) picks another count matrix, an ``.h5`` file or an mtx folder,
    e.g. ``raw_feature_bc_matrix.h5``; by default the filtered matrix is used. Spots keep the counts'
    barcode order; only 'Gene Expression' features are kept. library_id is the folder name (the parent's
    name when the folder is called ``outs``, so several slices do not all end up as 'outs'; a Visium HD bin
    folder is named after its sample and bin size, e.g. 'sample_square_016um').
    """
    folder = Path(folder)
    if not folder.is_dir():
        state = "is not a folder" if folder.exists() else "does not exist"
        raise InputError(
            f"Space Ranger folder '{folder}' {state}; pass the folder that holds "
            "filtered_feature_bc_matrix.h5 and spatial/ (usually <sample>/outs)"
        )
    adata = read_10x_matrix(_find_counts(folder, counts_file))
    positions = _read_positions(folder / "spatial")
    unplaced = adata.obs_names[~adata.obs_names.isin(positions.index)]
    if len(unplaced):
        raise InputError(
            f"'{folder}': {len(unplaced)} of {adata.n_obs} barcodes in the count matrix have no row in the "
            f"spot positions file (e.g. {quote_examples(list(unplaced))}); the counts and spatial/ must come "
            "from the same Space Ranger run: copy the matching spatial/ folder"
        )
    positions = positions.loc[adata.obs_names]
    for col in ("in_tissue", "array_row", "array_col"):
        adata.obs[col] = positions[col].to_numpy(dtype=np.int64)
    off_tissue = adata.obs_names[adata.obs["in_tissue"].to_numpy() == 0]
    if counts_file is None and len(off_tissue):  # the filtered matrix holds only spots under tissue
        warn(
            f"'{folder}': {len(off_tissue)} of {adata.n_obs} spots of the filtered count matrix are marked outside "
            f"the tissue (in_tissue = 0) in spatial/ (e.g. {quote_examples(list(off_tissue))}); the counts and "
            "spatial/ may come from different runs (or the tissue was re-selected by hand): check they match"
        )
    adata.obsm["spatial"] = positions[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy(np.float64)
    stored = _read_images(folder / "spatial")
    adata.uns["spatial"] = {library_id(folder): stored}
    validate_spatial(adata, what=f"'{folder}'")
    _check_images_fit(adata.obsm["spatial"], stored, folder / "spatial")
    return adata


def library_id(folder: Path) -> str:
    """Name the slice after its folder; Space Ranger's generic ``outs`` says nothing, so use its parent, and a
    Visium HD bin folder (``square_016um``) says only the bin size, so put its sample's name before it."""
    folder = folder.resolve()
    if folder.parent.name == _HD_BINS:
        return f"{library_id(folder.parent.parent)}_{folder.name}"
    return folder.parent.name if folder.name == "outs" else folder.name


def _find_counts(folder: Path, counts_file: str | None) -> Path:
    """Locate the count matrix, listing what was tried when none is there."""
    candidates = (counts_file,) if counts_file is not None else _COUNTS_CANDIDATES
    for name in candidates:
        if (folder / name).exists():
            return folder / name
    bins_folder = folder if folder.name == _HD_BINS else folder / _HD_BINS
    if counts_file is None and bins_folder.is_dir():
        bins = sorted(p.name for p in bins_folder.iterdir() if p.is_dir())
        example = next((name for name in bins if "016" in name), bins[0] if bins else "square_016um")
        raise InputError(
            f"'{folder}' is (part of) a Visium HD output, whose counts are kept per bin size in {_HD_BINS}/ "
            f"({', '.join(bins) or 'empty'}); pass one bin size's folder, e.g. '{bins_folder / example}'. "
            "16 um bins suit finding domains on a CPU; 8 um bins are four times as many spots"
        )
    if counts_file is None and folder.name == "segmented_outputs":
        raise InputError(
            f"'{folder}' holds Visium HD's cell segmentation, which has no spatial/ folder to read; pass a bin "
            f"folder instead, e.g. '{folder.parent / _HD_BINS / 'square_016um'}'"
        )
    h5_files = sorted(p.name for p in folder.glob("*.h5"))
    hint = f" (.h5 files found there: {', '.join(h5_files)})" if h5_files else ""
    raise InputError(
        f"no count matrix in '{folder}': looked for {', '.join(candidates)}{hint}; pass the Space Ranger "
        "outs folder, or name the matrix with counts_file="
    )


def _read_positions(spatial: Path) -> pd.DataFrame:
    """Read spot positions (CSV with a header since Space Ranger 2.0, without before; Parquet for Visium HD),
    indexed by barcode."""
    path = next((spatial / n for n in _POSITIONS_FILES if (spatial / n).is_file()), None)
    if path is None:
        raise InputError(
            f"no spot positions in '{spatial}': looked for {', '.join(_POSITIONS_FILES)}; copy the "
            "spatial/ folder of the Space Ranger output next to the count matrix"
        )
    has_header = True
    try:
        if path.suffix == ".parquet":
            table = pd.read_parquet(path)
        else:
            has_header = "barcode" in pd.read_csv(path, header=None, nrows=1, dtype=str).iloc[0].str.strip().tolist()
            table = pd.read_csv(path, header=0 if has_header else None, dtype=str)  # barcodes as text, as in counts
    except Exception as err:
        written = "the Parquet file" if path.suffix == ".parquet" else "the comma-separated UTF-8 file"
        raise InputError(
            f"cannot read '{path}' ({type(err).__name__}: {err}); it must be {written} Space Ranger writes: re-copy "
            "it" + ("" if path.suffix == ".parquet" else " (or save it again as CSV UTF-8)")
        ) from err
    if not has_header:
        if table.shape[1] != len(_POSITION_COLUMNS):
            resaved = (
                " (one column: its fields are not separated by commas; a spreadsheet may have saved it with ';' or "
                "tabs: save it again as CSV with commas)"
                if table.shape[1] == 1
                else ""
            )
            raise InputError(
                f"'{path}' has {table.shape[1]} columns and no header; expected the {len(_POSITION_COLUMNS)} "
                f"Space Ranger columns {', '.join(_POSITION_COLUMNS)}{resaved}"
            )
        table.columns = list(_POSITION_COLUMNS)
    missing = [c for c in _POSITION_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(
            f"'{path}' lacks columns {missing} (found {list(table.columns)}); expected the Space Ranger "
            f"columns {', '.join(_POSITION_COLUMNS)}"
        )
    table = table.set_index(table["barcode"].astype(str))
    numeric = list(_POSITION_COLUMNS[1:])
    try:
        table[numeric] = table[numeric].apply(pd.to_numeric)
    except (TypeError, ValueError) as err:
        raise InputError(f"'{path}' has non-numeric values in {numeric} ({err}); re-copy the file") from err
    incomplete = table.index[table[numeric].isna().any(axis=1)]
    if len(incomplete):
        raise InputError(
            f"'{path}' has empty fields for {len(incomplete)} barcodes "
            f"(e.g. {quote_examples(list(incomplete))}); every spot needs all six values: re-copy the file "
            "from Space Ranger"
        )
    grid = table[["in_tissue", "array_row", "array_col"]].to_numpy(dtype=np.float64)
    whole = np.isfinite(grid).all(axis=1) & (grid == np.round(grid)).all(axis=1) & np.isin(grid[:, 0], (0, 1))
    if not whole.all():  # cast to integers they would turn into other values without a word
        raise InputError(
            f"'{path}' has in_tissue / array_row / array_col values that are not whole numbers (in_tissue: 0 or 1) "
            f"for {int((~whole).sum())} barcodes (e.g. {quote_examples(list(table.index[~whole]))}); re-copy the "
            "file from Space Ranger"
        )
    duplicated = table.index[table.index.duplicated()].unique()
    if len(duplicated):
        raise InputError(
            f"'{path}' lists {len(duplicated)} barcodes more than once "
            f"(e.g. {quote_examples(list(duplicated))}); each spot must have one position: re-copy the file "
            "from Space Ranger"
        )
    return table


def _read_images(spatial: Path) -> dict[str, Any]:
    """Load the H&E images present, with the scale factors that map full-res pixels onto them."""
    images = {key: _read_png(spatial / name) for key, name in _IMAGES.items() if (spatial / name).is_file()}
    others = sorted(
        path.name
        for path in spatial.glob("*")
        if path.suffix.lower() in _OTHER_IMAGE_SUFFIXES and path.name not in _QC_IMAGES and path.is_file()
    )
    if not images and others:
        warn(
            f"'{spatial}' holds {', '.join(others[:3])} but no {' or '.join(_IMAGES.values())}, the images Space "
            "Ranger writes and tissuegraph reads; image mode needs one of them: save the image as PNG under that "
            "name (with scalefactors_json.json from the same run)"
        )
    scalefactors_path = spatial / _SCALEFACTORS_FILE
    if scalefactors_path.is_file():
        scalefactors = _read_scalefactors(scalefactors_path)
    elif images:
        raise InputError(
            f"'{scalefactors_path}' is missing but tissue images are present; without scale factors the "
            "images cannot be aligned to the spots: copy scalefactors_json.json from the same Space Ranger "
            "run or remove the images"
        )
    else:
        scalefactors = {}
    for key in images:
        if f"tissue_{key}_scalef" not in scalefactors:
            raise InputError(
                f"'{spatial / _SCALEFACTORS_FILE}' has no 'tissue_{key}_scalef' although {_IMAGES[key]} is "
                "there, so the image cannot be aligned to the spots; use the scalefactors file of the same "
                f"Space Ranger run or remove {_IMAGES[key]}"
            )
    for name in [f"tissue_{key}_scalef" for key in images] + ["spot_diameter_fullres"]:
        value = scalefactors.get(name, 1.0)
        if not _positive_number(value):
            raise InputError(
                f"'{spatial / _SCALEFACTORS_FILE}' gives {name} = {value!r}; it must be a positive number: "
                "re-copy scalefactors_json.json from the same Space Ranger run"
            )
    return {"images": images, "scalefactors": scalefactors}


def _check_images_fit(coords: np.ndarray, stored: dict[str, Any], spatial: Path) -> None:
    """Each image, scaled by its factor, must hold the spots, and hires and lowres must show the same slide."""
    factors = stored["scalefactors"]
    fix = "the image and scalefactors_json.json must come from the same Space Ranger run as the spot positions"
    full_sides = {}
    for key, image in stored["images"].items():
        scale = float(factors[f"tissue_{key}_scalef"])
        check_image_cover(
            coords * scale, image.shape, f"'{spatial / _IMAGES[key]}' (x tissue_{key}_scalef {scale:g})", fix
        )
        full_sides[key] = max(image.shape[:2]) / scale
    if len(full_sides) == 2 and abs(full_sides["hires"] / full_sides["lowres"] - 1) > _SIDE_TOLERANCE:
        raise InputError(
            f"{_IMAGES['hires']} and {_IMAGES['lowres']} in '{spatial}' do not show the same slide: scaled back "
            f"by their scale factors they are {full_sides['hires']:.0f} and {full_sides['lowres']:.0f} "
            f"full-resolution pixels across; {fix}"
        )


def _positive_number(value: object) -> bool:
    """A finite number > 0 (JSON may hold true, text, or an integer too large for a float)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(float(value)) and value > 0
    except OverflowError:
        return False


def _read_png(path: Path) -> np.ndarray:
    """Image as HxWx3 float32 in [0, 1], the form scanpy's plotting expects."""
    try:
        with Image.open(path) as image:
            if image.mode.startswith("I"):  # 16-bit grey (PNG's deepest): converting to RGB would clip it to white
                grey = np.clip(np.asarray(image, dtype=np.float32) / 65535.0, 0.0, 1.0)
                return np.repeat(grey[..., None], 3, axis=2)
            return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    except Exception as err:
        raise InputError(
            f"cannot read image '{path}' ({type(err).__name__}: {err}); re-copy it or delete it (the image is optional)"
        ) from err


def _read_scalefactors(path: Path) -> dict[str, Any]:
    """Parse scalefactors_json.json, which maps full-resolution pixels onto the stored images."""
    try:
        scalefactors = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(
            f"'{path}' is not valid JSON ({err}); re-copy scalefactors_json.json from the Space Ranger output"
        ) from err
    if not isinstance(scalefactors, dict):
        raise InputError(
            f"'{path}' holds a {type(scalefactors).__name__}, not a JSON object of scale factors; re-copy "
            "scalefactors_json.json from the Space Ranger output"
        )
    return scalefactors
