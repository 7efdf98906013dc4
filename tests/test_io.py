"""Tests for tissuegraph.io: readers, validation and atomic writing, on small generated inputs."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import warnings
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.io
import scipy.sparse as sp
from PIL import Image

from tissuegraph.errors import InputError
from tissuegraph.io import (
    read,
    read_gem,
    read_h5ad,
    read_tables,
    read_visium,
    read_xenium,
    validate_spatial,
    write_h5ad,
)

from conftest import real_data, unsorted_csr

# A tiny Visium slice: 4 spots x 4 features, the last feature an antibody that must be dropped and
# "GeneA" twice, so gene names need making unique.
BARCODES = ["AAAC-1", "AAAG-1", "AACC-1", "AAGG-1"]
FEATURE_IDS = ["ENSG01", "ENSG02", "ENSG03", "AB01"]
FEATURE_NAMES = ["GeneA", "GeneB", "GeneA", "CD3"]
FEATURE_TYPES = ["Gene Expression", "Gene Expression", "Gene Expression", "Antibody Capture"]
COUNTS = np.array([[1, 0, 3, 9], [0, 2, 0, 9], [4, 0, 0, 9], [0, 5, 6, 9]], dtype=np.int32)
EXPECTED_X = COUNTS[:, :3].astype(np.float32)
EXPECTED_GENES = ["GeneA", "GeneB", "GeneA-1"]
# Positions are listed in another order than the counts and include an off-tissue spot not in the counts.
POSITIONS = pd.DataFrame(
    {
        "barcode": ["AAGG-1", "TTTT-1", "AAAC-1", "AACC-1", "AAAG-1"],
        "in_tissue": [1, 0, 1, 1, 1],
        "array_row": [3, 9, 0, 2, 1],
        "array_col": [30, 90, 0, 20, 10],
        "pxl_row_in_fullres": [1300, 1900, 1000, 1200, 1100],
        "pxl_col_in_fullres": [2300, 2900, 2000, 2200, 2100],
    }
)
EXPECTED_XY = np.array([[2000, 1000], [2100, 1100], [2200, 1200], [2300, 1300]], dtype=np.float64)
SCALEFACTORS = {
    "tissue_hires_scalef": 0.2,
    "tissue_lowres_scalef": 0.05,
    "spot_diameter_fullres": 90.0,
    "fiducial_diameter_fullres": 140.0,
}


def _write_10x_h5(path: Path) -> None:
    """Write COUNTS in the Cell Ranger v3 h5 layout (CSC features x barcodes == CSR barcodes x features)."""
    csr = sp.csr_matrix(COUNTS)
    with h5py.File(path, "w") as f:
        m = f.create_group("matrix")
        m["barcodes"] = np.array(BARCODES, dtype="S")
        m["data"] = csr.data.astype(np.int32)
        m["indices"] = csr.indices.astype(np.int64)
        m["indptr"] = csr.indptr.astype(np.int64)
        m["shape"] = np.array([COUNTS.shape[1], COUNTS.shape[0]], dtype=np.int32)
        feats = m.create_group("features")
        feats["id"] = np.array(FEATURE_IDS, dtype="S")
        feats["name"] = np.array(FEATURE_NAMES, dtype="S")
        feats["feature_type"] = np.array(FEATURE_TYPES, dtype="S")
        feats["genome"] = np.array(["GRCh38"] * len(FEATURE_IDS), dtype="S")


def _write_mtx_folder(folder: Path, *, gz: bool) -> None:
    """Write COUNTS as a 10x mtx folder (features x barcodes), gzipped like Space Ranger or plain."""
    folder.mkdir()
    scipy.io.mmwrite(folder / "matrix.mtx", sp.coo_matrix(COUNTS.T))
    (folder / "barcodes.tsv").write_text("\n".join(BARCODES) + "\n")
    rows = zip(FEATURE_IDS, FEATURE_NAMES, FEATURE_TYPES, strict=True)
    (folder / "features.tsv").write_text("".join(f"{i}\t{n}\t{t}\n" for i, n, t in rows))
    if gz:
        for name in ("matrix.mtx", "barcodes.tsv", "features.tsv"):
            with (folder / name).open("rb") as src, gzip.open(folder / f"{name}.gz", "wb") as dst:
                shutil.copyfileobj(src, dst)
            (folder / name).unlink()


def _write_spatial(
    folder: Path,
    *,
    header: bool = True,
    images: tuple[str, ...] = ("hires", "lowres"),
    scalefactors: dict | None = SCALEFACTORS,
    positions: pd.DataFrame = POSITIONS,
) -> None:
    """Write spatial/: positions (new header style or old headerless list), images and scale factors."""
    spatial = folder / "spatial"
    spatial.mkdir(parents=True)
    name = "tissue_positions.csv" if header else "tissue_positions_list.csv"
    positions.to_csv(spatial / name, index=False, header=header)
    sizes = {"hires": (280, 480), "lowres": (70, 120)}  # (height, width): a 2400 x 1400 slide, scaled
    for key in images:
        pixels = np.full((*sizes[key], 3), 255, dtype=np.uint8)
        pixels[0, 0] = (0, 51, 102)
        Image.fromarray(pixels).save(spatial / f"tissue_{key}_image.png")
    if scalefactors is not None:
        (spatial / "scalefactors_json.json").write_text(json.dumps(scalefactors))


@pytest.fixture
def visium_dir(tmp_path: Path) -> Path:
    """A Space Ranger output folder with an h5 count matrix, new-style positions and both images."""
    folder = tmp_path / "sliceA"
    folder.mkdir()
    _write_10x_h5(folder / "filtered_feature_bc_matrix.h5")
    _write_spatial(folder)
    return folder


@pytest.fixture
def visium_mtx_dir(tmp_path: Path) -> Path:
    """A Space Ranger output folder with a plain (unzipped) mtx count matrix, new-style positions, both images."""
    folder = tmp_path / "slice"
    folder.mkdir()
    _write_mtx_folder(folder / "filtered_feature_bc_matrix", gz=False)
    _write_spatial(folder)
    return folder


def _spatial_adata(n: int = 5, n_genes: int = 3) -> ad.AnnData:
    """A small valid in-memory slice with dense integer counts."""
    rng = np.random.default_rng(0)
    adata = ad.AnnData(rng.poisson(2.0, size=(n, n_genes)).astype(np.int64))
    adata.obs_names = [f"spot{i}" for i in range(n)]
    adata.var_names = [f"g{j}" for j in range(n_genes)]
    adata.obsm["spatial"] = np.arange(2 * n).reshape(n, 2)
    return adata


def _assert_visium_layout(adata: ad.AnnData, library_id: str, images: tuple[str, ...]) -> None:
    assert isinstance(adata.X, sp.csr_matrix) and adata.X.dtype == np.float32
    np.testing.assert_array_equal(adata.X.toarray(), EXPECTED_X)
    assert list(adata.obs_names) == BARCODES
    assert list(adata.var_names) == EXPECTED_GENES
    assert list(adata.var["gene_ids"]) == FEATURE_IDS[:3]
    assert adata.obsm["spatial"].dtype == np.float64
    np.testing.assert_array_equal(adata.obsm["spatial"], EXPECTED_XY)
    assert list(adata.obs["in_tissue"]) == [1, 1, 1, 1]
    assert list(adata.obs["array_row"]) == [0, 1, 2, 3]
    assert list(adata.obs["array_col"]) == [0, 10, 20, 30]
    assert list(adata.uns["spatial"]) == [library_id]
    lib = adata.uns["spatial"][library_id]
    assert sorted(lib["images"]) == sorted(images)
    for key in images:
        image = lib["images"][key]
        assert image.dtype == np.float32 and image.ndim == 3 and image.shape[2] == 3
        assert 0.0 <= image.min() and image.max() <= 1.0
        np.testing.assert_allclose(image[0, 0], [0.0, 0.2, 0.4], atol=1e-6)
    assert lib["scalefactors"] == SCALEFACTORS


# --- validate_spatial -------------------------------------------------------------------------------


def test_validate_normalises_dense_counts_and_coordinates() -> None:
    adata = _spatial_adata()
    expected = adata.X.copy()
    out = validate_spatial(adata)
    assert out is adata
    assert isinstance(adata.X, sp.csr_matrix) and adata.X.dtype == np.float32
    np.testing.assert_array_equal(adata.X.toarray(), expected)
    assert isinstance(adata.obsm["spatial"], np.ndarray) and adata.obsm["spatial"].dtype == np.float64


@pytest.mark.parametrize("convert", [sp.csc_matrix, sp.csr_array, sp.csc_array])
def test_validate_accepts_sparse_formats(convert: type) -> None:
    adata = _spatial_adata()
    dense = np.asarray(adata.X, dtype=np.float32)
    adata.X = convert(adata.X)
    validate_spatial(adata)
    assert isinstance(adata.X, sp.csr_matrix) and adata.X.dtype == np.float32
    np.testing.assert_array_equal(adata.X.toarray(), dense)


@pytest.mark.parametrize("dtype", [np.int32, np.float32])
def test_checking_counts_leaves_the_callers_matrix_as_it_was(dtype: type) -> None:
    """Columns stored out of order (as b[:, shared_genes] leaves them): checking puts a copy in order. Sorting the
    index array the converted matrix shared with an int32 X scrambled the caller's counts between genes."""
    from tissuegraph.io.validate import check_counts

    adata = _spatial_adata(n=6, n_genes=5)
    dense = np.asarray(adata.X, dtype=np.float32)
    adata.X = unsorted_csr(dense.astype(dtype))
    stored = (adata.X.data.copy(), adata.X.indices.copy())
    checked = check_counts(adata)
    np.testing.assert_array_equal(checked.toarray(), dense)
    np.testing.assert_array_equal(adata.X.data, stored[0])
    np.testing.assert_array_equal(adata.X.indices, stored[1])
    np.testing.assert_array_equal(adata.X.toarray(), dense)


def test_validate_never_densifies_sparse_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    adata = _spatial_adata()
    adata.X = sp.csr_matrix(adata.X)
    adata.X.data[0] = -1

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("sparse counts were densified")

    monkeypatch.setattr(sp.csr_matrix, "toarray", refuse)
    monkeypatch.setattr(sp.csr_matrix, "todense", refuse)
    with pytest.raises(InputError, match="negative"):
        validate_spatial(adata)


def test_validate_makes_gene_names_unique() -> None:
    adata = _spatial_adata()
    adata.var_names = ["g", "g", "h"]
    validate_spatial(adata)
    assert list(adata.var_names) == ["g", "g-1", "h"]


def test_validate_missing_coordinates() -> None:
    adata = _spatial_adata()
    del adata.obsm["spatial"]
    adata.obsm["X_pca"] = np.zeros((adata.n_obs, 2))
    with pytest.raises(InputError, match=r"no spot coordinates in obsm\['spatial'\].*'X_pca'"):
        validate_spatial(adata)


