"""``image_features``: the image half of STAIG image mode, from the H&E slide to a per-spot embedding.

Patches of every slice come from that slice's own image; one encoder is trained on all of them, so the
embedding space is shared across slices without aligning them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import numpy as np
from anndata import AnnData

from tissuegraph.errors import InputError, warn
from tissuegraph.gr.spatial import slice_groups
from tissuegraph.im.byol import DEFAULT_EPOCHS, Encoder, embed_patches, train_byol
from tissuegraph.im.filter import default_window, stain_filter
from tissuegraph.im.patches import (
    ImageInput,
    check_pixels,
    resolve_library,
    spatial_libraries,
    spot_diameter,
    spot_patches,
    stored_image,
)
from tissuegraph.im.pretrained import PretrainedEncoder
from tissuegraph.options import IMAGE_BACKBONES, check_seed, check_whole

IMAGE_DOMAIN_KEY = "image_domain"  # where tl.image_domains writes the domains of the histology alone


def _slices(
    adata: AnnData, library_id: str | None, batch_key: str = "batch"
) -> list[tuple[np.ndarray, str | None, str | None]]:
    """Rows, uns['spatial'] library and name of each slice (several when obs[batch_key] holds several values)."""
    groups = slice_groups(adata, batch_key)
    if len(groups) == 1:
        return [(groups[0], library_id, None)]
    if library_id is not None:
        raise InputError(
            f"library_id={library_id!r} names one library but obs[{batch_key!r}] holds {len(groups)} slices; leave it "
            f"out: each slice's library in uns['spatial'] is named by its obs[{batch_key!r}] value"
        )
    batch = adata.obs[batch_key].astype(str).to_numpy()
    return [(rows, batch[rows[0]], batch[rows[0]]) for rows in groups]


def _check_slice_library(
    libraries: Mapping[str, object], library: str | None, name: str | None, batch_key: str
) -> None:
    """Refuse a slice of several whose library is not stored; said here, not by resolve_library, whose advice
    (library_id=..., image=...) is refused with several slices."""
    if name is not None and library not in libraries:
        stored = ", ".join(map(repr, libraries)) or "none"
        raise InputError(
            f"slice {name!r} has no image in uns['spatial'] (libraries: {stored}); store each slice's image under "
            f"uns['spatial'][<slice name>] (the names in obs[{batch_key!r}]), pass image_features a dict "
            "image={slice name: image}, or run without images (image=False, --no-image)"
        )


def _holds_image(adata: AnnData) -> bool:
    """Whether uns['spatial'] holds anything meant as a slide image, malformed entries included (libraries whose
    'images' are missing or empty, as read_visium leaves them without image files, hold none)."""
    spatial = adata.uns.get("spatial")
    if not isinstance(spatial, Mapping):
        return spatial is not None
    for stored in spatial.values():
        images = stored.get("images", {}) if isinstance(stored, Mapping) else None
        if not (isinstance(images, Mapping) and len(images) == 0):
            return True
    return False


def has_image(adata: AnnData, *, batch_key: str = "batch") -> bool:
    """Whether image mode can run without an image argument: obsm['X_image'] exists or every slice (by
    ``obs[batch_key]``) has a stored slide image ('hires' or 'lowres' with its scale factor).

    No stored image means gene mode without a word; a stored image that cannot be used also means gene mode, but
    with a warning saying why, since whoever stored it most likely wanted image mode.
    """
    if "X_image" in adata.obsm:
        return True
    if not _holds_image(adata):
        return False
    slices = _slices(adata, None, batch_key)  # a slice-label problem is raised as itself, not as an image problem
    try:
        libraries = spatial_libraries(adata)
        for rows, library, name in slices:
            _check_slice_library(libraries, library, name, batch_key)
            resolved = resolve_library(adata, library)
            pixels, _, _ = stored_image(adata, resolved)
            check_pixels(pixels, "the stored image")
            spot_diameter(adata, resolved, np.asarray(adata.obsm["spatial"])[rows])
    except InputError as err:
        warn(
            f"uns['spatial'] holds an image that cannot be used, so this run uses gene mode ({err}); to use the "
            "image, fix that (image=... and scale=... go to tissuegraph.im.image_features, whose obsm['X_image'] is "
            "then used), or pass image=False (--no-image) to choose gene mode knowingly"
        )
        return False
    return True


def _reduce(embedding: np.ndarray, n_comps: int) -> np.ndarray:
    """Standardise each feature, then PCA to n_comps (capped by the numerical rank, and by spots - 1: centring
    leaves no more, and float32 rounding would pass off a constant column as one more); signs fixed for determinism."""
    centred = embedding.astype(np.float64) - embedding.mean(axis=0)
    std = centred.std(axis=0)
    centred /= np.where(std > 0, std, 1.0)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    rank = int((s > s[0] * 1e-6).sum()) if s.size and s[0] > 0 else 0
    k = max(1, min(n_comps, rank, embedding.shape[0] - 1))
    signs = np.sign(vt[np.arange(k), np.abs(vt[:k]).argmax(axis=1)])
    return (u[:, :k] * (s[:k] * signs)).astype(np.float32)


def _for_slice(given, what: str, name: str, batch_key: str):
    """A per-slice option's value for slice ``name``: its dict entry, or the one value every slice shares."""
    if not isinstance(given, Mapping):
        return given
    if name not in given:
        raise InputError(f"{what} has no entry for slice {name!r}; give one {what} per obs[{batch_key!r}] value")
    return given[name]


