"""Scores: agreement with annotation (ARI, NMI), label-free quality (silhouette, Davies-Bouldin), batch mixing,
and how far the domains follow sequencing depth."""

from tissuegraph.metrics.batch import batch_asw, batch_kl, ilisi, median_ilisi, per_slice_scores
from tissuegraph.metrics.clustering import ari, davies_bouldin, nmi, silhouette
from tissuegraph.metrics.depth import depth_explained, library_size, library_size_by_domain
from tissuegraph.metrics.summary import TRUTH_KEY, format_scores, recorded_batch_key, score, scoring_labels

__all__ = [
    "ari",
    "nmi",
    "silhouette",
    "davies_bouldin",
    "ilisi",
    "median_ilisi",
    "batch_kl",
    "batch_asw",
    "per_slice_scores",
    "score",
    "recorded_batch_key",
    "scoring_labels",
    "TRUTH_KEY",
    "format_scores",
    "depth_explained",
    "library_size",
    "library_size_by_domain",
]
