"""Benchmark ``tissuegraph integrate`` (STAIG and STAligner) on the shared real multi-slice datasets.

Every run is a fresh ``tissuegraph integrate`` process, so wall seconds and peak RSS are what a user sees.

    python benchmarks/bench_integrate.py                          # every job, both methods, seeds 0-2
    python benchmarks/bench_integrate.py --only dlpfc4 --methods staig --seeds 0
    python benchmarks/bench_integrate.py --only large --large-spots 20000   # four 20k-spot slices, one seed

Jobs: DLPFC 151673-151676 jointly (K = 7), the pair 151675 + 151676 (K = 7), STARmap mPFC's three slices
(K = 4), and the unlabelled 4-section ST breast cancer set (K = 4 by convention; iLISI and silhouette only).
``--only large`` (not in the default run) tiles each of the four DLPFC sections side by side into a slice of
``--large-spots`` spots and integrates the four: time and memory at scale.
Labels are read only to score the result.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import anndata as ad
import pandas as pd

from tissuegraph import metrics

from bench_domains import DATA, DLPFC, environment, large_input, run_process

JOBS = {
    "dlpfc4": ("DLPFC 151673-151676", [DATA / f"dlpfc_{s}.h5ad" for s in DLPFC], 7),
    "dlpfc_pair": ("DLPFC 151675+151676", [DATA / f"dlpfc_{s}.h5ad" for s in DLPFC[2:]], 7),
    "starmap": ("STARmap mPFC (3 slices)", [DATA / "starmap_mpfc_3slices.h5ad"], 4),
    "breast": ("ST breast cancer (4 sections, unlabelled)", [DATA / "st_breast_cancer_4layers_unlabelled.h5ad"], 4),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=[*sorted(JOBS), "large"], action="append")
    parser.add_argument("--methods", nargs="+", choices=["staig", "staligner"], default=["staig", "staligner"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--extra", default="", help="extra CLI options, e.g. '--epochs 100'")
    parser.add_argument("--large-spots", type=int, default=20000, help="spots per slice of the 'large' job")
    args = parser.parse_args()
    print(environment(), flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "joint.h5ad"
        for job in args.only or list(JOBS):
            if job == "large":  # each DLPFC section tiled to --large-spots spots: how time and memory grow
                inputs = [large_input(Path(tmp), args.large_spots, (section,)) for section in DLPFC]
                name, k = f"DLPFC 151673-151676, each tiled to {args.large_spots // 1000}k spots", 7
            else:
                name, inputs, k = JOBS[job]
            for method in args.methods:
                for seed in args.seeds[:1] if job == "large" else args.seeds:
                    cli = ["integrate", *map(str, inputs), "--method", method, "--n-domains", str(k)]
                    wall, rss = run_process([*cli, "--seed", str(seed), "--out", str(out), *args.extra.split()])
                    scores = metrics.score(ad.read_h5ad(out), seed=seed)
                    row = dict(job=name, method=method, seed=seed, wall_s=wall, peak_rss_gib=rss)
                    row.update({key: value for key, value in scores.items() if key != "per_slice"})
                    for slice_name, values in scores.get("per_slice", {}).items():
                        row[f"ARI {slice_name}"] = values["ari"]
                    rows.append(row)
                    print(
                        f"{name} {method} seed {seed}: {metrics.format_scores(scores)}  {wall:.1f} s  {rss:.2f} GiB",
                        flush=True,
                    )
    table = pd.DataFrame(rows)
    print("\n" + table.to_string(index=False, float_format="%.3f", na_rep=""))
    per_slice = [c for c in table if c.startswith("ARI ")]  # one column per slice name, NaN for other jobs' rows
    wanted = ("ari", *per_slice, "nmi", "median_ilisi", "batch_kl", "silhouette", "wall_s", "peak_rss_gib")
    columns = [c for c in wanted if c in table]
    summary = table.groupby(["job", "method"], sort=False)[columns].mean()  # NaN (unlabelled, other jobs) skipped
    print("\nmeans over seeds:\n" + summary.to_string(float_format="%.3f", na_rep=""))


if __name__ == "__main__":
    main()
