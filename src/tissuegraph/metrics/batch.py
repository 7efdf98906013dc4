"""Batch-mixing scores for an embedding of several slices, and clustering scores slice by slice.

Integration must mix slices where they share tissue without smearing domains: iLISI, batch KL and batch ASW
measure the mixing from different angles (local diversity, divergence from the global mix, silhouette), and
per-slice ARI/NMI shows whether one slice carries the average. Neighbourhoods come from exact kNN, never a
dense N x N matrix.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import entr
from sklearn import metrics
from sklearn.neighbors import NearestNeighbors

from tissuegraph.errors import InputError
from tissuegraph.io.validate import check_embedding
from tissuegraph.metrics.clustering import ari, nmi

_CHUNK = 20000  # rows per block in the perplexity search, to bound memory on large inputs


def _prepare(embedding: np.ndarray, batches: np.ndarray | pd.Series) -> tuple[np.ndarray, np.ndarray, int]:
    """Embedding as a 2-D float array, batch labels as codes 0..B-1, and B."""
    x = check_embedding(embedding)
    labels = _slice_names(batches, "to score mixing")
    if labels.shape[0] != x.shape[0]:
        raise InputError(f"embedding has {x.shape[0]} spots but batches has {labels.shape[0]}; give one per spot.")
    if x.shape[0] < 2:
        raise InputError(f"batch mixing needs at least 2 spots (got {x.shape[0]}).")
    codes, names = pd.factorize(labels, sort=False)
    return x, codes.astype(np.int64), len(names)


def _slice_names(batches: np.ndarray | pd.Series, purpose: str) -> pd.Series:
    """Each spot's slice as text; a spot without one (NaN) is refused rather than scored as a slice named 'nan'."""
    labels = pd.Series(np.asarray(batches, dtype=object))
    if labels.isna().any():
        raise InputError(
            f"{int(labels.isna().sum())} spots have no slice label (NaN); every spot needs its slice {purpose}: "
            "fill or drop them"
        )
    return labels.astype(str)


def _need_two_batches(n_batches: int, what: str) -> None:
    if n_batches < 2:
        raise InputError(f"{what} compares batches, but all spots belong to one batch; give the slice of each spot.")


def _perplexity_weights(dist: np.ndarray, perplexity: float, n_iter: int = 40) -> np.ndarray:
    """Row-normalised weights exp(-beta * distance) whose entropy is log(perplexity), beta found by bisection per row.

    Distances are shifted by each row's smallest and scaled by its mean, which leaves the weights unchanged but
    keeps ``exp`` away from underflow, so a fixed search window on log(beta) fits every row.
    """
    d = dist - dist[:, :1]
    scale = d.mean(axis=1, keepdims=True)
    d = d / np.where(scale > 0, scale, 1.0)
    target = np.log(perplexity)
    lo = np.full((d.shape[0], 1), -30.0)
    hi = np.full((d.shape[0], 1), 30.0)
    for _ in range(n_iter):
        mid = 0.5 * (lo + hi)
        p = np.exp(-d * np.exp(mid))
        p /= p.sum(axis=1, keepdims=True)
        too_flat = entr(p).sum(axis=1, keepdims=True) > target  # entropy too high: narrow the kernel
        lo = np.where(too_flat, mid, lo)
        hi = np.where(too_flat, hi, mid)
    p = np.exp(-d * np.exp(0.5 * (lo + hi)))
    return p / p.sum(axis=1, keepdims=True)


def ilisi(
    embedding: np.ndarray,
    batches: np.ndarray | pd.Series,
    perplexity: float = 30.0,
    n_neighbors: int | None = None,
) -> np.ndarray:
    """Per-spot integration LISI: the effective number of batches around each spot (Korsunsky et al. 2019).

    Each spot's ``n_neighbors`` nearest other spots (exact kNN; default ``3 * perplexity``, at most n - 1) are
    weighted by exp(-beta * distance), beta tuned per spot so the weights have the given perplexity (the kernel of
    the reference LISI code); the score is the inverse Simpson index of the batch labels under those weights. It
    runs from 1 (only one batch nearby) to B (all B batches equally present). With a single batch every spot
    scores exactly 1.
    """
    x, codes, n_batches = _prepare(embedding, batches)
    if perplexity <= 0:
        raise InputError(f"perplexity must be positive (got {perplexity}).")
    n = x.shape[0]
    if n_batches == 1:
        return np.ones(n)
    k = int(3 * perplexity) if n_neighbors is None else int(n_neighbors)
    if k < 1:
        raise InputError(f"n_neighbors must be at least 1 (got {n_neighbors}).")
    k = min(k, n - 1)
    dist, nbr = NearestNeighbors(n_neighbors=k).fit(x).kneighbors()  # no query: each spot is left out of its own
    scores = np.empty(n)
    for start in range(0, n, _CHUNK):
        rows = slice(start, min(start + _CHUNK, n))
        w = _perplexity_weights(dist[rows], perplexity)
        m = w.shape[0]
        flat = np.repeat(np.arange(m), k) * n_batches + codes[nbr[rows]].ravel()
        share = np.bincount(flat, weights=w.ravel(), minlength=m * n_batches).reshape(m, n_batches)
        scores[rows] = 1.0 / np.square(share).sum(axis=1)
    return scores


def median_ilisi(
    embedding: np.ndarray,
    batches: np.ndarray | pd.Series,
    perplexity: float = 30.0,
    n_neighbors: int | None = None,
) -> float:
    """Median of the per-spot iLISI (see ``ilisi``): close to B for B well-mixed batches, 1 for separated ones."""
    return float(np.median(ilisi(embedding, batches, perplexity=perplexity, n_neighbors=n_neighbors)))