@pytest.mark.parametrize("n_cols", [1, 3])
def test_validate_coordinates_need_two_columns(n_cols: int) -> None:
    adata = _spatial_adata()
    adata.obsm["spatial"] = np.zeros((adata.n_obs, n_cols))
    with pytest.raises(InputError, match=rf"shape \(5, {n_cols}\).*exactly 2 columns"):
        validate_spatial(adata)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_validate_non_finite_coordinates(bad: float) -> None:
    adata = _spatial_adata()
    coords = adata.obsm["spatial"].astype(float)
    coords[3, 1] = bad
    adata.obsm["spatial"] = coords
    with pytest.raises(InputError, match=r"NaN or infinite coordinates for 1 spots.*'spot3'"):
        validate_spatial(adata)


def test_validate_non_numeric_coordinates() -> None:
    adata = _spatial_adata()
    adata.obsm["spatial"] = np.array([["a", "b"]] * adata.n_obs, dtype=object)
    with pytest.raises(InputError, match="non-numeric coordinates"):
        validate_spatial(adata)


@pytest.mark.parametrize("values", [np.array([True, False]), np.array([1 + 2j, 3 + 0j])])
def test_validate_refuses_coordinates_that_are_not_real_numbers(values: np.ndarray) -> None:
    """Booleans are no positions, and casting complex numbers would silently drop their imaginary part."""
    adata = _spatial_adata()
    adata.obsm["spatial"] = np.resize(values, (adata.n_obs, 2))
    with pytest.raises(InputError, match="non-numeric coordinates .*store x, y as real numbers"):
        validate_spatial(adata)


def test_validate_reads_sparse_or_named_coordinates() -> None:
    """A sparse matrix is made dense; a table with x and y columns is read by name, whatever their order."""
    adata = _spatial_adata()
    xy = np.arange(2 * adata.n_obs, dtype=np.float64).reshape(-1, 2)
    adata.obsm["spatial"] = sp.csr_matrix(xy)
    np.testing.assert_array_equal(validate_spatial(adata).obsm["spatial"], xy)
    adata.obsm["spatial"] = pd.DataFrame({"Y": xy[:, 1], "X": xy[:, 0], "z": 0.0}, index=adata.obs_names)
    np.testing.assert_array_equal(validate_spatial(adata).obsm["spatial"], xy)
    adata.obsm["spatial"] = pd.DataFrame({"imagerow": xy[:, 1], "imagecol": xy[:, 0]}, index=adata.obs_names)
    np.testing.assert_array_equal(validate_spatial(adata).obsm["spatial"], xy)  # x is the column


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_validate_non_finite_counts(sparse: bool, bad: float) -> None:
    adata = _spatial_adata()
    X = adata.X.astype(np.float64)
    X[1, 0] = X[1, 2] = X[4, 1] = bad
    adata.X = sp.csr_matrix(X) if sparse else X
    with pytest.raises(InputError, match=r"3 non-finite \(NaN or infinite\) values in 2 spots.*'spot1'"):
        validate_spatial(adata)


@pytest.mark.parametrize("sparse", [False, True])
def test_validate_negative_counts(sparse: bool) -> None:
    adata = _spatial_adata()
    X = adata.X.astype(np.float64)
    X[2, 1] = -0.5
    adata.X = sp.csr_matrix(X) if sparse else X
    with pytest.raises(InputError, match=r"1 negative values in 1 spots.*'spot2'.*raw counts"):
        validate_spatial(adata)


@pytest.mark.parametrize("dtype", [np.uint32, np.int64])
def test_validate_refuses_counts_no_spot_can_hold(dtype: type) -> None:
    """-1 written as uint32 reads as 4294967295, a whole positive number that passed every check."""
    adata = _spatial_adata()
    X = adata.X.astype(dtype)
    X[3, 2] = np.iinfo(np.uint32).max if dtype is np.uint32 else 2**40
    adata.X = X
    with pytest.raises(InputError, match=r"1 values of 2\*\*31 or more in 1 spots.*'spot3'.*unsigned integer"):
        validate_spatial(adata)
    X[3, 2] = 2**31 - 128  # the largest count float32 keeps below 2**31 still passes
    validate_spatial(adata)


@pytest.mark.parametrize(
    ("stored", "fix"),
    [
        ("log raw", r"put the raw counts \(whole numbers before any normalisation\) in X$"),
        ("layer", r"adata\.X = adata\.layers\['counts'\]$"),
    ],
)
def test_validate_scaled_counts_point_to_raw_counts_only_where_they_are(stored: str, fix: str) -> None:
    """scanpy's usual workflow keeps log-normalised values in raw: pointing there would not help."""
    adata = _spatial_adata(n_genes=6)
    counts = adata.X.astype(np.float64) + 1.0
    if stored == "layer":
        adata.layers["counts"] = counts.copy()
    else:
        adata.raw = ad.AnnData(_log_normalised(counts), obs=adata.obs, var=adata.var)
    logged = _log_normalised(counts)
    adata.X = (logged - logged.mean(axis=0)) / logged.std(axis=0)
    with pytest.raises(InputError, match=rf"negative values.*{fix}") as caught:
        validate_spatial(adata)
    assert "raw.to_adata" not in str(caught.value)


def _log_normalised(counts: np.ndarray) -> np.ndarray:
    return np.log1p(counts / counts.sum(axis=1, keepdims=True) * 1e4).astype(np.float32)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize(
    ("stored", "fix"),
    [
        (None, r"put the raw counts in X.*np\.rint"),
        ("layer", r"layers\['counts'\]: adata\.X = adata\.layers\['counts'\]"),
        ("raw", r"adata = adata\.raw\.to_adata\(\)"),
    ],
)
def test_validate_refuses_normalised_counts_and_says_where_the_raw_ones_are(
    sparse: bool, stored: str | None, fix: str
) -> None:
    adata = _spatial_adata(n_genes=6)
    counts = adata.X.astype(np.float64) + 1.0  # no empty spot
    if stored == "layer":
        adata.layers["counts"] = counts.copy()
    elif stored == "raw":
        adata.raw = ad.AnnData(counts.copy(), obs=adata.obs, var=adata.var)
    logged = _log_normalised(counts)
    adata.X = sp.csr_matrix(logged) if sparse else logged
    with pytest.raises(InputError, match=rf"30 non-integer values in 5 spots.*'spot0'.*log-transformed.*{fix}"):
        validate_spatial(adata)


def test_validate_keeps_whole_counts_stored_as_floats() -> None:
    adata = _spatial_adata()
    adata.X = adata.X.astype(np.float64)
    assert validate_spatial(adata).X.dtype == np.float32


@pytest.mark.parametrize("sparse", [False, True])
def test_validate_refuses_a_slice_without_any_count(sparse: bool) -> None:
    adata = _spatial_adata()
    adata.X = sp.csr_matrix(adata.shape, dtype=np.float32) if sparse else np.zeros(adata.shape)
    with pytest.raises(InputError, match="holds no counts: every entry of X is 0"):
        validate_spatial(adata)


def test_validate_refuses_coordinates_without_a_layout() -> None:
    adata = _spatial_adata()
    adata.obsm["spatial"] = np.full((5, 2), 7.0)
    with pytest.raises(InputError, match=r"all 5 spots sit at the same position \(7, 7\)"):
        validate_spatial(adata)


def test_validate_duplicate_spot_ids() -> None:
    adata = _spatial_adata()
    adata.obs_names = ["a", "b", "a", "c", "c"]
    with pytest.raises(InputError, match=r"2 duplicate spot ids.*'a', 'c'.*obs_names_make_unique"):
        validate_spatial(adata)
    adata.obs["batch"] = ["s1", "s1", "s2", "s1", "s2"]  # the same barcodes on two slices of one file
    with pytest.raises(InputError, match=r"repeat across the slices .*adata.obs_names \+ '-' \+ adata.obs\['batch'\]"):
        validate_spatial(adata)


@pytest.mark.parametrize("shape", [(0, 3), (5, 0)])
def test_validate_empty_slice(shape: tuple[int, int]) -> None:
    adata = ad.AnnData(np.zeros(shape, dtype=np.float32))
    adata.obsm["spatial"] = np.zeros((shape[0], 2))
    with pytest.raises(InputError, match=rf"empty \({shape[0]} spots x {shape[1]} genes\)"):
        validate_spatial(adata)


def test_validate_too_few_spots() -> None:
    with pytest.raises(InputError, match=r"has 5 spots but the spatial graph needs at least 7.*lower --k"):
        validate_spatial(_spatial_adata(), min_spots=7, what="slice 'B'")


def test_validate_names_the_input() -> None:
    adata = _spatial_adata()
    del adata.obsm["spatial"]
    with pytest.raises(InputError, match="^slice 'B' has no spot coordinates"):
        validate_spatial(adata, what="slice 'B'")


@pytest.mark.parametrize("values", [np.array([["1", "2"]] * 3, dtype=object), np.ones((3, 2), dtype=bool)])
def test_validate_non_numeric_counts(values: np.ndarray) -> None:
    adata = ad.AnnData(values)
    adata.obsm["spatial"] = np.zeros((3, 2))
    with pytest.raises(InputError, match="numeric raw counts"):
        validate_spatial(adata)


def test_validate_no_counts() -> None:
    adata = ad.AnnData(obs=pd.DataFrame(index=["a", "b"]), var=pd.DataFrame(index=["g"]))
    adata.obsm["spatial"] = np.zeros((2, 2))
    with pytest.raises(InputError, match=r"no count matrix in X"):
        validate_spatial(adata)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            [20.0, np.inf, 30.0, 40.0, 50.0],
            r"obs\['total_counts_all_genes'\] is infinite for 1 spots.*'spot1'",
        ),
        ([20.0, 30.0, 1.0, 40.0, 50.0], r"smaller than the spot's counts in X for 1 spots.*'spot2'"),
        (["a", "b", "c", "d", "e"], r"non-numeric library sizes"),
    ],
)
def test_validate_library_sizes(values: list, message: str) -> None:
    adata = _spatial_adata()
    adata.obs["total_counts_all_genes"] = values
    with pytest.raises(InputError, match=message) as caught:
        validate_spatial(adata)
    assert "del adata.obs['total_counts_all_genes']" in str(caught.value)


def test_validate_accepts_library_sizes_at_least_the_counts_or_missing() -> None:
    adata = _spatial_adata()
    totals = np.asarray(adata.X.sum(1)).ravel().astype(float)  # a file holding every gene
    totals[1] = np.nan  # e.g. joined from a slice without the column: normalisation falls back, with a warning
    adata.obs["total_counts_all_genes"] = totals
    assert validate_spatial(adata) is adata


# --- read_h5ad --------------------------------------------------------------------------------------


def test_read_h5ad_happy_path(tmp_path: Path) -> None:
    adata = _spatial_adata()
    adata.X = sp.csr_matrix(adata.X.astype(np.int32))
    adata.write_h5ad(tmp_path / "s.h5ad")
    out = read_h5ad(tmp_path / "s.h5ad")
    assert isinstance(out.X, sp.csr_matrix) and out.X.dtype == np.float32
    np.testing.assert_array_equal(out.X.toarray(), adata.X.toarray())
    np.testing.assert_array_equal(out.obsm["spatial"], adata.obsm["spatial"])
    assert list(out.obs_names) == list(adata.obs_names)