def image_record_key(key_added: str = "X_image") -> str:
    """Where ``image_features`` records how it made ``obsm[key_added]``."""
    return "tissuegraph_image" if key_added == "X_image" else f"tissuegraph_image_{key_added}"


def image_features(
    adata: AnnData,
    *,
    image: ImageInput | Mapping[str, ImageInput] | None = None,
    library_id: str | None = None,
    scale: float | Mapping[str, float] | None = None,
    size_factor: float = 3.5,
    out_px: int = 32,
    filter_window: int | None = None,
    use_filter: bool = True,
    n_comps: int = 64,
    backbone: str = "scratch",
    epochs: int | None = None,
    batch_size: int = 256,
    seed: int = 0,
    device: str | None = None,
    encoder: Encoder | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
    key_added: str = "X_image",
    batch_key: str = "batch",
) -> AnnData:
    """Patches -> stain filter -> BYOL encoder (or the given pre-fitted ``encoder``, no training) -> embedding ->
    standardise -> PCA, into ``obsm[key_added]``; settings and seconds per stage go to uns['tissuegraph_image']
    (``uns['tissuegraph_image_<key_added>']`` for another key, so that each embedding keeps its own record).

    ``backbone="scratch"`` trains a small CNN from scratch for ``epochs`` (default ``DEFAULT_EPOCHS``);
    ``"efficientnet-lite0"`` (optional extra) starts from ImageNet weights and by default uses them frozen
    (``epochs`` = 0; each BYOL epoch of this larger network costs about 60 s and 5-6 GB per Visium slice on 2 cores).

    ``image``, ``library_id`` and ``scale`` are as in ``spot_patches``; with several slices (``obs[batch_key]``)
    each slice's library is named by its batch value and ``image`` may map batch values to images, ``scale`` too
    (slides of different captures map full-resolution coordinates onto their images differently). A given encoder
    fixes ``out_px`` to the size it was trained on. Every image is checked before training starts. A new
    ``obsm['X_image']`` drops ``obs['image_domain']``, which was clustered from the one it replaces.
    """
    seed = check_seed(seed)  # numpy integers as int: torch's generators take no other
    slices = _slices(adata, library_id, batch_key)
    if len(slices) > 1 and image is not None and not isinstance(image, Mapping):
        raise InputError(
            f"one image was given for {len(slices)} slices; pass a dict {{obs[{batch_key!r}] value: image}} or leave "
            "image out to use each slice's stored image"
        )
    for what, given in (("image", image), ("scale", scale)):
        if len(slices) == 1 and isinstance(given, Mapping):
            raise InputError(f"{what} is a dict but the data holds one slice; pass the {what} itself")
    if backbone not in IMAGE_BACKBONES:
        raise InputError(f"unknown image backbone {backbone!r}; choose one of {', '.join(IMAGE_BACKBONES)}")
    if encoder is not None and backbone != "scratch":
        raise InputError(f"give either a fitted encoder or backbone={backbone!r}, not both")
    start_from = None
    if encoder is None and backbone != "scratch":
        start_from = PretrainedEncoder(backbone)  # fails here, before any work, when the extra is missing
        encoder = start_from
    if epochs is None:
        epochs = DEFAULT_EPOCHS if backbone == "scratch" else 0
    epochs = check_whole(epochs, "epochs", 0)
    batch_size = check_whole(batch_size, "batch_size", 2)  # batch normalisation needs two patches per batch
    n_comps = check_whole(n_comps, "n_comps", 1)
    if encoder is not None:
        out_px = encoder.input_px
    out_px = check_whole(out_px, "out_px", 8)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    patches = np.empty((adata.n_obs, out_px, out_px, 3), dtype=np.float32)
    libraries = spatial_libraries(adata)
    for rows, library, name in slices:
        picked, picked_scale = (
            _for_slice(given, what, name, batch_key) for what, given in (("image", image), ("scale", scale))
        )
        if not isinstance(image, Mapping):
            _check_slice_library(libraries, library, name, batch_key)
        part = adata if len(slices) == 1 else adata[rows]
        if isinstance(image, Mapping) and library not in libraries:
            # the slide is given and the slice stores no library: its spot size is estimated from its own spots, never
            # read from another slice's library (which spot_patches would otherwise pick as the only one stored)
            part, library = AnnData(obs=part.obs, obsm={"spatial": part.obsm["spatial"]}), None
        patches[rows] = spot_patches(
            part, image=picked, library_id=library, scale=picked_scale, size_factor=size_factor, out_px=out_px
        )
    timings["patches_s"] = time.perf_counter() - start

    start = time.perf_counter()
    window = default_window(out_px) if filter_window is None else filter_window
    patches = stain_filter(patches, window=window, enabled=use_filter)
    timings["filter_s"] = time.perf_counter() - start

    start = time.perf_counter()
    losses: list[float] = []
    trained = encoder is None or (start_from is not None and epochs > 0)
    if trained:
        result = train_byol(
            patches,
            epochs=epochs,
            batch_size=batch_size,
            encoder=start_from,
            seed=seed,
            device=device,
            on_epoch=on_epoch,
        )
        encoder, losses = result.encoder, result.losses
    timings["byol_s"] = time.perf_counter() - start

    start = time.perf_counter()
    embedding = embed_patches(encoder, patches, device=device)
    timings["embed_s"] = time.perf_counter() - start

    adata.obsm[key_added] = _reduce(embedding, n_comps)
    if key_added == "X_image":  # the image-only domains were clustered from the embedding just replaced
        adata.obs.drop(columns=IMAGE_DOMAIN_KEY, errors="ignore", inplace=True)
    adata.uns[image_record_key(key_added)] = {
        "key_added": key_added,
        "size_factor": float(size_factor),
        "out_px": int(out_px),
        "use_filter": bool(use_filter),
        "filter_window": int(window),
        "n_comps": int(adata.obsm[key_added].shape[1]),
        "encoder": "trained" if trained else ("pretrained" if start_from is not None else "given"),
        "backbone": encoder.config.get("backbone", "scratch"),
        "encoder_widths": list(encoder.widths),
        "epochs": int(epochs) if trained else 0,
        "batch_size": int(batch_size),
        "seed": int(seed),
        "losses": np.asarray(losses, dtype=np.float64),
        **{key: float(value) for key, value in timings.items()},
    }
    return adata
