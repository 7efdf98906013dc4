"""Dot plot of the stored marker genes: which genes mark which domain, and how widely they are expressed."""

from __future__ import annotations

import numpy as np
from anndata import AnnData
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from scipy import sparse

from tissuegraph.errors import InputError
from tissuegraph.labels import labels_as_text
from tissuegraph.pl.text import literal_text
from tissuegraph.tl.markers import log_normalised, marker_store

#: Marker area (points^2) of a dot for a gene expressed in every spot of a domain.
MAX_DOT = 220.0


@literal_text
def marker_dotplot(
    adata: AnnData, *, n_genes: int = 5, domain_key: str = "domain", standard_scale: bool = False
) -> Figure:
    """Top ``n_genes`` markers of every domain (from ``tl.markers``) against every domain.

    One row per domain (top to bottom in the stored order), one column per gene (each domain's markers in
    turn, a gene shown once). Dot size: fraction of the domain's spots expressing the gene; colour: mean
    log-normalised expression in the domain (scaled to [0, 1] per gene with ``standard_scale``). Works for
    the sub-domains of ``tl.subdomains`` too (``domain_key='subdomain'``). Returns the figure (never shown).
    """
    if n_genes < 1:
        raise InputError(f"n_genes must be at least 1 (got {n_genes})")
    store = marker_store(adata, domain_key)
    groups = [str(group) for group in store["groups"]]
    records = store["records"]
    group_of = np.asarray(records["group"]).astype(str)
    ranks = np.asarray(records["rank"])
    gene_of = np.asarray(records["gene"]).astype(str)
    genes: list[str] = []
    for group in groups:
        rows = np.flatnonzero(group_of == group)
        for gene in gene_of[rows[np.argsort(ranks[rows], kind="stable")][:n_genes]]:
            if gene not in genes:
                genes.append(gene)
    if not adata.var_names.is_unique:
        repeated = adata.var_names[adata.var_names.duplicated()].unique()
        raise InputError(
            f"gene names repeat in var_names ({', '.join(map(str, repeated[:3]))}), so a marker gene is ambiguous; "
            "call adata.var_names_make_unique() and run tl.markers again"
        )
    columns = adata.var_names.astype(str).get_indexer(genes)
    if (columns < 0).any():
        missing = [gene for gene, col in zip(genes, columns, strict=True) if col < 0]
        raise InputError(f"marker genes no longer in var_names: {', '.join(missing[:5])}; run tl.markers again")
    if domain_key not in adata.obs:
        raise InputError(f"obs[{domain_key!r}] not found; the markers were computed for a column that is gone")

    spot_group = labels_as_text(adata.obs[domain_key], missing="")
    rows = np.flatnonzero(np.isin(spot_group, groups))
    expression = log_normalised(adata.X[rows])[:, columns]
    expression = expression.toarray() if sparse.issparse(expression) else np.asarray(expression)
    mean = np.zeros((len(groups), len(genes)))
    fraction = np.zeros((len(groups), len(genes)))
    for i, group in enumerate(groups):
        block = expression[spot_group[rows] == group]
        if block.shape[0]:
            mean[i], fraction[i] = block.mean(axis=0), (block > 0).mean(axis=0)
    colour = mean
    if standard_scale:
        low, high = mean.min(axis=0), mean.max(axis=0)
        colour = (mean - low) / np.where(high > low, high - low, 1.0)

    fig = Figure(figsize=(0.32 * len(genes) + 3.8, 0.34 * len(groups) + 2.0), layout="constrained")
    ax = fig.add_subplot()
    x, y = np.meshgrid(np.arange(len(genes)), np.arange(len(groups)))
    points = ax.scatter(
        x.ravel(),
        y.ravel(),
        s=fraction.ravel() * MAX_DOT,
        c=colour.ravel(),
        cmap="Reds",
        vmin=0.0,
        edgecolors="0.4",
        linewidths=0.4,
    )
    ax.set_xticks(np.arange(len(genes)), genes, rotation=90)
    ax.set_yticks(np.arange(len(groups)), groups)
    ax.set_xlim(-0.6, len(genes) - 0.4)
    ax.set_ylim(len(groups) - 0.4, -0.6)
    ax.set_ylabel(domain_key)
    ax.set_title(f"top {n_genes} markers per {domain_key}")
    fig.colorbar(points, ax=ax, shrink=0.8, label="scaled mean expression" if standard_scale else "mean log1p(CP10k)")
    handles = [
        Line2D([], [], marker="o", linestyle="", markersize=np.sqrt(f * MAX_DOT), color="0.5", label=f"{f:.0%}")
        for f in (0.25, 0.5, 0.75, 1.0)
    ]
    fig.legend(handles=handles, title="spots expressing", loc="outside right upper", frameon=False, labelspacing=1.1)
    return fig
