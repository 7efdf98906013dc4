"""Pre-registered label-free comparisons of two ways to run ``tl.integrate``: the shared run-and-report loop.

A comparison script names its jobs, the ways (keyword overrides per job) and the method; this runs every way on
every job and seed, then prints the label-free measures its decision rule reads (median iLISI, mean over seeds;
seed agreement, the mean ARI between the seeds' partitions) before the ARI, which is scored only afterwards.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from itertools import combinations

import anndata as ad
import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score

from tissuegraph import metrics, tl

from bench_domains import DATA, DLPFC, environment

JOBS = {
    "dlpfc4": ([f"dlpfc_{s}" for s in DLPFC], 7),
    "dlpfc_pair": ([f"dlpfc_{s}" for s in DLPFC[2:]], 7),
    "starmap": (["starmap_mpfc_3slices"], 4),
    "breast": (["st_breast_cancer_4layers_unlabelled"], 4),
}


def main(doc: str, ways: Callable[[list[ad.AnnData]], dict[str, dict]], method: str, jobs: list[str]) -> None:
    """A comparison script's command line over ``jobs`` (keys of JOBS): ``--only`` picks some, ``--seeds`` the seeds."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", choices=sorted(jobs), action="append")
    args = parser.parse_args()
    print(environment(), flush=True)
    compare({job: JOBS[job] for job in args.only or jobs}, ways, method, args.seeds)


def compare(
    jobs: dict[str, tuple[list[str], int]],
    ways: Callable[[list[ad.AnnData]], dict[str, dict]],
    method: str,
    seeds: list[int],
) -> None:
    """Run each way of ``ways(slices)`` on each job (file names under DATA, number of domains) and seed; print."""
    rows = []
    for job, (names, n_domains) in jobs.items():
        slices = [ad.read_h5ad(DATA / f"{name}.h5ad") for name in names]
        labelled = all("ground_truth" in adata.obs for adata in slices)
        truth = np.concatenate([adata.obs.pop("ground_truth").to_numpy() for adata in slices]) if labelled else None
        job_ways = ways(slices)
        partitions: dict[str, list[np.ndarray]] = {way: [] for way in job_ways}
        for seed in seeds:
            for way, overrides in job_ways.items():
                result = tl.integrate(slices, n_domains, method=method, seed=seed, **overrides)
                scores = metrics.score(result, seed=seed)  # no annotation in result: mixing and silhouette only
                domains = result.obs["domain"].to_numpy()
                partitions[way].append(domains)
                row = dict(job=job, way=way, seed=seed, **scores)
                if truth is not None:
                    row["ARI"] = metrics.ari(truth, domains)
                rows.append(row)
                print({key: round(v, 3) if isinstance(v, float) else v for key, v in row.items()}, flush=True)
        for way in job_ways:
            agreement = np.mean([adjusted_rand_score(a, b) for a, b in combinations(partitions[way], 2)])
            rows.append(dict(job=job, way=way, seed="agreement", agreement=agreement))
    table = pd.DataFrame(rows)
    runs = table[table.seed != "agreement"]
    ilisi = runs.groupby(["job", "way"]).median_ilisi.mean().unstack()
    agreement = table[table.seed == "agreement"].set_index(["job", "way"]).agreement.unstack()
    label_free = pd.concat({"median iLISI": ilisi, "seed agreement": agreement}, axis=1)
    print("\nlabel-free (median iLISI mean over seeds; seed agreement):\n" + label_free.to_string(float_format="%.3f"))
    print("\nmeans over jobs:\n" + label_free.mean().to_string(float_format="%.3f"))
    if "ARI" in runs:
        scored = runs.dropna(subset=["ARI"]).pivot_table(index=["job", "seed"], columns="way", values="ARI")
        print("\nscored afterwards (ARI):\n" + scored.to_string(float_format="%.3f"))
        print(scored.groupby(level="job").mean().to_string(float_format="%.3f"))
