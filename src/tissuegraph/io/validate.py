"""Check that an AnnData can go into the spatial methods, and put it into the one layout they expect.

Every reader ends here, so bad input fails at load time with a message that says what to fix, instead of
deep inside a graph or a model with a bare traceback.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from tissuegraph.errors import InputError

NUMERIC_KINDS = "iuf"  # signed, unsigned, float: what counts and coordinates may be stored as
LIBRARY_SIZE_KEY = "total_counts_all_genes"  # each spot's total over all genes, when X holds a gene subset

#: (x, y) column names that platforms write, lower case, in order of preference.
COORDINATE_NAMES = (
    ("x", "y"),
    ("pxl_col_in_fullres", "pxl_row_in_fullres"),  # Space Ranger tissue_positions
    ("imagecol", "imagerow"),
    ("center_x", "center_y"),  # Vizgen MERSCOPE cell metadata
    ("x_centroid", "y_centroid"),  # 10x Xenium cells
    ("x_location", "y_location"),  # 10x Xenium transcripts
    ("global_x", "global_y"),
    ("x_coord", "y_coord"),
    ("xcoord", "ycoord"),
    ("spatial_x", "spatial_y"),
    ("array_col", "array_row"),  # Space Ranger's grid indices (x is the column), when no pixel position is given
    ("col", "row"),
    ("column", "row"),
)


def quote_examples(items: Sequence[object], n: int = 3) -> str:
    """Quote the first few offending ids so the user can find them."""
    shown = ", ".join(repr(str(i)) for i in items[:n])
    return shown + (", ..." if len(items) > n else "")


def _bad_spots(X: sp.csr_matrix, bad: np.ndarray) -> np.ndarray:
    """Rows holding the flagged entries; ``bad`` masks ``X.data``, so nothing is densified."""
    return np.unique(np.searchsorted(X.indptr, np.flatnonzero(bad), side="right") - 1)


def check_counts(adata: AnnData, what: str = "input") -> sp.csr_matrix:
    """Return X as CSR float32 after checking it holds raw counts: finite, non-negative whole numbers.

    Normalised or log-transformed values would otherwise go silently through seurat_v3 and a second
    normalisation, so they are refused with the line of Python that puts the raw counts back (from ``layers``
    or ``raw`` when they are there).
    """
    X = adata.X
    if X is None:
        raise InputError(f"{what} has no count matrix in X; put the raw counts (spots x genes) in adata.X")
    if not sp.issparse(X):
        X = np.asarray(X)
    if X.dtype.kind not in NUMERIC_KINDS:
        raise InputError(
            f"{what} has counts of type {X.dtype} in X; tissuegraph needs numeric raw counts: "
            "convert X to integers or floats (e.g. adata.X = adata.X.astype('float32'))"
        )
    if X.ndim != 2:
        raise InputError(f"{what} has X with shape {X.shape}; X must be a 2-D spots x genes matrix")
    X = sp.csr_matrix(X, dtype=np.float32)  # no copy when X is already CSR float32
    if not X.has_canonical_format:  # an entry stored twice is summed, so the checks see real values
        # on a copy: the converted matrix may share its index arrays with the caller's, whose values would then
        # no longer line up with the indices sorted under them
        X = X.copy()
        X.sum_duplicates()
    for problem, bad, fix in (
        (
            "non-finite (NaN or infinite) values",
            ~np.isfinite(X.data),
            "spatial methods need finite raw counts: remove or fill those spots before running",
        ),
        (
            "negative values",
            X.data < 0,
            "tissuegraph needs raw counts (>= 0), X looks normalised or scaled: "
            + _raw_counts_fix(adata, "put the raw counts (whole numbers before any normalisation) in X"),
        ),
        (
            "values of 2**31 or more",
            X.data >= 2.0**31,
            "no gene is counted that often in one spot: such values come from a negative count stored as an "
            "unsigned integer (4294967295 is -1 as uint32) or from a corrupted file; check how the counts were written",
        ),
    ):
        if bad.any():
            spots = adata.obs_names[_bad_spots(X, bad)]
            raise InputError(
                f"{what}: counts contain {int(bad.sum())} {problem} in {len(spots)} spots "
                f"(first: {quote_examples(list(spots))}); {fix}"
            )
    if not X.data.any():
        raise InputError(
            f"{what} holds no counts: every entry of X is 0; check that the right matrix (raw counts, spots x genes) "
            "was read and that earlier filtering kept the genes"
        )
    fractional = X.data != np.rint(X.data)
    if fractional.any():
        spots = adata.obs_names[_bad_spots(X, fractional)]
        example = float(X.data[np.argmax(fractional)])
        raise InputError(
            f"{what}: X holds {int(fractional.sum())} non-integer values in {len(spots)} spots (first: "
            f"{quote_examples(list(spots))}, e.g. {example:.4g}), so it looks normalised or log-transformed; "
            "tissuegraph selects genes and normalises from raw counts itself: "
            + _raw_counts_fix(adata, _ROUND_FRACTIONAL)
        )
    return X


def _is_whole(matrix: object) -> bool:
    values = matrix.data if sp.issparse(matrix) else np.asarray(matrix)
    return values.dtype.kind in NUMERIC_KINDS and bool(np.all(values == np.rint(values)) and np.all(values >= 0))


_ROUND_FRACTIONAL = (
    "put the raw counts in X; counts that are fractional by design (e.g. ambient-corrected) can be rounded "
    "first: adata.X.data = np.rint(adata.X.data) (sparse X) or adata.X = np.rint(adata.X) (dense X)"
)


def _raw_counts_fix(adata: AnnData, otherwise: str) -> str:
    """Where the raw counts probably are, as the line of Python that puts them into X; ``otherwise`` when
    neither a counts layer nor ``raw`` holds whole non-negative numbers."""
    for name in ("counts", "raw_counts"):
        if name in adata.layers and _is_whole(adata.layers[name]):
            return f"the raw counts look to be in layers[{name!r}]: adata.X = adata.layers[{name!r}]"
    if adata.raw is not None and _is_whole(adata.raw.X):
        return "the raw counts look to be in adata.raw: adata = adata.raw.to_adata() (obsm is kept)"
    return otherwise


def _check_library_sizes(adata: AnnData, X: sp.csr_matrix, what: str) -> None:
    """A stored all-gene library size must be numeric, not infinite, and at least the spot's counts in X.

    Missing values (NaN) pass: slices with and without the column joined by an outer join (e.g. anndata's
    ``concat(join="outer")``) have them. ``integrate`` then gives each such spot its counts over all its slice's genes
    (``pp.concat_slices``); ``domains`` normalises every spot by its counts in X, with a warning (``pp.library_sizes``).
    """
    if LIBRARY_SIZE_KEY not in adata.obs:
        return
    column = f"obs[{LIBRARY_SIZE_KEY!r}]"
    drop = f"or delete the column (del adata.obs[{LIBRARY_SIZE_KEY!r}]) to normalise by the counts in X"
    stored = adata.obs[LIBRARY_SIZE_KEY]
    if not pd.api.types.is_numeric_dtype(stored):
        raise InputError(f"{what} has non-numeric library sizes in {column} ({stored.dtype}); store numbers {drop}")
    values = stored.to_numpy(dtype=np.float64, na_value=np.nan)
    in_x = np.asarray(X.sum(axis=1)).ravel()
    for problem, bad in (
        ("infinite", np.isinf(values)),
        ("smaller than the spot's counts in X", np.isfinite(values) & (values < in_x - 0.5)),
    ):
        if bad.any():
            spots = list(adata.obs_names[bad])
            raise InputError(
                f"{what}: {column} is {problem} for {len(spots)} spots (first: {quote_examples(spots)}); it must "
                f"hold each spot's total count over all genes measured: fix it {drop}"
            )


def check_coordinates(adata: AnnData, what: str) -> np.ndarray:
    """Return obsm['spatial'] as a float64 (n, 2) array after checking it is usable."""
    if "spatial" not in adata.obsm:
        present = ", ".join(map(repr, adata.obsm.keys())) or "nothing"
        raise InputError(
            f"{what} has no spot coordinates in obsm['spatial'] (obsm holds: {present}); "
            "set them as an (n_spots, 2) array of x, y, e.g. adata.obsm['spatial'] = adata.obs[['x', 'y']]"
            ".to_numpy()"
        )
    raw = _coordinate_array(adata.obsm["spatial"])
    if raw.ndim != 2 or raw.shape[1] != 2:
        raise InputError(
            f"{what} has obsm['spatial'] of shape {raw.shape}; tissuegraph needs exactly 2 columns (x, y): "
            "if extra columns are z or a slice index, keep x and y with "
            "adata.obsm['spatial'] = adata.obsm['spatial'][:, :2]"
        )
    try:
        if raw.dtype.kind not in "iuf" and raw.dtype != object:  # bool is not a position; complex would lose a part
            raise TypeError(raw.dtype)
        coords = raw.astype(np.float64)
    except (TypeError, ValueError) as err:
        raise InputError(
            f"{what} has non-numeric coordinates in obsm['spatial'] (dtype {raw.dtype}); store x, y as real numbers"
        ) from err
    bad = ~np.isfinite(coords).all(axis=1)
    if bad.any():
        spots = list(adata.obs_names[bad])
        raise InputError(
            f"{what} has NaN or infinite coordinates for {len(spots)} spots "
            f"(first: {quote_examples(spots)}); fix their coordinates or drop those spots "
            "(adata = adata[np.isfinite(adata.obsm['spatial']).all(axis=1)].copy())"
        )
    if coords.shape[0] > 1 and not np.ptp(coords, axis=0).any():
        raise InputError(
            f"{what}: all {coords.shape[0]} spots sit at the same position ({coords[0, 0]:g}, {coords[0, 1]:g}) in "
            "obsm['spatial'], so there is no layout to build a graph from; store each spot's own x, y coordinates"
        )
    return coords


def _coordinate_array(stored: object) -> np.ndarray:
    """obsm['spatial'] as an array: a sparse matrix made dense, a table with a known (x, y) pair read by name."""
    if sp.issparse(stored):
        return stored.toarray()
    if isinstance(stored, pd.DataFrame):
        by_name = {str(c).lower(): c for c in stored.columns}
        known = next(((a, b) for a, b in COORDINATE_NAMES if a in by_name and b in by_name), None)
        if known is not None:  # by name: imagerow before imagecol in the table still gives x = imagecol
            return stored[[by_name[known[0]], by_name[known[1]]]].to_numpy()
    return np.asarray(stored)


def check_embedding(
    embedding: object, spot_ids: Sequence[object] | None = None, what: str = "the embedding"
) -> np.ndarray:
    """The embedding as a 2-D float64 array; a spot whose row is NaN or infinite (another tool's L2-normalised
    all-zero row, say) is refused, since every distance to it, and so every score or match, is undefined."""
    try:
        x = np.asarray(embedding, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InputError(f"{what} is not numeric ({err}); give a spots x dimensions array of numbers") from err
    if x.ndim != 2:
        raise InputError(f"{what} must be a 2-D (spots x dimensions) array (got shape {x.shape})")
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if bad.size:
        shown = f"rows {quote_examples(list(bad))}" if spot_ids is None else quote_examples([spot_ids[i] for i in bad])
        raise InputError(
            f"{what} has NaN or infinite values for {bad.size} of {x.shape[0]} spots ({shown}); recompute the "
            "embedding, or drop those spots"
        )
    return x


#: Share of spot centres allowed outside an image before the image or its scale factor is called wrong.
MAX_OUTSIDE = 0.05


def check_image_cover(xy: np.ndarray, shape: tuple[int, ...], mapping: str, fix: str) -> np.ndarray:
    """Refuse spot centres (``xy``, in the image's pixels) that mostly miss the image: a scale factor or an
    image from another slice or run. ``mapping`` says how ``xy`` was obtained, ``fix`` what to do. Returns which
    centres fall outside (at most ``MAX_OUTSIDE`` of them)."""
    height, width = shape[:2]
    outside = (xy[:, 0] < -0.5) | (xy[:, 0] > width - 0.5) | (xy[:, 1] < -0.5) | (xy[:, 1] > height - 0.5)
    if outside.mean() > MAX_OUTSIDE:
        lo, hi = xy.min(axis=0), xy.max(axis=0)
        raise InputError(
            f"{outside.mean():.0%} of spot centres fall outside the image: {mapping} spans x {lo[0]:.0f}..{hi[0]:.0f}, "
            f"y {lo[1]:.0f}..{hi[1]:.0f} but the image is {width} wide and {height} high; {fix}"
        )
    return outside


def validate_spatial(adata: AnnData, *, min_spots: int = 1, what: str = "input") -> AnnData:
    """Check ``adata`` is a usable spatial slice and normalise its layout in place.

    Raises InputError naming the problem and the fix. A library size stored in
    ``obs['total_counts_all_genes']`` (for files that keep only a subset of the genes) must be at least each
    spot's counts. On success X is CSR float32 (values kept),
    obsm['spatial'] a float64 (n, 2) array and gene names unique; the same object is returned.
    ``what`` names the input in messages (e.g. the file path); ``min_spots`` is what the caller's
    neighbour graph needs (k + 1).
    """
    if adata.isbacked:
        raise InputError(f"{what} is opened in backed mode; load it into memory first (adata.to_memory())")
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise InputError(
            f"{what} is empty ({adata.n_obs} spots x {adata.n_vars} genes); check that the right file or "
            "slice was given and that earlier filtering did not remove everything"
        )
    duplicated = adata.obs_names[adata.obs_names.duplicated()].unique()
    if len(duplicated):
        fix = "call adata.obs_names_make_unique() or fix the ids"
        if (
            "batch" in adata.obs
            and not pd.MultiIndex.from_arrays([adata.obs_names, adata.obs["batch"]]).duplicated().any()
        ):
            # slices joined without index_unique: the same barcodes on different slices
            fix = (
                "they repeat across the slices of obs['batch'], so add the slice to each id: adata.obs_names = "
                "adata.obs_names + '-' + adata.obs['batch'].astype(str) (as anndata.concat(..., index_unique='-') does)"
            )
        raise InputError(
            f"{what} has {len(duplicated)} duplicate spot ids (e.g. {quote_examples(list(duplicated))}); "
            f"spot ids must be unique: {fix}"
        )
    X = check_counts(adata, what)
    _check_library_sizes(adata, X, what)
    coords = check_coordinates(adata, what)
    if adata.n_obs < min_spots:
        raise InputError(
            f"{what} has {adata.n_obs} spots but the spatial graph needs at least {min_spots} "
            "(k neighbours + 1); lower --k or use a slice with more spots"
        )
    adata.X = X
    adata.obsm["spatial"] = coords
    if not adata.var_names.is_unique:
        adata.var_names_make_unique()
    return adata
