"""``domains``: spatial domains of one slice (or one file holding several slices) with STAIG in gene mode."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd
from anndata import AnnData

from tissuegraph import gr, pp
from tissuegraph.cluster import gmm_eee, kmeans, leiden_n_clusters, refine_labels
from tissuegraph.errors import InputError, warn
from tissuegraph.gr.spatial import slice_groups
from tissuegraph.im import has_image, image_features
from tissuegraph.im.features import IMAGE_DOMAIN_KEY, image_record_key
from tissuegraph.io.validate import check_counts, check_embedding, validate_spatial
from tissuegraph.nn.runtime import pick_device
from tissuegraph.nn.staig import StaigResult, train_staig
from tissuegraph.options import check_seed, check_whole
from tissuegraph.pp.expression import library_size_source, require_variation
from tissuegraph.tl.markers import forget_markers
from tissuegraph.tl.settings import StaigSettings

CLUSTERERS: dict[str, Callable[..., np.ndarray]] = {
    "gmm": gmm_eee,
    "leiden": leiden_n_clusters,
    "kmeans": kmeans,
}


def _check_cluster_method(method: str) -> None:
    if method not in CLUSTERERS:
        raise InputError(f"unknown clustering method {method!r}; choose one of {', '.join(CLUSTERERS)}")


def cluster_embedding(embedding: np.ndarray, n_domains: int, method: str = "gmm", seed: int = 0) -> np.ndarray:
    """Integer labels 0..K-1 from the chosen clusterer (gmm = mclust EEE, leiden with a K search, kmeans)."""
    _check_cluster_method(method)
    labels = CLUSTERERS[method](embedding, n_domains, seed=seed)
    found = len(np.unique(labels))
    if found != n_domains:  # leiden cannot merge separate parts of its graph; a mixture component can empty
        warn(
            f"asked for {n_domains} domains but {method} found {found}: the embedding may not hold {n_domains} "
            f"groups it can separate (leiden: no resolution gives exactly {n_domains} clusters, the count jumps past "
            "it); try another clusterer (--cluster) or another number of domains"
        )
    return labels


def _domain_labels(labels: np.ndarray) -> pd.Categorical:
    """Integer cluster labels as string categories in numeric order ('0', '1', ..., '10'), as written to ``obs``."""
    domain = pd.Categorical([str(label) for label in labels])
    return domain.reorder_categories(sorted(domain.categories, key=int))


def _slice_codes(adata: AnnData, batch_key: str) -> np.ndarray | None:
    groups = slice_groups(adata, batch_key)
    if len(groups) < 2:
        return None
    codes = np.empty(adata.n_obs, dtype=np.int64)
    for code, rows in enumerate(groups):
        codes[rows] = code
    return codes


def _expression_workspace(
    adata: AnnData, n_top_genes: int, batch_key: str
) -> tuple[AnnData, np.ndarray | None, np.ndarray | None]:
    """A workspace holding the counts, coordinates, slice codes and the expression features in ``obsm['X_expr']``.

    Returns (workspace, slice codes or None for one slice, the library sizes used or None for the counts in X).
    """
    slices = _slice_codes(adata, batch_key)
    work = AnnData(X=adata.X)
    if slices is not None:
        work.obs["batch"] = adata.obs[batch_key].astype(str).to_numpy()
    work.obsm["spatial"] = adata.obsm["spatial"]
    library_size = pp.library_sizes(adata)
    # several slices: each slice's HVGs (ranked among its own genes when concat_slices recorded them), intersected
    genes = pp.per_slice_hvgs(adata, n_top_genes, batch_key=batch_key) if slices is not None else None
    pp.preprocess(work, n_top_genes, genes=genes, library_size=library_size)
    return work, slices, library_size


def image_embedding(
    adata: AnnData,
    *,
    seed: int,
    device: str | None,
    batch_key: str,
    timings: dict[str, float],
    on_epoch: Callable[[int, float], None] | None = None,
) -> np.ndarray:
    """``obsm['X_image']``, computed by ``im.image_features`` (each slice from its own image) unless already there.

    A stored embedding is used as given (it may come from other image settings or a pretrained backbone); one whose
    encoder ``image_features`` trained with another seed gets a warning, since this run's seed then does not fix
    the result.
    """
    if "X_image" not in adata.obsm:
        start = time.perf_counter()
        image_features(adata, seed=seed, device=device, batch_key=batch_key, on_epoch=on_epoch)
        timings["image_features_s"] = time.perf_counter() - start
    else:
        record = adata.uns.get(image_record_key(), {})
        made_with = record.get("seed")
        if record.get("encoder") == "trained" and made_with is not None and int(made_with) != seed:
            warn(
                f"obsm['X_image'] was computed with seed {int(made_with)} and is reused as it is, so seed {seed} "
                "does not fix the whole result; delete obsm['X_image'] to recompute it with this seed"
            )
    # a stored embedding may come from another tool: a NaN row would fail deep inside k-means (checked, not
    # converted: its own dtype is what image mode has always clustered)
    check_embedding(adata.obsm["X_image"], adata.obs_names, "obsm['X_image']")
    return adata.obsm["X_image"]


def staig_embedding(
    work: AnnData,
    settings: StaigSettings,
    *,
    slices: np.ndarray | None,
    seed: int,
    device: str | None,
    on_epoch: Callable[[int, float], None] | None,
    timings: dict[str, float],
) -> StaigResult:
    """Graph, edge-drop probabilities and STAIG training on ``work`` (features in ``obsm['X_expr']``).

    Gene mode drops edges by a softmax of the cosine distances of the expression PCA (METHODS 1.4). Image mode
    (``work.obsm['X_image']`` present) drops them in proportion to the distance of the image embeddings and takes
    spots sharing the anchor's image pseudo-label (k-means on ``X_image``, one label per
    ``settings.spots_per_pseudo_label`` spots) out of its contrastive denominator. Returns the training result
    with its embedding L2-normalised (the loss only compares directions, so domains are found on the unit
    sphere), the raw projection-head output and the loss curve; the graph lands in
    ``work.obsp['spatial_connectivities']``.
    """
    start = time.perf_counter()
    gr.spatial_neighbors(work, n_neighbors=settings.n_neighbors, batch_key="batch" if slices is not None else None)
    edges = gr.undirected_edges(work.obsp["spatial_connectivities"])
    pseudo_labels = None
    if "X_image" in work.obsm:
        image = work.obsm["X_image"]
        drop_prob = gr.edge_drop_probabilities(edges, image, work.n_obs, metric="euclidean", weighting="proportional")
        pseudo_labels = _pseudo_labels(image, slices, settings.spots_per_pseudo_label, seed)
    else:
        pp.pca(work, settings.n_pcs_edge_drop, seed=seed)
        settings.n_pcs_edge_drop = work.obsm["X_pca"].shape[1]  # fewer when there are fewer genes or spots: record it
        drop_prob = gr.edge_drop_probabilities(edges, work.obsm["X_pca"], work.n_obs)
    timings["graph_s"] = time.perf_counter() - start

    start = time.perf_counter()
    result = train_staig(
        work.obsm["X_expr"],
        edges,
        drop_prob,
        tau=settings.tau,
        epochs=settings.epochs,
        feature_mask_rates=settings.feature_mask_rates,
        hidden_dims=settings.hidden_dims,
        proj_dim=settings.proj_dim,
        lr=settings.lr,
        weight_decay=settings.weight_decay,
        groups=slices,
        pseudo_labels=pseudo_labels,
        denominator=settings.denominator,
        n_negatives=settings.n_negatives,
        seed=seed,
        device=device,
        on_epoch=on_epoch,
    )
    timings["train_s"] = time.perf_counter() - start
    result.embedding /= np.maximum(np.linalg.norm(result.embedding, axis=1, keepdims=True), 1e-12)
    return result


def _pseudo_labels(image: np.ndarray, slices: np.ndarray | None, spots_per_label: int, seed: int) -> np.ndarray:
    """Histology pseudo-labels, k-means on the image embedding within each slice (one label per ``spots_per_label``
    spots of that slice, unique across slices): labels found over all slices at once would, where the shared
    encoder mixes the slices, hold ``spots_per_label`` spots of all slices together and so take only a fraction
    of that many same-label negatives out of each anchor's own-slice denominator."""
    labels = np.empty(image.shape[0], dtype=np.int64)
    offset = 0
    for rows in (
        [np.arange(image.shape[0])] if slices is None else [np.flatnonzero(slices == s) for s in np.unique(slices)]
    ):
        n_labels = int(np.clip(round(rows.size / spots_per_label), 2, rows.size - 1))
        labels[rows] = offset + kmeans(image[rows], n_labels, seed=seed)
        offset += n_labels
    return labels


