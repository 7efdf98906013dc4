"""The mixture on the whole 64-d embedding against the mixture on its top principal components (GraphST's practice).

    python benchmarks/compare_gmm_dims.py            # DLPFC x4, STARmap, osmFISH x seeds 0-2, 20 components
    python benchmarks/compare_gmm_dims.py --n-pcs 30

The tied-covariance mixture (mclust EEE) is affine invariant, so it whitens the embedding's many near-empty directions
to the same footing as its few large ones; GraphST reduces its embedding to 20 principal components before mclust.
For each dataset this trains ``tl.domains`` (gene mode, defaults) once per seed, then clusters that embedding both
ways (same Ward-started mixture, same 15-spot refinement) and prints, label-free first, how much of the variance the
components hold and how well each way's domains agree between training seeds (mean ARI between seeds' partitions).
Then both ways are scored against the annotation. Diagnostic only: nothing here sets a default, labels only score.
"""

from __future__ import annotations

import argparse
from itertools import combinations

import anndata as ad
import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score

from tissuegraph import metrics, tl
from tissuegraph.cluster import gmm_eee, refine_labels

from bench_domains import DATA, DLPFC, truth_of

JOBS = [(f"dlpfc_{s}", 7, ()) for s in DLPFC] + [
    ("starmap_mpfc_3slices", 4, ()),
    ("osmfish_sscortex", 11, ("Excluded",)),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-pcs", type=int, default=20)
    args = parser.parse_args()
    ways = ["all 64", f"top {args.n_pcs} PCs"]
    rows = []
    for name, n_domains, excluded in JOBS:
        adata = ad.read_h5ad(DATA / f"{name}.h5ad")
        truth = truth_of(adata, excluded)
        del adata.obs["ground_truth"]  # training and clustering never see it
        groups = pd.factorize(adata.obs["batch"])[0] if "batch" in adata.obs else None
        partitions: dict[str, list[np.ndarray]] = {way: [] for way in ways}
        for seed in args.seeds:
            tl.domains(adata, n_domains, seed=seed, image=False)
            embedding = adata.obsm["X_tissuegraph"].astype(np.float64)
            pca = PCA(args.n_pcs, random_state=0).fit(embedding)
            for way, x in zip(ways, (embedding, pca.transform(embedding)), strict=True):
                labels = gmm_eee(x, n_domains, seed=seed)
                labels = refine_labels(labels, adata.obsm["spatial"], n_neighbors=15, groups=groups)
                partitions[way].append(labels)
                rows.append(
                    dict(
                        dataset=name,
                        seed=seed,
                        way=way,
                        variance_kept=pca.explained_variance_ratio_.sum(),
                        ARI=metrics.ari(truth, labels),
                    )
                )
        for way in ways:
            agreement = [adjusted_rand_score(a, b) for a, b in combinations(partitions[way], 2)]
            print(f"{name:22s} {way:12s} seed agreement {np.mean(agreement):.3f} (label-free)", flush=True)
    table = pd.DataFrame(rows)
    print("\nvariance the components keep:", table.groupby("dataset").variance_kept.mean().round(3).to_dict())
    print(
        "\n" + table.pivot_table(index=["dataset", "seed"], columns="way", values="ARI").to_string(float_format="%.3f")
    )
    dlpfc = table[table.dataset.str.startswith("dlpfc")]
    print("\nDLPFC mean ARI:", dlpfc.groupby("way").ARI.mean().round(3).to_dict())


if __name__ == "__main__":
    main()
