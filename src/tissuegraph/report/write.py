"""``write_report``: check the result, build every section in memory, then write the page atomically."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from anndata import AnnData

from tissuegraph import metrics
from tissuegraph.errors import InputError
from tissuegraph.io.validate import check_embedding
from tissuegraph.io.write import write_atomically
from tissuegraph.report import sections
from tissuegraph.report.html import page

#: What tl.domains and tl.integrate always write; without them the AnnData is not a tissuegraph result.
REQUIRED = (("obs", "domain"), ("obsm", "X_tissuegraph"), ("uns", "tissuegraph"))


def check_result(adata: AnnData) -> None:
    """InputError naming what is missing when ``adata`` is not a result of tl.domains / tl.integrate."""
    missing = [f"{where}[{key!r}]" for where, key in REQUIRED if key not in getattr(adata, where)]
    rerun = "run `tissuegraph domains` or `tissuegraph integrate` (tl.domains / tl.integrate) first and report on"
    if missing:
        raise InputError(f"not a tissuegraph result (no {', '.join(missing)}); {rerun} what they wrote")
    if not isinstance(adata.uns["tissuegraph"], Mapping):
        raise InputError(f"uns['tissuegraph'] is not the record of a run (it holds text or a value); {rerun} that")
    if not adata.obs["domain"].notna().any():
        raise InputError(f"obs['domain'] holds no domain (every value is missing); {rerun} that")
    check_embedding(adata.obsm["X_tissuegraph"], adata.obs_names, "obsm['X_tissuegraph']")


def write_report(adata: AnnData, path: str | Path, *, title: str | None = None) -> Path:
    """Write one self-contained HTML report of a result to ``path`` and return the path.

    Sections: run settings, data, spatial domains (over the H&E image where there is one, ground truth beside
    them when annotated), UMAP by domain and slice, metrics, library size per domain, marker genes and training
    (loss curve, timings).
    Figures are inline PNGs and nothing is loaded from outside, so the file opens anywhere, offline. The
    UMAP coordinates (``obsm['X_umap']``) and, when none are stored, the domain markers
    (``uns['tissuegraph_markers']``) are kept in ``adata``, as ``pl.umap`` and ``tl.markers`` do. The page
    is built in memory and written atomically: a failure never leaves a partial report behind.
    """
    from tissuegraph import __version__  # set after the package's imports, so read at call time

    check_result(adata)
    run = adata.uns["tissuegraph"]
    n_slices = len(sections.slices(adata, metrics.recorded_batch_key(adata)))
    method, mode = sections.plain(run.get("method", "?")), sections.plain(run.get("mode", "?"))
    subtitle = (
        f"{adata.obs['domain'].nunique()} domains in {adata.n_obs:,} spots of {n_slices} "
        f"slice{'s' if n_slices > 1 else ''}; method {method}, {mode} mode"
    )
    parts = [
        sections.run_settings(run),
        sections.data_summary(adata),
        sections.domain_maps(adata),
        sections.umap_plots(adata),
        sections.scores(adata),
        sections.library_size(adata),
        sections.marker_genes(adata),
        sections.training(run, adata),
    ]
    footer = f"tissuegraph {__version__}, report written {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}"
    document = page(title or f"tissuegraph report: {method}", subtitle, parts, footer)

    return write_atomically(path, lambda tmp: tmp.write_text(document, encoding="utf-8"))
