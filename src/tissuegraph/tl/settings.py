"""One default that works across platforms: STAIG's settings derived from the data, never from annotation.

The rule (documented in the README) reads one thing off the data: how many HVGs a slice contributes,
min(n_top_genes, genes measured; with several slices, the genes they all share). It stands for the platform, so
it is counted before the slices' HVG sets are intersected: slices whose HVGs overlap little (the four DLPFC files
share 512 of their 3000 each) are still sequencing data, not an imaging panel.

- Many genes (sequencing platforms, e.g. Visium with 3000 HVGs): expression profiles are noisy and spots
  share most of their signal, so the contrast is soft (large tau) and masking drops 10%/20% of genes.
  Few genes (imaging platforms, tens to hundreds of genes): every gene matters, so tau is small and
  masking is light (1%/2%). tau grows linearly with that number of HVGs, tau = n_hvg / 100,
  clipped to [1, 30]: 3000 HVGs -> 30, 166 genes -> 1.66, 33 genes -> 1. This spans the authors' published
  range (Visium 17-39, imaging 1-6).
- The graph: k = 6 nearest spots (the ring of a Visium hexagonal grid; about one cell-width ring on imaging
  data).
- Image mode: one histology pseudo-label per 45 spots (k-means on the image embedding), the ratio of the
  reference's 80 labels for the 3,639 spots of DLPFC 151673, so the excluded same-label negatives stay a small,
  fixed share of each slice whatever its size.
- The contrastive denominator: with tau >= 10 its second-order moment expansion (exact to 2e-4, O(N));
  with a sharper tau an unbiased estimate from 512 nodes sampled per slice and view (O(N)). Either way an
  epoch costs time and memory linear in the number of spots. ``denominator="exact"`` streams the exact
  sum over tiles (O(N^2) time, O(N) memory).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields
from types import UnionType
from typing import get_args, get_origin, get_type_hints

import numpy as np

from tissuegraph.errors import InputError
from tissuegraph.nn.contrastive import DENOMINATORS, MIN_NEGATIVES, MIN_TAU, MOMENT_MIN_TAU
from tissuegraph.nn.triplet import PAIR_MODES


@dataclass
class StaigSettings:
    """Every knob of a STAIG run; ``from_data`` fills the defaults from the data's shape."""

    n_top_genes: int = 3000
    n_neighbors: int = 6
    tau: float = 30.0
    epochs: int = 300
    feature_mask_rates: tuple[float, float] = (0.1, 0.2)
    hidden_dims: tuple[int, ...] = (64,)
    proj_dim: int = 64
    lr: float = 5e-4
    weight_decay: float = 1e-5
    n_pcs_edge_drop: int = 64
    spots_per_pseudo_label: int = 45
    denominator: str = "auto"
    n_negatives: int = 512
    refine_neighbors: int = 15

    @classmethod
    def from_data(cls, n_genes: int, /, **overrides) -> StaigSettings:
        """Defaults for data measuring ``n_genes`` genes (several slices: the genes they share), each slice
        contributing ``min(n_genes, n_top_genes)`` HVGs; keyword overrides (any setting, ``n_top_genes`` included)
        win. ``n_genes`` is positional, so that a keyword of that name is refused as no setting.
        """
        settings = cls()
        _override(settings, "STAIG", overrides)
        if settings.n_top_genes >= 1:  # else refused by _require below
            model_genes = min(n_genes, settings.n_top_genes)
            if "tau" not in overrides:
                settings.tau = float(np.clip(model_genes / 100.0, 1.0, 30.0))
            if "feature_mask_rates" not in overrides:
                settings.feature_mask_rates = (0.1, 0.2) if model_genes >= 1000 else (0.01, 0.02)
        rates = settings.feature_mask_rates
        _require(
            settings,
            "STAIG",
            [
                ("tau", settings.tau >= MIN_TAU, f"a positive temperature of at least {MIN_TAU:g} (float32 limit)"),
                ("epochs", settings.epochs >= 1, "at least 1"),
                ("n_neighbors", settings.n_neighbors >= 1, "at least 1"),
                ("n_top_genes", settings.n_top_genes >= 1, "at least 1"),
                ("feature_mask_rates", len(rates) == 2 and all(0 <= r < 1 for r in rates), "two shares in [0, 1)"),
                ("hidden_dims", len(settings.hidden_dims) >= 1 and min(settings.hidden_dims) >= 1, "widths >= 1"),
                ("proj_dim", settings.proj_dim >= 1, "at least 1"),
                ("lr", settings.lr > 0, "positive"),
                ("weight_decay", settings.weight_decay >= 0, "at least 0"),
                ("n_pcs_edge_drop", settings.n_pcs_edge_drop >= 1, "at least 1"),
                ("spots_per_pseudo_label", settings.spots_per_pseudo_label >= 1, "at least 1"),
                ("denominator", settings.denominator in ("auto", *DENOMINATORS), f"auto or one of {DENOMINATORS}"),
                ("n_negatives", settings.n_negatives >= MIN_NEGATIVES, f"at least {MIN_NEGATIVES}"),
                ("refine_neighbors", settings.refine_neighbors >= 1, "at least 1"),
            ],
        )
        if settings.denominator == "auto":
            settings.denominator = "moments" if settings.tau >= MOMENT_MIN_TAU else "sampled"
        elif settings.denominator == "moments" and settings.tau < MOMENT_MIN_TAU:
            raise InputError(
                f"STAIG setting denominator='moments' needs tau >= {MOMENT_MIN_TAU:g} (tau is {settings.tau:g}, "
                "from the data or given); use denominator='exact' or 'sampled', or leave it at 'auto'"
            )
        return settings

    def to_dict(self) -> dict:
        """Plain values (tuples as lists), so the settings can be stored in ``uns`` and written to .h5ad."""
        return _plain(self)


