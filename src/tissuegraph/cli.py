"""``tissuegraph`` on the command line: a thin shell over the Python API, with progress bars."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tqdm.auto import tqdm

from tissuegraph import datasets, io, metrics, tl
from tissuegraph.errors import InputError
from tissuegraph.tl.domains import CLUSTERERS


@contextmanager
def _progress(total: int, quiet: bool) -> Iterator[Callable[[int, float], None] | None]:
    """A tqdm bar over training epochs for the duration; yields the per-epoch callback (None when quiet)."""
    if quiet:
        yield None
        return
    bar = tqdm(total=total, desc="training", unit="epoch", file=sys.stderr)

    def on_epoch(epoch: int, loss: float) -> None:
        bar.update(1)
        if epoch % 10 == 0:
            bar.set_postfix(loss=f"{loss:.4f}")

    try:
        yield on_epoch
    finally:
        bar.close()


def _overrides(args: argparse.Namespace) -> dict:
    """The settings the user set on the command line (the rest stay data-derived)."""
    given = {"epochs": args.epochs, "tau": args.tau, "n_neighbors": args.k}
    return {key: value for key, value in given.items() if value is not None}


def _run_domains(adata, args: argparse.Namespace) -> None:
    overrides = _overrides(args)
    epochs = tl.StaigSettings.from_data(adata.n_obs, adata.n_vars, **overrides).epochs
    with _progress(epochs, args.quiet) as on_epoch:
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


def cmd_integrate(args: argparse.Namespace) -> None:
    out = _check_out(args.out)
    slices = [io.read(path) for path in args.inputs]
    overrides = _overrides(args)
    with _progress(tl.integration_epochs(args.method, **overrides), args.quiet) as on_epoch:
        joint = tl.integrate(
            slices,
            args.n_domains,
            names=args.names,
            method=args.method,
            seed=args.seed,
            cluster=args.cluster,
            refine=args.refine,
            genes=args.genes,
            device=args.device,
            on_epoch=on_epoch,
            **overrides,
        )
    if args.align_to is not None:
        tl.align(joint, args.align_to, landmark_domain=args.landmark)
    io.write_h5ad(joint, out)
    names = joint.uns["tissuegraph"]["slices"]
    print(
        f"wrote {joint.n_obs} spots of {len(names)} slices ({', '.join(names)}) with {args.n_domains} domains to {out}"
    )
    print(metrics.format_scores(metrics.score(joint)))


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
    print(metrics.format_scores(metrics.score(adata)))


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


def _add_training_options(parser: argparse.ArgumentParser, image: bool = True) -> None:
    parser.add_argument("--seed", type=int, default=0, help="random seed (results are reproducible per seed)")
    parser.add_argument("--cluster", choices=sorted(CLUSTERERS), default="gmm")
    parser.add_argument(
        "--refine",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="smooth labels by majority vote over the 15 nearest spots",
    )
    if image:
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
    integ = sub.add_parser("integrate", help="embed several slices jointly and find shared domains (no alignment)")
    integ.add_argument(
        "inputs",
        nargs="+",
        help="two or more .h5ad files or Space Ranger folders (or one file whose obs['batch'] names several slices)",
    )
    integ.add_argument("--method", choices=tl.INTEGRATION_METHODS, default="staig")
    integ.add_argument("--n-domains", type=int, required=True, help="number of domains K shared by the slices")
    integ.add_argument(
        "--names", nargs="+", default=None, help="one name per input (default: each slice's obs['batch'])"
    )
    integ.add_argument(
        "--genes",
        choices=("intersection", "union"),
        default="intersection",
        help="combine per-slice highly variable genes by intersection or union",
    )
    integ.add_argument("--out", required=True, help="result .h5ad with every spot of every slice (written atomically)")
    integ.add_argument(
        "--align-to",
        default=None,
        metavar="SLICE",
        help="also fit a rigid rotation + translation of every slice onto this one (obsm['spatial_aligned'])",
    )
    integ.add_argument(
        "--landmark", default=None, metavar="DOMAIN", help="with --align-to: pair spots only inside this domain"
    )
    _add_training_options(integ, image=False)
    integ.set_defaults(func=cmd_integrate)
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
