"""STAligner's triplets: mutual nearest neighbours across slices as positives, a random own-slice spot as negative.

The MNN search runs in the embedding's own Euclidean geometry, the one the triplet margin loss then acts in (as
in the published method): the spots paired are the spots the loss pulls together.
"""

from __future__ import annotations

import numpy as np

from tissuegraph.gr.mnn import nearest_mnn_partners_both_ways

PAIR_MODES = ("all", "star", "chain")


def slice_pairs(n_slices: int, mode: str = "all", reference: int = 0) -> list[tuple[int, int]]:
    """Which slices to align: every pair (``"all"``), each to ``reference`` (``"star"``) or neighbours (``"chain"``)."""
    if n_slices < 1:
        raise ValueError(f"n_slices must be at least 1 (got {n_slices})")
    if mode not in PAIR_MODES:
        raise ValueError(f"unknown pair mode {mode!r}; expected one of {PAIR_MODES}")
    if mode == "star" and not 0 <= reference < n_slices:
        raise ValueError(f"reference slice {reference} is not in 0..{n_slices - 1}")
    if mode == "all":
        return [(a, b) for a in range(n_slices) for b in range(a + 1, n_slices)]
    if mode == "star":
        return [(reference, b) for b in range(n_slices) if b != reference]
    return [(a, a + 1) for a in range(n_slices - 1)]


def mnn_triplets(
    embedding: np.ndarray,
    slice_codes: np.ndarray,
    pairs: list[tuple[int, int]],
    k: int,
    generator: np.random.Generator,
) -> np.ndarray:
    """(n, 3) int64 global indices (anchor, positive, negative) from MNNs of each slice pair, in both directions.

    Spots of slice ``a`` are those with ``slice_codes == a``. Each anchor's positive is its nearest MNN partner in
    the other slice (``k`` is capped at half the smaller slice, so the match stays mutual); its negative is drawn
    uniformly from its own slice.
    A pair without any MNN (or with an empty slice) adds no triplet.
    """
    embedding = np.asarray(embedding)
    slice_codes = np.asarray(slice_codes)
    if embedding.ndim != 2 or slice_codes.shape != (embedding.shape[0],):
        raise ValueError(f"need an (N, D) embedding and N slice codes (got {embedding.shape}, {slice_codes.shape})")
    points = embedding.astype(np.float64, copy=False)
    members: dict[int, np.ndarray] = {}
    chunks: list[np.ndarray] = []
    for a, b in pairs:
        if a == b:
            raise ValueError(f"a slice pair needs two different slices (got {(a, b)})")
        for code in (a, b):
            if code not in members:
                members[code] = np.flatnonzero(slice_codes == code)
        if len(members[a]) == 0 or len(members[b]) == 0:
            continue
        both_ways = nearest_mnn_partners_both_ways(points[members[a]], points[members[b]], k)
        for anchors, positives, local in (
            (members[a], members[b], both_ways[0]),
            (members[b], members[a], both_ways[1]),
        ):
            if len(local) == 0:
                continue
            negatives = anchors[generator.integers(0, len(anchors), size=len(local))]
            chunks.append(np.stack([anchors[local[:, 0]], positives[local[:, 1]], negatives], axis=1))
    if not chunks:
        return np.empty((0, 3), dtype=np.int64)
    return np.concatenate(chunks).astype(np.int64)
