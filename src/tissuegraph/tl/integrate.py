"""``integrate``: one embedding and one set of domains across several slices, without aligning them first.

Two methods share the input handling (shared genes, per-slice HVGs, block-diagonal graphs) and the
clustering: STAIG, whose contrastive denominator only counts the anchor's own slice (nothing pushes slices
apart), and STAligner, a graph-attention autoencoder whose mutual-nearest-neighbour triplets pull matching
spots of different slices together.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from anndata import AnnData

from tissuegraph import gr, pp
from tissuegraph.errors import InputError, warn
from tissuegraph.nn.runtime import pick_device
from tissuegraph.nn.staligner import train_staligner
from tissuegraph.options import INTEGRATION_METHODS, check_seed
from tissuegraph.pp.expression import library_size_source, normalise_log
from tissuegraph.pp.slices import concat_slices, per_slice_hvgs
from tissuegraph.tl.domains import assign_domains, check_domain_request, image_embedding, staig_embedding
from tissuegraph.tl.settings import StaigSettings, StalignerSettings


@dataclass
class _Run:
    """One ``integrate`` call as the method runners see it: the joined slices and what the caller asked for."""

    joint: AnnData
    slices: np.ndarray
    batch_key: str
    library_size: np.ndarray | None
    image: bool
    genes: str
    seed: int
    device: str | None
    on_epoch: Callable[[int, float], None] | None
    on_image_epoch: Callable[[int, float], None] | None
    timings: dict[str, float]
    overrides: dict
    records: dict = field(default_factory=dict)  # what a method reports beyond its settings, for uns


def _workspace(joint: AnnData, batch_key: str) -> AnnData:
    """Counts, slice names and coordinates only: the methods' intermediate features never reach the result."""
    work = AnnData(X=joint.X, obs=pd.DataFrame({"batch": joint.obs[batch_key].to_numpy()}, index=joint.obs_names))
    work.obsm["spatial"] = joint.obsm["spatial"]
    return work


def _integrate_staig(run: _Run) -> tuple[np.ndarray, list[float], dict, int]:
    start = time.perf_counter()
    settings = StaigSettings.from_data(run.joint.n_vars, **run.overrides)
    mask = per_slice_hvgs(run.joint, settings.n_top_genes, batch_key=run.batch_key, combine=run.genes)
    work = _workspace(run.joint, run.batch_key)
    pp.preprocess(work, genes=mask, library_size=run.library_size)
    run.timings["preprocess_s"] = time.perf_counter() - start
    if run.image:
        work.obsm["X_image"] = image_embedding(
            run.joint,
            seed=run.seed,
            device=run.device,
            batch_key=run.batch_key,
            timings=run.timings,
            on_epoch=run.on_image_epoch,
        )
    trained = staig_embedding(
        work,
        settings,
        slices=run.slices,
        seed=run.seed,
        device=run.device,
        on_epoch=run.on_epoch,
        timings=run.timings,
    )
    run.joint.obsp["spatial_connectivities"] = work.obsp["spatial_connectivities"]
    return trained.embedding, trained.losses, settings.to_dict(), settings.refine_neighbors


