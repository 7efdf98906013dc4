"""The small real dataset that ships inside the package, so the whole job runs without any download."""

from __future__ import annotations

from importlib.resources import files

import anndata as ad
from anndata import AnnData

from tissuegraph.metrics.summary import scoring_labels

__all__ = ["DEMO_N_DOMAINS", "osmfish", "scoring_labels"]  # scoring_labels: the metrics' rule, offered beside the data

DEMO_N_DOMAINS = 11  # anatomical regions left after dropping 'Excluded'


def osmfish() -> AnnData:
    """osmFISH mouse somatosensory cortex (Codeluppi et al. 2018): 6,471 cells x 33 genes, 12 annotated regions.

    ``obs['ground_truth']`` keeps the original regions including 'Excluded'; score with
    ``scoring_labels`` so that those cells count as unannotated, as benchmarks on this dataset do.
    """
    with files("tissuegraph").joinpath("data/osmfish_sscortex.h5ad").open("rb") as handle:
        return ad.read_h5ad(handle)
