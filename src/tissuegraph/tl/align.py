"""Optional rigid alignment of slices onto a reference slice, for display and 3-D stacking.

Integration itself needs no common coordinate frame; this step only moves coordinates. Spots that match across
slices in the embedding (mutual nearest neighbours, optionally within one landmark domain) serve as paired
points, and a rotation plus translation (no reflection, no scaling, so tissue shape is kept) is fitted to them.
"""

from __future__ import annotations

import numbers

import numpy as np
from anndata import AnnData

from tissuegraph.errors import InputError
from tissuegraph.gr.mnn import nearest_mnn_partner
from tissuegraph.gr.spatial import slice_groups
from tissuegraph.io.validate import check_coordinates, check_embedding

MIN_PAIRS = 3


def rigid_fit(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation R (det +1) and translation t minimising sum ||R @ s + t - target||^2 over paired rows (Kabsch).

    ``source`` and ``target`` are (n, d) arrays of paired points, d = 2 for slice coordinates.
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if source.ndim != 2 or source.shape != target.shape:
        raise InputError(
            f"source and target must be paired (n, d) arrays of the same shape (got {source.shape} and {target.shape})."
        )
    if source.shape[0] < 2:
        raise InputError(f"a rigid fit needs at least 2 paired points (got {source.shape[0]}).")
    source_mean = source.mean(axis=0)
    target_mean = target.mean(axis=0)
    cross = (source - source_mean).T @ (target - target_mean)
    u, _, vt = np.linalg.svd(cross)
    flip = np.ones(source.shape[1])
    flip[-1] = 1.0 if np.linalg.det(vt.T @ u.T) >= 0 else -1.0  # turn the best reflection into a rotation
    rotation = vt.T @ np.diag(flip) @ u.T
    return rotation, target_mean - rotation @ source_mean


def _slices(adata: AnnData, batch_key: str) -> dict[str, np.ndarray]:
    if batch_key not in adata.obs:
        raise InputError(
            f"obs['{batch_key}'] is missing, so the slices cannot be told apart; set batch_key= to the column "
            "naming each spot's slice."
        )
    names = adata.obs[batch_key].astype(str).to_numpy()
    return {names[rows[0]]: rows for rows in slice_groups(adata, batch_key)}


def _landmarks(adata: AnnData, rows: np.ndarray, name: str, domain: str | None, domain_key: str) -> np.ndarray:
    if domain is None:
        return rows
    keep = rows[adata.obs[domain_key].astype(str).to_numpy()[rows] == str(domain)]
    if keep.size == 0:
        found = sorted(adata.obs[domain_key].astype(str).iloc[rows].unique())
        raise InputError(
            f"landmark domain {domain!r} has no spots in slice {name!r} (its domains: {', '.join(found)}); pick a "
            "domain present in every slice, or leave landmark_domain out (omit --landmark) to use all spots."
        )
    return keep


def align(
    adata: AnnData,
    reference: str,
    *,
    batch_key: str = "batch",
    landmark_domain: str | None = None,
    domain_key: str = "domain",
    use_rep: str = "X_tissuegraph",
    k: int = 50,
    key_added: str = "spatial_aligned",
) -> AnnData:
    """Rotate and shift every slice onto slice ``reference``; writes ``obsm[key_added]`` (in place; also returned).

    For each other slice, each spot is paired with its nearest mutual nearest neighbour (``k`` nearest, in
    ``obsm[use_rep]``) among the reference spots, both restricted to ``obs[domain_key] == landmark_domain`` when
    given; ``rigid_fit`` on the paired ``obsm['spatial']`` coordinates gives the transform applied to the whole
    slice. The reference is copied unchanged and ``obsm['spatial']`` is never modified. Per slice, the rotation
    (degrees, counter-clockwise with y pointing up, so clockwise as drawn on an image, whose y points down),
    translation, number of pairs and the root-mean-square distance of the pairs
    after the fit go to ``uns['tissuegraph_alignment']``.
    """
    if "spatial" not in adata.obsm:
        raise InputError("no coordinates: obsm['spatial'] is missing; set it to an (n_spots, 2) array of x, y.")
    if key_added == "spatial":
        raise InputError("key_added='spatial' would overwrite the original coordinates; choose another name.")
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise InputError(f"k must be a positive integer (got {k!r}); the default is 50.")
    slices = _slices(adata, batch_key)
    reference = str(reference)
    if reference not in slices:
        raise InputError(
            f"reference slice {reference!r} not found in obs['{batch_key}'] (slices: {', '.join(slices)}); "
            "pass one of these names."
        )
    if use_rep not in adata.obsm:
        raise InputError(
            f"obsm['{use_rep}'] is missing, so spots cannot be matched across slices; run tissuegraph's "
            "integration first, or set use_rep= to an embedding in obsm."
        )
    if landmark_domain is not None and domain_key not in adata.obs:
        raise InputError(
            f"landmark_domain={landmark_domain!r} needs domain labels, but obs['{domain_key}'] is missing; run "
            "tissuegraph's domain detection first, set domain_key=, or leave landmark_domain out (omit --landmark) to "
            "use all spots."
        )
    embedding = check_embedding(adata.obsm[use_rep], adata.obs_names, f"obsm[{use_rep!r}]")
    coords = check_coordinates(adata, "the result")  # a NaN would end in the SVD or be copied into the aligned
    aligned = coords.copy()
    ref_rows = _landmarks(adata, slices[reference], reference, landmark_domain, domain_key)
    fits: dict[str, dict[str, object]] = {}
    for name, rows in slices.items():
        if name == reference:
            continue
        own = _landmarks(adata, rows, name, landmark_domain, domain_key)
        pairs = nearest_mnn_partner(embedding[own], embedding[ref_rows], k)
        if len(pairs) < MIN_PAIRS:
            # k is capped at half the smaller set (gr.mnn), so past that cap a larger k changes nothing
            wider = "raise k, " if k < min(len(own), len(ref_rows)) // 2 else ""
            raise InputError(
                f"slice {name!r} has {len(pairs)} mutual-nearest-neighbour pairs with reference {reference!r}, "
                f"but a rigid fit needs at least {MIN_PAIRS}; {wider}choose a larger landmark domain, or leave "
                "this slice out."
            )
        source = coords[own[pairs[:, 0]]]
        target = coords[ref_rows[pairs[:, 1]]]
        rotation, translation = rigid_fit(source, target)
        aligned[rows] = coords[rows] @ rotation.T + translation
        residual = source @ rotation.T + translation - target
        fits[name] = {
            "rotation_deg": float(np.degrees(np.arctan2(rotation[1, 0], rotation[0, 0]))),
            "translation": translation,
            "n_pairs": int(len(pairs)),
            "rmsd": float(np.sqrt(np.mean(np.sum(residual**2, axis=1)))),
        }
    adata.obsm[key_added] = aligned
    adata.uns["tissuegraph_alignment"] = {
        "reference": reference,
        "batch_key": batch_key,
        "landmark_domain": "" if landmark_domain is None else str(landmark_domain),
        "use_rep": use_rep,
        "k": int(k),
        "key_added": key_added,
        "slices": fits,
    }
    return adata
