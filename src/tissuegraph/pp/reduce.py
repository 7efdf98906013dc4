"""Linear dimension reduction of the expression features."""

from __future__ import annotations

import numpy as np
from anndata import AnnData
from scipy import sparse
from sklearn.decomposition import PCA

from tissuegraph.errors import InputError
from tissuegraph.options import check_whole


def pca(
    adata: AnnData,
    n_comps: int = 64,
    *,
    use_rep: str = "X_expr",
    key_added: str = "X_pca",
    center: bool = True,
    seed: int = 0,
) -> AnnData:
    """PCA of ``obsm[use_rep]`` into ``obsm[key_added]``; ``n_comps`` is capped at min(n_obs - 1, n_features).

    ``center=False`` keeps the mean: each row's coordinates on the principal axes are those of the row itself,
    not of its difference from the mean, so a model that reads them sees its input restricted to the top axes.
    """
    n_comps = check_whole(n_comps, "n_comps (the number of principal components)", 1)
    if use_rep not in adata.obsm:
        present = ", ".join(map(repr, adata.obsm.keys())) or "nothing"
        raise InputError(
            f"PCA reads obsm[{use_rep!r}], which this AnnData lacks (obsm holds: {present}); run tg.pp.preprocess "
            "first for the expression features, or name the representation with use_rep="
        )
    features = adata.obsm[use_rep]
    if features.shape[0] < 2:
        raise InputError(f"PCA needs at least 2 spots; obsm[{use_rep!r}] holds {features.shape[0]}")
    if sparse.issparse(features):  # the features PCA runs on here (HVG expression, embeddings) are small enough
        features = features.toarray()
    n_comps = int(min(n_comps, features.shape[0] - 1, features.shape[1]))
    model = PCA(
        n_components=n_comps,
        random_state=seed,
        svd_solver="randomized" if n_comps < 0.5 * features.shape[1] else "full",
    )
    scores = model.fit_transform(features)
    if not center:
        scores += model.mean_ @ model.components_.T
    adata.obsm[key_added] = scores.astype(np.float32)
    return adata
