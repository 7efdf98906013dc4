"""Square image patches centred on spots, from the slide stored with the data or from an image file.

Patches are the S x S pixel block whose centre is nearest to the spot centre (S = size_factor x spot diameter,
rounded, in image pixels), so the geometry is exact and testable; a sub-pixel offset of at most half a pixel
remains. Pixels beyond the image border repeat the nearest edge pixel: unlike a constant fill this adds no
artificial edge that the encoder could learn as a feature. Blocks are then resampled to out_px x out_px
(bilinear, antialiased when shrinking).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

import numpy as np
import tifffile
import torch
import torch.nn.functional as F
import zarr
from anndata import AnnData
from PIL import Image
from scipy.spatial import cKDTree

from tissuegraph.errors import InputError, warn
from tissuegraph.im.tissue import check_spots_on_tissue
from tissuegraph.io.validate import check_coordinates, check_image_cover, quote_examples

ImageInput = str | Path | np.ndarray | Image.Image
Reader = Callable[[int, int, int, int], np.ndarray]


class _Source(NamedTuple):
    """An open image: (height, width), a window reader (rows r0:r1, columns c0:c1 -> H x W x samples), whether
    the whole image is in memory, and the bytes one pixel takes as read (samples x sample size), which sets how
    many rows a band of at most _BAND_BYTES holds."""

    shape: tuple[int, int]
    read: Reader
    in_memory: bool
    pixel_bytes: int


MIN_SIDE_PX = 3  # a patch narrower than this holds no texture: the image is too coarse or the scale too small
FLOAT_SLACK = 1 / 255  # float pixels this far outside [0, 1] are rounding (resampling), clipped; further is refused
_TIFF_SUFFIXES = {".tif", ".tiff", ".btf"}
_BAND_BYTES = 256 * 2**20  # rows of a file image read at once
DIM_IMAGE = 4095 / 65535  # brightest pixel at most this share of the range: fewer bits used than the type holds
THUMBNAIL_PX = 1024  # longest side of the picture that check_spots_on_tissue looks at
_CHUNK_BYTES = 64 * 2**20  # float32 pixels of patches gathered at once before resampling
_SCANPY_LAYOUT = (
    "{library_id: {'images': {'hires' and/or 'lowres': array}, 'scalefactors': {'tissue_hires_scalef' / "
    "'tissue_lowres_scalef': float, 'spot_diameter_fullres': float}}}"
)
_SCALE_MEANING = "the image's pixels per full-resolution coordinate unit: correct it, or pass scale=..."


def spatial_libraries(adata: AnnData) -> Mapping[str, Mapping[str, Any]]:
    """uns['spatial'] (empty when absent), checked against scanpy's layout so that a malformed entry is named
    here rather than failing as a bare traceback deep in the image code."""
    spatial = adata.uns.get("spatial", {})

    def refuse(where: str, value: object) -> NoReturn:
        raise InputError(
            f"{where} is a {type(value).__name__}, not a mapping; uns['spatial'] must be laid out as scanpy writes it, "
            f"{_SCANPY_LAYOUT}: rebuild it so (tissuegraph.io.read_visium reads a Space Ranger folder that way), or "
            "delete uns['spatial'] and give the image directly (image=..., scale=...) or run without it (image=False, "
            "--no-image)"
        )

    if not isinstance(spatial, Mapping):
        refuse("uns['spatial']", spatial)
    for library, stored in spatial.items():
        if not isinstance(stored, Mapping):
            refuse(f"uns['spatial'][{library!r}]", stored)
        for key in ("images", "scalefactors"):
            if not isinstance(stored.get(key, {}), Mapping):
                refuse(f"uns['spatial'][{library!r}][{key!r}]", stored[key])
    return spatial


def _positive(value: Any, what: str, meaning: str) -> float:
    """``value`` as a finite number > 0; anything else is refused, never replaced by a guess."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int too large for a float
        number = float("nan")
    if not (np.isfinite(number) and number > 0):
        raise InputError(f"{what} is {value}; it must be a positive number, {meaning}")
    return number


