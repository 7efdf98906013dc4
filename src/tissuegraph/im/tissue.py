"""Do the spots sit on the tissue? A check that an image and the spot coordinates belong together.

The spots of a filtered capture (Visium's in-tissue spots) lie under the tissue, so when most of them land on
blank background the image is not the one they were measured on, or it is mapped with the wrong scale: the lowres
scale factor applied to the hires image shrinks the spots into a corner of glass. Patches cut there would feed
the image branch pictures of glass, a silently wrong result, so this is refused before any patch is used.

Tissue is told from background on a thumbnail: the colour saturation (H&E tissue is pink and purple on grey glass;
fluorescence is coloured on black), or the grey level for a grey image, split in two by Otsu's threshold; the side
that holds the image border is the background. When the border is not mostly one side (an image cropped to the
tissue) nothing is decided. A swap or mirror of x and y over a roughly square section still lands on tissue and
cannot be seen here.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from tissuegraph.errors import InputError

MIN_ON_TISSUE = 0.5  # fewer spots than this on tissue: the image does not match (DLPFC in-tissue spots: 0.89-0.98)
_BORDER_SHARE = 0.95  # share of the border one side must hold to be the background (slides: 0.99-1.00)
_BLANK_RANGE = 0.02  # an image whose pixels span less than this (on a 0..1 scale) shows nothing


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
    grey = thumb.mean(axis=2)
    saturation = thumb.max(axis=2) - thumb.min(axis=2)
    spread = {name: np.subtract(*np.quantile(v, [0.995, 0.005])) for name, v in (("sat", saturation), ("grey", grey))}
    if max(spread.values()) < _BLANK_RANGE:
        raise InputError(
            f"the image is blank: every pixel is about the same colour (mean {grey.mean():.2f} on a 0..1 scale), so "
            "it shows no tissue; give the slide's H&E image, or run without the image (--no-image, image=False)"
        )
    signal = saturation if spread["sat"] >= _BLANK_RANGE else grey
    signal = ndimage.gaussian_filter(signal, sigma=max(0.5, diameter / 2))
    cut = otsu_threshold(signal)
    border = _border(signal, max(1, min(signal.shape) // 50))
    background_high = np.mean(border > cut)
    if max(background_high, 1 - background_high) < _BORDER_SHARE:
        return None
    cols = np.clip(np.round(xy[:, 0]).astype(np.int64), 0, signal.shape[1] - 1)
    rows = np.clip(np.round(xy[:, 1]).astype(np.int64), 0, signal.shape[0] - 1)
    at_spots = signal[rows, cols]
    on_tissue = float(np.mean(at_spots <= cut if background_high > 0.5 else at_spots > cut))
    if on_tissue < MIN_ON_TISSUE:
        raise InputError(
            f"only {on_tissue:.0%} of the spots sit on tissue in the image ({mapping}); the others fall on blank "
            "background, so the image or its scale factor does not belong to these coordinates (e.g. the lowres "
            "scale factor used with the hires image, or coordinates of another image): check the image and "
            "scalefactors (or scale=...), or run without the image (--no-image, image=False)"
        )
    return on_tissue
