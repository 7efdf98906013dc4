"""UMAP of the learned embedding, coloured by domain and by slice.

The neighbour graph UMAP lays out is built here in numpy (umap-learn's own graph step compiles parallel numba
kernels, 15-20 s on the first call of every process); the layout itself is umap-learn's. The 2-D
coordinates are cached in ``obsm['X_umap']`` and reused while the embedding and seed are unchanged.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.figure import Figure
from scipy import sparse
from sklearn.neighbors import NearestNeighbors

from tissuegraph.errors import InputError
from tissuegraph.gr.spatial import slice_column
from tissuegraph.io.validate import check_embedding
from tissuegraph.labels import sorted_labels
from tissuegraph.pl.palette import batch_palette, domain_palette, spot_colours
from tissuegraph.pl.spatial import label_legend, legend_inches, slices
from tissuegraph.pl.text import literal_text

CACHE_KEY = "tissuegraph_umap"


def fuzzy_graph(x: np.ndarray, n_neighbors: int = 15) -> sparse.csr_matrix:
    """UMAP's neighbour graph: k nearest neighbours with weights exp(-(d - rho_i) / sigma_i), fuzzy union.

    As in UMAP, a spot counts as one of its own ``n_neighbors`` (so k - 1 others); rho_i is the distance to
    the nearest distinct neighbour (every spot is fully connected to it) and sigma_i is found by bisection
    so the weights of a spot sum to log2(n_neighbors).
    """
    n = x.shape[0]
    k = min(n_neighbors, n) - 1
    dist, idx = NearestNeighbors(n_neighbors=k).fit(x).kneighbors()
    positive = np.where(dist > 0, dist, np.inf)
    rho = positive.min(axis=1)
    rho[~np.isfinite(rho)] = 0.0
    excess = np.maximum(dist - rho[:, None], 0.0)
    target = np.log2(k + 1)
    lo, hi, sigma = np.zeros(n), np.full(n, np.inf), np.ones(n)
    for _ in range(64):
        total = np.exp(-excess / sigma[:, None]).sum(axis=1)
        above = total > target
        hi = np.where(above, sigma, hi)
        lo = np.where(above, lo, sigma)
        sigma = np.where(np.isfinite(hi), (lo + hi) / 2, sigma * 2)
    floor = 1e-3 * np.where(dist.mean(axis=1) > 0, dist.mean(axis=1), max(float(dist.mean()), 1e-12))
    sigma = np.maximum(sigma, floor)
    weights = np.exp(-excess / sigma[:, None])
    graph = sparse.csr_matrix((weights.ravel(), (np.repeat(np.arange(n), k), idx.ravel())), shape=(n, n))
    return (graph + graph.T - graph.multiply(graph.T)).tocsr()


def compute_umap(x: np.ndarray, *, seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.5) -> np.ndarray:
    """2-D UMAP layout of ``x`` (seeded, single-threaded, so the same input gives the same picture)."""
    from umap.umap_ import find_ab_params, simplicial_set_embedding

    x = np.asarray(x, dtype=np.float32)
    a, b = find_ab_params(1.0, min_dist)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        layout, _ = simplicial_set_embedding(
            data=x,
            graph=fuzzy_graph(x, n_neighbors).tocoo(),
            n_components=2,
            initial_alpha=1.0,
            a=a,
            b=b,
            gamma=1.0,
            negative_sample_rate=5,
            n_epochs=None,
            init="spectral" if x.shape[0] > 3 else "random",  # the spectral start needs a 4th spot
            random_state=np.random.RandomState(seed),
            metric="euclidean",
            metric_kwds={},
            densmap=False,
            densmap_kwds={},
            output_dens=False,
        )
    return np.asarray(layout, dtype=np.float32)


def _fingerprint(x: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(x).tobytes()).hexdigest()


def umap_coordinates(adata: AnnData, *, use_rep: str = "X_tissuegraph", seed: int = 0) -> np.ndarray:
    """``obsm['X_umap']`` for ``obsm[use_rep]``: reused when cached from the same embedding and seed."""
    if use_rep not in adata.obsm:
        raise InputError(f"obsm[{use_rep!r}] not found; run tl.domains or tl.integrate first, or name it (use_rep=)")
    x = np.asarray(adata.obsm[use_rep])
    check_embedding(x, adata.obs_names, f"obsm[{use_rep!r}]")
    if x.shape[0] < 3:
        raise InputError(f"obsm[{use_rep!r}] must hold one row per spot and at least 3 spots for a UMAP")
    params = {"use_rep": use_rep, "seed": int(seed), "fingerprint": _fingerprint(x)}
    cached = adata.uns.get(CACHE_KEY)
    if (
        "X_umap" in adata.obsm
        and isinstance(cached, dict)
        and all(str(cached.get(k)) == str(v) for k, v in params.items())
    ):
        return np.asarray(adata.obsm["X_umap"])
    adata.obsm["X_umap"] = compute_umap(x, seed=seed)
    adata.uns[CACHE_KEY] = params
    return adata.obsm["X_umap"]


def _is_numeric(column: pd.Series, key: str, batch_key: str) -> bool:
    """Drawn with a colour bar; domains stay labels, coloured as in every other figure, even when stored as numbers."""
    return (
        key not in ("domain", batch_key)
        and pd.api.types.is_numeric_dtype(column)
        and not isinstance(column.dtype, pd.CategoricalDtype)
    )


def _colour_keys(adata: AnnData, color: str | Sequence[str], batch_key: str) -> list[str]:
    keys = [color] if isinstance(color, str) else list(color)
    out = []
    for key in keys:
        if key == batch_key:
            column = slice_column(adata, batch_key)  # a column named on purpose must exist
            if column is None or column.nunique() < 2:
                continue  # single-slice data: a one-colour slice panel says nothing
        if key not in adata.obs:
            raise InputError(f"obs[{key!r}] not found; colour by existing columns (color=...)")
        out.append(key)
    if not out:
        raise InputError("nothing to colour by; give obs columns in color=...")
    return out


@literal_text
def umap(
    adata: AnnData,
    *,
    use_rep: str = "X_tissuegraph",
    color: str | Sequence[str] | None = None,
    seed: int = 0,
    batch_key: str = "batch",
    panel_inches: float = 4.0,
) -> Figure:
    """UMAP of the embedding, one panel per ``color`` key (default: the domains and ``batch_key``; the slice panel
    is left out for a single slice).

    Domains keep their colours from ``domain_palette`` (also when stored as numbers); slices get colours from a
    separate set. Other numeric columns are drawn with a colour bar. Spots are drawn in one seeded random order for
    every panel, so no slice or domain hides the others. The coordinates are cached in ``obsm['X_umap']``.
    """
    keys = _colour_keys(adata, ("domain", batch_key) if color is None else color, batch_key)
    xy = umap_coordinates(adata, use_rep=use_rep, seed=seed)
    order = np.random.default_rng(seed).permutation(adata.n_obs)
    size = float(np.clip(120000 / adata.n_obs, 0.5, 30.0))
    labelled = [key for key in keys if not _is_numeric(adata.obs[key], key, batch_key)]
    legend = legend_inches(max([adata.obs[key].nunique() + 1 for key in labelled], default=1))  # 1: 'unannotated'
    fig = Figure(figsize=(len(keys) * (panel_inches + legend), panel_inches), layout="constrained")
    for i, key in enumerate(keys):
        ax = fig.add_subplot(1, len(keys), i + 1)
        column = adata.obs[key]
        if key not in labelled:
            values = column.to_numpy(dtype=np.float64)[order]
            points = ax.scatter(xy[order, 0], xy[order, 1], s=size, c=values, cmap="viridis", linewidths=0)
            fig.colorbar(points, ax=ax, label=key)
        else:
            if key == batch_key:
                palette = batch_palette([name for name, _ in slices(adata, key)])
            else:
                palette = domain_palette(adata, key)
            labels = column.iloc[order]
            ax.scatter(xy[order, 0], xy[order, 1], s=size, c=spot_colours(labels, palette), linewidths=0)
            present = set(sorted_labels(labels))
            names = [name for name in palette if name in present]
            label_legend(ax, palette, names, missing=bool(labels.isna().any()), title=key)
        ax.set_title(key)
        ax.set_xlabel("UMAP 1")
        ax.set_ylabel("UMAP 2")
        ax.set_xticks([])
        ax.set_yticks([])
    return fig