def resolve_library(adata: AnnData, library_id: str | None) -> str | None:
    """The uns['spatial'] library of this slice (None when there is none): given, the only one, or obs['batch']."""
    libraries = spatial_libraries(adata)
    names = ", ".join(map(repr, libraries)) or "nothing"
    if library_id is not None:
        if library_id not in libraries:
            raise InputError(
                f"library_id {library_id!r} is not in uns['spatial'] (it holds: {names}); pass one of those, "
                "or give the image directly with image=..."
            )
        return library_id
    if len(libraries) <= 1:
        return next(iter(libraries), None)
    if "batch" in adata.obs:
        batches = adata.obs["batch"].astype(str).unique()
        if len(batches) == 1 and batches[0] in libraries:
            return str(batches[0])
    raise InputError(
        f"uns['spatial'] holds several libraries ({names}) and none is chosen; pass library_id=... "
        "(for several slices use image_features, which takes each slice's own library); on the command line, set "
        "obs['batch'] to the library's name in the file (adata.obs['batch'] = '<library>'), which picks it"
    )


def spot_diameter(adata: AnnData, library: str | None, coords: np.ndarray) -> tuple[float, str]:
    """Spot diameter in coordinate units and where it came from.

    Taken from scalefactors['spot_diameter_fullres'] (refused unless a positive number); without the key, the
    median distance from each spot to its nearest neighbour, which bounds the diameter from above (spots do not
    overlap; for Visium it is about 1.8 diameters), so patches come out larger than with the true diameter.
    """
    if library is not None:
        value = spatial_libraries(adata)[library].get("scalefactors", {}).get("spot_diameter_fullres")
        if value is not None:
            where = f"uns['spatial'][{library!r}]['scalefactors']['spot_diameter_fullres']"
            meaning = (
                "the spot diameter in full-resolution pixels: correct it, or delete the key to let tissuegraph "
                "estimate the diameter from the spot spacing"
            )
            return _positive(value, where, meaning), "scalefactors['spot_diameter_fullres']"
    if len(coords) < 2:
        raise InputError(
            "the spot diameter is unknown (no scalefactors['spot_diameter_fullres']) and cannot be estimated "
            "from a single spot; add the scale factors to uns['spatial'][library_id]['scalefactors']"
        )
    distance = float(np.median(cKDTree(coords).query(coords, k=2)[0][:, 1]))
    if distance <= 0:
        raise InputError(
            "the spot diameter is unknown (no scalefactors['spot_diameter_fullres']) and the spots sit on top "
            "of each other, so it cannot be estimated; add spot_diameter_fullres to the scale factors"
        )
    return distance, "median nearest-neighbour distance"


def _check_layout(shape: tuple[int, ...], what: str) -> None:
    if len(shape) == 2 or (len(shape) == 3 and shape[2] in (1, 3, 4)):
        return
    raise InputError(
        f"{what} has shape {shape}; an image must be H x W (grey) or H x W x 3/4 (RGB/RGBA): "
        "move the channel axis last (np.moveaxis(image, 0, -1)) or pick the plane to use"
    )


def check_pixels(image: np.ndarray, what: str) -> None:
    """Refuse an image whose layout or pixel type cannot be read (checked on every 16th pixel: a large image
    costs little), so that a stored image is judged before anything is trained."""
    _check_layout(image.shape, what)
    sample = np.asarray(image[::16, ::16])
    to_unit_rgb(sample if sample.ndim == 3 else sample[..., None])


