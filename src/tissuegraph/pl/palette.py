"""Domain colours that stay the same for a domain name in every panel of every figure.

A colour is chosen from a label's position in the naturally sorted list of all labels ('2' before '10',
'L2' before 'L10'), never from the order spots happen to appear in, so the same result always gets the same
colours. Ground-truth panels borrow the colours of the predicted domains they overlap most (Hungarian
matching), so a correct domain looks the same in both panels.
"""

from __future__ import annotations

import colorsys
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib import colormaps
from scipy.optimize import linear_sum_assignment

from tissuegraph.errors import InputError
from tissuegraph.labels import sorted_labels

RGBA = tuple[float, float, float, float]

#: Colour of spots without a label (unannotated ground truth).
MISSING_COLOUR: RGBA = (0.82, 0.82, 0.82, 1.0)
#: Colours whose channels differ by no more than this are greys, kept for ``MISSING_COLOUR``.
GREY_CHROMA = 0.05
#: Two colours of the fixed maps closer than this in every channel read as one in a figure.
MIN_CHANNEL_GAP = 0.08


def _reordered(name: str, n_hues: int, n_shades: int) -> list[RGBA]:
    """Colours of a banded qualitative map, darkest shade of every hue first (neighbours differ in hue)."""
    cmap = colormaps[name]
    return [tuple(float(v) for v in cmap(hue * n_shades + shade)) for shade in range(n_shades) for hue in range(n_hues)]


def colour_sequence(n: int) -> list[RGBA]:
    """``n`` distinct colours, always the same for the same position: tab20 (strong shades first), then
    tab20b and tab20c, then golden-angle hues for very many labels. Their greys are left out: grey means a spot
    without a label (``MISSING_COLOUR``), and a domain drawn in grey would look unannotated."""
    base = _distinct(_reordered("tab20", 10, 2) + _reordered("tab20b", 5, 4) + _reordered("tab20c", 5, 4))
    return base[:n] + [_golden(j) for j in range(max(0, n - len(base)))]


def _distinct(colours: list[RGBA]) -> list[RGBA]:
    """The colours that are no grey and differ from every colour kept before them by more than
    ``MIN_CHANNEL_GAP`` in some channel (tab20c's dark shades repeat tab10's colours almost exactly)."""
    kept: list[RGBA] = []
    for colour in colours:
        rgb = np.asarray(colour[:3])
        if np.ptp(rgb) > GREY_CHROMA and all(np.abs(rgb - other[:3]).max() > MIN_CHANNEL_GAP for other in kept):
            kept.append(colour)
    return kept


def _golden(j: int) -> RGBA:
    """The j-th of an endless run of distinct colours (golden-angle hue steps, alternating shade)."""
    hue = (j * 0.618033988749895) % 1.0
    saturation = 0.55 + 0.35 * ((j // 7) % 2)
    value = 0.65 + 0.25 * ((j // 3) % 2)
    return (*colorsys.hsv_to_rgb(hue, saturation, value), 1.0)


def batch_palette(names: list[str]) -> dict[str, RGBA]:
    """Slice colours in the given order, from a set (Dark2, then Set1) apart from the domain colours."""
    base = [tuple(float(v) for v in colormaps[name](i)) for name, n in (("Dark2", 8), ("Set1", 9)) for i in range(n)]
    base = _distinct(base)
    colours = base[: len(names)] + [_golden(1000 + j) for j in range(max(0, len(names) - len(base)))]
    return dict(zip(names, colours, strict=True))


def all_labels(adata: AnnData, key: str) -> list[str]:
    """Every label of ``obs[key]``: all categories of a categorical (so subsets keep their colours)."""
    if key not in adata.obs:
        raise InputError(f"obs[{key!r}] not found; run tl.domains first or name an existing column")
    column = adata.obs[key]
    values = column.cat.categories if isinstance(column.dtype, pd.CategoricalDtype) else column.unique()
    return sorted_labels(values)


def domain_palette(adata: AnnData, domain_key: str = "domain") -> dict[str, RGBA]:
    """The colour of every label of ``obs[domain_key]``, shared by every figure drawn from this result."""
    names = all_labels(adata, domain_key)
    return dict(zip(names, colour_sequence(len(names)), strict=True))


def match_labels(truth: Iterable, predicted: Iterable) -> dict[str, str]:
    """Predicted label -> the truth label it is matched to (Hungarian matching on the contingency table).

    Matching maximises the number of spots on which matched labels agree; spots with missing truth are left
    out. Predicted labels left over (more domains than truth labels) or matched only to a truth label they
    never overlap are absent from the result.
    """
    truth, predicted = pd.Series(list(truth), dtype=object), pd.Series(list(predicted), dtype=object)
    if truth.shape[0] != predicted.shape[0]:
        raise InputError(
            f"truth has {truth.shape[0]} labels but prediction has {predicted.shape[0]}; give one per spot"
        )
    keep = (truth.notna() & predicted.notna()).to_numpy()
    truth_names, predicted_names = sorted_labels(truth[keep]), sorted_labels(predicted[keep])
    if not truth_names or not predicted_names:
        return {}
    t = pd.Categorical(truth[keep].astype(str), categories=truth_names).codes
    p = pd.Categorical(predicted[keep].astype(str), categories=predicted_names).codes
    table = np.zeros((len(predicted_names), len(truth_names)), dtype=np.int64)
    np.add.at(table, (p, t), 1)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return {predicted_names[r]: truth_names[c] for r, c in zip(rows, cols, strict=True) if table[r, c] > 0}


def matched_palette(truth: Iterable, predicted: Iterable, palette: Mapping[str, RGBA]) -> dict[str, RGBA]:
    """Truth label -> colour: the colour of its matched predicted domain, else a colour no domain uses."""
    truth_list = list(truth)
    matches = match_labels(truth_list, predicted)
    colours = {truth_label: palette[pred] for pred, truth_label in matches.items() if pred in palette}
    unmatched = [name for name in sorted_labels(truth_list) if name not in colours]
    if unmatched:
        taken = {tuple(np.round(c, 6)) for c in palette.values()}
        spare = [c for c in colour_sequence(len(palette) + len(unmatched) + 64) if tuple(np.round(c, 6)) not in taken]
        colours.update(zip(unmatched, spare, strict=False))
    return {name: colours[name] for name in sorted_labels(truth_list)}


def spot_colours(labels: Iterable, palette: Mapping[str, RGBA]) -> np.ndarray:
    """(n, 4) RGBA per spot; missing labels (and labels outside the palette) get ``MISSING_COLOUR``."""
    series = pd.Series(list(labels), dtype=object)
    out = np.tile(np.asarray(MISSING_COLOUR), (series.shape[0], 1))
    present = series.notna().to_numpy()
    names = series[present].astype(str).to_numpy()
    lookup = {name: np.asarray(colour) for name, colour in palette.items()}
    if present.any():
        out[present] = np.stack([lookup.get(name, np.asarray(MISSING_COLOUR)) for name in names])
    return out