@dataclass
class StalignerSettings:
    """Every knob of a STAligner run: the authors' published settings, the same for every dataset.

    One change for the CPU: the autoencoder reads the log-normalised shared HVGs on their top ``n_pcs`` = 50
    principal axes (scanpy's default number) instead of the genes themselves, so an epoch costs O(N x 512 x 50)
    instead of O(N x 512 x n_genes), 60x less for 3000 genes: the whole run on the 14k spots of four DLPFC slices
    takes 158-213 s on 2 CPU cores (benchmarks/bench_integrate.py). It is the published model with its first
    weight matrix confined to those axes (started at the published genes x hidden matrix's scale): the
    coordinates are not centred (the mean expression's part along the axes stays in the input, as for the genes),
    and the reconstruction error, which the reference averages over the genes, is
    weighted by n_pcs / n_genes, so it keeps its published 1:1 balance with the triplet loss
    (benchmarks/calibrate_staligner.py measures that balance). ``n_pcs`` >= the number of genes keeps every axis:
    a rotation of the genes, weight 1, the published model itself.

    ``mnn_k`` = 50 is the authors' setting for their published DLPFC integration (ARI 0.626, slices of about
    3,500 Visium spots); their function default, 100, is what their runs on 15k-50k-spot slices used.
    """

    n_top_genes: int = 5000
    n_neighbors: int = 6
    n_pcs: int = 50
    hidden_dim: int = 512
    out_dim: int = 30
    pretrain_epochs: int = 500
    triplet_epochs: int = 500
    mnn_every: int = 100
    mnn_k: int = 50
    pair_mode: str = "all"
    reference: int | str = 0
    margin: float = 1.0
    lr: float = 1e-3
    weight_decay: float = 1e-4
    grad_clip: float | None = 5.0
    refine_neighbors: int = 15

    @classmethod
    def from_data(cls, **overrides) -> StalignerSettings:
        """The published defaults with keyword overrides; ``epochs`` sets both phases to half each."""
        settings = cls()
        epochs = overrides.pop("epochs", None)
        if epochs is not None:
            if not _has_type(epochs, int) or epochs < 1:
                raise InputError(
                    f"STAligner setting epochs = {epochs!r} cannot work; it must be a whole number of at least 1 "
                    "(half pre-training, half triplet training)"
                )
            phases = [name for name in ("pretrain_epochs", "triplet_epochs") if name in overrides]
            if phases:
                raise InputError(
                    f"STAligner setting epochs and {' and '.join(phases)} were both given; epochs sets both phases "
                    "(half each), so give either epochs or pretrain_epochs and triplet_epochs"
                )
            settings.pretrain_epochs, settings.triplet_epochs = epochs // 2, epochs - epochs // 2
        _override(settings, "STAligner", overrides)
        if settings.n_pcs < 1:
            raise InputError(
                f"n_pcs must be at least 1 (got {settings.n_pcs}); the autoencoder reads the genes on that many "
                "principal axes (any number >= the genes keeps them all)"
            )
        _require(
            settings,
            "STAligner",
            [
                ("pretrain_epochs", settings.pretrain_epochs >= 0, "at least 0"),
                ("triplet_epochs", settings.triplet_epochs >= 0, "at least 0"),
                ("epochs", settings.epochs >= 1, "at least 1 in all"),
                ("n_top_genes", settings.n_top_genes >= 1, "at least 1"),
                ("n_neighbors", settings.n_neighbors >= 1, "at least 1"),
                ("hidden_dim", settings.hidden_dim >= 1, "at least 1"),
                ("out_dim", settings.out_dim >= 1, "at least 1"),
                ("mnn_every", settings.mnn_every >= 1, "at least 1"),
                ("mnn_k", settings.mnn_k >= 1, "at least 1"),
                ("pair_mode", settings.pair_mode in PAIR_MODES, f"one of {PAIR_MODES}"),
                (
                    "reference",
                    isinstance(settings.reference, str) or settings.reference >= 0,
                    "a slice position (0 = the first slice) or a slice name",
                ),
                ("margin", settings.margin >= 0, "at least 0"),
                ("lr", settings.lr > 0, "positive"),
                ("weight_decay", settings.weight_decay >= 0, "at least 0"),
                ("grad_clip", settings.grad_clip is None or settings.grad_clip > 0, "None (no clipping) or positive"),
                ("refine_neighbors", settings.refine_neighbors >= 1, "at least 1"),
            ],
        )
        return settings

    @property
    def epochs(self) -> int:
        return self.pretrain_epochs + self.triplet_epochs

    def to_dict(self) -> dict:
        """Plain values, so the settings can be stored in ``uns`` and written to .h5ad."""
        return _plain(self)


