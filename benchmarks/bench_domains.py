"""Benchmark ``tissuegraph domains`` end to end on the shared real datasets.

Gene mode (``--no-image``) throughout; ``bench_image.py`` compares image mode on the DLPFC slices.
Each row also scores a baseline without the spatial model: k-means (same K and seed) on 50 principal components of
the same expression features (HVGs, normalisation, scaling), so the table shows what the graph model adds.
Every run is a fresh ``tissuegraph domains`` process (read, preprocess, train, cluster, write), so the wall
seconds and the peak RSS (that process's own high-water mark) are what a user would see.

    python benchmarks/bench_domains.py                 # DLPFC x seeds 0-2, STARmap, osmFISH, olfactory bulb, 20k input
    python benchmarks/bench_domains.py --only dlpfc --seeds 0
    python benchmarks/bench_domains.py --only large --large-spots 20000 40000 80000   # growth with the spots

Data come from $TISSUEGRAPH_DATA (default ../shared/data). Labels are read only to score the result.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import anndata as ad
import pandas as pd

from tissuegraph import metrics, tl

DATA = Path(os.environ.get("TISSUEGRAPH_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
DLPFC = ["151673", "151674", "151675", "151676"]


#: The libraries whose numerics the results depend on. STAligner's seeds in particular can land on other
#: optima when numpy's or scikit-learn's arithmetic changes in the last bits, so each run names them.
NUMERIC_LIBRARIES = ("numpy", "scipy", "scikit-learn", "torch", "torch-geometric", "scanpy", "anndata")


def environment() -> str:
    """The code and library versions a benchmark ran on, printed first so that every table can be reproduced."""
    try:
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=Path(__file__).parent, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        commit = ""
    libraries = ", ".join(f"{name} {version(name)}" for name in NUMERIC_LIBRARIES)
    return f"tissuegraph {version('tissuegraph')} at {commit or 'an unknown commit'}; {libraries}"


def run_cli(source: Path, n_domains: int, seed: int, out: Path, extra: list[str]) -> tuple[float, float]:
    """Run one gene-mode ``tissuegraph domains`` process; return (wall seconds, peak RSS in GiB)."""
    return run_process(
        ["domains", str(source), "--n-domains", str(n_domains), "--seed", str(seed), "--no-image", "--out", str(out)]
        + extra
    )


# Runs the CLI and, at exit, writes the process's own peak RSS (VmHWM, in kB = KiB) to the file named first. Not
# rusage: Linux counts a forked child's pre-exec image, i.e. the benchmark's own memory, in its ru_maxrss.
MEASURED_CLI = """
import atexit, sys
from tissuegraph.cli import main
peak_file = sys.argv.pop(1)
def report():
    status = open("/proc/self/status").read()
    open(peak_file, "w").write(status.split("VmHWM:")[1].split()[0])