def to_unit_rgb(block: np.ndarray) -> np.ndarray:
    """Pixels as float32 RGB in [0, 1]: uint8/uint16 divided by their type's maximum, floats checked (and clipped
    when they stray from [0, 1] by at most ``FLOAT_SLACK``, as resampled images do), alpha dropped.

    Other integer types are refused: their maximum (e.g. 2**63 - 1 for int64) says nothing about the range the
    values use, so dividing by it would silently give black patches.
    """
    if block.shape[-1] == 4:
        block = block[..., :3]
    if block.dtype.kind not in "buif":  # bool: a mask, read as 0 and 1
        raise InputError(
            f"the image holds {block.dtype} values, not pixel numbers; give uint8 (0..255), uint16 (0..65535) or "
            "floats in [0, 1]"
        )
    if block.dtype.kind in "ui":
        if not (block.dtype.kind == "u" and block.dtype.itemsize in (1, 2)):  # either byte order
            raise InputError(
                f"the image holds {block.dtype} integers; integer images must be uint8 (0..255) or uint16 "
                "(0..65535): convert it, e.g. image.astype(np.uint8) for values 0..255 or image.astype(np.uint16) "
                "for 0..65535, or pass floats in [0, 1]"
            )
        unit = block.astype(np.float32) / np.float32(np.iinfo(block.dtype).max)
    else:
        unit = block.astype(np.float32)
        if not np.isfinite(unit).all():
            raise InputError(
                "the image holds NaN or infinite pixels; fill them (e.g. np.nan_to_num(image, nan=1.0, posinf=1.0, "
                "neginf=0.0)) or mask them before cutting patches"
            )
        if unit.size and (unit.min() < -FLOAT_SLACK or unit.max() > 1 + FLOAT_SLACK):
            raise InputError(
                f"the image holds floats from {unit.min():.7g} to {unit.max():.7g}; float images must lie in [0, 1]: "
                "divide by 255 (8-bit) or 65535 (16-bit), or pass the integer image"
            )
        np.clip(unit, 0.0, 1.0, out=unit)  # resampling or stain normalisation overshoots by rounding
    if unit.shape[-1] == 1:
        unit = np.repeat(unit, 3, axis=-1)
    return unit


#: TIFF colour models whose samples are the pixels' grey or RGB values (YCbCr: JPEG tiles, decoded to RGB).
_TIFF_PHOTOMETRICS = ("MINISBLACK", "RGB", "YCBCR")


