"""Do the fast contrastive denominators keep accuracy? Exact (tiled) vs moments vs sampled on real data, gene mode.

    python benchmarks/bench_negatives.py                          # DLPFC 151673-151676 + STARmap, seed 0
    python benchmarks/bench_negatives.py --seeds 0 1 2

Every variant runs the same gene-mode pipeline (``tl.domains(..., image=False)``: the DLPFC slices carry an H&E
image, which would otherwise switch on image mode) with the same seed; only ``denominator`` differs (the moment
expansion only where the default tau is >= 10). Labels are only used to score.
"""

from __future__ import annotations

import argparse
import time

import anndata as ad
import pandas as pd

from tissuegraph import metrics, tl
from tissuegraph.nn.contrastive import MOMENT_MIN_TAU
from tissuegraph.tl import StaigSettings

from bench_domains import DATA, DLPFC

DATASETS = {f"DLPFC {s}": (f"dlpfc_{s}.h5ad", 7) for s in DLPFC} | {"STARmap mPFC": ("starmap_mpfc_3slices.h5ad", 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    rows = []
    for name, (file, k) in DATASETS.items():
        source = ad.read_h5ad(DATA / file)
        for seed in args.seeds:
            soft = StaigSettings.from_data(source.n_vars).tau >= MOMENT_MIN_TAU
            for variant in ("moments", "exact", "sampled") if soft else ("exact", "sampled"):
                adata = source.copy()
                start = time.perf_counter()
                tl.domains(adata, k, seed=seed, denominator=variant, image=False)
                wall = time.perf_counter() - start
                ari = metrics.ari(adata.obs["ground_truth"], adata.obs["domain"])
                rows.append(dict(dataset=name, seed=seed, denominator=variant, ARI=ari, seconds=wall))
                print(f"{name:14s} seed {seed} {variant:8s} ARI {ari:.3f}  {wall:6.1f} s", flush=True)
    table = pd.DataFrame(rows)
    print(
        "\n"
        + table.pivot_table(index=["dataset", "seed"], columns="denominator", values=["ARI", "seconds"]).to_string(
            float_format="%.3f"
        )
    )
    print("\nmean:\n" + table.groupby("denominator")[["ARI", "seconds"]].mean().to_string(float_format="%.3f"))


if __name__ == "__main__":
    main()