def test_read_h5ad_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found"):
        read_h5ad(tmp_path / "nope.h5ad")


def test_read_h5ad_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a folder.*read_visium"):
        read_h5ad(tmp_path)


def test_read_h5ad_unreadable(tmp_path: Path) -> None:
    (tmp_path / "bad.h5ad").write_text("not hdf5")
    with pytest.raises(InputError, match=r"cannot read .*bad\.h5ad.* as \.h5ad"):
        read_h5ad(tmp_path / "bad.h5ad")


@pytest.mark.parametrize("cols", [("x", "y"), ("X", "Y")])
def test_read_h5ad_refuses_to_guess_coordinates(tmp_path: Path, cols: tuple[str, str]) -> None:
    adata = _spatial_adata()
    del adata.obsm["spatial"]
    adata.obs[cols[0]] = 1.0
    adata.obs[cols[1]] = 2.0
    adata.write_h5ad(tmp_path / "s.h5ad")
    with pytest.raises(InputError, match=rf"no obsm\['spatial'\] but obs has columns \['{cols[0]}', '{cols[1]}'\]"):
        read_h5ad(tmp_path / "s.h5ad")


def test_read_h5ad_without_coordinates(tmp_path: Path) -> None:
    adata = _spatial_adata()
    del adata.obsm["spatial"]
    adata.write_h5ad(tmp_path / "s.h5ad")
    with pytest.raises(InputError, match=r"no spot coordinates in obsm\['spatial'\]"):
        read_h5ad(tmp_path / "s.h5ad")


# --- read_visium ------------------------------------------------------------------------------------


def test_read_visium_h5(visium_dir: Path) -> None:
    _assert_visium_layout(read_visium(visium_dir), "sliceA", ("hires", "lowres"))


@pytest.mark.parametrize("gz", [True, False])
def test_read_visium_mtx_and_headerless_positions(tmp_path: Path, gz: bool) -> None:
    folder = tmp_path / "sliceB"
    folder.mkdir()
    _write_mtx_folder(folder / "filtered_feature_bc_matrix", gz=gz)
    _write_spatial(folder, header=False, images=("lowres",))
    _assert_visium_layout(read_visium(folder), "sliceB", ("lowres",))


def test_read_visium_mtx_matches_scanpy(tmp_path: Path) -> None:
    folder = tmp_path / "sliceB"
    folder.mkdir()
    _write_mtx_folder(folder / "filtered_feature_bc_matrix", gz=True)
    _write_spatial(folder)
    ours = read_visium(folder)
    theirs = sc.read_10x_mtx(folder / "filtered_feature_bc_matrix")
    np.testing.assert_array_equal(ours.X.toarray(), theirs.X.toarray())
    assert list(ours.var_names) == list(theirs.var_names)


def test_read_visium_outs_folder_is_named_after_sample(tmp_path: Path) -> None:
    folder = tmp_path / "sample7" / "outs"
    folder.mkdir(parents=True)
    _write_10x_h5(folder / "filtered_feature_bc_matrix.h5")
    _write_spatial(folder)
    assert list(read_visium(folder).uns["spatial"]) == ["sample7"]


