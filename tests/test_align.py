"""Rigid alignment: the Kabsch fit recovers known rotations without reflecting, and align() undoes a known move."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from tissuegraph.errors import InputError
from tissuegraph.tl.align import align, rigid_fit


def _rotation(degrees: float) -> np.ndarray:
    a = np.radians(degrees)
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


def test_rigid_fit_recovers_rotation_and_translation_from_noisy_points() -> None:
    rng = np.random.default_rng(0)
    source = rng.uniform(0, 100, size=(200, 2))
    shift = np.array([12.0, -30.0])
    target = source @ _rotation(37).T + shift + rng.normal(scale=0.5, size=source.shape)
    rotation, translation = rigid_fit(source, target)
    np.testing.assert_allclose(rotation, _rotation(37), atol=2e-3)
    np.testing.assert_allclose(translation, shift, atol=0.3)
    assert np.linalg.det(rotation) == pytest.approx(1.0)


def test_rigid_fit_never_reflects() -> None:
    rng = np.random.default_rng(1)
    source = rng.uniform(-10, 10, size=(50, 2))
    mirrored = source * np.array([-1.0, 1.0])  # the best orthogonal fit is a reflection
    rotation, _ = rigid_fit(source, mirrored)
    assert np.linalg.det(rotation) == pytest.approx(1.0)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(2), atol=1e-12)
    with pytest.raises(InputError, match="same shape"):
        rigid_fit(source, source[:-1])


def _two_slices(seed: int = 0) -> tuple[ad.AnnData, np.ndarray]:
    """Slice A on a grid; slice B = A rotated by 37 degrees and shifted, shuffled, with the same embedding."""
    rng = np.random.default_rng(seed)
    xs, ys = np.meshgrid(np.arange(15.0), np.arange(15.0))
    coords_a = np.stack([xs.ravel(), ys.ravel()], axis=1) * 10
    embedding_a = np.column_stack([np.sin(coords_a / 23.0), np.cos(coords_a / 31.0), rng.normal(size=(225, 4))])
    order = rng.permutation(225)
    coords_b = coords_a[order] @ _rotation(37).T + np.array([500.0, -200.0])
    domain = np.where(coords_a[:, 0] < 60, "L1", "L2")
    adata = ad.AnnData(
        X=np.zeros((450, 3), dtype=np.float32),
        obs=pd.DataFrame(
            {"batch": ["A"] * 225 + ["B"] * 225, "domain": np.concatenate([domain, domain[order]])},
            index=[f"s{i}" for i in range(450)],
        ),
    )
    adata.obsm["spatial"] = np.vstack([coords_a, coords_b])
    adata.obsm["X_tissuegraph"] = np.vstack([embedding_a, embedding_a[order]])
    return adata, coords_a[order]


@pytest.mark.parametrize("landmark", [None, "L1"])
def test_align_recovers_reference_coordinates(landmark: str | None, tmp_path) -> None:
    adata, expected_b = _two_slices()
    before = adata.obsm["spatial"].copy()
    align(adata, "A", landmark_domain=landmark)
    np.testing.assert_array_equal(adata.obsm["spatial"], before)
    np.testing.assert_array_equal(adata.obsm["spatial_aligned"][:225], before[:225])
    np.testing.assert_allclose(adata.obsm["spatial_aligned"][225:], expected_b, atol=1e-6)
    fit = adata.uns["tissuegraph_alignment"]["slices"]["B"]
    assert fit["rotation_deg"] == pytest.approx(-37.0)
    assert fit["n_pairs"] == (225 if landmark is None else 90)
    assert fit["rmsd"] == pytest.approx(0.0, abs=1e-6)
    assert adata.uns["tissuegraph_alignment"]["reference"] == "A"
    adata.write_h5ad(tmp_path / "aligned.h5ad")  # the record must survive saving
    saved = ad.read_h5ad(tmp_path / "aligned.h5ad").uns["tissuegraph_alignment"]["slices"]["B"]
    assert saved["n_pairs"] == fit["n_pairs"]


def test_align_explains_bad_input() -> None:
    adata, _ = _two_slices()
    with pytest.raises(InputError, match="reference slice 'C' not found"):
        align(adata, "C")
    with pytest.raises(InputError, match="obsm\\['X_missing'\\] is missing"):
        align(adata, "A", use_rep="X_missing")
    with pytest.raises(InputError, match="obs\\['layer'\\] is missing"):
        align(adata, "A", landmark_domain="L1", domain_key="layer")
    with pytest.raises(InputError, match="no spots in slice 'B'"):
        align(adata[adata.obs["domain"].eq("L1") | adata.obs["batch"].eq("A")].copy(), "A", landmark_domain="L2")
    tiny = adata[np.r_[0, 1, 225, 226]].copy()  # two spots per slice: at most two pairs
    with pytest.raises(InputError, match="at least 3; choose a larger landmark domain"):  # k is capped at 1 here
        align(tiny, "A")
    apart = adata.copy()  # B far away but for one spot amid A: with k = 1 that spot is A's only partner
    embedding = apart.obsm["X_tissuegraph"]
    embedding[225:] += 1000.0
    embedding[225] = embedding[:225].mean(axis=0)
    with pytest.raises(InputError, match="has 1 mutual.*at least 3; raise k, choose"):  # k = 1 of a possible 112
        align(apart, "A", k=1)
    for k in (0, 10.0, "10", True):  # a float or text ended in scikit-learn's or Python's own error
        with pytest.raises(InputError, match=f"k must be a positive integer \\(got {k!r}\\)"):
            align(adata, "A", k=k)
    holed = adata.copy()
    holed.obsm["X_tissuegraph"][230] = np.nan
    with pytest.raises(InputError, match=r"obsm\['X_tissuegraph'\] has NaN or infinite values for 1 of 450 spots"):
        align(holed, "A")
    lost = adata.copy()  # a NaN position ended in the SVD, or was copied into the aligned coordinates unnoticed
    lost.obsm["spatial"][300] = np.nan
    with pytest.raises(InputError, match=r"NaN or infinite coordinates for 1 spots \(first: 's300'\)"):
        align(lost, "A")
    assert "spatial_aligned" not in adata.obsm and "spatial_aligned" not in lost.obsm