def _override(settings: StaigSettings | StalignerSettings, method: str, overrides: dict) -> None:
    """Set each override after checking its name and its type against the field's annotation, so that epochs="300"
    or mnn_k=50.5 is refused here rather than deep inside training."""
    hints = get_type_hints(type(settings))
    known = [field.name for field in fields(settings)]  # not hasattr: methods such as to_dict are no settings
    for key, value in overrides.items():
        if key not in known:
            names = [*known, "epochs"] if isinstance(settings, StalignerSettings) else known  # both phases at once
            raise InputError(f"unknown {method} setting {key!r}; the settings are: {', '.join(names)}")
        if not _has_type(value, hints[key]):
            raise InputError(f"{method} setting {key} = {value!r} cannot work; it must be {_describe(hints[key])}")
        setattr(settings, key, tuple(value) if isinstance(value, list) else value)


def _has_type(value: object, hint: object) -> bool:
    """Whether ``value`` fits a settings annotation (int, float, str, None, unions and tuples of these).

    Integers count as floats; booleans count as neither. A list fits a tuple annotation.
    """
    args = get_args(hint)
    if isinstance(hint, UnionType):
        return any(_has_type(value, option) for option in args)
    if get_origin(hint) is tuple:
        if not isinstance(value, tuple | list):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return len(value) > 0 and all(_has_type(item, args[0]) for item in value)
        return len(value) == len(args) and all(_has_type(item, arg) for item, arg in zip(value, args, strict=True))
    if hint is type(None):
        return value is None
    if isinstance(value, bool):
        return hint is bool
    return isinstance(value, {int: numbers.Integral, float: numbers.Real}.get(hint, hint))


def _describe(hint: object) -> str:
    """An annotation in words, for the refusal."""
    if isinstance(hint, UnionType):
        return " or ".join(_describe(option) for option in get_args(hint))
    if get_origin(hint) is tuple:
        args = get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a tuple of {_describe(args[0]).removeprefix('a ')}s"
        return f"a tuple of {len(args)} {_describe(args[0]).removeprefix('a ')}s"
    return {int: "a whole number", float: "a number", str: "a string", type(None): "None"}.get(hint, str(hint))


def _require(settings: StaigSettings | StalignerSettings, method: str, checks: list[tuple[str, bool, str]]) -> None:
    """Refuse a setting that cannot work (a negative temperature would push neighbours apart, an infinite one
    would stop all learning) before any work."""
    for field in fields(settings):
        value = getattr(settings, field.name)
        if any(
            isinstance(v, float | np.floating) and not math.isfinite(v)
            for v in (value if isinstance(value, tuple) else (value,))
        ):
            raise InputError(f"{method} setting {field.name} = {value!r} cannot work; it must be a finite number")
    for name, ok, requirement in checks:
        if not ok:
            value = getattr(settings, name)  # STAligner's epochs is a property: both phases together
            raise InputError(f"{method} setting {name} = {value!r} cannot work; it must be {requirement}")


def _plain(settings: StaigSettings | StalignerSettings) -> dict:
    return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(settings).items()}
