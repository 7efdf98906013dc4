"""Does the 50-PC shortcut balance STAligner's two losses as the published all-gene model does? (no labels read)

    python benchmarks/calibrate_staligner.py                      # DLPFC 151675 + 151676, seed 0 (~11 min)
    python benchmarks/calibrate_staligner.py --slices 151673 151674

STAligner's second phase adds a triplet loss to the reconstruction error, weights 1:1 on the reference's own
scales (error per gene). Our autoencoder reads the genes on their top principal axes to fit a CPU. This script
pre-trains (500 reconstruction epochs) the reference model on all shared genes and the shortcut with and without
our weight n_pcs / n_genes, mines the first MNN triplets from each embedding, and prints how hard each loss pulls
the embedding at the start of the triplet phase: the norm of d(reconstruction)/dz over that of d(triplet)/dz.
The shortcut is faithful where its ratio and its embedding scale match the all-gene model's.
"""

from __future__ import annotations

import argparse
import time

import anndata as ad
import numpy as np
import torch
import torch.nn.functional as F

from tissuegraph import pp
from tissuegraph.nn.staligner import train_staligner
from tissuegraph.nn.triplet import mnn_triplets, slice_pairs
from tissuegraph.pp.slices import concat_slices
from tissuegraph.tl.integrate import staligner_inputs
from tissuegraph.tl.settings import StalignerSettings

from bench_domains import DATA


def loss_pull(
    features: np.ndarray, edges: np.ndarray, codes: np.ndarray, weight: float, seed: int, n_genes: int
) -> tuple[float, float]:
    """(reconstruction pull / triplet pull on z, mean embedding norm) after the reconstruction phase."""
    settings = StalignerSettings()
    result = train_staligner(
        features,
        edges,
        codes,
        triplet_epochs=0,
        reconstruction_weight=weight,
        n_genes=n_genes,
        seed=seed,
        device="cpu",
    )
    triplets = mnn_triplets(
        result.embedding, codes, slice_pairs(int(codes.max()) + 1), settings.mnn_k, np.random.default_rng(seed)
    )
    x = torch.as_tensor(features, dtype=torch.float32)
    edge_index = torch.as_tensor(edges).t().contiguous()
    z, reconstruction = result.model(x, edge_index)
    anchor, positive, negative = (z[torch.as_tensor(triplets[:, i])] for i in range(3))
    triplet = F.triplet_margin_loss(anchor, positive, negative, margin=settings.margin)
    (pull_rec,) = torch.autograd.grad(weight * F.mse_loss(reconstruction, x), z, retain_graph=True)
    (pull_triplet,) = torch.autograd.grad(triplet, z)
    return float(pull_rec.norm() / pull_triplet.norm()), float(z.detach().norm(dim=1).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", nargs="+", default=["151675", "151676"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    joint = concat_slices([ad.read_h5ad(DATA / f"dlpfc_{name}.h5ad") for name in args.slices], args.slices)
    codes = joint.obs["batch"].cat.codes.to_numpy().astype(np.int64)
    work, edges, weight = staligner_inputs(
        joint, StalignerSettings(), library_size=pp.library_sizes(joint), seed=args.seed
    )
    n_genes = work.obsm["X_log"].shape[1]
    print(f"{work.n_obs} spots, {n_genes} shared HVGs, shortcut weight {weight:.4f}", flush=True)
    variants = {
        "all genes, weight 1 (reference)": (work.obsm["X_log"], 1.0),
        f"{work.obsm['X_pca'].shape[1]} PCs, weight {weight:.4f} (ours)": (work.obsm["X_pca"], weight),
        f"{work.obsm['X_pca'].shape[1]} PCs, weight 1": (work.obsm["X_pca"], 1.0),
    }
    for name, (features, w) in variants.items():
        start = time.perf_counter()
        ratio, scale = loss_pull(features, edges, codes, w, args.seed, n_genes)
        print(
            f"{name:34s} reconstruction / triplet pull {ratio:.4f}   mean |z| {scale:5.2f}   "
            f"{time.perf_counter() - start:.0f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
