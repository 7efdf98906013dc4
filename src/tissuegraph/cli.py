"""``tissuegraph`` on the command line: a thin shell over the Python API, with progress bars."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from tissuegraph import datasets, io, metrics, tl
from tissuegraph.errors import InputError
from tissuegraph.tl.domains import CLUSTERERS


def _progress(total: int, quiet: bool):
    """A tqdm bar for training and the matching per-epoch callback (None when quiet)."""
    if quiet:
        return None, None
    bar = tqdm(total=total, desc="training", unit="epoch", file=sys.stderr)

    def on_epoch(epoch: int, loss: float) -> None:
        bar.update(1)
        if epoch % 10 == 0:
            bar.set_postfix(loss=f"{loss:.4f}")

    return bar, on_epoch


def _run_domains(adata, args: argparse.Namespace) -> None:
    given = {"epochs": args.epochs, "tau": args.tau, "n_neighbors": args.k}
    overrides = {key: value for key, value in given.items() if value is not None}
    bar, on_epoch = _progress(tl.StaigSettings.from_data(adata.n_obs, adata.n_vars, **overrides).epochs, args.quiet)
    try:
        tl.domains(
            adata,
            args.n_domains,
            seed=args.seed,
            cluster=args.cluster,
            refine=args.refine,
            image=args.image,
            device=args.device,
            on_epoch=on_epoch,
            **overrides,
        )
    finally:
        if bar is not None:
            bar.close()


def _check_out(path: str) -> Path:
    out = Path(path)
    if out.suffix != ".h5ad":
        raise InputError(f"--out must name an .h5ad file (got '{out}'); e.g. --out result.h5ad")
    if out.is_dir():
        raise InputError(f"--out '{out}' is a folder; give a file name such as {out / 'result.h5ad'}")
    return out


def cmd_domains(args: argparse.Namespace) -> None:
    out = _check_out(args.out)
    adata = io.read(args.input)
    _run_domains(adata, args)
    io.write_h5ad(adata, out)
    print(f"wrote {adata.n_obs} spots with {args.n_domains} domains to {out}")
    if "ground_truth" in adata.obs:
        truth = adata.obs["ground_truth"]
        print(f"ARI {metrics.ari(truth, adata.obs['domain']):.3f}  NMI {metrics.nmi(truth, adata.obs['domain']):.3f}")


def cmd_demo(args: argparse.Namespace) -> None:
    out = _check_out(args.out) if args.out else None
    adata = datasets.osmfish()
    args.n_domains = datasets.DEMO_N_DOMAINS
    print(f"osmFISH somatosensory cortex: {adata.n_obs} cells x {adata.n_vars} genes, {args.n_domains} domains")
    _run_domains(adata, args)
    truth = datasets.scoring_labels(adata)
    ari, nmi = metrics.ari(truth, adata.obs["domain"]), metrics.nmi(truth, adata.obs["domain"])
    print(f"ARI {ari:.3f}  NMI {nmi:.3f}  (against the published regions, 'Excluded' cells left out)")
    if out is not None:
        io.write_h5ad(adata, out)
        print(f"wrote {out}")


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="random seed (results are reproducible per seed)")
    parser.add_argument("--cluster", choices=sorted(CLUSTERERS), default="gmm")
    parser.add_argument(
        "--refine",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="smooth labels by majority vote over the 15 nearest spots",
    )
    parser.add_argument(
        "--image",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="use the H&E image (not available yet: --no-image forces gene mode)",
    )
    parser.add_argument("--epochs", type=int, default=None, help="override the data-derived number of epochs")
    parser.add_argument("--tau", type=float, default=None, help="override the data-derived temperature")
    parser.add_argument("--k", type=int, default=None, help="override the number of spatial neighbours")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when present, else cpu)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tissuegraph", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    dom = sub.add_parser("domains", help="find spatial domains of one slice (STAIG)")
    dom.add_argument("input", help="an .h5ad file or a Space Ranger output folder")
    dom.add_argument("--n-domains", type=int, required=True, help="number of domains K")
    dom.add_argument("--out", required=True, help="result .h5ad (written atomically)")
    _add_training_options(dom)
    dom.set_defaults(func=cmd_domains)
    demo = sub.add_parser("demo", help="run the whole job on the embedded osmFISH dataset and print ARI/NMI")
    demo.add_argument("--out", default=None, help="optionally write the result .h5ad")
    _add_training_options(demo)
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except InputError as err:
        print(f"tissuegraph: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
