"""The report's sections, each built from the result alone: (anchor, heading, HTML body)."""

from __future__ import annotations

import numbers
from collections.abc import Mapping

import numpy as np
import pandas as pd
from anndata import AnnData

from tissuegraph import metrics, pl
from tissuegraph.errors import InputError
from tissuegraph.im.features import image_record_key
from tissuegraph.pl.spatial import slices, tissue_image
from tissuegraph.pp.expression import library_size_source, library_sizes
from tissuegraph.report.figures import png_uri
from tissuegraph.report.html import esc, figure, note, table
from tissuegraph.tl.markers import (
    MARKERS_KEY,
    marker_column,
    marker_store,
    marker_table,
    markers,
    markers_are_current,
)

Section = tuple[str, str, str]

#: Entries of ``uns['tissuegraph']`` shown in their own sections rather than in the run table.
_SHOWN_ELSEWHERE = ("settings", "loss", "timings", "slices")
#: Markers per domain in the tables (the dot plot shows the top 5).
N_MARKERS = 8


def plain(value: object) -> str:
    """A stored setting as short text: h5ad turns lists into arrays and numbers into numpy scalars."""
    if isinstance(value, np.ndarray):
        return ", ".join(plain(item) for item in value.tolist())
    if isinstance(value, (list, tuple)):
        return ", ".join(plain(item) for item in value)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _truth(adata: AnnData) -> pd.Series | None:
    """The annotation as it is scored ('Excluded' as unannotated), so counts and maps agree with the metrics."""
    return metrics.scoring_labels(adata) if metrics.TRUTH_KEY in adata.obs else None


def _score(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.3f}"


def run_settings(run: Mapping) -> Section:
    """What was run and with which knobs, so a result can be reproduced from its report."""
    top = [(key, plain(value)) for key, value in run.items() if key not in _SHOWN_ELSEWHERE]
    settings = run.get("settings", {})
    body = '<div class="row">' + table(("run", "value"), top)
    if isinstance(settings, Mapping) and settings:
        body += table(("model setting", "value"), [(key, plain(value)) for key, value in settings.items()])
    return "settings", "Run settings", body + "</div>"


def data_summary(adata: AnnData) -> Section:
    """Spots, genes and, per slice, how many spots, annotated spots and whether an H&E image came with it."""
    groups = slices(adata, metrics.recorded_batch_key(adata))
    truth = _truth(adata)
    rows = []
    for name, index in groups:
        image = tissue_image(adata, name, len(groups)) is not None
        annotated = "none" if truth is None else f"{int(truth.iloc[index].notna().sum()):,}"
        rows.append((name or "(one slice)", f"{index.size:,}", annotated, "yes" if image else "no"))
    facts = [
        ("spots", f"{adata.n_obs:,}"),
        ("genes", f"{adata.n_vars:,}"),
        ("slices", f"{len(groups)}"),
        ("domains", f"{adata.obs['domain'].nunique()}"),
    ]
    body = '<div class="row">' + table(("data", ""), facts, numeric=True)
    body += table(("slice", "spots", "annotated spots", "H&E image"), rows, numeric=True) + "</div>"
    return "data", "Data", body


def domain_maps(adata: AnnData) -> Section:
    """Domains on the tissue (over the H&E image where there is one), ground truth beside them when annotated.

    One figure per slice, stacked, so every slice is drawn large enough to read however many there are; every
    figure takes its colours from the whole result, so a domain has one colour in every slice (a slice's view
    drops the domains it lacks, which would shift the colours of the rest).
    """
    batch_key = metrics.recorded_batch_key(adata)
    groups = slices(adata, batch_key)
    palette = pl.domain_palette(adata)
    truth = _truth(adata)
    caption = "Domains on the tissue"
    truth_palette = None
    if truth is not None and truth.notna().any():  # matched on the whole result: one colour per label in every slice
        caption += "; ground-truth regions take the colour of the domain they overlap most"
        truth_palette = pl.matched_palette(truth, adata.obs["domain"], palette)
    body = "".join(
        figure(
            png_uri(
                pl.domains(
                    adata[rows],
                    image=tissue_image(adata, name, len(groups), warn=False) is not None,  # data_summary warned
                    batch_key=batch_key,
                    palette=palette,
                    truth_palette=truth_palette,
                )
            ),
            f"spatial domains of slice {name}" if name else "spatial domains on the tissue",
        )
        for name, rows in groups
    )
    return "domains", "Spatial domains", body + note(caption + ".")


