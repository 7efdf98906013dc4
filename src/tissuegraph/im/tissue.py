"""Do the spots sit on the tissue? A check that an image and the spot coordinates belong together.

The spots of a filtered capture (Visium's in-tissue spots) lie under the tissue, so when most of them land on
blank background the image is not the one they were measured on, or it is mapped with the wrong scale: the lowres
scale factor applied to the hires image shrinks the spots into a corner of glass. Patches cut there would feed
the image branch pictures of glass, a silently wrong result, so this is refused before any patch is used.

Tissue is told from background on a thumbnail smoothed over a spot: the colour saturation (H&E tissue is pink and
purple on grey glass; fluorescence is coloured on black), or for a grey image the grey level turned so that the
side holding the image border is low, split in two by Otsu's threshold. The low side is background only when it
holds the border and the tissue side's mean is at least MIN_CONTRAST times the background's (on the DLPFC slides
tissue against glass: 5.7-8.0 times; windows inside their sections whose border falls on the low side: at most 1.4).
Otherwise (an image cropped inside the tissue, or tissue with holes of glass) nothing is decided. An image with no
structure at the scale of a spot beyond faint pixel noise is blank and refused.

A swap or mirror of x and y against the image can still land most spots on tissue (on the DLPFC slides 68-91% of
the spots, against 89-98% as given), so the coordinates are also laid on the image in the seven other orientations
of its frame (x and y swapped, mirrored across the image, or both). One is named when it puts at least
MIN_BETTER_ORIENTATION more of the spots on tissue and its spots cover at least MIN_TISSUE_COVER of the tissue
(tissue pixels within a spot spacing of a spot): a warning when the coordinates as given pass, in the error when
they do not. The cover keeps a subset of a section (half a slide, whose pale half a mirror moves onto stained
tissue: 79% -> 99% of the spots on tissue) from being called misoriented: a half covers 43-55% of the tissue, the
four DLPFC slides as given 92-100%. On those slides every other orientation puts 7-13 points fewer spots on tissue
than the given one, and each of their 28 frame-misoriented copies is named. A mirror about the spots' own extent
rather than the image's is not the image frame's symmetry and is mostly missed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from tissuegraph.errors import InputError, warn

MIN_ON_TISSUE = 0.5  # fewer spots than this on tissue: the image does not match (DLPFC in-tissue spots: 0.89-0.98)
_BORDER_SHARE = 0.95  # share of the border one side must hold to be the background (slides: 0.99-1.00)
MIN_CONTRAST = 3.0  # tissue's mean signal over the background's, below which the two sides are not glass and tissue
_BLANK_COLOUR = 0.02  # smoothed saturation spanning less than this (0..1 scale): no colour structure
_BLANK_GREY = 0.05  # smoothed grey spanning less than this share of its brightest value: no light/dark structure
_SPREAD_QUANTILE = 0.001  # spreads run between these quantiles, so that a few outlying pixels do not count as tissue
MIN_BETTER_ORIENTATION = 0.05  # share of spots another orientation must add on tissue to be named (module docstring)
MIN_TISSUE_COVER = 0.8  # share of the tissue its spots must cover for an orientation to be named (module docstring)

_Orientation = Callable[[np.ndarray, int, int], np.ndarray]  # (x, y) pixels, image width, height -> (x, y)
#: The other orientations of the coordinates on the image frame (the square's symmetries but the identity), named
#: with the change to make (W, H: the image's width and height in the units of obsm['spatial']).
_ORIENTATIONS: dict[str, _Orientation] = {
    "x mirrored (x -> W - x)": lambda xy, w, h: np.c_[w - 1 - xy[:, 0], xy[:, 1]],
    "y mirrored (y -> H - y)": lambda xy, w, h: np.c_[xy[:, 0], h - 1 - xy[:, 1]],
    "x and y mirrored (x -> W - x, y -> H - y)": lambda xy, w, h: np.c_[w - 1 - xy[:, 0], h - 1 - xy[:, 1]],
    "x and y swapped (x <-> y)": lambda xy, w, h: xy[:, ::-1],
    "x and y swapped, then x mirrored (x -> W - y, y -> x)": lambda xy, w, h: np.c_[w - 1 - xy[:, 1], xy[:, 0]],
    "x and y swapped, then y mirrored (x -> y, y -> H - x)": lambda xy, w, h: np.c_[xy[:, 1], h - 1 - xy[:, 0]],
    "x and y swapped, then both mirrored (x -> W - y, y -> H - x)": lambda xy, w, h: np.c_[
        w - 1 - xy[:, 1], h - 1 - xy[:, 0]
    ],
}
_UNITS = "W and H being the image's width and height in the units of obsm['spatial']"


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """The cut that best separates values into two classes (largest between-class variance)."""
    counts, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    below = np.cumsum(counts)[:-1].astype(np.float64)
    above = counts.sum() - below
    weighted = np.cumsum(counts * centres)[:-1]
    mean_below = weighted / np.maximum(below, 1)
    mean_above = (np.sum(counts * centres) - weighted) / np.maximum(above, 1)
    return float(edges[1:-1][np.argmax(below * above * (mean_below - mean_above) ** 2)])


def _border(picture: np.ndarray, width: int) -> np.ndarray:
    return np.concatenate(
        [picture[:width].ravel(), picture[-width:].ravel(), picture[:, :width].ravel(), picture[:, -width:].ravel()]
    )


def check_spots_on_tissue(thumb: np.ndarray, xy: np.ndarray, diameter: float, mapping: str) -> float | None:
    """Refuse a blank image, or one whose background holds more than half the spots (module docstring).

    ``xy`` (spot centres) and ``diameter`` are in pixels of ``thumb``. Returns the share of spots on tissue, or
    None when the image has no clear background to judge by.
    """
    sigma = max(0.5, diameter / 2)
    grey = ndimage.gaussian_filter(thumb.mean(axis=2), sigma=sigma)
    saturation = ndimage.gaussian_filter(thumb.max(axis=2) - thumb.min(axis=2), sigma=sigma)
    quantiles = [_SPREAD_QUANTILE, 1 - _SPREAD_QUANTILE]
    colour_low, colour_high = np.quantile(saturation, quantiles)
    colour_spread = float(colour_high - colour_low)
    grey_low, grey_high = (float(q) for q in np.quantile(grey, quantiles))
    if colour_spread < _BLANK_COLOUR and grey_high - grey_low <= _BLANK_GREY * grey_high:
        raise InputError(
            f"the image is blank: smoothed over a spot, its grey level only spans {grey_low:.3g} to {grey_high:.3g} "
            "(on a 0..1 scale) and it has no colour, so it shows no tissue; give the slide's H&E image, or run "
            "without the image (--no-image, image=False)"
        )
    border_width = max(1, min(thumb.shape[:2]) // 50)
    if colour_spread >= _BLANK_COLOUR:
        signal = saturation
    else:  # grey: glass is bright (brightfield) or black (fluorescence); turn it so that the border is low
        border_grey = _border(grey, border_width)
        signal = grey_high - grey if np.median(border_grey) > (grey_low + grey_high) / 2 else grey - grey_low
    cut = otsu_threshold(signal)
    background, tissue = signal <= cut, signal > cut
    if not background.any() or not tissue.any():
        return None
    border_low = np.mean(_border(signal, border_width) <= cut)
    contrast = signal[tissue].mean() / max(signal[background].mean(), 1e-6)
    if border_low < _BORDER_SHARE or contrast < MIN_CONTRAST:
        return None
    on_tissue = _share_on(tissue, xy)
    better = _better_orientation(tissue, xy, on_tissue)
    turned = (
        ""
        if better is None
        else f"; with {better[0]}, {better[1]:.0%} would sit on tissue ({_UNITS}): the coordinates may be swapped or "
        "mirrored against the image"
    )
    if on_tissue < MIN_ON_TISSUE:
        raise InputError(
            f"only {on_tissue:.0%} of the spots sit on tissue in the image ({mapping}); the others fall on blank "
            "background, so the image or its scale factor does not belong to these coordinates (e.g. the lowres "
            f"scale factor used with the hires image, or coordinates of another image){turned}: check the image and "
            "scalefactors (or scale=...), or run without the image (--no-image, image=False)"
        )
    if better is not None:
        warn(
            f"{on_tissue:.0%} of the spots sit on tissue in the image ({mapping}){turned} (obsm['spatial'] is x = "
            "image column, y = image row, y pointing down); check them, or run without the image (--no-image, "
            "image=False)"
        )
    return on_tissue


def _share_on(tissue: np.ndarray, xy: np.ndarray) -> float:
    """Share of the spot centres (x, y in pixels; outside the picture: its nearest edge) on the tissue mask."""
    cols, rows = _pixels(tissue, xy)
    return float(np.mean(tissue[rows, cols]))


def _pixels(picture: np.ndarray, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cols = np.clip(np.round(xy[:, 0]).astype(np.int64), 0, picture.shape[1] - 1)
    rows = np.clip(np.round(xy[:, 1]).astype(np.int64), 0, picture.shape[0] - 1)
    return cols, rows


def _tissue_cover(tissue: np.ndarray, xy: np.ndarray, spacing: float) -> float:
    """Share of the tissue pixels within ``spacing`` pixels of a spot centre."""
    cols, rows = _pixels(tissue, xy)
    far = np.ones(tissue.shape, dtype=bool)
    far[rows, cols] = False
    return float(np.mean(ndimage.distance_transform_edt(far)[tissue] <= spacing))


def _better_orientation(tissue: np.ndarray, xy: np.ndarray, on_tissue: float) -> tuple[str, float] | None:
    """The other orientation that puts the most spots on tissue, with that share, when it is clearly better than
    the given one and its spots cover most of the tissue (module docstring); else None."""
    height, width = tissue.shape
    shares = {name: _share_on(tissue, turn(xy, width, height)) for name, turn in _ORIENTATIONS.items()}
    best = max(shares, key=shares.__getitem__)
    if shares[best] < max(on_tissue + MIN_BETTER_ORIENTATION, MIN_ON_TISSUE) or len(xy) < 2:
        return None
    spacing = max(1.0, float(np.median(cKDTree(xy).query(xy, k=2)[0][:, 1])))
    if _tissue_cover(tissue, _ORIENTATIONS[best](xy, width, height), spacing) < MIN_TISSUE_COVER:
        return None
    return best, shares[best]
