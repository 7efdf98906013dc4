"""Benchmark STAIG image mode against gene mode on the DLPFC slices (they carry a 600x600 lowres H&E).

For each slice and seed, fresh CLI processes run the modes side by side in one session: gene mode
(``domains --no-image``), image mode with the default from-scratch BYOL encoder (``domains --image``), and
image mode from frozen ImageNet EfficientNet-Lite0 features (``image-features --backbone efficientnet-lite0``
then ``domains --image`` on its output; needs the ``pretrained`` extra). Image modes also give the image-only
clustering (k-means on ``obsm['X_image']`` alone) and the seconds spent on patches, BYOL and training.

    python benchmarks/bench_image.py                   # 151673-151676 x seeds 0-2, all three modes
    python benchmarks/bench_image.py --slices 151673 --seeds 0 --modes gene image

Labels are read only to score the results.
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
from pathlib import Path

import anndata as ad
import pandas as pd

from tissuegraph import metrics, tl

from bench_domains import DATA, DLPFC, environment, run_process

MODES = ["gene", "image", "pretrained"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", nargs="+", default=DLPFC)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=MODES)
    args = parser.parse_args()
    print(environment(), flush=True)
    if "pretrained" in args.modes and importlib.util.find_spec("efficientnet_lite_pytorch") is None:
        parser.error(
            'mode "pretrained" needs the extra: pip install "tissuegraph[pretrained]" (or drop it via --modes)'
        )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out, features = Path(tmp) / "result.h5ad", Path(tmp) / "features.h5ad"
        for name in args.slices:
            source = DATA / f"dlpfc_{name}.h5ad"
            for seed in args.seeds:
                for mode in args.modes:
                    wall, rss, source_for_domains = 0.0, 0.0, source
                    if mode == "pretrained":
                        cli = ["image-features", str(source), "--backbone", "efficientnet-lite0", "--seed", str(seed)]
                        wall, rss = run_process([*cli, "--out", str(features)])
                        source_for_domains = features
                    flag = "--no-image" if mode == "gene" else "--image"
                    cli = ["domains", str(source_for_domains), "--n-domains", "7", "--seed", str(seed), flag]
                    domains_wall, domains_rss = run_process([*cli, "--out", str(out)])
                    wall, rss = wall + domains_wall, max(rss, domains_rss)
                    result = ad.read_h5ad(out)
                    truth = result.obs["ground_truth"]
                    timings = result.uns["tissuegraph"]["timings"]
                    row = dict(
                        slice=name,
                        seed=seed,
                        mode=mode,
                        ARI=metrics.ari(truth, result.obs["domain"]),
                        NMI=metrics.nmi(truth, result.obs["domain"]),
                        wall_s=wall,
                        peak_rss_gib=rss,
                        train_s=timings["train_s"],
                    )
                    if mode != "gene":
                        image = result.uns["tissuegraph_image"]
                        tl.image_domains(result, 7, seed=seed)
                        row.update(
                            image_only_ARI=metrics.ari(truth, result.obs["image_domain"]),
                            patches_s=image["patches_s"] + image["filter_s"],
                            byol_s=image["byol_s"],
                            image_features_s=sum(image[k] for k in ("patches_s", "filter_s", "byol_s", "embed_s")),
                        )
                    rows.append(row)
                    print(
                        f"{name} seed {seed} {row['mode']:9s} ARI {row['ARI']:.3f}  {wall:6.1f} s  {rss:.2f} GiB"
                        + (f"  image-only ARI {row['image_only_ARI']:.3f}" if "image_only_ARI" in row else ""),
                        flush=True,
                    )
    table = pd.DataFrame(rows)
    print("\n" + table.to_string(index=False, float_format="%.3f", na_rep=""))
    print("\nmean ARI per slice and mode:\n" + table.pivot_table("ARI", "slice", "mode").to_string(float_format="%.3f"))
    means = table.groupby("mode")[["ARI", "wall_s"]].mean()
    print("\nmeans over every slice and seed:\n" + means.to_string(float_format="%.3f"))
    for mode in set(args.modes) - {"gene"}:
        image = table[table["mode"] == mode]
        print(
            f"{mode}: image-only ARI {image.image_only_ARI.mean():.3f}; image features max "
            f"{image.image_features_s.max():.1f} s (patches + filter {image.patches_s.max():.1f} s, BYOL "
            f"{image.byol_s.max():.1f} s); max wall {image.wall_s.max():.1f} s; max train {image.train_s.max():.1f} s"
        )


if __name__ == "__main__":
    main()
