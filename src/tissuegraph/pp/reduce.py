"""Linear dimension reduction of the expression features."""

from __future__ import annotations

import numpy as np
from anndata import AnnData
from sklearn.decomposition import PCA


def pca(
    adata: AnnData, n_comps: int = 64, *, use_rep: str = "X_expr", key_added: str = "X_pca", seed: int = 0
) -> AnnData:
    """PCA of ``obsm[use_rep]`` into ``obsm[key_added]``; the number of components is capped by the data's rank."""
    features = adata.obsm[use_rep]
    n_comps = int(min(n_comps, features.shape[0] - 1, features.shape[1]))
    model = PCA(
        n_components=n_comps,
        random_state=seed,
        svd_solver="randomized" if n_comps < 0.5 * features.shape[1] else "full",
    )
    adata.obsm[key_added] = model.fit_transform(features).astype(np.float32)
    return adata