def test_read_visium_without_images_or_scalefactors(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    folder.mkdir()
    _write_10x_h5(folder / "filtered_feature_bc_matrix.h5")
    _write_spatial(folder, images=(), scalefactors=None)
    assert read_visium(folder).uns["spatial"]["s"] == {"images": {}, "scalefactors": {}}


def test_read_visium_names_an_image_it_cannot_read(tmp_path: Path) -> None:
    """A JPEG saved in place of Space Ranger's PNG was ignored without a word; its QC images are no stand-ins."""
    folder = tmp_path / "s"
    folder.mkdir()
    _write_10x_h5(folder / "filtered_feature_bc_matrix.h5")
    _write_spatial(folder, images=(), scalefactors=None)
    Image.new("RGB", (8, 8)).save(folder / "spatial" / "aligned_fiducials.jpg")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_visium(folder)
    Image.new("RGB", (8, 8)).save(folder / "spatial" / "tissue_lowres_image.jpg")
    with pytest.warns(UserWarning, match=r"holds tissue_lowres_image.jpg but no tissue_hires_image.png or tissue_lo"):
        assert read_visium(folder).uns["spatial"]["s"]["images"] == {}


def test_read_visium_counts_file(visium_dir: Path) -> None:
    (visium_dir / "filtered_feature_bc_matrix.h5").rename(visium_dir / "raw_feature_bc_matrix.h5")
    adata = read_visium(visium_dir, counts_file="raw_feature_bc_matrix.h5")
    np.testing.assert_array_equal(adata.X.toarray(), EXPECTED_X)


def test_read_visium_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_visium(tmp_path / "nope")


def test_read_visium_no_counts(visium_dir: Path) -> None:
    (visium_dir / "filtered_feature_bc_matrix.h5").rename(visium_dir / "sample_filtered.h5")
    with pytest.raises(
        InputError,
        match=r"no count matrix.*filtered_feature_bc_matrix\.h5, filtered_feature_bc_matrix "
        r"\(\.h5 files found there: sample_filtered\.h5\).*counts_file=",
    ):
        read_visium(visium_dir)


def test_read_visium_missing_counts_file(visium_dir: Path) -> None:
    with pytest.raises(InputError, match="looked for raw.h5"):
        read_visium(visium_dir, counts_file="raw.h5")


def test_read_visium_corrupt_h5(visium_dir: Path) -> None:
    (visium_dir / "filtered_feature_bc_matrix.h5").write_bytes(b"truncated")
    with pytest.raises(InputError, match="cannot read .* as a 10x count matrix"):
        read_visium(visium_dir)


def test_read_visium_incomplete_mtx(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    folder.mkdir()
    _write_mtx_folder(folder / "filtered_feature_bc_matrix", gz=True)
    (folder / "filtered_feature_bc_matrix" / "barcodes.tsv.gz").unlink()
    _write_spatial(folder)
    with pytest.raises(InputError, match=r"incomplete mtx folder.*barcodes\.tsv"):
        read_visium(folder)


def test_read_visium_no_positions(visium_dir: Path) -> None:
    (visium_dir / "spatial" / "tissue_positions.csv").unlink()
    with pytest.raises(InputError, match="no spot positions.*tissue_positions.csv, tissue_positions_list.csv"):
        read_visium(visium_dir)


def _visium_hd(tmp_path: Path) -> Path:
    """A Visium HD output: outs/binned_outputs/<bin>/ as Space Ranger 3 writes it, positions in Parquet."""
    outs = tmp_path / "brain_hd" / "outs"
    for name in ("square_002um", "square_008um", "square_016um"):
        folder = outs / "binned_outputs" / name
        folder.mkdir(parents=True)
        _write_10x_h5(folder / "filtered_feature_bc_matrix.h5")
        _write_spatial(folder)
        csv = folder / "spatial" / "tissue_positions.csv"
        pd.read_csv(csv, dtype={"barcode": str}).to_parquet(csv.with_suffix(".parquet"), index=False)
        csv.unlink()
    return outs


def test_read_visium_hd_bin_folder(tmp_path: Path, visium_dir: Path) -> None:
    """Visium HD keeps its positions in Parquet: a bin folder reads as a Visium folder, named by sample and bin."""
    outs = _visium_hd(tmp_path)
    adata = read_visium(outs / "binned_outputs" / "square_016um")
    expected = read_visium(visium_dir)
    np.testing.assert_array_equal(adata.obsm["spatial"], expected.obsm["spatial"])
    np.testing.assert_array_equal(adata.X.toarray(), expected.X.toarray())
    assert list(adata.obs_names) == list(expected.obs_names) and list(adata.uns["spatial"]) == ["brain_hd_square_016um"]
    np.testing.assert_array_equal(adata.obs["array_row"], expected.obs["array_row"])
    with pytest.raises(
        InputError,
        match=r"is \(part of\) a Visium HD output.*\(square_002um, square_008um, square_016um\); pass one "
        r"bin size's folder, e.g. '.*binned_outputs/square_016um'",
    ):
        read_visium(outs)
    (outs / "binned_outputs" / "square_008um" / "spatial" / "tissue_positions.parquet").write_bytes(b"PAR1 cut")
    with pytest.raises(InputError, match=r"is \(part of\) a Visium HD output.*e.g. '.*binned_outputs/square_016um'"):
        read_visium(outs / "binned_outputs")  # the outs folder's error used to send users back to outs
    (outs / "segmented_outputs").mkdir()
    with pytest.raises(InputError, match=r"Visium HD's cell segmentation.*pass a bin folder instead"):
        read_visium(outs / "segmented_outputs")
    with pytest.raises(InputError, match=r"cannot read .*tissue_positions.parquet.*the Parquet file Space Ranger"):
        read_visium(outs / "binned_outputs" / "square_008um")


def _xenium(folder: Path, cells_file: str = "cells.csv.gz") -> Path:
    """A Xenium output: the cell feature matrix (non-gene features marked by type) and the cells with centroids
    in microns, listed in another order than the matrix."""
    folder.mkdir()
    _write_10x_h5(folder / "cell_feature_matrix.h5")
    cells = pd.DataFrame(
        {
            "cell_id": BARCODES[::-1],
            "x_centroid": [40.5, 30.5, 20.5, 10.5],
            "y_centroid": [4.0, 3.0, 2.0, 1.0],
            "transcript_counts": [9, 9, 9, 9],
            "cell_area": [50.2, 61.0, 48.3, 70.1],
        }
    )
    if cells_file.endswith(".parquet"):
        cells["cell_id"] = [b.encode() for b in cells["cell_id"]]  # older Xenium parquet files store bytes
        cells.to_parquet(folder / cells_file, index=False)
    else:
        cells.to_csv(folder / cells_file, index=False)
    return folder


@pytest.mark.parametrize("cells_file", ["cells.csv.gz", "cells.parquet"])
def test_read_xenium_folder(tmp_path: Path, cells_file: str) -> None:
    adata = read(_xenium(tmp_path / "xenium", cells_file))
    assert list(adata.obs_names) == BARCODES and list(adata.var_names) == EXPECTED_GENES
    np.testing.assert_array_equal(adata.X.toarray(), EXPECTED_X)
    np.testing.assert_array_equal(adata.obsm["spatial"], [[10.5, 1.0], [20.5, 2.0], [30.5, 3.0], [40.5, 4.0]])


def test_read_xenium_refuses_cells_without_a_centroid(tmp_path: Path) -> None:
    folder = _xenium(tmp_path / "xenium")
    cells = pd.read_csv(folder / "cells.csv.gz")
    cells.iloc[1:].to_csv(folder / "cells.csv.gz", index=False)
    with pytest.raises(InputError, match=r"1 of 4 cells of cell_feature_matrix.h5 have no row in cells.csv.gz"):
        read_xenium(folder)
    cells.drop(columns="y_centroid").to_csv(folder / "cells.csv.gz", index=False)
    with pytest.raises(InputError, match=r"lacks columns \['y_centroid'\].*cell_id, x_centroid and y_centroid"):
        read_xenium(folder)
    with pytest.raises(
        InputError, match="is not a complete Xenium output folder.*zarr.zip files are for Xenium Explorer"
    ):
        read_xenium(tmp_path)
    (folder / "cells.csv.gz").unlink()  # a Xenium folder missing its cells: named as such, not as Space Ranger's
    with pytest.raises(InputError, match=r"not a complete Xenium output folder: it needs cell_feature_matrix.h5"):
        read(folder)


GEM_ROWS = [  # geneID, x, y, MIDCount, ExonCount: DNBs of two genes in three 10-DNB bins
    ("Gad1", 3, 4, 2, 2), ("Gad1", 9, 9, 1, 1), ("Sst", 5, 0, 4, 3), ("Gad1", 12, 3, 5, 5), ("Sst", 31, 25, 1, 0),
    ("Sst", 38, 21, 2, 2),
]  # fmt: skip


def _write_gem(path: Path, rows: list[tuple] = GEM_ROWS, count: str = "MIDCount") -> Path:
    lines = ["#FileFormat=GEMv0.1", "#SortedBy=None", "#OffsetX=0", "#OffsetY=0", f"geneID\tx\ty\t{count}\tExonCount"]
    text = "\n".join(lines + ["\t".join(map(str, row)) for row in rows]) + "\n"
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize("name", ["chip.gem", "chip.gem.gz"])
def test_read_gem_sums_dnbs_into_bins(tmp_path: Path, name: str) -> None:
    adata = read(_write_gem(tmp_path / name))  # tg.read: bins of 50 DNBs
    assert adata.n_obs == 1 and list(adata.var_names) == ["Gad1", "Sst"]
    np.testing.assert_array_equal(adata.X.toarray(), [[8, 7]])
    np.testing.assert_array_equal(adata.obsm["spatial"], [[25, 25]])
    adata = read_gem(tmp_path / name, bin_size=10)
    assert list(adata.obs_names) == ["0_0", "1_0", "3_2"]
    np.testing.assert_array_equal(adata.X.toarray(), [[3, 4], [5, 0], [0, 3]])
    np.testing.assert_array_equal(adata.obsm["spatial"], [[5, 5], [15, 5], [35, 25]])
    older = read_gem(_write_gem(tmp_path / "older.gem", count="MIDCounts"), bin_size=10)
    np.testing.assert_array_equal(older.X.toarray(), adata.X.toarray())


def test_read_gem_refuses_what_is_no_gem(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"lacks GEM columns \['MIDCount'\].*geneID, x, y and MIDCount \(or MIDCounts"):
        read_gem(_write_gem(tmp_path / "a.gem", count="reads"))
    with pytest.raises(InputError, match=r"has rows without a gene, .*\(1 of its data rows 1-7, e.g. row 7: .*'y': -1"):
        read_gem(_write_gem(tmp_path / "b.gem", [*GEM_ROWS, ("Sst", 4, -1, 1, 1)]))
    for bad in (("Sst", 4, 1, 1.5, 1), ("Sst", 4.5, 1, 1, 1), ("", 4, 1, 1, 1)):  # fractions; a row without a gene
        with pytest.raises(InputError, match=r"1 of its data rows 1-7, e.g. row 7"):
            read_gem(_write_gem(tmp_path / "c.gem", [*GEM_ROWS, bad]))
    with pytest.raises(InputError, match=r"bin_size \(--bin-size\) must be a whole number of DNBs, at least 1"):
        read_gem(tmp_path / "b.gem", bin_size=0)
    (tmp_path / "d.gem").write_text("#FileFormat=GEMv0.1\ngeneID\tx\ty\tMIDCount\n")
    with pytest.raises(InputError, match="holds no counts"):
        read_gem(tmp_path / "d.gem")
    (tmp_path / "e.gem").write_text("#FileFormat=GEMv0.1\n")
    with pytest.raises(InputError, match="holds no column header and no rows after its '#' lines"):
        read_gem(tmp_path / "e.gem")
    whole = _write_gem(tmp_path / "f.gem.gz").read_bytes()
    for cut in (40, len(whole) - 20):  # cut off in the '#' lines, and in the rows: no bare EOFError
        (tmp_path / "cut.gem.gz").write_bytes(whole[:cut])
        with pytest.raises(InputError, match=r"is damaged or cut off \(EOFError"):
            read_gem(tmp_path / "cut.gem.gz")
    with pytest.raises(InputError, match="is a folder; give the GEM file itself"):
        read_gem(tmp_path)


def test_read_gem_reads_the_variants_files_come_in(tmp_path: Path, monkeypatch) -> None:
    """A BOM or blank lines among the '#' lines, a gzip named .gem, geneName beside geneID, a gene called NA, and
    sums carried over many chunks: each gave a false error, Ensembl ids as names, or a bare traceback."""
    from tissuegraph.io import gem as gem_module

    expected = read_gem(_write_gem(tmp_path / "plain.gem"), bin_size=10)
    text = (tmp_path / "plain.gem").read_text()
    (tmp_path / "bom.gem").write_text("\ufeff#Stereo-seqChip=A1\n\n" + text.replace("#OffsetX=0\n", "\n#OffsetX=0\n"))
    with gzip.open(tmp_path / "zipped.gem", "wt") as handle:  # a gzip without .gz
        handle.write(text)
    monkeypatch.setattr(gem_module, "_CHUNK_ROWS", 2)  # four chunks, folded as they come
    for name in ("bom.gem", "zipped.gem"):
        got = read_gem(tmp_path / name, bin_size=10)
        assert list(got.obs_names) == list(expected.obs_names) and list(got.var_names) == ["Gad1", "Sst"]
        np.testing.assert_array_equal(got.X.toarray(), expected.X.toarray())
    named = text.replace("geneID\tx", "geneID\tgeneName\tx").replace("Gad1\t", "ENSMUSG01\tGad1\t")
    (tmp_path / "named.gem").write_text(named.replace("Sst\t", "ENSMUSG02\tNA\t"))
    got = read_gem(tmp_path / "named.gem", bin_size=10)
    assert list(got.var_names) == ["Gad1", "NA"] and list(got.var["gene_ids"]) == ["ENSMUSG01", "ENSMUSG02"]
    np.testing.assert_array_equal(got.X.toarray(), expected.X.toarray())


def test_read_visium_positions_saved_with_semicolons(visium_dir: Path) -> None:
    """A spreadsheet in a European locale saves CSV with ';': the message said 'no header' though one was there."""
    path = visium_dir / "spatial" / "tissue_positions.csv"
    pd.read_csv(path).to_csv(path, sep=";", index=False)
    with pytest.raises(InputError, match=r"has 1 columns .*not separated by commas.*save it again as CSV with commas"):
        read_visium(visium_dir)


@pytest.mark.parametrize("header", [True, False])
def test_read_visium_barcodes_that_look_like_numbers(tmp_path: Path, header: bool) -> None:
    """Barcodes '0001' ... in the matrix and the positions match as text (read as numbers they became '1')."""
    folder = tmp_path / "s"
    folder.mkdir()
    _write_mtx_folder(folder / "filtered_feature_bc_matrix", gz=False)
    numeric = {b: f"{i:04d}" for i, b in enumerate([*BARCODES, "TTTT-1"], start=1)}
    (folder / "filtered_feature_bc_matrix" / "barcodes.tsv").write_text("\n".join(numeric[b] for b in BARCODES))
    _write_spatial(folder, header=header, positions=POSITIONS.assign(barcode=POSITIONS["barcode"].map(numeric)))
    adata = read_visium(folder)
    assert list(adata.obs_names) == ["0001", "0002", "0003", "0004"]
    np.testing.assert_array_equal(adata.obsm["spatial"], EXPECTED_XY)


def test_read_visium_positions_missing_columns(visium_dir: Path) -> None:
    positions = POSITIONS.drop(columns="pxl_col_in_fullres")
    positions.to_csv(visium_dir / "spatial" / "tissue_positions.csv", index=False)
    with pytest.raises(InputError, match=r"lacks columns \['pxl_col_in_fullres'\]"):
        read_visium(visium_dir)


def test_read_visium_headerless_positions_wrong_width(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    folder.mkdir()
    _write_10x_h5(folder / "filtered_feature_bc_matrix.h5")
    _write_spatial(folder, header=False, positions=POSITIONS.iloc[:, :4])
    with pytest.raises(InputError, match="has 4 columns and no header"):
        read_visium(folder)


def test_read_visium_positions_with_empty_fields(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    folder.mkdir()
    _write_10x_h5(folder / "filtered_feature_bc_matrix.h5")
    positions = POSITIONS.astype({"in_tissue": float})
    positions.loc[2, "in_tissue"] = np.nan
    _write_spatial(folder, positions=positions)
    with pytest.raises(InputError, match=r"empty fields for 1 barcodes \(e.g. 'AAAC-1'\)"):
        read_visium(folder)


def test_read_visium_barcodes_without_position(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    folder.mkdir()
    _write_10x_h5(folder / "filtered_feature_bc_matrix.h5")
    _write_spatial(folder, positions=POSITIONS[~POSITIONS["barcode"].isin(["AAAG-1", "AAGG-1"])])
    with pytest.raises(InputError, match=r"2 of 4 barcodes .* no row .*'AAAG-1', 'AAGG-1'"):
        read_visium(folder)


def test_read_visium_malformed_scalefactors(visium_dir: Path) -> None:
    (visium_dir / "spatial" / "scalefactors_json.json").write_text('{"tissue_hires_scalef": 0.2,')
    with pytest.raises(InputError, match="not valid JSON"):
        read_visium(visium_dir)


def test_read_visium_images_without_scalefactors(visium_dir: Path) -> None:
    (visium_dir / "spatial" / "scalefactors_json.json").unlink()
    with pytest.raises(InputError, match="scalefactors_json.json' is missing but tissue images are present"):
        read_visium(visium_dir)


def test_read_visium_scalefactor_missing_for_image(visium_dir: Path) -> None:
    factors = {k: v for k, v in SCALEFACTORS.items() if k != "tissue_lowres_scalef"}
    (visium_dir / "spatial" / "scalefactors_json.json").write_text(json.dumps(factors))
    with pytest.raises(InputError, match="no 'tissue_lowres_scalef'"):
        read_visium(visium_dir)


def test_read_visium_corrupt_image(visium_dir: Path) -> None:
    (visium_dir / "spatial" / "tissue_hires_image.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="cannot read image"):
        read_visium(visium_dir)


def test_read_visium_warns_when_filtered_spots_sit_outside_the_tissue(visium_dir: Path) -> None:
    """The filtered matrix only holds spots under tissue: one marked outside hints at a spatial/ from another run."""
    positions = POSITIONS.copy()
    positions.loc[positions["barcode"] == "AACC-1", "in_tissue"] = 0
    positions.to_csv(visium_dir / "spatial" / "tissue_positions.csv", index=False)
    with pytest.warns(UserWarning, match=r"1 of 4 spots of the filtered count matrix .* \(in_tissue = 0\).*'AACC-1'"):
        adata = read_visium(visium_dir)
    assert list(adata.obs["in_tissue"]) == [1, 1, 0, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_visium(visium_dir, counts_file="filtered_feature_bc_matrix.h5")  # a matrix named by hand: no claim


def test_read_visium_16_bit_grey_image(visium_dir: Path) -> None:
    grey = np.linspace(0, 65535, 70 * 120).reshape(70, 120).astype(np.uint16)
    Image.fromarray(grey).save(visium_dir / "spatial" / "tissue_lowres_image.png")
    image = read_visium(visium_dir).uns["spatial"]["sliceA"]["images"]["lowres"]
    assert image.shape == (70, 120, 3) and image.dtype == np.float32
    np.testing.assert_allclose(image[..., 1], grey / 65535.0, atol=1e-6)


@pytest.mark.parametrize("value", [None, "0.05", 0, -0.05, float("nan"), True, pytest.param(10**400, id="1e400")])
def test_read_visium_scalefactor_that_is_not_a_positive_number(visium_dir: Path, value: object) -> None:
    factors = {**SCALEFACTORS, "tissue_lowres_scalef": value}
    (visium_dir / "spatial" / "scalefactors_json.json").write_text(json.dumps(factors))
    with pytest.raises(InputError, match=r"tissue_lowres_scalef = .*must be a positive number"):
        read_visium(visium_dir)


def test_read_visium_image_from_another_run(visium_dir: Path) -> None:
    """A hires image saved under the lowres name still holds every spot, but is not the lowres image."""
    spatial = visium_dir / "spatial"
    shutil.copy(spatial / "tissue_hires_image.png", spatial / "tissue_lowres_image.png")
    with pytest.raises(InputError, match=r"do not show the same slide: .* 2400 and 9600 full-resolution pixels"):
        read_visium(visium_dir)
    (spatial / "tissue_hires_image.png").unlink()
    Image.fromarray(np.zeros((20, 30, 3), dtype=np.uint8)).save(spatial / "tissue_lowres_image.png")
    with pytest.raises(InputError, match=r"100% of spot centres fall outside the image: .*tissue_lowres_image"):
        read_visium(visium_dir)


def test_read_visium_positions_written_by_other_tools(visium_dir: Path) -> None:
    """A byte-order mark and quoted fields (Excel, R's write.csv) are still Space Ranger positions."""
    path = visium_dir / "spatial" / "tissue_positions.csv"
    POSITIONS.to_csv(path, index=False, quoting=1, encoding="utf-8-sig")
    np.testing.assert_array_equal(read_visium(visium_dir).obsm["spatial"], EXPECTED_XY)
    POSITIONS.to_csv(path, index=False, encoding="utf-16")
    with pytest.raises(InputError, match="cannot read .*tissue_positions.csv.*UTF-8"):
        read_visium(visium_dir)


@pytest.mark.parametrize(("column", "value"), [("array_row", 0.7), ("in_tissue", np.inf), ("in_tissue", 2)])
def test_read_visium_grid_values_that_are_no_whole_numbers(visium_dir: Path, column: str, value: float) -> None:
    """Cast to integers, 0.7 would become 0 and inf a garbage number: refused instead."""
    positions = POSITIONS.astype({column: np.float64})
    positions.loc[2, column] = value
    positions.to_csv(visium_dir / "spatial" / "tissue_positions.csv", index=False)
    with pytest.raises(InputError, match=r"not whole numbers \(in_tissue: 0 or 1\) for 1 barcodes \(e.g. 'AAAC-1'\)"):
        read_visium(visium_dir)


def test_read_visium_mtx_file_both_plain_and_gzipped(visium_mtx_dir: Path) -> None:
    stale = visium_mtx_dir / "filtered_feature_bc_matrix" / "barcodes.tsv.gz"
    with gzip.open(stale, "wt") as handle:
        handle.write("\n".join(BARCODES[::-1]) + "\n")
    with pytest.raises(InputError, match=r"both barcodes.tsv and barcodes.tsv.gz.*keep one"):
        read_visium(visium_mtx_dir)


def test_read_visium_gene_without_a_name_takes_its_id(visium_mtx_dir: Path) -> None:
    features = visium_mtx_dir / "filtered_feature_bc_matrix" / "features.tsv"
    lines = features.read_text().splitlines()
    gene_id, _, kind = lines[1].split("\t")
    lines[1] = f"{gene_id}\t\t{kind}"
    features.write_text("\n".join(lines) + "\n")
    adata = read_visium(visium_mtx_dir)
    assert adata.var_names[1] == gene_id and all(isinstance(name, str) for name in adata.var_names)


def test_read_visium_gene_symbols_that_look_missing_stay_names(visium_mtx_dir: Path) -> None:
    """Drosophila has a gene 'nan'; 'NA' is a symbol too: neither becomes a missing value replaced by the id."""
    features = visium_mtx_dir / "filtered_feature_bc_matrix" / "features.tsv"
    lines = [line.split("\t") for line in features.read_text().splitlines()]
    lines[0][1], lines[2][1] = "nan", "NA"
    features.write_text("".join("\t".join(line) + "\n" for line in lines))
    names = list(read_visium(visium_mtx_dir).var_names)
    assert names[0] == "nan" and names[2] == "NA"


def test_read_visium_mtx_without_barcodes(visium_mtx_dir: Path) -> None:
    (visium_mtx_dir / "filtered_feature_bc_matrix" / "barcodes.tsv").write_text("")
    with pytest.raises(InputError, match="empty barcodes.tsv or features.tsv: the slice has no spots or no genes"):
        read_visium(visium_mtx_dir)


# --- read_tables ------------------------------------------------------------------------------------


def _counts_table() -> pd.DataFrame:
    return pd.DataFrame(COUNTS[:, :3], index=pd.Index(BARCODES, name="spot"), columns=["GeneA", "GeneB", "GeneC"])


def test_read_tables_csv_named_xy(tmp_path: Path) -> None:
    _counts_table().to_csv(tmp_path / "counts.csv")
    coords = pd.DataFrame(
        {"y": [13.0, 10.0, 12.0, 11.0], "x": [3.5, 0.5, 2.5, 1.5]},
        index=["AAGG-1", "AAAC-1", "AACC-1", "AAAG-1"],
    )
    coords.to_csv(tmp_path / "coords.csv")
    adata = read_tables(tmp_path / "counts.csv", tmp_path / "coords.csv")
    assert isinstance(adata.X, sp.csr_matrix) and adata.X.dtype == np.float32
    np.testing.assert_array_equal(adata.X.toarray(), EXPECTED_X)
    assert list(adata.obs_names) == BARCODES
    assert list(adata.var_names) == ["GeneA", "GeneB", "GeneC"]
    np.testing.assert_array_equal(adata.obsm["spatial"], [[0.5, 10], [1.5, 11], [2.5, 12], [3.5, 13]])


def test_read_tables_tsv_gz_columns_named_by_caller(tmp_path: Path) -> None:
    _counts_table().to_csv(tmp_path / "counts.tsv.gz", sep="\t")
    coords = pd.DataFrame(
        {"region": ["a", "b", "c", "d"], "z": [9, 9, 9, 9], "u": [0, 1, 2, 3], "v": [5, 6, 7, 8]},
        index=BARCODES,
    )
    coords.to_csv(tmp_path / "coords.txt", sep="\t")
    with pytest.raises(InputError, match=r"cannot tell which columns .* 3 numeric columns \(z, u, v\)"):
        read_tables(tmp_path / "counts.tsv.gz", tmp_path / "coords.txt")
    adata = read_tables(tmp_path / "counts.tsv.gz", tmp_path / "coords.txt", x="u", y="v")
    np.testing.assert_array_equal(adata.obsm["spatial"], [[0, 5], [1, 6], [2, 7], [3, 8]])
    np.testing.assert_array_equal(adata.X.toarray(), EXPECTED_X)
    with pytest.raises(InputError, match="no column 'w'"):
        read_tables(tmp_path / "counts.tsv.gz", tmp_path / "coords.txt", x="w", y="v")
    with pytest.raises(InputError, match="both x= and y="):
        read_tables(tmp_path / "counts.tsv.gz", tmp_path / "coords.txt", x="col")


@pytest.mark.parametrize("compression", [".bz2", ".xz", ".zip"])
def test_read_tables_compressed_tables_keep_their_separator(tmp_path: Path, compression: str) -> None:
    """Only .gz was looked through: 'counts.csv.bz2' got 'cannot tell the column separator'."""
    _counts_table().to_csv(tmp_path / f"counts.csv{compression}")
    pd.DataFrame({"x": range(4), "y": range(4)}, index=BARCODES).to_csv(tmp_path / f"coords.tsv{compression}", sep="\t")
    adata = read_tables(tmp_path / f"counts.csv{compression}", tmp_path / f"coords.tsv{compression}")
    np.testing.assert_array_equal(adata.X.toarray(), EXPECTED_X)
    np.testing.assert_array_equal(adata.obsm["spatial"][:, 0], range(4))


@pytest.mark.parametrize(
    "columns",
    [
        {"fov": [2, 2, 0, 1], "volume": [256.4, 23.5, 48.7, 9.0], "center_x": [0, 1, 2, 3], "center_y": [5, 6, 7, 8]},
        {  # Space Ranger's tissue_positions.csv: x is the column, y the row
            "in_tissue": [1, 1, 1, 1],
            "array_row": [50, 3, 7, 9],
            "array_col": [1, 2, 3, 4],
            "pxl_row_in_fullres": [5, 6, 7, 8],
            "pxl_col_in_fullres": [0, 1, 2, 3],
        },
        {"area": [3.0, 4.0, 5.0, 6.0], "X": [0, 1, 2, 3], "Y": [5, 6, 7, 8]},
        {"row": [5, 6, 7, 8], "col": [0, 1, 2, 3]},  # grid positions: x is the column, whatever the file order
    ],
)
def test_read_tables_finds_named_coordinates_among_other_numbers(tmp_path: Path, columns: dict) -> None:
    _counts_table().to_csv(tmp_path / "counts.csv")
    pd.DataFrame(columns, index=BARCODES).to_csv(tmp_path / "coords.csv")
    adata = read_tables(tmp_path / "counts.csv", tmp_path / "coords.csv")
    np.testing.assert_array_equal(adata.obsm["spatial"], [[0, 5], [1, 6], [2, 7], [3, 8]])


def test_read_tables_two_numeric_columns_are_the_coordinates(tmp_path: Path) -> None:
    _counts_table().to_csv(tmp_path / "counts.csv")
    pd.DataFrame({"region": list("abcd"), "u": [0, 1, 2, 3], "v": [5, 6, 7, 8]}, index=BARCODES).to_csv(
        tmp_path / "coords.csv"
    )
    adata = read_tables(tmp_path / "counts.csv", tmp_path / "coords.csv")
    np.testing.assert_array_equal(adata.obsm["spatial"], [[0, 5], [1, 6], [2, 7], [3, 8]])


def test_read_tables_layouts_from_other_tools(tmp_path: Path) -> None:
    """Spaces after the commas, R's write.table (no header field for the row names), a trailing delimiter."""
    rows = [f"{b}, {i}, {i + 5}, 1.5" for i, b in enumerate(BARCODES)]
    (tmp_path / "coords.csv").write_text("\n".join(["spot, x, y, area", *rows]) + "\n")
    counts = _counts_table()
    lines = ["\t".join(counts.columns)] + [
        "\t".join([b, *map(str, r)]) for b, r in zip(BARCODES, COUNTS[:, :3], strict=True)
    ]
    (tmp_path / "counts.tsv").write_text("\n".join(lines) + "\n")
    adata = read_tables(tmp_path / "counts.tsv", tmp_path / "coords.csv")
    assert list(adata.obs_names) == BARCODES and list(adata.var_names) == ["GeneA", "GeneB", "GeneC"]
    np.testing.assert_array_equal(adata.X.toarray(), EXPECTED_X)
    np.testing.assert_array_equal(adata.obsm["spatial"], [[0, 5], [1, 6], [2, 7], [3, 8]])
    trailing = ["spot,GeneA,GeneB,GeneC,"] + [
        ",".join([b, *map(str, r)]) + "," for b, r in zip(BARCODES, COUNTS[:, :3], strict=True)
    ]
    (tmp_path / "counts.csv").write_text("\n".join(trailing) + "\n")
    adata = read_tables(tmp_path / "counts.csv", tmp_path / "coords.csv")
    np.testing.assert_array_equal(adata.X.toarray(), EXPECTED_X)


def test_read_tables_wrong_separator_or_no_rows(tmp_path: Path) -> None:
    _counts_table().to_csv(tmp_path / "counts.csv", sep="\t")
    pd.DataFrame({"x": range(4), "y": range(4)}, index=BARCODES).to_csv(tmp_path / "coords.csv")
    with pytest.raises(InputError, match=r"counts table .* single column when split at ','.*pass sep="):
        read_tables(tmp_path / "counts.csv", tmp_path / "coords.csv")
    _counts_table().iloc[:0].to_csv(tmp_path / "counts.csv")
    with pytest.raises(InputError, match="counts table .* has no rows"):
        read_tables(tmp_path / "counts.csv", tmp_path / "coords.csv")


def test_read_tables_explicit_separator(tmp_path: Path) -> None:
    _counts_table().to_csv(tmp_path / "counts.dat", sep=";")
    pd.DataFrame({"x": [0, 1, 2, 3], "y": [0, 1, 2, 3]}, index=BARCODES).to_csv(tmp_path / "xy.dat", sep=";")
    adata = read_tables(tmp_path / "counts.dat", tmp_path / "xy.dat", sep=";")
    assert list(adata.obs_names) == BARCODES and list(adata.var_names) == ["GeneA", "GeneB", "GeneC"]
    np.testing.assert_array_equal(adata.X.toarray(), EXPECTED_X)
    np.testing.assert_array_equal(adata.obsm["spatial"], [[0, 0], [1, 1], [2, 2], [3, 3]])


def test_read_tables_separators_by_name_and_one_per_table(tmp_path: Path) -> None:
    """'\\t' typed in a shell arrives as a backslash and a t, which pandas took for a regular expression; R's
    write.table writes spaces while the coordinates may be a .csv."""
    _counts_table().to_csv(tmp_path / "counts.txt", sep="\t")
    pd.DataFrame({"x": [0, 1, 2, 3], "y": [0, 1, 2, 3]}, index=BARCODES).to_csv(tmp_path / "xy.txt", sep="\t")
    for sep in ("\\t", "tab", "TAB", ["tab"]):
        adata = read_tables(tmp_path / "counts.txt", tmp_path / "xy.txt", sep=sep)
        np.testing.assert_array_equal(adata.X.toarray(), EXPECTED_X)
    _counts_table().to_csv(tmp_path / "counts.txt", sep=" ")
    pd.DataFrame({"x": [0, 1, 2, 3], "y": [0, 1, 2, 3]}, index=BARCODES).to_csv(tmp_path / "xy.csv")
    adata = read_tables(tmp_path / "counts.txt", tmp_path / "xy.csv", sep=("space", ","))
    np.testing.assert_array_equal(adata.X.toarray(), EXPECTED_X)
    np.testing.assert_array_equal(adata.obsm["spatial"], [[0, 0], [1, 1], [2, 2], [3, 3]])
    with pytest.raises(InputError, match=r"separator '\\\\s\+' is not one character; .* tab, comma, semicolon"):
        read_tables(tmp_path / "counts.txt", tmp_path / "xy.csv", sep="\\s+")
    with pytest.raises(InputError, match="one separator for both tables or two .*got 3"):
        read_tables(tmp_path / "counts.txt", tmp_path / "xy.csv", sep=(" ", ",", ";"))


def test_read_tables_coordinates_without_a_header_row(tmp_path: Path) -> None:
    """The first spot became the header: 'its id is missing from the coordinates', though it was right there."""
    _counts_table().to_csv(tmp_path / "counts.csv")
    pd.DataFrame({"x": [0.5, 1, 2, 3], "y": [7, 1, 2, 3]}, index=BARCODES).to_csv(tmp_path / "xy.csv", header=False)
    with pytest.raises(InputError, match=r"'.*xy.csv' seems to have no header row: .* \(0.5, 7\) were read as column"):
        read_tables(tmp_path / "counts.csv", tmp_path / "xy.csv")


def test_read_tables_ids_in_another_column_are_named(tmp_path: Path) -> None:
    """Seurat's coordinates without row names (x, y, cell) and a pandas 0..n index before a barcode column: the
    first column was taken for the ids and the ids for a coordinate or a gene."""
    _counts_table().to_csv(tmp_path / "counts.csv")
    xy = pd.DataFrame({"x": [0, 1, 2, 3], "y": [0, 1, 2, 3], "cell": BARCODES})
    xy.to_csv(tmp_path / "xy.csv", index=False)
    with pytest.raises(
        InputError, match=r"'.*xy.csv' has its spot ids in column 'cell', not in the first column \('x'\)"
    ):
        read_tables(tmp_path / "counts.csv", tmp_path / "xy.csv")
    _counts_table().reset_index().rename(columns={"spot": "barcode"}).to_csv(tmp_path / "counts.csv")
    xy.set_index("cell").to_csv(tmp_path / "xy.csv")
    with pytest.raises(
        InputError, match=r"counts table .* in column 'barcode', not in the first column \('Unnamed: 0'"
    ):
        read_tables(tmp_path / "counts.csv", tmp_path / "xy.csv")
    _counts_table().to_csv(tmp_path / "counts.csv", index=False)
    with pytest.raises(InputError, match=r"more than once .*the first column must hold the spot ids"):
        read_tables(tmp_path / "counts.csv", tmp_path / "xy.csv")


def test_read_tables_text_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    (tmp_path / "counts.csv").write_bytes("spot,G\u00e8ne\nAAAC-1,3\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"counts table .* is not UTF-8 text .*save it as UTF-8"):
        read_tables(tmp_path / "counts.csv", tmp_path / "counts.csv")


def test_read_tables_unknown_extension(tmp_path: Path) -> None:
    _counts_table().to_csv(tmp_path / "counts.dat")
    with pytest.raises(InputError, match="separator.*sep="):
        read_tables(tmp_path / "counts.dat", tmp_path / "counts.dat")


def test_read_tables_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="counts table .* not found"):
        read_tables(tmp_path / "counts.csv", tmp_path / "coords.csv")


@pytest.mark.parametrize(
    ("coord_ids", "pattern"),
    [
        (BARCODES[:2], r"2 spot ids in '.*counts\.csv' are missing from '.*coords\.csv'.*'AACC-1', 'AAGG-1'"),
        (
            [*BARCODES, "EXTRA-1"],
            r"1 spot ids in '.*coords\.csv' are missing from '.*counts\.csv'.*'EXTRA-1'",
        ),
    ],
)
def test_read_tables_spot_mismatch(tmp_path: Path, coord_ids: list[str], pattern: str) -> None:
    _counts_table().to_csv(tmp_path / "counts.csv")
    n = len(coord_ids)
    pd.DataFrame({"x": range(n), "y": range(n)}, index=coord_ids).to_csv(tmp_path / "coords.csv")
    with pytest.raises(InputError, match=pattern):
        read_tables(tmp_path / "counts.csv", tmp_path / "coords.csv")


def test_read_tables_keeps_spot_ids_as_text(tmp_path: Path) -> None:
    ids = ["0001", "0002", "0010", "0100"]
    table = _counts_table()
    table.index = ids
    table.to_csv(tmp_path / "counts.csv")
    pd.DataFrame({"x": [3, 2, 1, 0], "y": [0, 1, 2, 3]}, index=ids[::-1]).to_csv(tmp_path / "coords.csv")
    adata = read_tables(tmp_path / "counts.csv", tmp_path / "coords.csv")
    assert list(adata.obs_names) == ids
    np.testing.assert_array_equal(adata.obsm["spatial"], [[0, 3], [1, 2], [2, 1], [3, 0]])


def test_read_tables_does_not_match_ids_that_differ_in_leading_zeros(tmp_path: Path) -> None:
    table = _counts_table()
    table.index = pd.Index(["007", "008", "009", "010"], name="spot")
    table.to_csv(tmp_path / "counts.csv")
    pd.DataFrame({"x": range(4), "y": range(4)}, index=["7", "8", "9", "10"]).to_csv(tmp_path / "coords.csv")
    with pytest.raises(InputError, match=r"4 spot ids in '.*counts\.csv' are missing from '.*coords\.csv'.*'007'"):
        read_tables(tmp_path / "counts.csv", tmp_path / "coords.csv")


def test_read_tables_non_numeric_counts(tmp_path: Path) -> None:
    table = _counts_table()
    table["GeneB"] = table["GeneB"].astype(str)
    table.loc["AACC-1", "GeneB"] = "12 reads"
    table.to_csv(tmp_path / "counts.csv")
    pd.DataFrame({"x": range(4), "y": range(4)}, index=BARCODES).to_csv(tmp_path / "coords.csv")
    with pytest.raises(InputError, match=r"non-numeric values in column 'GeneB' \(e.g. '12 reads' for spot 'AACC-1'\)"):
        read_tables(tmp_path / "counts.csv", tmp_path / "coords.csv")


def test_read_tables_transposed_counts(tmp_path: Path) -> None:
    _counts_table().T.to_csv(tmp_path / "counts.csv")
    pd.DataFrame({"x": range(4), "y": range(4)}, index=BARCODES).to_csv(tmp_path / "coords.csv")
    with pytest.raises(InputError, match="looks transposed"):
        read_tables(tmp_path / "counts.csv", tmp_path / "coords.csv")


def test_read_tables_coordinates_not_found(tmp_path: Path) -> None:
    _counts_table().to_csv(tmp_path / "counts.csv")
    pd.DataFrame({"region": list("abcd")}, index=BARCODES).to_csv(tmp_path / "coords.csv")
    with pytest.raises(InputError, match=r"cannot tell which columns .* 0 numeric columns \(none\)"):
        read_tables(tmp_path / "counts.csv", tmp_path / "coords.csv")


def test_read_tables_duplicate_coordinate_ids(tmp_path: Path) -> None:
    _counts_table().to_csv(tmp_path / "counts.csv")
    ids = [*BARCODES, "AAAC-1"]
    pd.DataFrame({"x": range(5), "y": range(5)}, index=ids).to_csv(tmp_path / "coords.csv")
    with pytest.raises(InputError, match="coordinates table .* more than once.*'AAAC-1'"):
        read_tables(tmp_path / "counts.csv", tmp_path / "coords.csv")
    counts = _counts_table()
    counts.index = [*BARCODES[:-1], BARCODES[0]]  # the last spot's row carries the first one's id
    counts.to_csv(tmp_path / "counts.csv")
    pd.DataFrame({"x": range(4), "y": range(4)}, index=BARCODES).to_csv(tmp_path / "coords.csv")
    with pytest.raises(InputError, match=f"counts table .* 1 spot ids more than once .*'{BARCODES[0]}'"):
        read_tables(tmp_path / "counts.csv", tmp_path / "coords.csv")  # not 'missing from the counts'


def test_read_tables_nan_counts_are_validated(tmp_path: Path) -> None:
    table = _counts_table().astype(float)
    table.loc["AAAG-1", "GeneA"] = np.nan
    table.to_csv(tmp_path / "counts.csv")
    pd.DataFrame({"x": range(4), "y": range(4)}, index=BARCODES).to_csv(tmp_path / "coords.csv")
    with pytest.raises(InputError, match=r"1 non-finite .* in 1 spots \(first: 'AAAG-1'\)"):
        read_tables(tmp_path / "counts.csv", tmp_path / "coords.csv")


def test_read_tables_one_file_holds_coordinates_and_counts(tmp_path: Path) -> None:
    """The same file as both tables: x and y are the coordinates, not two genes; elsewhere they are refused."""
    table = _counts_table()
    table.insert(0, "y", [10.0, 11.0, 12.0, 13.0])
    table.insert(0, "X", [0.5, 1.5, 2.5, 3.5])
    table.to_csv(tmp_path / "both.csv")
    adata = read_tables(tmp_path / "both.csv", tmp_path / "both.csv")
    assert list(adata.var_names) == ["GeneA", "GeneB", "GeneC"]
    np.testing.assert_array_equal(adata.X.toarray(), EXPECTED_X)
    np.testing.assert_array_equal(adata.obsm["spatial"], [[0.5, 10], [1.5, 11], [2.5, 12], [3.5, 13]])
    pd.DataFrame({"x": range(4), "y": range(4)}, index=BARCODES).to_csv(tmp_path / "coords.csv")
    with pytest.raises(
        InputError, match=r"counts table .* has coordinate, position or annotation columns \('X', 'y'\)"
    ):
        read_tables(tmp_path / "both.csv", tmp_path / "coords.csv")


def test_read_tables_space_ranger_position_columns_are_no_genes(tmp_path: Path) -> None:
    """in_tissue / array_row / array_col are whole numbers that would pass as counts: dropped from a file holding
    both tables, refused in a counts table."""
    table = _counts_table()
    for position, (name, values) in enumerate(
        {
            "in_tissue": [1] * 4,
            "array_row": [0, 2, 4, 6],
            "array_col": [1, 3, 5, 7],
            "pxl_row_in_fullres": [5, 6, 7, 8],
            "pxl_col_in_fullres": [0, 1, 2, 3],
        }.items()
    ):
        table.insert(position, name, values)
    table.to_csv(tmp_path / "both.csv")
    adata = read_tables(tmp_path / "both.csv", tmp_path / "both.csv")
    assert list(adata.var_names) == ["GeneA", "GeneB", "GeneC"]
    np.testing.assert_array_equal(adata.obsm["spatial"], [[0, 5], [1, 6], [2, 7], [3, 8]])
    table.drop(columns=["pxl_row_in_fullres", "pxl_col_in_fullres"]).to_csv(tmp_path / "counts.csv")
    pd.DataFrame({"x": range(4), "y": range(4)}, index=BARCODES).to_csv(tmp_path / "coords.csv")
    with pytest.raises(InputError, match=r"position or annotation columns \('in_tissue', 'array_row', 'array_col'\)"):
        read_tables(tmp_path / "counts.csv", tmp_path / "coords.csv")


def test_read_tables_cell_annotations_are_no_genes(tmp_path: Path) -> None:
    """Depth, field of view and Seurat's library size beside the genes of an imaging export were read as three
    more genes, silently: whole numbers that vary across the tissue pass every count check."""
    table = _counts_table()
    for position, (name, values) in enumerate({"x": [0, 1, 2, 3], "y": [5, 6, 7, 8], "fov": [0, 0, 1, 1]}.items()):
        table.insert(position, name, values)
    table["nCount_RNA"], table["z"] = table.sum(axis=1), [1, 2, 1, 2]
    table.to_csv(tmp_path / "both.csv")
    with pytest.warns(UserWarning, match=r"columns 'fov', 'nCount_RNA', 'z' are per-spot annotations, not genes"):
        adata = read_tables(tmp_path / "both.csv", tmp_path / "both.csv")
    assert list(adata.var_names) == ["GeneA", "GeneB", "GeneC"]
    np.testing.assert_array_equal(adata.X.toarray(), EXPECTED_X)
    table.drop(columns=["x", "y"]).to_csv(tmp_path / "counts.csv")
    pd.DataFrame({"x": range(4), "y": range(4)}, index=BARCODES).to_csv(tmp_path / "coords.csv")
    with pytest.raises(InputError, match=r"annotation columns \('fov', 'nCount_RNA', 'z'\)"):
        read_tables(tmp_path / "counts.csv", tmp_path / "coords.csv")


def test_read_tables_names_the_columns_that_hold_fractions(tmp_path: Path) -> None:
    """A cell volume among the counts: the AnnData check could only name spots and give a Python fix."""
    table = _counts_table()
    table["cell_size"] = [10.5, 11.25, 9.0, 12.0]
    table.to_csv(tmp_path / "counts.csv")
    pd.DataFrame({"x": range(4), "y": range(4)}, index=BARCODES).to_csv(tmp_path / "coords.csv")
    with pytest.raises(InputError, match=r"non-integer values in 1 of its 4 columns \('cell_size'\); counts are whole"):
        read_tables(tmp_path / "counts.csv", tmp_path / "coords.csv")


def test_read_tables_missing_looking_ids_stay_distinct(tmp_path: Path) -> None:
    """'NA' and 'null' are two spot ids, not one missing value; a row without an id is refused."""
    ids = ["NA", "null", "N/A", "s4"]
    table = _counts_table()
    table.index = pd.Index(ids, name="spot")
    table.to_csv(tmp_path / "counts.csv")
    pd.DataFrame({"x": [3, 2, 1, 0], "y": range(4)}, index=ids[::-1]).to_csv(tmp_path / "coords.csv")
    adata = read_tables(tmp_path / "counts.csv", tmp_path / "coords.csv")
    assert list(adata.obs_names) == ids
    np.testing.assert_array_equal(adata.obsm["spatial"][:, 0], [0, 1, 2, 3])
    (tmp_path / "coords.csv").write_text("spot,x,y\nNA,0,0\n,1,1\nN/A,2,2\ns4,3,3\n")
    with pytest.raises(InputError, match="1 rows without a spot id .*data row 2"):
        read_tables(tmp_path / "counts.csv", tmp_path / "coords.csv")


def test_read_tables_refuses_ambiguous_columns(tmp_path: Path) -> None:
    _counts_table().to_csv(tmp_path / "counts.csv")
    pd.DataFrame({"x": range(4), "X": [9] * 4, "y": range(4)}, index=BARCODES).to_csv(tmp_path / "coords.csv")
    with pytest.raises(InputError, match=r"columns \['x', 'X'\] for one coordinate \(names are matched ignoring case"):
        read_tables(tmp_path / "counts.csv", tmp_path / "coords.csv")
    rows = "".join(f"{b},{i},{9 - i},{i}\n" for i, b in enumerate(BARCODES))
    (tmp_path / "coords.csv").write_text("spot,x,x,y\n" + rows)
    with pytest.raises(InputError, match=r"columns \['x', 'x'\] for one coordinate"):  # pandas renamed one 'x.1'
        read_tables(tmp_path / "counts.csv", tmp_path / "coords.csv")
    with pytest.raises(InputError, match=r"has 2 columns named 'x', so x and y are ambiguous"):
        read_tables(tmp_path / "counts.csv", tmp_path / "coords.csv", x="x", y="y")
    with pytest.raises(InputError, match=r"x= and y= \(--x, --y\) both name column 'x'"):
        read_tables(tmp_path / "counts.csv", tmp_path / "coords.csv", x="x", y="x")


def test_read_tables_cosmx_and_blank_names_are_named(tmp_path: Path) -> None:
    """CosMx's exprMat starts with fov, and its cell_ID restarts in every fov: moving cell_ID first, as the generic
    message advised, led to two more errors. A quoted blank header name became a gene called ' '."""
    pd.DataFrame({"x": range(4), "y": range(4)}, index=BARCODES).to_csv(tmp_path / "coords.csv")
    (tmp_path / "exprMat_file.csv").write_text("fov,cell_ID,Gad1,NegPrb1\n1,0,3,0\n1,1,2,1\n2,1,5,0\n2,2,1,0\n")
    with pytest.raises(
        InputError,
        match=r"looks like a CosMx export: its cell_ID counts cells within each fov.*"
        r"--x CenterX_global_px --y CenterY_global_px",
    ):
        read_tables(tmp_path / "exprMat_file.csv", tmp_path / "coords.csv")
    rows = "".join(f"{b},1,2,3\n" for b in BARCODES)
    (tmp_path / "counts.csv").write_text('spot,G," ",H\n' + rows)
    with pytest.raises(InputError, match=r"has a blank name in its header \(column 3\)"):
        read_tables(tmp_path / "counts.csv", tmp_path / "coords.csv")


def test_read_tables_keeps_a_gene_written_twice_and_says_so(tmp_path: Path) -> None:
    """pandas renamed a repeated gene 'G.1' without a word; the repeat is now named and numbered as anndata does."""
    header = "spot,g1,g2,g1,g3\n"
    rows = "".join(f"{b},{i},1,{10 + i},2\n" for i, b in enumerate(BARCODES))
    (tmp_path / "counts.csv").write_text(header + rows)
    pd.DataFrame({"x": range(4), "y": range(4)}, index=BARCODES).to_csv(tmp_path / "coords.csv")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        adata = read_tables(tmp_path / "counts.csv", tmp_path / "coords.csv")
    messages = [str(w.message) for w in caught]  # ours alone, without anndata's advice to make names unique
    assert len(messages) == 1 and "names 1 gene in more than one column ('g1'); each column is kept" in messages[0]
    assert list(adata.var_names) == ["g1", "g2", "g1-1", "g3"]
    np.testing.assert_array_equal(adata[:, "g1-1"].X.toarray().ravel(), [10, 11, 12, 13])


def test_read_tables_merscope_layout_leaves_out_control_probes(tmp_path: Path) -> None:
    """MERSCOPE's cell_by_gene.csv counts blank barcodes beside the genes; they were read as genes."""
    genes = pd.DataFrame(COUNTS[:, :3], index=pd.Index(BARCODES, name="cell"), columns=["Gad1", "Slc17a7", "Sst"])
    genes.assign(**{"Blank-0": [1, 0, 0, 2], "Blank-1": [0, 0, 1, 0]}).to_csv(tmp_path / "cell_by_gene.csv")
    metadata = pd.DataFrame(  # its first header field is empty, as MERSCOPE writes it
        {"fov": [0, 0, 1, 1], "volume": [512.5, 300.1, 410.0, 380.2], "center_x": [0.5, 1.5, 2.5, 3.5]},
        index=BARCODES,
    ).assign(center_y=[10.0, 11.0, 12.0, 13.0], min_x=[0.0, 1.0, 2.0, 3.0])
    metadata.to_csv(tmp_path / "cell_metadata.csv")
    with pytest.warns(UserWarning, match=r"2 columns of control probes, not genes \('Blank-0', 'Blank-1'\), left out"):
        adata = read_tables(tmp_path / "cell_by_gene.csv", tmp_path / "cell_metadata.csv")
    assert list(adata.var_names) == ["Gad1", "Slc17a7", "Sst"]
    np.testing.assert_array_equal(adata.X.toarray(), EXPECTED_X)
    np.testing.assert_array_equal(adata.obsm["spatial"], [[0.5, 10], [1.5, 11], [2.5, 12], [3.5, 13]])
    probes = {"antisense_PROKR2": [0, 1, 0, 0], "Intergenic_Region_12": [1, 0, 0, 0]}  # Xenium 1.x, Xenium Prime
    genes.assign(**probes).to_csv(tmp_path / "xenium_counts.csv")
    with pytest.warns(UserWarning, match=r"2 columns of control probes, not genes \('antisense_PROKR2', 'Inter"):
        assert list(read_tables(tmp_path / "xenium_counts.csv", tmp_path / "cell_metadata.csv").var_names) == list(
            genes
        )
    genes[[]].assign(NegControlProbe_0=[0, 1, 0, 0]).to_csv(tmp_path / "probes.csv")
    with pytest.raises(InputError, match="holds only control probes .*'NegControlProbe_0'.*no genes"):
        read_tables(tmp_path / "probes.csv", tmp_path / "cell_metadata.csv")


def test_read_tables_data_rows_longer_than_the_header(tmp_path: Path) -> None:
    """A delimiter ending only the data lines is harmless; a value under no header field is refused."""
    rows = [",".join([b, *map(str, r)]) for b, r in zip(BARCODES, COUNTS[:, :3], strict=True)]
    (tmp_path / "counts.csv").write_text("\n".join(["spot,GeneA,GeneB,GeneC", *(r + "," for r in rows)]) + "\n")
    pd.DataFrame({"x": range(4), "y": range(4)}, index=BARCODES).to_csv(tmp_path / "coords.csv")
    adata = read_tables(tmp_path / "counts.csv", tmp_path / "coords.csv")
    assert list(adata.obs_names) == BARCODES and list(adata.var_names) == ["GeneA", "GeneB", "GeneC"]
    np.testing.assert_array_equal(adata.X.toarray(), EXPECTED_X)
    lines = ["spot,GeneA,GeneB,GeneC", rows[0] + ",", *(r + ",7" for r in rows[1:])]
    (tmp_path / "counts.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match="values in a column without a name in the header"):
        read_tables(tmp_path / "counts.csv", tmp_path / "coords.csv")
    # R's header (no field for the ids) and a delimiter ending every data line: read, not shifted by one gene
    (tmp_path / "counts.csv").write_text("\n".join(["GeneA,GeneB,GeneC", *(r + "," for r in rows)]) + "\n")
    adata = read_tables(tmp_path / "counts.csv", tmp_path / "coords.csv")
    assert list(adata.var_names) == ["GeneA", "GeneB", "GeneC"]
    np.testing.assert_array_equal(adata.X.toarray(), EXPECTED_X)
    (tmp_path / "counts.csv").write_text("\n".join(["GeneA,GeneB", *(r + ",0" for r in rows)]) + "\n")
    with pytest.raises(InputError, match="first data row has 5 fields but the header names 2 columns"):
        read_tables(tmp_path / "counts.csv", tmp_path / "coords.csv")


# --- read dispatch ----------------------------------------------------------------------------------


def test_read_dispatches(visium_dir: Path, tmp_path: Path) -> None:
    assert read(visium_dir).shape == (4, 3)
    dense = _spatial_adata()  # dense int64 counts, integer coordinates
    dense.write_h5ad(tmp_path / "s.h5ad")
    back = read(tmp_path / "s.h5ad")
    assert back.shape == (5, 3)
    assert isinstance(back.X, sp.csr_matrix) and back.X.dtype == np.float32  # the one layout every reader returns
    np.testing.assert_array_equal(back.X.toarray(), dense.X)
    assert back.obsm["spatial"].dtype == np.float64
    np.testing.assert_array_equal(back.obsm["spatial"], dense.obsm["spatial"])
    assert list(back.obs_names) == list(dense.obs_names) and list(back.var_names) == list(dense.var_names)


def test_read_unsupported(tmp_path: Path) -> None:
    (tmp_path / "counts.csv").write_text("a,b\n")
    with pytest.raises(InputError, match="supported inputs.*read_tables"):
        read(tmp_path / "counts.csv")
    (tmp_path / "m.h5").write_bytes(b"")
    with pytest.raises(InputError, match="Space Ranger folder"):
        read(tmp_path / "m.h5")
    with pytest.raises(InputError, match="not found"):
        read(tmp_path / "missing.csv")


# --- write_h5ad -------------------------------------------------------------------------------------


def test_write_h5ad_round_trip(tmp_path: Path) -> None:
    adata = validate_spatial(_spatial_adata())
    target = tmp_path / "new" / "dir" / "out.h5ad"
    assert write_h5ad(adata, target) == target
    assert os.listdir(target.parent) == ["out.h5ad"]
    back = read_h5ad(target)
    np.testing.assert_array_equal(back.X.toarray(), adata.X.toarray())
    np.testing.assert_array_equal(back.obsm["spatial"], adata.obsm["spatial"])


def test_write_h5ad_failure_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    adata = validate_spatial(_spatial_adata())
    target = tmp_path / "out.h5ad"

    def write_half_then_fail(self: Path, data: bytes) -> None:
        with open(self, "wb") as handle:
            handle.write(bytes(data)[:10])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", write_half_then_fail)
    with pytest.raises(OSError, match=r"could not write '.*out\.h5ad': No space left on device"):
        write_h5ad(adata, target)
    assert os.listdir(tmp_path) == []


def test_write_h5ad_failure_keeps_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    adata = validate_spatial(_spatial_adata())
    target = tmp_path / "out.h5ad"
    write_h5ad(adata, target)
    before = target.read_bytes()

    def fail(self: Path, data: bytes) -> None:
        with open(self, "wb") as handle:
            handle.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_bytes", fail)
    with pytest.raises(KeyboardInterrupt):
        write_h5ad(adata, target)
    assert os.listdir(tmp_path) == ["out.h5ad"] and target.read_bytes() == before


def test_write_h5ad_past_the_file_size_limit_is_an_error(tmp_path: Path) -> None:
    """A real short write (the process may write at most 64 kB per file, as on a full disk): one error naming the
    file, nothing left behind. Writing HDF5 straight to the file crashed the process with a segfault."""
    script = f"""
import resource, signal, sys
import numpy as np, anndata as ad, scipy.sparse as sp
from tissuegraph.io import write_h5ad
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
adata = ad.AnnData(sp.random(2000, 500, density=0.2, format="csr", dtype=np.float32, random_state=0))
adata.obsm["spatial"] = np.zeros((2000, 2))
resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
try:
    write_h5ad(adata, {str(tmp_path / "out.h5ad")!r})
except OSError as err:
    print(err)
    sys.exit(3)
"""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stderr[-2000:]
    assert "could not write" in result.stdout and "out.h5ad'" in result.stdout
    assert os.listdir(tmp_path) == []


def test_write_h5ad_long_names(tmp_path: Path) -> None:
    """A name near the file system's limit is written (the temporary name is cut to fit); one past it is refused
    before any work, by the check the CLI runs first."""
    from tissuegraph.io import check_writable

    adata = validate_spatial(_spatial_adata())
    name_max = os.pathconf(tmp_path, "PC_NAME_MAX")
    longest = tmp_path / ("a" * (name_max - 5) + ".h5ad")
    write_h5ad(adata, check_writable(longest))
    assert os.listdir(tmp_path) == [longest.name]
    too_long = f"file name is {name_max + 1} bytes long .* at most {name_max}; choose a shorter name"
    with pytest.raises(InputError, match=too_long):
        check_writable(tmp_path / ("b" * (name_max - 4) + ".h5ad"))


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_check_writable_refuses_a_folder_that_refuses_new_files(tmp_path: Path) -> None:
    """/proc passes a permission check (for root) but takes no new file: refused before any work, not after
    training (as a user, by the permission check); a writable folder is left as it was."""
    from tissuegraph.io import check_writable

    refused = r"'/proc/x.h5ad' cannot be written: (a new file in|no permission to write in) '/proc'"
    with pytest.raises(InputError, match=refused):
        check_writable("/proc/x.h5ad", "--out")
    assert check_writable(tmp_path / "out.h5ad") == tmp_path / "out.h5ad"
    assert os.listdir(tmp_path) == []


def test_a_saved_image_encoder_is_written_atomically_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    import torch

    from tissuegraph.im.byol import save_encoder

    target = tmp_path / "encoder.pt"
    target.write_bytes(b"previous encoder")

    def save_half_then_fail(obj: object, filename: Path) -> None:
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", save_half_then_fail)
    encoder = types.SimpleNamespace(config={"dim": 4}, state_dict=dict)
    with pytest.raises(OSError, match="disk full"):
        save_encoder(encoder, target)
    assert os.listdir(tmp_path) == ["encoder.pt"] and target.read_bytes() == b"previous encoder"


# --- real data --------------------------------------------------------------------------------------


@pytest.mark.realdata
def test_read_real_dlpfc() -> None:
    adata = read(real_data("dlpfc_151673.h5ad"))
    assert adata.shape == (3639, 8513)
    assert isinstance(adata.X, sp.csr_matrix) and adata.X.dtype == np.float32
    assert adata.obsm["spatial"].shape == (3639, 2) and adata.obsm["spatial"].dtype == np.float64
    (library,) = adata.uns["spatial"].values()
    lowres = library["images"]["lowres"]
    assert lowres.ndim == 3 and lowres.shape[2] == 3
    assert "tissue_lowres_scalef" in library["scalefactors"]


def test_a_failed_write_names_the_output_not_its_temporary_file(tmp_path: Path) -> None:
    from tissuegraph.io.write import write_atomically

    def failing(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise FileNotFoundError(2, f"Unable to create file (name = '{tmp}')")

    with pytest.raises(OSError, match=r"could not write '.*out\.h5ad': No such file or directory; check") as info:
        write_atomically(tmp_path / "out.h5ad", failing)
    assert "tmp-" not in str(info.value)
    assert list(tmp_path.iterdir()) == []  # neither the output nor the temporary file is left