def staligner_inputs(
    joint: AnnData,
    settings: StalignerSettings,
    *,
    genes: str = "intersection",
    batch_key: str = "batch",
    library_size: np.ndarray | None = None,
    seed: int = 0,
    timings: dict[str, float] | None = None,
) -> tuple[AnnData, np.ndarray, float]:
    """What the STAligner autoencoder trains on: (workspace, edges with self loops, reconstruction weight).

    The workspace holds the log-normalised shared HVGs in ``obsm['X_log']`` (the reference model's input) and
    their uncentred coordinates on the top ``settings.n_pcs`` principal axes in ``obsm['X_pca']`` (ours), plus
    the per-slice graph. The weight, n_pcs / n_genes, turns the error per axis into the reference's error per
    gene: only the part of the gene error inside the kept axes depends on the model.
    """
    timings = {} if timings is None else timings
    start = time.perf_counter()
    mask = per_slice_hvgs(joint, settings.n_top_genes, batch_key=batch_key, combine=genes)
    work = _workspace(joint, batch_key)
    work.obsm["X_log"] = normalise_log(joint.X, mask, library_size)
    pp.pca(work, settings.n_pcs, use_rep="X_log", center=False, seed=seed)
    settings.n_pcs = work.obsm["X_pca"].shape[1]  # fewer when there are fewer genes or spots: record what was used
    reconstruction_weight = work.obsm["X_pca"].shape[1] / int(mask.sum())
    timings["preprocess_s"] = time.perf_counter() - start

    start = time.perf_counter()
    gr.spatial_neighbors(work, n_neighbors=settings.n_neighbors, batch_key="batch")
    graph = work.obsp["spatial_connectivities"].tocoo()
    loops = np.arange(work.n_obs)
    edges = np.stack([np.concatenate([graph.row, loops]), np.concatenate([graph.col, loops])], axis=1)
    timings["graph_s"] = time.perf_counter() - start
    return work, edges.astype(np.int64), reconstruction_weight


def _integrate_staligner(run: _Run) -> tuple[np.ndarray, list[float], dict, int]:
    if run.image:
        raise InputError(
            "STAligner has no image mode; for the H&E image use STAIG (method='staig', --method staig), or leave "
            "the image out (image=False, --no-image)"
        )
    settings = StalignerSettings.from_data(**run.overrides)
    names = [str(name) for name in run.joint.obs[run.batch_key].cat.categories]  # in the order of the slice codes
    if isinstance(settings.reference, str):
        if settings.reference not in names:
            raise InputError(
                f"STAligner setting reference={settings.reference!r} names no slice; the slices are "
                f"{', '.join(map(repr, names))} (or pass a position, 0 = the first)"
            )
        settings.reference = names.index(settings.reference)
    if settings.pair_mode == "star" and settings.reference >= len(names):
        raise InputError(
            f"STAligner setting reference={settings.reference} names no slice: there are {len(names)} "
            f"(0..{len(names) - 1}, in the order given, or their names {', '.join(map(repr, names))}); pass the slice "
            "the others align to"
        )
    work, edges, reconstruction_weight = staligner_inputs(
        run.joint,
        settings,
        genes=run.genes,
        batch_key=run.batch_key,
        library_size=run.library_size,
        seed=run.seed,
        timings=run.timings,
    )
    n_genes = work.obsm.pop("X_log").shape[1]  # only its principal axes are trained on: free the dense genes
    start = time.perf_counter()
    result = train_staligner(
        work.obsm["X_pca"],
        edges,
        run.slices,
        hidden_dim=settings.hidden_dim,
        out_dim=settings.out_dim,
        pretrain_epochs=settings.pretrain_epochs,
        triplet_epochs=settings.triplet_epochs,
        mnn_every=settings.mnn_every,
        mnn_k=settings.mnn_k,
        pair_mode=settings.pair_mode,
        reference=settings.reference,
        margin=settings.margin,
        reconstruction_weight=reconstruction_weight,
        n_genes=n_genes,
        lr=settings.lr,
        weight_decay=settings.weight_decay,
        grad_clip=settings.grad_clip,
        seed=run.seed,
        device=run.device,
        on_epoch=run.on_epoch,
    )
    run.timings["train_s"] = time.perf_counter() - start
    run.records["n_triplets"] = np.asarray(result.n_triplets, dtype=np.int64)  # how much each MNN search matched
    run.joint.obsp["spatial_connectivities"] = work.obsp["spatial_connectivities"]
    used = {**settings.to_dict(), "reconstruction_weight": reconstruction_weight}
    return result.embedding, result.losses, used, settings.refine_neighbors


def integration_epochs(method: str, **settings_overrides) -> int:
    """How many training epochs ``integrate`` will run (for progress bars), settings overrides included."""
    if method == "staligner":
        return StalignerSettings.from_data(**settings_overrides).epochs
    return int(settings_overrides.get("epochs", StaigSettings.epochs))