@contextmanager
def _open_tiff(path: Path) -> Iterator[_Source]:
    """A window reader over level 0 of a TIFF; only the tiles or strips a window touches are read.

    Palette, CMYK and inverted-grey TIFFs are refused: their samples are not the colours, and reading them as such
    would silently give wrong patches."""
    try:
        tif = tifffile.TiffFile(path)
    except tifffile.TiffFileError as err:
        raise InputError(f"{path} is not a TIFF file ({err}); give a TIFF, PNG or JPEG named by its format") from err
    with tif:
        if not len(tif.pages):
            raise InputError(f"{path} holds no image (a TIFF without pages: truncated or unfinished?)")
        photometric = tif.pages.first.photometric
        if photometric is not None and photometric.name not in _TIFF_PHOTOMETRICS:
            raise InputError(
                f"{path} stores its pixels as {photometric.name} (not RGB or grey values); save the H&E as an RGB "
                "(or greyscale) TIFF, PNG or JPEG"
            )
        series = tif.series[0]
        array = zarr.open(series.aszarr(level=0), mode="r")
        index: list[int | slice] = []
        kept = ""
        for axis, length in zip(series.axes, series.shape, strict=True):
            if axis in "YX" or (axis in "SC" and length > 1):
                index.append(slice(None))
                kept += axis
            elif length == 1:
                index.append(0)
            else:
                raise InputError(
                    f"{path} has image axes {series.axes!r} with {length} planes along {axis!r}; "
                    "save the H&E plane alone (H x W x 3) as a TIFF"
                )
        order = [kept.index(a) for a in "YX"] + [i for i, a in enumerate(kept) if a in "SC"]
        shape = tuple(series.shape[series.axes.index(a)] for a in kept)
        _check_layout(tuple(shape[i] for i in order), str(path))

        def read(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
            window = list(index)
            window[series.axes.index("Y")] = slice(r0, r1)
            window[series.axes.index("X")] = slice(c0, c1)
            try:
                block = np.transpose(np.asarray(array[tuple(window)]), order)
            except (ValueError, KeyError, RuntimeError) as err:  # a codec missing or a damaged tile
                raise InputError(
                    f"{path} could not be decoded ({type(err).__name__}: {err}); re-save it as an uncompressed or "
                    "deflate-compressed TIFF, or as PNG"
                ) from err
            return block if block.ndim == 3 else block[..., None]

        samples = int(np.prod([shape[i] for i in order[2:]]))
        yield _Source((shape[order[0]], shape[order[1]]), read, False, samples * series.dtype.itemsize)


def _pillow_array(img: Image.Image, path: Path) -> np.ndarray:
    """The pixels of a Pillow image: 16-bit grey ('I;16*', or 'I' as newer Pillow reports 16-bit PNG) as uint16, so
    it keeps its 0..65535 range (convert("RGB") would clip it to 255, i.e. white), 32-bit float grey ('F') as
    floats (judged as every float image is), anything else as 8-bit RGB."""
    if img.mode == "F":
        return np.asarray(img, dtype=np.float32)[..., None]
    if not img.mode.startswith("I"):
        return np.asarray(img.convert("RGB"))
    array = np.asarray(img)
    if array.size and (array.min() < 0 or array.max() > 65535):
        raise InputError(
            f"{path} holds {img.mode!r} integers from {array.min()} to {array.max()}; grey images must be 8-bit "
            "(0..255) or 16-bit (0..65535): rescale it, or pass it as an array of floats in [0, 1]"
        )
    return array.astype(np.uint16)[..., None]


@contextmanager
def _open_image(image: ImageInput) -> Iterator[_Source]:
    """The image as a window reader: over an array in memory, or over a TIFF file read window by window."""
    if isinstance(image, Image.Image):  # a Pillow image: its pixels, as a file of it would give them
        image = _pillow_array(image, Path("the given Pillow image"))
    if isinstance(image, np.ndarray):
        _check_layout(image.shape, "the image")
        array = image if image.ndim == 3 else image[..., None]
        yield _in_memory(array)
        return
    if not isinstance(image, str | os.PathLike):
        raise InputError(
            f"image is a {type(image).__name__}; give a path (TIFF/PNG/JPEG), a numpy array (H x W x 3 or H x W) "
            "or a Pillow image"
        )
    path = Path(image)
    if not path.is_file():
        raise InputError(f"image file {path} does not exist; check the path")
    if path.suffix.lower() in _TIFF_SUFFIXES:
        with _open_tiff(path) as source:
            yield source
        return
    try:
        with Image.open(path) as img:
            array = _pillow_array(img, path)
    except Image.DecompressionBombError as err:
        raise InputError(
            f"{path} is too large for Pillow to open safely; save it as a tiled TIFF, which is read window by window"
        ) from err
    except OSError as err:
        raise InputError(f"{path} could not be read as an image ({err}); give a TIFF, PNG or JPEG file") from err
    yield _in_memory(array)


def _in_memory(array: np.ndarray) -> _Source:
    """An H x W x samples array, gathered in one pass."""
    return _Source(array.shape[:2], lambda r0, r1, c0, c1: array[r0:r1, c0:c1], True, array.shape[2] * array.itemsize)


def stored_image(
    adata: AnnData, library: str | None, *, resolutions: tuple[str, ...] = ("hires", "lowres")
) -> tuple[np.ndarray, float, str]:
    """The stored slide image (the first of ``resolutions`` stored: hires for patches, lowres suits a figure) with
    its scale factor and that factor's name."""
    if library is None:
        raise InputError(
            "there is no image: uns['spatial'] holds none (or is missing) and none was given; read the data with its "
            "Space Ranger spatial folder, or from Python pass image=... (a TIFF/PNG/JPEG path or an array, with "
            "scale=... when it is not full resolution); or, in tl.domains / tissuegraph domains, run in gene mode "
            "(image=False, --no-image)"
        )
    stored = spatial_libraries(adata)[library]
    images, factors = stored.get("images", {}), stored.get("scalefactors", {})
    for name in resolutions:
        key = f"tissue_{name}_scalef"
        if name in images and key in factors:
            scale = _positive(factors[key], f"uns['spatial'][{library!r}]['scalefactors'][{key!r}]", _SCALE_MEANING)
            return np.asarray(images[name]), scale, f"scalefactors[{key!r}]"
    raise InputError(
        f"uns['spatial'][{library!r}] has no usable image (images: {', '.join(images) or 'none'}; "
        f"scale factors: {', '.join(factors) or 'none'}); it needs 'hires' or 'lowres' with the matching "
        "tissue_*_scalef (from a Space Ranger folder: spatial/tissue_hires_image.png or tissue_lowres_image.png "
        "with scalefactors_json.json), or from Python pass image=... and scale=...; or run in gene mode "
        "(--no-image, image=False)"
    )


def _marked_under_tissue(adata: AnnData) -> np.ndarray:
    """The spots to check against the image's tissue: those Space Ranger marks in_tissue = 1 when an unfiltered
    matrix (raw_feature_bc_matrix) also holds spots over glass, else all of them."""
    marks = adata.obs["in_tissue"].to_numpy() if "in_tissue" in adata.obs else None
    if marks is None or not np.isin(marks, (0, 1)).all() or not (marks == 1).any():
        return np.ones(adata.n_obs, dtype=bool)
    return marks == 1


def _thumbnail(source: _Source) -> tuple[np.ndarray, int]:
    """Every step-th pixel of the image as float32 RGB in [0, 1], at most THUMBNAIL_PX on its longest side, read in
    bands of rows; with the step, so that thumbnail pixel (r, c) is image pixel (r * step, c * step)."""
    height, width = source.shape
    step = max(1, -(-max(height, width) // THUMBNAIL_PX))
    rows_per_band = max(step, (_BAND_BYTES // max(1, width * source.pixel_bytes)) // step * step)
    bands = [
        to_unit_rgb(source.read(r0, min(r0 + rows_per_band, height), 0, width)[::step, ::step])
        for r0 in range(0, height, rows_per_band)
    ]
    return np.concatenate(bands, axis=0), step


def _gather(source: _Source, xy: np.ndarray, side: int, out_px: int) -> np.ndarray:
    """All patches: edge-clipped index blocks gathered band by band (one band in memory; an image already in
    memory in one pass), then resampled."""
    height, width = source.shape
    # the block's first pixel, then side consecutive ones: rounding each pixel apart could skip a row or column
    first = np.floor(xy - (side - 1) / 2 + 0.5).astype(np.int64)
    rows = np.clip(first[:, 1, None] + np.arange(side), 0, height - 1)
    cols = np.clip(first[:, 0, None] + np.arange(side), 0, width - 1)
    order = np.argsort(rows[:, 0], kind="stable")
    first_rows = rows[order, 0]
    span = int(cols[:, -1].max() - cols[:, 0].min() + 1)
    band = max(side, _BAND_BYTES // (span * source.pixel_bytes))
    chunk = max(1, _CHUNK_BYTES // (side * side * 3 * 4))
    out = np.empty((len(xy), out_px, out_px, 3), dtype=np.float32)
    start = 0
    while start < len(order):
        stop = (
            len(order)
            if source.in_memory
            else int(np.searchsorted(first_rows, first_rows[start] + band - side, "right"))
        )
        group = order[start:stop]
        r0, r1 = int(rows[group, 0].min()), int(rows[group, -1].max()) + 1
        c0, c1 = int(cols[group, 0].min()), int(cols[group, -1].max()) + 1
        window = source.read(r0, r1, c0, c1)
        for i in range(0, len(group), chunk):
            spots = group[i : i + chunk]
            block = window[(rows[spots] - r0)[:, :, None], (cols[spots] - c0)[:, None, :]]
            tensor = torch.from_numpy(to_unit_rgb(block)).permute(0, 3, 1, 2)
            if side != out_px:
                tensor = F.interpolate(tensor, size=(out_px, out_px), mode="bilinear", antialias=True)
            out[spots] = tensor.permute(0, 2, 3, 1).numpy()
        start = stop
    return out


def _warn_dim(brightest: float) -> None:
    """Warn about an image that uses a small part of its pixel range (12-bit camera data stored as uint16, 8-bit
    values in a 16-bit file): its patches come out nearly black, which a pretrained backbone reads poorly."""
    if brightest <= DIM_IMAGE:
        warn(
            f"the image's brightest pixel is {brightest:.1%} of its type's range (e.g. 12-bit data stored as uint16 "
            "reaches at most 6.2%), so every patch is nearly black; if the data has fewer bits than its type, "
            "rescale it to the full range (e.g. image * 16 for 12 bits in uint16, or image.astype(np.uint8) for "
            "8-bit values in uint16) before image mode"
        )


def _warn_outside(adata: AnnData, outside: np.ndarray, shape: tuple[int, int]) -> None:
    """Warn about the few spot centres outside the image that check_image_cover lets through: their patches are
    the repeated image edge, not tissue, so they should not pass without a word."""
    height, width = shape
    if outside.any():
        warn(
            f"{int(outside.sum())} of {len(outside)} spot centres fall outside the {width} x {height} image (e.g. "
            f"{quote_examples(list(adata.obs_names[outside]))}); their patches repeat the image edge, not tissue: "
            "check that these spots belong to this image, or drop them"
        )


def spot_patches(
    adata: AnnData,
    *,
    image: ImageInput | None = None,
    library_id: str | None = None,
    scale: float | None = None,
    size_factor: float = 3.5,
    out_px: int = 32,
) -> np.ndarray:
    """(n_spots, out_px, out_px, 3) float32 patches in [0, 1], one centred on each spot (module docstring).

    The image is ``uns['spatial'][library]['images']`` ('hires' when present, else 'lowres', with its scale
    factor) unless ``image`` gives an array or a TIFF/PNG/JPEG path; such an image is taken as full resolution
    (scale 1.0) unless ``scale`` says otherwise. A TIFF is read in bands of rows, never whole. The patch side is
    ``size_factor`` spot diameters (see ``spot_diameter``).
    """
    if not size_factor > 0 or out_px < 1:  # "not >" also refuses NaN
        raise InputError(f"size_factor ({size_factor}) must be > 0 and out_px ({out_px}) >= 1")
    if adata.n_obs == 0:
        raise InputError("the slice has no spots; check that earlier filtering did not remove them all")
    if scale is not None:
        scale = _positive(scale, "scale", _SCALE_MEANING)
    coords = check_coordinates(adata, "the slice")
    library = resolve_library(adata, library_id)
    if image is None:
        slide, stored_scale, scale_name = stored_image(adata, library)
        image = slide
        if scale is None:
            scale = stored_scale
        else:
            scale_name = "scale"
    else:
        scale_name = "scale" if scale is not None else "the default scale for a given image (full resolution)"
        scale = 1.0 if scale is None else scale
    diameter, diameter_source = spot_diameter(adata, library, coords)
    xy = coords * scale
    width_px = size_factor * diameter * scale
    how = f"spot diameter {diameter:g} ({diameter_source}) x size_factor {size_factor:g} x {scale_name} = {scale:g}"
    with _open_image(image) as source:
        shape = source.shape
        outside = check_image_cover(
            xy,
            shape,
            f"obsm['spatial'] x {scale_name} = {scale:g}",
            "the scale factor does not belong to this image: use the one that maps full-resolution coordinates "
            "onto it (tissue_hires_scalef for hires, tissue_lowres_scalef for lowres, 1.0 for the full-resolution "
            "image) via scale=...",
        )
        _warn_outside(adata, outside, shape)
        if width_px > max(shape):  # checked before any pixel is gathered: each patch takes side x side pixels
            raise InputError(
                f"patches would be {width_px:.0f} px wide, more than the whole {shape[1]} x {shape[0]} image: {how}; "
                "a spot is a small part of the slide, so the diameter (in full-resolution pixels) is likely wrong: "
                "correct scalefactors['spot_diameter_fullres'] or delete it to let tissuegraph estimate the diameter "
                "from the spot spacing, or lower size_factor"
            )
        side = round(width_px)
        if side < MIN_SIDE_PX:
            raise InputError(
                f"patches would be {side} px wide: {how}; the scale factor is too small for this image or the "
                "image too coarse: check scale=..., or raise size_factor"
            )
        thumb, step = _thumbnail(source)
        under = _marked_under_tissue(adata)
        of_slice = "" if library is None else f" of slice '{library}'"
        check_spots_on_tissue(
            thumb, xy[under] / step, diameter * scale / step, f"obsm['spatial']{of_slice} x {scale_name} = {scale:g}"
        )
        _warn_dim(float(thumb.max()))  # judged on an image that passed: a refused one gets its error alone
        return _gather(source, xy, side, out_px)
