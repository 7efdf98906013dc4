"""Clustering scores. Unannotated spots (NaN truth) are left out; label-free scores subsample large inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn import metrics

from tissuegraph.errors import InputError
from tissuegraph.io.validate import check_embedding


def _labelled_rows(labels: np.ndarray | pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Which spots carry a label (NaN/None ones are left out of every score) and those labels as text."""
    labels = pd.Series(np.asarray(labels, dtype=object))
    keep = labels.notna().to_numpy()
    return keep, labels[keep].astype(str).to_numpy()


def _annotated(truth: np.ndarray | pd.Series, pred: np.ndarray | pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Both label sets as text over the spots that carry both: a spot without a domain (NaN) is left out as an
    unannotated one is, never counted as a domain called 'nan'."""
    truth, pred = pd.Series(np.asarray(truth, dtype=object)), pd.Series(np.asarray(pred, dtype=object))
    if truth.shape[0] != pred.shape[0]:
        raise InputError(f"truth has {truth.shape[0]} labels but prediction has {pred.shape[0]}; give one per spot.")
    keep = (truth.notna() & pred.notna()).to_numpy()
    return truth[keep].astype(str).to_numpy(), pred[keep].astype(str).to_numpy()


def ari(truth: np.ndarray | pd.Series, pred: np.ndarray | pd.Series) -> float:
    """Adjusted Rand index over the spots with both an annotation and a domain (NaN when there are none: there is
    nothing to agree with)."""
    truth, pred = _annotated(truth, pred)
    return float(metrics.adjusted_rand_score(truth, pred)) if truth.size else float("nan")


def nmi(truth: np.ndarray | pd.Series, pred: np.ndarray | pd.Series) -> float:
    """Normalised mutual information (arithmetic mean) over the spots with both an annotation and a domain (NaN when
    there are none)."""
    truth, pred = _annotated(truth, pred)
    return float(metrics.normalized_mutual_info_score(truth, pred)) if truth.size else float("nan")


def _subsample(x: np.ndarray, labels: np.ndarray, max_spots: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if x.shape[0] <= max_spots:
        return x, labels
    rows = np.random.default_rng(seed).choice(x.shape[0], max_spots, replace=False)
    return x[rows], labels[rows]


def _defined(labels: np.ndarray) -> bool:
    """Silhouette and Davies-Bouldin need at least two groups and fewer groups than spots."""
    return 2 <= np.unique(labels.astype(str)).size < labels.size


def _labelled(embedding: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The spots that have a label (NaN/None ones are left out, as for ARI), labels as text."""
    embedding = check_embedding(embedding)
    if embedding.shape[0] != len(labels):
        raise InputError(f"the embedding has {embedding.shape[0]} rows but there are {len(labels)} labels")
    keep, text = _labelled_rows(labels)
    return embedding[keep], text


def silhouette(embedding: np.ndarray, labels: np.ndarray, *, max_spots: int = 20000, seed: int = 0) -> float:
    """Mean silhouette width (euclidean) over labelled spots; a seeded subsample beyond ``max_spots`` keeps memory
    bounded. NaN when undefined (a single domain, or every spot its own)."""
    x, y = _subsample(*_labelled(embedding, labels), max_spots, seed)
    return float(metrics.silhouette_score(x, y)) if _defined(y) else float("nan")


def davies_bouldin(embedding: np.ndarray, labels: np.ndarray, *, max_spots: int = 20000, seed: int = 0) -> float:
    """Davies-Bouldin index (lower is better) over labelled spots, subsampled as the silhouette; NaN if undefined."""
    x, y = _subsample(*_labelled(embedding, labels), max_spots, seed)
    return float(metrics.davies_bouldin_score(x, y)) if _defined(y) else float("nan")