def assign_domains(
    adata: AnnData,
    embedding: np.ndarray,
    n_domains: int,
    *,
    cluster: str,
    refine: bool,
    refine_neighbors: int,
    slices: np.ndarray | None,
    seed: int,
    timings: dict[str, float],
) -> AnnData:
    """Cluster, refine per slice, write ``obs['domain']`` (string labels) and ``obsm['X_tissuegraph']``."""
    start = time.perf_counter()
    labels = cluster_embedding(embedding, n_domains, cluster, seed)
    if refine:
        clustered = len(np.unique(labels))
        labels = refine_labels(labels, adata.obsm["spatial"], n_neighbors=refine_neighbors, groups=slices)
        if len(np.unique(labels)) < clustered:
            warn(
                f"the spatial refinement absorbed {clustered - len(np.unique(labels))} of the {clustered} domains "
                "found (each was too small or scattered to win a majority anywhere); pass refine=False "
                "(--no-refine) to keep them"
            )
    timings["cluster_s"] = time.perf_counter() - start
    forget_markers(adata)
    adata.obs["domain"] = _domain_labels(labels)
    adata.obsm["X_tissuegraph"] = embedding
    adata.obsm.pop("X_umap", None)  # a layout of the previous embedding (ours or scanpy's) would show the old one
    return adata