def umap_plots(adata: AnnData) -> Section:
    """The embedding by domain, and by slice when there are several (well mixed slices overlap)."""
    several = len(slices(adata, metrics.recorded_batch_key(adata))) > 1
    caption = "UMAP of obsm['X_tissuegraph'] coloured by domain" + (" and by slice." if several else ".")
    seed = int(adata.uns["tissuegraph"].get("seed", 0))
    umap = pl.umap(adata, seed=seed, batch_key=metrics.recorded_batch_key(adata))
    return "umap", "UMAP", figure(png_uri(umap), "UMAP of the embedding", caption)


def scores(adata: AnnData) -> Section:
    """Agreement with the annotation, or label-free quality without one; batch mixing for several slices."""
    found = metrics.score(adata)
    rows = []
    if "ari" in found:
        rows += [("ARI", _score(found["ari"]), "agreement with obs['ground_truth'], 1 = identical, 0 = chance")]
        rows += [("NMI", _score(found["nmi"]), "shared information with obs['ground_truth'], 1 = identical")]
    if "silhouette" in found:
        rows += [("silhouette", _score(found["silhouette"]), "no annotation: domain separation, higher is better")]
        rows += [("Davies-Bouldin", _score(found["davies_bouldin"]), "no annotation: lower is better")]
    if "median_ilisi" in found:
        n = len(slices(adata, metrics.recorded_batch_key(adata)))
        rows += [
            (
                "median iLISI",
                _score(found["median_ilisi"]),
                f"slice mixing, 1 = unmixed, up to {n} when slices of equal size mix fully",
            )
        ]
        rows += [("batch KL", _score(found["batch_kl"]), "slice mixing, 0 = fully mixed")]
    body = table(("metric", "value", "meaning"), rows)
    if "per_slice" in found:
        per_slice = [(name, _score(s["ari"]), _score(s["nmi"])) for name, s in found["per_slice"].items()]
        body += "<h3>Per slice</h3>" + table(("slice", "ARI", "NMI"), per_slice, numeric=True)
    return "metrics", "Metrics", body


def library_size(adata: AnnData) -> Section:
    """Sequencing depth per domain: a domain set apart mainly by depth may be technical, not a tissue region."""
    per_domain = metrics.library_size_by_domain(adata)
    key = metrics.recorded_batch_key(adata)
    rows = [
        (name, f"{int(row.spots):,}", f"{row.median_library_size:,.0f}", f"{row.median_genes_detected:,.0f}")
        for name, row in per_domain.iterrows()
    ]
    text = (
        f"Library size: {library_size_source(library_sizes(adata))}; genes detected: among the genes in X. Share of "
        "the variance of log library size within slices that the domains explain (eta squared, 0 = none, 1 = all): "
        f"{_score(metrics.depth_explained(adata, batch_key=key))}"
    )
    truth = _truth(adata)
    if truth is not None and truth.notna().any():
        annotated = adata[truth.notna().to_numpy()]  # without 'Excluded', so it is no region of the truth
        text += (
            f"; on the annotated spots, domains {_score(metrics.depth_explained(annotated, batch_key=key))} and "
            f"ground truth {_score(metrics.depth_explained(annotated, domain_key='ground_truth', batch_key=key))}"
        )
    text += (
        ". Tissue regions differ in depth too, so no value is wrong in itself: a domain that stands out here "
        "without marker genes of its own may follow capture efficiency rather than tissue."
    )
    body = '<div class="row">' + figure(png_uri(pl.library_sizes(adata, batch_key=key)), "library size per domain")
    body += table(("domain", "spots", "median library size", "median genes detected"), rows, numeric=True)
    return "depth", "Library size", body + "</div>" + note(text)


