"""STAIG integration's temperature and masking read off each slice's own HVGs instead of the genes the slices share.

    python benchmarks/compare_platform_tau.py               # DLPFC x4, the 151675+151676 pair, ST breast, seeds 0-2

The default rule sets tau = genes / 100 (clipped to [1, 30]) and the masking rates (10% / 20% from 1000 genes, else
1% / 2%) from the genes the model reads; in integration that is the intersection of the slices' HVGs. The rule's
reason is the platform (thousands of noisy sequencing genes against tens to hundreds of imaging genes), but the
intersection also shrinks when files keep different gene subsets: the four DLPFC files (Visium, 3000 HVGs each)
share 512 of them, so they are treated like an imaging panel (tau 5.1, 1% / 2% masking). The alternative reads the
same rule off each slice's own HVG count, min(3000, genes the slice measured), smallest over the slices; it is the
same number for every single slice and for slices that measure one panel (STARmap), and 3000 for the three jobs here.

Decision rule, written before anything was scored: adopt the alternative if, averaged over the three jobs, the
median iLISI (these are sections of one donor or tumour, which should mix) rises and the seeds' domains agree at
least as well (mean ARI between the three seeds' partitions); both are label-free. Labels are read only afterwards,
to score. Diagnostic only: nothing here sets a default.
"""

from __future__ import annotations

import anndata as ad

from tissuegraph.tl import StaigSettings

import label_free


def platform_settings(slices: list[ad.AnnData]) -> dict:
    """The default rule applied to each slice's own HVG count (the smallest over the slices)."""
    genes = min(min(StaigSettings.n_top_genes, adata.n_vars) for adata in slices)
    settings = StaigSettings.from_data(genes)
    return dict(tau=settings.tau, feature_mask_rates=settings.feature_mask_rates)


def ways(slices: list[ad.AnnData]) -> dict[str, dict]:
    return {"intersection (default)": {}, "per-slice HVGs": platform_settings(slices)}


if __name__ == "__main__":
    label_free.main(__doc__, ways, "staig", ["dlpfc4", "dlpfc_pair", "breast"])
