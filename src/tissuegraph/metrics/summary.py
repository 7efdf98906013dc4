"""All the scores that fit a result: agreement with annotation when there is one, label-free quality when
there is none, batch mixing when there are several slices."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from anndata import AnnData

from tissuegraph.errors import InputError
from tissuegraph.gr.spatial import DEFAULT_BATCH_KEY, slice_column
from tissuegraph.io.validate import quote_examples
from tissuegraph.metrics.batch import batch_kl, median_ilisi, per_slice_scores
from tissuegraph.metrics.clustering import ari, davies_bouldin, nmi, silhouette

#: Where the annotation and the embedding are looked for by default; either may be absent (nothing to score).
TRUTH_KEY = "ground_truth"
EMBEDDING_KEY = "X_tissuegraph"
#: Annotation labels that mark spots outside every region, so they are scored as unannotated.
EXCLUDED_LABELS = ("Excluded",)


def _missing(where: str, key: str, holding: str, present: Iterable[str], fix: str) -> InputError:
    """The error for a key named on purpose that ``where`` lacks, listing the keys it has."""
    have = quote_examples(list(present), n=8) or "none"
    return InputError(f"{where} has no {key!r} holding {holding} (it has: {have}); {fix}")


def scoring_labels(adata: AnnData, key: str = TRUTH_KEY, excluded: tuple[str, ...] = EXCLUDED_LABELS) -> pd.Series:
    """Annotation with the given categories set to NaN, so metrics leave those spots out."""
    truth = adata.obs[key].astype(object)
    return truth.where(~truth.isin(excluded))


def recorded_batch_key(adata: AnnData) -> str:
    """The column naming the slices of a tissuegraph result: the one its run was given (``batch_key=``), else
    ``obs['batch']``; so a result made with ``batch_key='section'`` is never scored or drawn as one slice."""
    run = adata.uns.get("tissuegraph")
    return str(run.get("batch_key", DEFAULT_BATCH_KEY)) if isinstance(run, Mapping) else DEFAULT_BATCH_KEY


def score(
    adata: AnnData,
    *,
    truth_key: str = TRUTH_KEY,
    domain_key: str = "domain",
    batch_key: str | None = None,
    use_rep: str = EMBEDDING_KEY,
    excluded: tuple[str, ...] = EXCLUDED_LABELS,
    seed: int = 0,
) -> dict:
    """Scores of ``obs[domain_key]``: ARI/NMI against ``obs[truth_key]`` (also per slice) when present, else
    silhouette and Davies-Bouldin on ``obsm[use_rep]``; median iLISI and batch KL when there are several slices.

    The default annotation and embedding may be absent (unlabelled data, domains from elsewhere); a ``truth_key``
    or ``use_rep`` named on purpose must exist, so a typo never passes as unlabelled data. Spots annotated with an
    ``excluded`` label (osmFISH's 'Excluded': cells its authors left out of every region) count as unannotated.
    ``batch_key`` defaults to the slice column the result was made with (``recorded_batch_key``).
    """
    batch_key = recorded_batch_key(adata) if batch_key is None else batch_key
    if domain_key not in adata.obs:
        raise _missing(
            "obs",
            domain_key,
            "the domains to score",
            adata.obs.columns,
            "run tl.domains or tl.integrate first, or pass domain_key= the column that holds the domains",
        )
    if truth_key != TRUTH_KEY and truth_key not in adata.obs:
        raise _missing(
            "obs", truth_key, "the annotation", adata.obs.columns, "pass truth_key= the column that holds it"
        )
    if use_rep != EMBEDDING_KEY and use_rep not in adata.obsm:
        raise _missing("obsm", use_rep, "the embedding", adata.obsm.keys(), "pass use_rep= the key that holds it")
    predicted = adata.obs[domain_key].to_numpy()
    out: dict = {}
    truth = scoring_labels(adata, truth_key, excluded).to_numpy() if truth_key in adata.obs else None
    labelled = truth is not None and not pd.isna(truth).all()  # an all-NaN column is no annotation
    if labelled:
        out["ari"], out["nmi"] = ari(truth, predicted), nmi(truth, predicted)
    elif use_rep in adata.obsm:
        out["silhouette"] = silhouette(adata.obsm[use_rep], predicted, seed=seed)
        out["davies_bouldin"] = davies_bouldin(adata.obsm[use_rep], predicted, seed=seed)
    column = slice_column(adata, batch_key)
    batches = np.zeros(adata.n_obs) if column is None else column.to_numpy()
    several_slices = len(np.unique(batches.astype(str))) > 1
    if several_slices and use_rep in adata.obsm:
        out["median_ilisi"] = median_ilisi(adata.obsm[use_rep], batches)
        out["batch_kl"] = batch_kl(adata.obsm[use_rep], batches, seed=seed)
    if labelled and several_slices:  # per-slice agreement needs only labels, no embedding
        out["per_slice"] = per_slice_scores(truth, predicted, batches)
    return out


def format_scores(scores: dict) -> str:
    """One line for the terminal, e.g. ``ARI 0.612  NMI 0.701  median iLISI 1.83  batch KL 0.21``."""
    names = {
        "ari": "ARI",
        "nmi": "NMI",
        "silhouette": "silhouette",
        "davies_bouldin": "Davies-Bouldin",
        "median_ilisi": "median iLISI",
        "batch_kl": "batch KL",
    }
    parts = [f"{label} {scores[key]:.3f}" for key, label in names.items() if key in scores]
    if "per_slice" in scores:
        per = ", ".join(f"{name} {values['ari']:.3f}" for name, values in scores["per_slice"].items())
        parts.append(f"(ARI per slice: {per})")
    return "  ".join(parts)