def _marker_data(adata: AnnData) -> AnnData:
    """Counts and domains with the domain markers: the stored ones while they describe the current domains and hold
    the report's ``N_MARKERS`` genes per domain, else computed now (and kept in ``adata`` unless it holds markers of
    another column, so a second report is faster)."""
    work = AnnData(X=adata.X, obs=adata.obs[["domain"]], var=pd.DataFrame(index=adata.var_names))
    stored = adata.uns.get(MARKERS_KEY)
    for_domains = isinstance(stored, Mapping) and marker_column(stored) == "domain"
    enough = for_domains and int(stored.get("params", {}).get("n_genes", 0)) >= N_MARKERS
    if enough and markers_are_current(adata, stored):
        work.uns[MARKERS_KEY] = stored
        return work
    markers(work)
    if stored is None or for_domains:
        adata.uns[MARKERS_KEY] = work.uns[MARKERS_KEY]
    return work


def marker_genes(adata: AnnData) -> Section:
    """Dot plot of the top markers and, per domain, its best genes with fold change and adjusted p-value."""
    try:
        work = _marker_data(adata)
        dotplot = png_uri(pl.marker_dotplot(work, n_genes=5))
    except InputError as error:  # e.g. every domain but one is a single spot: the rest of the report stands
        return "markers", "Marker genes", note(f"no marker genes: {error}")
    store = marker_store(work, "domain")
    method = plain(store["params"]["method"])
    body = figure(
        dotplot,
        "dot plot of the top marker genes per domain",
        f"Top 5 markers per domain ({method} test of each domain against all other spots).",
    )
    cards = []
    for group in store["groups"]:
        top = marker_table(work, str(group), n=N_MARKERS)
        rows = [
            (gene, f"{lfc:.2f}", f"{p:.1e}", f"{pct:.0%}")
            for gene, lfc, p, pct in top[["gene", "logfoldchange", "pvals_adj", "pct_in"]].itertuples(index=False)
        ]
        cards.append(
            f"<div><h3>domain {esc(group)}</h3>{table(('gene', 'logFC', 'adj. p', 'in'), rows, numeric=True)}</div>"
        )
    body += note(f"Top {N_MARKERS} per domain; logFC: log2 fold change; in: share of the domain's spots expressing it.")
    return "markers", "Marker genes", body + f'<div class="cards">{"".join(cards)}</div>'


def training(run: Mapping, adata: AnnData) -> Section:
    """The loss curve (did it converge?) and where the time went."""
    stored = run.get("timings", {})
    timings = {
        str(step).removesuffix("_s"): float(seconds)
        for step, seconds in (stored.items() if isinstance(stored, Mapping) else [])
        if isinstance(seconds, numbers.Real)
    }
    image = adata.uns.get(image_record_key(), {})
    if run.get("mode") == "image" and "image_features" not in timings and isinstance(image, Mapping):
        # computed before training (by the CLI, or an image-features run): still part of what this result cost
        stages = [float(value) for key, value in image.items() if str(key).endswith("_s")]
        if stages:
            timings["image features"] = sum(stages)
    rows = [(step, f"{seconds:.1f}") for step, seconds in timings.items()]
    total = sum(timings.values())
    if np.asarray(run.get("loss", [])).size:
        body = '<div class="row">' + figure(png_uri(pl.loss_curve(adata)), "training loss per epoch")
    else:
        body = '<div class="row">' + note("No loss curve is stored with this result.")
    if rows:
        body += (
            "<div><h3>Timings</h3>"
            + table(("step", "seconds"), [*rows, ("total", f"{total:.1f}")], numeric=True, total=True)
            + "</div>"
        )
    return "training", "Training", body + "</div>"
