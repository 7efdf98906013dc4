"""Domains drawn on the tissue: over the H&E image when the slice has one, as a spot map otherwise."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from scipy.spatial import cKDTree

from tissuegraph import errors
from tissuegraph.errors import InputError
from tissuegraph.gr.spatial import slice_column
from tissuegraph.im.patches import check_pixels, spatial_libraries, stored_image, to_unit_rgb
from tissuegraph.io.validate import check_coordinates, quote_examples
from tissuegraph.labels import sorted_labels
from tissuegraph.metrics.clustering import ari
from tissuegraph.metrics.summary import TRUTH_KEY, scoring_labels
from tissuegraph.pl.palette import MISSING_COLOUR, RGBA, domain_palette, matched_palette, spot_colours
from tissuegraph.pl.text import literal_text, shortened

#: Image resolutions tried, best fit for a figure first, with the scale factor that maps coordinates onto each.
_IMAGES = (("lowres", "tissue_lowres_scalef"), ("hires", "tissue_hires_scalef"))


def slices(adata: AnnData, batch_key: str | None) -> list[tuple[str | None, np.ndarray]]:
    """(slice name, row indices) per slice: category order of ``obs[batch_key]``, else order of appearance."""
    column = slice_column(adata, batch_key)
    if column is None:
        return [(None, np.arange(adata.n_obs))]
    values = column.astype(str).to_numpy()
    if isinstance(column.dtype, pd.CategoricalDtype):
        names = [str(c) for c in column.cat.categories if (values == str(c)).any()]
    else:
        names = list(pd.unique(values))
    return [(name, np.flatnonzero(values == name)) for name in names]


def tissue_image(
    adata: AnnData, name: str | None, n_slices: int, *, warn: bool = True
) -> tuple[np.ndarray, float] | None:
    """The slice's H&E image and the factor from ``obsm['spatial']`` to its pixels, or None when it has none.

    The library is the one named like the slice (integrated results); a single slice also takes the only
    library there is, whatever it is called. A stored image that image mode would refuse (malformed
    ``uns['spatial']``, a scale factor that is not a positive number, channels first, unreadable pixels) is not
    drawn, with a warning saying why (unless ``warn`` is False: a caller asking again): the figure shows the spots
    on their own instead.
    """
    try:
        libraries = spatial_libraries(adata)
        if name is not None and name in libraries:
            library = name
        elif n_slices == 1 and len(libraries) == 1:
            library = next(iter(libraries))
        else:
            return None
        images, scalefactors = libraries[library].get("images", {}), libraries[library].get("scalefactors", {})
        if not any(resolution in images and factor in scalefactors for resolution, factor in _IMAGES):
            return None
        pixels, scale, _ = stored_image(adata, library, resolutions=tuple(resolution for resolution, _ in _IMAGES))
        check_pixels(pixels, f"uns['spatial'][{library!r}]'s image")
        # 16-bit or grey images as image mode reads them: imshow would clip or false-colour them
        return to_unit_rgb(pixels if pixels.ndim == 3 else pixels[..., None]), scale
    except InputError as err:
        if warn:
            errors.warn(f"the slide image is not drawn: {err}")
        return None


def default_spot_size(xy: np.ndarray, panel_inches: float) -> float:
    """Marker area (points^2) at which neighbouring spots about touch in a panel ``panel_inches`` wide."""
    if xy.shape[0] < 2:
        return 30.0
    spacing = float(np.median(cKDTree(xy).query(xy, k=2)[0][:, 1]))
    extent = float(np.ptp(xy, axis=0).max()) + 2 * spacing
    if spacing <= 0 or extent <= 0:
        return 10.0
    diameter = spacing / extent * panel_inches * 72 * 0.85
    return float(np.clip(diameter**2, 2.0, 200.0))  # at least ~2 px: sparse cells must stay visible


#: Legend entries per column: a longer legend (e.g. 40 leiden domains) wraps instead of running off the figure.
LEGEND_ROWS = 18


def legend_inches(n_entries: int) -> float:
    """Width to leave right of a panel for a legend of ``n_entries`` (1.6 inches per column of LEGEND_ROWS), so
    that a legend of a hundred domains widens the figure instead of covering the next panel."""
    return 1.6 * max(1, -(-n_entries // LEGEND_ROWS))


def label_legend(ax: Axes, palette: Mapping[str, RGBA], names: list[str], *, missing: bool, title: str) -> None:
    """A legend right of the panel: one round marker per label (and one for unlabelled spots when there are some),
    wrapped into columns of LEGEND_ROWS entries."""
    entries = [(name, palette[name]) for name in names] + ([("unannotated", MISSING_COLOUR)] if missing else [])
    handles = [
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            markersize=7,
            markerfacecolor=colour,
            markeredgewidth=0,
            label=shortened(name),
        )
        for name, colour in entries
    ]
    ax.legend(
        handles=handles,
        ncols=max(1, -(-len(handles) // LEGEND_ROWS)),
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        frameon=False,
        title=title,
    )


def draw_tissue(
    ax: Axes,
    coords: np.ndarray,
    colours: np.ndarray,
    *,
    background: tuple[np.ndarray, float] | None,
    spot_size: float | None,
    panel_inches: float,
) -> None:
    """Spots at their tissue position: image pixels over the image, else raw coordinates with y pointing down."""
    xy = coords * background[1] if background is not None else coords
    size = default_spot_size(xy, panel_inches) if spot_size is None else float(spot_size)
    if background is not None:
        ax.imshow(background[0])
    ax.scatter(xy[:, 0], xy[:, 1], s=size, c=colours, marker="o", linewidths=0, rasterized=xy.shape[0] > 5000)
    low, high = xy.min(axis=0), xy.max(axis=0)
    margin = 0.03 * float((high - low).max()) + np.sqrt(size) * 0.5
    ax.set_xlim(low[0] - margin, high[0] + margin)
    ax.set_ylim(high[1] + margin, low[1] - margin)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


@literal_text
def domains(
    adata: AnnData,
    *,
    domain_key: str = "domain",
    image: bool = True,
    spot_size: float | None = None,
    truth_key: str | None = TRUTH_KEY,
    batch_key: str = "batch",
    panel_inches: float = 4.0,
    palette: Mapping[str, RGBA] | None = None,
    truth_palette: Mapping[str, RGBA] | None = None,
) -> Figure:
    """Domains on the tissue, one panel per slice, with the ground truth beside each when it is annotated.

    Over the slice's H&E image (``uns['spatial'][slice]``, spots placed with the image's scale factor) when
    ``image`` and there is one; a spot map with equal axes and y pointing down (as in an image) otherwise.
    Domain colours come from ``domain_palette`` (the same in every figure); ground-truth labels take the
    colour of the domain they are matched to, so agreement shows as matching colours; spots annotated 'Excluded'
    are drawn as unannotated, as ``metrics.score`` scores them. ``spot_size`` is the
    marker area in points^2; by default neighbouring spots about touch. Drawing a subset of a result (a view
    drops the domains it lacks), pass ``palette=domain_palette(result)`` to keep each domain's colour, and
    ``truth_palette=matched_palette(result truth, result domains, palette)`` to keep each truth label's (matched on
    the subset, a label can take another domain's colour). Returns the figure (never shown).
    """
    if palette is None:
        palette = domain_palette(adata, domain_key)
    else:
        uncoloured = [name for name in sorted_labels(adata.obs[domain_key]) if name not in palette]
        if uncoloured:
            raise InputError(
                f"palette has no colour for {domain_key} {quote_examples(uncoloured)}; pass "
                "palette=domain_palette(result) for the result these spots come from, or add colours for them"
            )
    if truth_key not in (None, TRUTH_KEY) and truth_key not in adata.obs:  # named on purpose: a typo must not pass
        raise InputError(
            f"obs[{truth_key!r}] not found, so there is no annotation to draw beside the domains; name an existing "
            "column as truth_key, or truth_key=None for the domains alone"
        )
    with_truth = truth_key is not None and truth_key != domain_key and truth_key in adata.obs
    truth = scoring_labels(adata, truth_key) if with_truth else None  # 'Excluded' drawn and scored as unannotated
    with_truth = with_truth and truth.notna().any()
    truth_colours = {}
    if with_truth and truth_palette is None:
        truth_colours = matched_palette(truth, adata.obs[domain_key], palette)
    elif with_truth:
        truth_colours = dict(truth_palette)
        uncoloured = [name for name in sorted_labels(truth) if name not in truth_colours]
        if uncoloured:
            raise InputError(
                f"truth_palette has no colour for {truth_key} {quote_examples(uncoloured)}; pass the matched_palette "
                "of the result these spots come from"
            )
    groups = slices(adata, batch_key)
    per_slice = 2 if with_truth else 1
    slices_per_row = max(1, 4 // per_slice)
    n_rows = -(-len(groups) // slices_per_row)
    n_cols = per_slice * min(len(groups), slices_per_row)
    columns = [adata.obs[domain_key]] + ([truth] if with_truth else [])
    legend = legend_inches(max(len(sorted_labels(column)) + 1 for column in columns))  # + 1: 'unannotated'
    fig = Figure(figsize=(n_cols * (panel_inches + legend), n_rows * panel_inches), layout="constrained")
    grid = fig.add_gridspec(n_rows, n_cols)
    coords = check_coordinates(adata, "the result")

    for i, (name, rows) in enumerate(groups):
        row, col = divmod(i, slices_per_row)
        background = tissue_image(adata, name, len(groups)) if image else None
        labels = adata.obs[domain_key].iloc[rows]
        prefix = "" if name is None else f"{shortened(name)}: "
        title = f"{prefix}{domain_key}"
        if with_truth and truth.iloc[rows].notna().any():
            title += f" (ARI {ari(truth.iloc[rows], labels):.2f})"
        panels = [(labels, palette, title, domain_key)]
        if with_truth:
            panels.append((truth.iloc[rows], truth_colours, f"{prefix}{truth_key}", truth_key))
        for offset, (values, colours, panel_title, legend_title) in enumerate(panels):
            ax = fig.add_subplot(grid[row, col * per_slice + offset])
            draw_tissue(
                ax,
                coords[rows],
                spot_colours(values, colours),
                background=background,
                spot_size=spot_size,
                panel_inches=panel_inches,
            )
            ax.set_title(panel_title)
            label_legend(ax, colours, sorted_labels(values), missing=bool(values.isna().any()), title=legend_title)
    return fig