def check_domain_request(n_domains: int, n_spots: int, cluster: str, *, seed: int = 0) -> None:
    """Reject a number of domains, a clusterer or a seed that cannot work, before any training."""
    check_seed(seed)
    if isinstance(n_domains, bool) or not isinstance(n_domains, int | np.integer):
        raise InputError(
            f"n_domains must be an integer (got {n_domains!r}, a {type(n_domains).__name__}); e.g. n_domains=7 "
            "(--n-domains 7)"
        )
    if n_domains < 2:
        raise InputError(f"n_domains must be at least 2 (got {n_domains}); ask for the number of domains you expect")
    if n_domains >= n_spots:
        raise InputError(f"asked for {n_domains} domains but the input has only {n_spots} spots; ask for fewer")
    _check_cluster_method(cluster)


def check_domains_input(
    adata: AnnData,
    n_domains: int,
    *,
    seed: int = 0,
    cluster: str = "gmm",
    batch_key: str = "batch",
    device: str | None = None,
    **settings_overrides,
) -> StaigSettings:
    """Everything ``domains`` refuses, checked before any work (the CLI calls it before computing image features):
    the settings, the input (counts, coordinates, spots per slice, a slice without counts), the number of domains,
    the clusterer, the seed and the device. Returns the settings as far as they follow from the input's genes."""
    settings = StaigSettings.from_data(adata.n_vars, **settings_overrides)
    validate_spatial(adata, min_spots=settings.n_neighbors + 1)
    check_domain_request(n_domains, adata.n_obs, cluster, seed=seed)
    gr.check_slice_sizes(adata, settings.n_neighbors, batch_key)
    gr.check_slice_counts(adata, batch_key)
    gr.check_slice_layouts(adata, batch_key, settings.n_neighbors)
    require_variation(check_counts(adata))  # here, not after the image encoder has trained for a minute
    pick_device(device)
    return settings


