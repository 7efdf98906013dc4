"""Library size per domain: which domains differ in sequencing depth, and by how much."""

from __future__ import annotations

import numpy as np
from anndata import AnnData
from matplotlib.figure import Figure

from tissuegraph.errors import InputError
from tissuegraph.metrics.depth import depth_explained, library_size, library_size_by_domain
from tissuegraph.pl.palette import domain_palette
from tissuegraph.pl.text import literal_text


@literal_text
def library_sizes(adata: AnnData, *, domain_key: str = "domain", batch_key: str = "batch") -> Figure:
    """Box plot of each domain's library sizes (log scale, domain colours); the title gives the share of the
    within-slice depth variance that the domains explain (``metrics.depth_explained``). Returns the figure."""
    order = list(library_size_by_domain(adata, domain_key=domain_key).index)
    if not order:
        raise InputError(
            f"obs[{domain_key!r}] labels no spot (all NaN), so there is no domain to plot; run tl.domains first, or "
            "pass domain_key= the column that holds the domains"
        )
    domains = adata.obs[domain_key].astype(str).to_numpy()
    sizes = np.maximum(library_size(adata), 1.0)  # an empty spot sits at 1 on the log axis
    palette = domain_palette(adata, domain_key)
    fig = Figure(figsize=(max(4.0, 0.55 * len(order) + 1.5), 3.5), layout="constrained")
    ax = fig.add_subplot()
    boxes = ax.boxplot([sizes[domains == name] for name in order], patch_artist=True, showfliers=False, widths=0.6)
    for patch, name in zip(boxes["boxes"], order, strict=True):
        patch.set_facecolor(palette[name])
    for median in boxes["medians"]:
        median.set_color("black")
    ax.set_xticks(np.arange(1, len(order) + 1), order)
    ax.set_yscale("log")
    ax.set_xlabel(domain_key)
    ax.set_ylabel("library size (counts per spot)")
    share = depth_explained(adata, domain_key=domain_key, batch_key=batch_key)
    title = f"domains explain {share:.0%} of log library size (within slices)" if np.isfinite(share) else ""
    ax.set_title(title or "library size per domain (no spread within slices)", fontsize=11)
    return fig