def integrate(
    slices: Sequence[AnnData] | AnnData,
    n_domains: int,
    *,
    names: Sequence[str] | None = None,
    method: str = "staig",
    seed: int = 0,
    cluster: str = "gmm",
    refine: bool = True,
    image: bool = False,
    genes: str = "intersection",
    batch_key: str = "batch",
    device: str | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
    on_image_epoch: Callable[[int, float], None] | None = None,
    **settings_overrides,
) -> AnnData:
    """Embed several slices jointly and find ``n_domains`` domains shared across them.

    Returns a new AnnData holding every spot of every slice, in the order given (``slices`` may be one AnnData; a
    file holding several slices in ``obs[batch_key]`` counts as those slices, its spots grouped slice by slice in
    the order each slice first appears), on the genes all slices share, with
    ``obs[batch_key]`` (slice name), ``obs['domain']``, ``obsm['X_tissuegraph']``, each slice's original
    ``obsm['spatial']`` and ``uns['tissuegraph']`` (settings, loss curve, timings). ``genes`` says how the
    per-slice HVGs are combined ('intersection' or 'union'). ``image=True`` (STAIG only) adds the histology:
    each slice's patches come from its own image in ``uns['spatial']``, one BYOL encoder is trained on all of
    them, and pseudo-labels stay within a slice. It is off by default because image mode adds 30-60 s per Visium slice.
    ``on_epoch(epoch, loss)`` follows the training, ``on_image_epoch`` the image encoder's training before it.
    """
    if method not in INTEGRATION_METHODS:
        raise InputError(f"unknown integration method {method!r}; choose one of {', '.join(INTEGRATION_METHODS)}")
    seed = check_seed(seed)  # numpy integers as int: torch's generators take no other
    timings: dict[str, float] = {}
    start = time.perf_counter()
    joint = concat_slices(slices, names, batch_key=batch_key)
    if joint.obs[batch_key].nunique() < 2:
        warn(
            "only one slice was given, so nothing is integrated: the result is that slice's domains (give two or more "
            f"inputs, or one file whose obs[{batch_key!r}] names several slices)"
        )
    check_domain_request(n_domains, joint.n_obs, cluster, seed=seed)
    # every override checked (name, type, range) before the graph reads n_neighbors, and before any training
    if method == "staig":
        checked = StaigSettings.from_data(joint.n_vars, **settings_overrides)
    else:
        checked = StalignerSettings.from_data(**settings_overrides)
    gr.check_slice_sizes(joint, checked.n_neighbors, batch_key)
    gr.check_slice_counts(joint, batch_key)
    gr.check_slice_layouts(joint, batch_key, checked.n_neighbors)
    pick_device(device)
    slice_codes = joint.obs[batch_key].cat.codes.to_numpy().astype(np.int64)
    timings["combine_s"] = time.perf_counter() - start
    library_size = pp.library_sizes(joint)
    runner = _integrate_staig if method == "staig" else _integrate_staligner
    run = _Run(
        joint,
        slice_codes,
        batch_key,
        library_size,
        image,
        genes,
        seed,
        device,
        on_epoch,
        on_image_epoch,
        timings,
        dict(settings_overrides),
    )
    embedding, losses, settings, refine_neighbors = runner(run)
    assign_domains(
        joint,
        embedding,
        n_domains,
        cluster=cluster,
        refine=refine,
        refine_neighbors=refine_neighbors,
        slices=slice_codes,
        seed=seed,
        timings=timings,
    )
    joint.uns["tissuegraph"] = {
        "method": method,
        "mode": "image" if image else "gene",
        "n_domains": int(n_domains),
        "seed": int(seed),
        "cluster": cluster,
        "refine": bool(refine),
        "device": str(pick_device(device)),
        "n_slices": int(slice_codes.max() + 1),
        "batch_key": batch_key,
        "slices": [str(name) for name in joint.obs[batch_key].cat.categories],
        "genes": genes,
        "settings": settings,
        "library_size": library_size_source(library_size),
        "loss": np.asarray(losses, dtype=np.float32),
        "timings": timings,
        **run.records,
    }
    return joint