def domains(
    adata: AnnData,
    n_domains: int,
    *,
    seed: int = 0,
    cluster: str = "gmm",
    refine: bool = True,
    image: bool | None = None,
    batch_key: str = "batch",
    device: str | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
    **settings_overrides,
) -> AnnData:
    """Find ``n_domains`` spatial domains and write them into ``adata`` (in place; also returned).

    Results: ``obs['domain']`` (string labels), ``obsm['X_tissuegraph']`` (the L2-normalised embedding),
    ``obsp['spatial_connectivities']`` (the graph), ``var['highly_variable']`` and ``uns['tissuegraph']``
    (every setting used, the loss curve and timings). Raw counts in ``X`` and every spot stay as they were.
    Settings not given are derived from the data by ``StaigSettings.from_data``; keyword arguments
    (``tau=``, ``epochs=``, ``n_neighbors=`` ...) override them. ``image=None`` uses the H&E image when the input
    has one (image mode: ``obsm['X_image']``, computed by ``im.image_features`` unless already there), ``False``
    forces gene mode, ``True`` requires an image.
    """
    seed = check_seed(seed)  # numpy integers as int: torch's generators take no other
    settings = check_domains_input(
        adata, n_domains, seed=seed, cluster=cluster, batch_key=batch_key, device=device, **settings_overrides
    )
    timings: dict[str, float] = {}
    start = time.perf_counter()

    work, slices, library_size = _expression_workspace(adata, settings.n_top_genes, batch_key)
    timings["preprocess_s"] = time.perf_counter() - start
    mode = "image" if (has_image(adata, batch_key=batch_key) if image is None else image) else "gene"
    if mode == "image":
        work.obsm["X_image"] = image_embedding(adata, seed=seed, device=device, batch_key=batch_key, timings=timings)
    trained = staig_embedding(
        work, settings, slices=slices, seed=seed, device=device, on_epoch=on_epoch, timings=timings
    )
    assign_domains(
        adata,
        trained.embedding,
        n_domains,
        cluster=cluster,
        refine=refine,
        refine_neighbors=settings.refine_neighbors,
        slices=slices,
        seed=seed,
        timings=timings,
    )
    adata.obsp["spatial_connectivities"] = work.obsp["spatial_connectivities"]
    adata.var["highly_variable"] = work.var["highly_variable"].to_numpy()
    adata.uns["tissuegraph"] = {
        "method": "staig",
        "mode": mode,
        "n_domains": int(n_domains),
        "seed": int(seed),
        "cluster": cluster,
        "refine": bool(refine),
        "device": str(pick_device(device)),
        "n_slices": 1 if slices is None else int(slices.max() + 1),
        "batch_key": batch_key,
        "settings": settings.to_dict(),
        "library_size": library_size_source(library_size),
        "loss": np.asarray(trained.losses, dtype=np.float32),
        "timings": timings,
    }
    return adata


def image_domains(
    adata: AnnData,
    n_domains: int,
    *,
    seed: int = 0,
    cluster: str = "kmeans",
    device: str | None = None,
    batch_key: str = "batch",
    key_added: str = IMAGE_DOMAIN_KEY,
) -> AnnData:
    """Domains from the histology alone: ``obs[key_added]`` from clustering ``obsm['X_image']`` (computed by
    ``im.image_features`` when missing), to show what the H&E image separates without any expression."""
    check_domain_request(n_domains, adata.n_obs, cluster, seed=seed)
    if (
        "X_image" not in adata.obsm
    ):  # checked only when the embedding is computed: clustering a stored one reads no counts
        validate_spatial(adata)
    embedding = image_embedding(adata, seed=seed, device=device, batch_key=batch_key, timings={})
    labels = cluster_embedding(embedding, n_domains, cluster, seed)
    forget_markers(adata, key_added)
    adata.obs[key_added] = _domain_labels(labels)
    return adata


def expression_domains(
    adata: AnnData,
    n_domains: int,
    *,
    seed: int = 0,
    cluster: str = "kmeans",
    n_pcs: int = 50,
    n_top_genes: int = StaigSettings.n_top_genes,
    batch_key: str = "batch",
    key_added: str = "expression_domain",
) -> AnnData:
    """Domains from the expression alone: ``obs[key_added]`` from clustering ``n_pcs`` principal components of the
    features ``domains`` trains on (same genes, normalisation and scaling), with no spatial information.

    The baseline the spatial model should beat: where the domains are thinner than the spacing of the spots
    (e.g. one-spot-thick layers on 100 um legacy ST spots), smoothing over spatial neighbours can score below it.
    """
    validate_spatial(adata)
    check_domain_request(n_domains, adata.n_obs, cluster, seed=seed)
    check_whole(n_pcs, "n_pcs", 1)
    check_whole(n_top_genes, "n_top_genes", 1)
    work, _, _ = _expression_workspace(adata, n_top_genes, batch_key)
    pp.pca(work, n_pcs, use_rep="X_expr", seed=seed)
    labels = cluster_embedding(work.obsm["X_pca"], n_domains, cluster, seed)
    forget_markers(adata, key_added)
    adata.obs[key_added] = _domain_labels(labels)
    return adata
