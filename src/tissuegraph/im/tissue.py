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
structure at the scale of a spot beyond faint pixel noise is blank and refused. A swap or mirror of x and y over a
roughly square section still lands on tissue and cannot be seen here.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from tissuegraph.errors import InputError

MIN_ON_TISSUE = 0.5  # fewer spots than this on tissue: the image does not match (DLPFC in-tissue spots: 0.89-0.98)
_BORDER_SHARE = 0.95  # share of the border one side must hold to be the background (slides: 0.99-1.00)
MIN_CONTRAST = 3.0  # tissue's mean signal over the background's, below which the two sides are not glass and tissue
_BLANK_COLOUR = 0.02  # smoothed saturation spanning less than this (0..1 scale): no colour structure
_BLANK_GREY = 0.05  # smoothed grey spanning less than this share of its brightest value: no light/dark structure
_SPREAD_QUANTILE = 0.001  # spreads run between these quantiles, so that a few outlying pixels do not count as tissue


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
    cols = np.clip(np.round(xy[:, 0]).astype(np.int64), 0, signal.shape[1] - 1)
    rows = np.clip(np.round(xy[:, 1]).astype(np.int64), 0, signal.shape[0] - 1)
    on_tissue = float(np.mean(tissue[rows, cols]))
    if on_tissue < MIN_ON_TISSUE:
        raise InputError(
            f"only {on_tissue:.0%} of the spots sit on tissue in the image ({mapping}); the others fall on blank "
            "background, so the image or its scale factor does not belong to these coordinates (e.g. the lowres "
            "scale factor used with the hires image, or coordinates of another image): check the image and "
            "scalefactors (or scale=...), or run without the image (--no-image, image=False)"
        )
    return on_tissue
