"""All the scores that fit a result: agreement with annotation when there is one, label-free quality when
there is none, batch mixing when there are several slices."""

from __future__ import annotations

import numpy as np
from anndata import AnnData

from tissuegraph.gr.spatial import slice_column
from tissuegraph.metrics.batch import batch_kl, median_ilisi, per_slice_scores
from tissuegraph.metrics.clustering import ari, davies_bouldin, nmi, silhouette


def score(
    adata: AnnData,
    *,
    truth_key: str = "ground_truth",
    domain_key: str = "domain",
    batch_key: str = "batch",
    use_rep: str = "X_tissuegraph",
    seed: int = 0,
) -> dict:
    """Scores of ``obs[domain_key]``: ARI/NMI against ``obs[truth_key]`` (also per slice) when present, else
    silhouette and Davies-Bouldin on ``obsm[use_rep]``; median iLISI and batch KL when there are several slices.
    """
    predicted = adata.obs[domain_key].to_numpy()
    out: dict = {}
    labelled = truth_key in adata.obs and adata.obs[truth_key].notna().any()  # an all-NaN column is no annotation
    if labelled:
        truth = adata.obs[truth_key].to_numpy()
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
        out["per_slice"] = per_slice_scores(adata.obs[truth_key].to_numpy(), predicted, batches)
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