atexit.register(report)
sys.exit(main())
"""


def run_process(args: list[str]) -> tuple[float, float]:
    """Run ``tissuegraph ARGS --quiet`` as a fresh process; return (wall seconds, peak RSS in GiB of that process)."""
    with tempfile.TemporaryDirectory() as tmp:
        peak_file = Path(tmp) / "peak_kb"
        cmd = [sys.executable, "-c", MEASURED_CLI, str(peak_file), *args, "--quiet"]
        start = time.perf_counter()
        code = subprocess.call(cmd, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        if code != 0:
            raise RuntimeError(f"run failed: tissuegraph {' '.join(args)}")
        return wall, int(peak_file.read_text()) / 1024**2  # KiB -> GiB


def truth_of(adata: ad.AnnData, excluded: tuple[str, ...] = ()) -> pd.Series:
    """The annotation with ``excluded`` labels set to missing (missing labels are not scored)."""
    truth = adata.obs["ground_truth"].astype(object)
    return truth.where(~truth.isin(excluded))


def score(out: Path, excluded: tuple[str, ...] = ()) -> tuple[float, float]:
    result = ad.read_h5ad(out)
    truth = truth_of(result, excluded)
    return metrics.ari(truth, result.obs["domain"]), metrics.nmi(truth, result.obs["domain"])


def baseline_ari(source: Path, n_domains: int, seed: int, excluded: tuple[str, ...] = ()) -> float:
    """ARI of ``tl.expression_domains`` (k-means on 50 PCs of the model's features): no spatial information."""
    adata = tl.expression_domains(ad.read_h5ad(source), n_domains, seed=seed)
    return metrics.ari(truth_of(adata, excluded), adata.obs["expression_domain"])


LARGE_PREFIX = "dlpfc_side_by_side_"


def large_input(folder: Path, n_target: int = 20000, sections: tuple[str, ...] = DLPFC) -> Path:
    """DLPFC ``sections`` laid side by side in turn (shared genes, x shifted) until ``n_target`` spots: one big slice.

    Each spot keeps its all-gene library size, so the big input is normalised as its slices are on their own.
    """
    parts, offset, total, i = [], 0.0, 0, 0
    while total < n_target:
        part = ad.read_h5ad(DATA / f"dlpfc_{sections[i % len(sections)]}.h5ad")
        part.var_names = part.var["gene_ids"].astype(str)
        coords = part.obsm["spatial"].copy()
        coords[:, 0] += offset - coords[:, 0].min()
        offset = coords[:, 0].max() + 500.0
        part.obsm["spatial"] = coords
        part.obs_names = [f"{name}-{i}" for name in part.obs_names]
        part.uns = {}
        parts.append(part)
        total += part.n_obs
        i += 1
    big = ad.concat(parts, join="inner")
    big.obs = big.obs[["ground_truth", "total_counts_all_genes"]]  # normalised like the single slices
    path = folder / f"{LARGE_PREFIX}{'_'.join(sections)}_{n_target}.h5ad"
    big.write_h5ad(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["dlpfc", "starmap", "osmfish", "olfactory", "large"], action="append")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--extra", default="", help="extra CLI options, e.g. '--epochs 100'")
    parser.add_argument(
        "--large-spots", type=int, nargs="+", default=[20000], help="spot counts of the side-by-side inputs (scaling)"
    )
    args = parser.parse_args()
    print(environment(), flush=True)
    only = set(args.only or ["dlpfc", "starmap", "osmfish", "olfactory", "large"])
    extra = args.extra.split()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        jobs = []
        if "dlpfc" in only:
            jobs += [(f"DLPFC {s}", DATA / f"dlpfc_{s}.h5ad", 7, ()) for s in DLPFC]
        if "starmap" in only:
            jobs.append(("STARmap mPFC (3 slices)", DATA / "starmap_mpfc_3slices.h5ad", 4, ()))
        if "osmfish" in only:
            jobs.append(("osmFISH SScortex", DATA / "osmfish_sscortex.h5ad", 11, ("Excluded",)))
        if "olfactory" in only:
            jobs.append(("ST mouse olfactory bulb", DATA / "st_mouse_olfactory_bulb_rep11.h5ad", 5, ()))
        if "large" in only:
            jobs += [(f"DLPFC side by side ({n // 1000}k spots)", large_input(tmp, n), 7, ()) for n in args.large_spots]
        for name, source, k, excluded in jobs:
            # the side-by-side runs measure how time and memory grow with the spots; one seed is enough for that
            for seed in args.seeds[:1] if source.name.startswith(LARGE_PREFIX) else args.seeds:
                out = tmp / "result.h5ad"
                wall, rss = run_cli(source, k, seed, out, extra)
                ari, nmi = score(out, excluded)
                base = baseline_ari(source, k, seed, excluded)
                n_spots = ad.read_h5ad(out, backed="r").n_obs
                rows.append(
                    dict(
                        dataset=name,
                        spots=n_spots,
                        seed=seed,
                        ARI=ari,
                        NMI=nmi,
                        baseline_ARI=base,
                        wall_s=wall,
                        peak_rss_gib=rss,
                    )
                )
                print(
                    f"{name:32s} seed {seed}  ARI {ari:.3f}  NMI {nmi:.3f}  (PCA + k-means {base:.3f})"
                    f"  {wall:6.1f} s  {rss:5.2f} GiB",
                    flush=True,
                )
    table = pd.DataFrame(rows)
    print("\n" + table.to_string(index=False, float_format="%.3f"))
    dlpfc = table[table.dataset.str.match(r"DLPFC \d")]
    if len(dlpfc):
        per_slice = dlpfc.groupby("dataset").ARI.mean()
        print("\nDLPFC mean ARI per slice:", ", ".join(f"{k[-6:]} {v:.3f}" for k, v in per_slice.items()))
        print(f"DLPFC mean ARI {dlpfc.ARI.mean():.3f}  median ARI {dlpfc.ARI.median():.3f}  (n = {len(dlpfc)})")
        print(f"DLPFC max wall {dlpfc.wall_s.max():.1f} s  max peak RSS {dlpfc.peak_rss_gib.max():.2f} GiB")
    summary = table.groupby("dataset")[["ARI", "NMI", "baseline_ARI", "wall_s", "peak_rss_gib"]].mean()
    print("\nmeans per dataset:\n" + summary.to_string(float_format="%.3f"))


if __name__ == "__main__":
    main()