def batch_kl(
    embedding: np.ndarray,
    batches: np.ndarray | pd.Series,
    n_neighbors: int = 100,
    n_cells: int = 100,
    n_repeats: int = 200,
    seed: int = 0,
) -> float:
    """Batch KL divergence as published (BatchKL of DESC, used to score STAIG and STAligner): how far local batch
    mixes stray from the global one (0 = as mixed as the whole, log2(B) at most for B equal batches).

    ``n_repeats`` times, ``n_cells`` spots are drawn without replacement (seeded); for each, the batch shares q among
    its k = min(5 x B, ``n_neighbors``) nearest spots, itself included, are compared to the batch shares p of the
    whole input by KL(q || p) = sum q log2(q / p) (0 log 0 = 0). The score is the mean over spots and repeats.
    Neighbours are searched once for the distinct drawn spots, so repeats cost little.
    """
    x, codes, n_batches = _prepare(embedding, batches)
    _need_two_batches(n_batches, "batch_kl")
    if min(n_neighbors, n_cells, n_repeats) < 1:
        raise InputError(
            f"n_neighbors, n_cells and n_repeats must be at least 1 (got {n_neighbors}, {n_cells}, {n_repeats})."
        )
    n = x.shape[0]
    k = min(5 * n_batches, n_neighbors, n)
    n_cells = min(n_cells, n)
    rng = np.random.default_rng(seed)
    drawn = np.stack([rng.choice(n, n_cells, replace=False) for _ in range(n_repeats)])
    spots, where = np.unique(drawn, return_inverse=True)
    nbr = NearestNeighbors(n_neighbors=k).fit(x).kneighbors(x[spots], return_distance=False)
    m = len(spots)
    flat = np.repeat(np.arange(m), k) * n_batches + codes[nbr].ravel()
    local = np.bincount(flat, minlength=m * n_batches).reshape(m, n_batches) / k
    overall = np.bincount(codes, minlength=n_batches) / n
    ratio = np.divide(local, overall, out=np.ones_like(local), where=local > 0)
    kl = (local * np.log2(ratio)).sum(axis=1)
    return float(kl[where.reshape(drawn.shape)].mean())


def batch_asw(
    embedding: np.ndarray,
    batches: np.ndarray | pd.Series,
    labels: np.ndarray | pd.Series | None = None,
    *,
    max_spots: int = 20000,
    seed: int = 0,
) -> float:
    """Batch silhouette as in scIB: mean of 1 - |s| with s the silhouette on batch labels; 1 = well mixed.

    With ``labels`` (cell types or domains) the silhouette is taken within each label and the per-label means are
    averaged, so separating domains is not punished; labels present in one batch only are skipped, and spots
    without a label (NaN) are left out. Beyond ``max_spots`` a seeded subsample keeps the cost bounded.
    """
    x, codes, n_batches = _prepare(embedding, batches)
    _need_two_batches(n_batches, "batch_asw")
    if labels is None:
        groups = np.zeros(x.shape[0], dtype=np.int64)
    else:
        named = pd.Series(np.asarray(labels, dtype=object))
        if named.shape[0] != x.shape[0]:
            raise InputError(f"embedding has {x.shape[0]} spots but labels has {named.shape[0]}; give one per spot.")
        groups = pd.factorize(named, use_na_sentinel=True)[0]  # NaN labels get -1
    rows = np.flatnonzero(groups >= 0)
    if rows.size > max_spots:
        rows = np.random.default_rng(seed).choice(rows, max_spots, replace=False)
    x, codes, groups = x[rows], codes[rows], groups[rows]
    per_label = []
    for group in np.unique(groups):
        members = np.flatnonzero(groups == group)
        present = np.unique(codes[members]).size
        if present < 2 or present >= members.size:  # silhouette needs 2 <= n_batches <= n_spots - 1
            continue
        s = metrics.silhouette_samples(x[members], codes[members])
        per_label.append(np.mean(1.0 - np.abs(s)))
    if not per_label:
        raise InputError("batch_asw found no label with spots from at least two batches; check batches and labels.")
    return float(np.mean(per_label))


def per_slice_scores(
    truth: np.ndarray | pd.Series, predicted: np.ndarray | pd.Series, batches: np.ndarray | pd.Series
) -> dict[str, dict[str, float]]:
    """ARI and NMI of each slice on its own, keyed by slice name (in order of first appearance).

    Unannotated spots (NaN truth) are left out; a slice without any annotated spot scores NaN.
    """
    truth = pd.Series(np.asarray(truth, dtype=object))
    predicted = np.asarray(predicted)
    names = _slice_names(batches, "to be scored per slice")
    if not truth.shape[0] == predicted.shape[0] == names.shape[0]:
        raise InputError(
            f"truth, predicted and batches have {truth.shape[0]}, {predicted.shape[0]} and {names.shape[0]} "
            "entries; give one per spot."
        )
    codes, uniques = pd.factorize(names, sort=False)
    scores: dict[str, dict[str, float]] = {}
    for code, name in enumerate(uniques):
        rows = codes == code
        if truth[rows].notna().any():
            scores[str(name)] = {"ari": ari(truth[rows], predicted[rows]), "nmi": nmi(truth[rows], predicted[rows])}
        else:
            scores[str(name)] = {"ari": float("nan"), "nmi": float("nan")}
    return scores
