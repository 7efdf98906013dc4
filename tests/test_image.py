"""Image features: patch geometry against hand-computed crops, the stain filter's spectrum, BYOL on real patches."""

from __future__ import annotations

import sys
import warnings
from contextlib import contextmanager

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
from PIL import Image
from scipy.spatial.distance import pdist

from tissuegraph.errors import InputError, TissuegraphWarning
from tissuegraph.im import (
    PretrainedEncoder,
    embed_patches,
    has_image,
    image_features,
    load_encoder,
    save_encoder,
    spot_patches,
    stain_filter,
    train_byol,
)
from tissuegraph.im import features as features_module
from tissuegraph.im import patches as patches_module

SCALE = 0.5  # image pixels per coordinate unit
DIAMETER = 4.0  # coordinate units: 3.5 x 4 x 0.5 = 7 px patches


def _ramp_image(height: int = 60, width: int = 80) -> np.ndarray:
    """uint8 image whose red channel is the row and green channel the column, so a patch shows where it came from."""
    rows, cols = np.mgrid[:height, :width]
    return np.stack([rows, cols, np.full_like(rows, 7)], axis=-1).astype(np.uint8)


def _slide(image: np.ndarray, rows_cols: list[tuple[float, float]], **scalefactors: float) -> ad.AnnData:
    """A slice whose spots sit at the given image (row, col) positions, with the image stored as 'lowres'."""
    rc = np.asarray(rows_cols, dtype=float)
    adata = ad.AnnData(X=np.ones((len(rc), 2), dtype=np.float32))
    adata.obsm["spatial"] = rc[:, ::-1] / SCALE  # x, y in full-resolution units
    factors = {"tissue_lowres_scalef": SCALE, "spot_diameter_fullres": DIAMETER, **scalefactors}
    adata.uns["spatial"] = {"lib": {"images": {"lowres": image}, "scalefactors": factors}}
    return adata


SPOTS = [(20.0, 30.0), (33.0, 50.0), (2.0, 78.0), (45.0, 12.0)]  # the third sits at the top-right corner


def test_patches_match_hand_computed_crops_with_edge_padding() -> None:
    image = _ramp_image()
    patches = spot_patches(_slide(image, SPOTS), out_px=7)
    assert patches.shape == (4, 7, 7, 3) and patches.dtype == np.float32
    pixels = np.rint(patches * 255).astype(int)
    for patch, (row, col) in zip(pixels, SPOTS, strict=True):
        expected_rows = np.clip(np.arange(row - 3, row + 4), 0, 59).astype(int)
        expected_cols = np.clip(np.arange(col - 3, col + 4), 0, 79).astype(int)
        np.testing.assert_array_equal(patch[:, :, 0], np.repeat(expected_rows[:, None], 7, axis=1))
        np.testing.assert_array_equal(patch[:, :, 1], np.repeat(expected_cols[None, :], 7, axis=0))
        assert patch[3, 3, 0] == row and patch[3, 3, 1] == col
    corner = pixels[2]
    assert (corner[0, :, 0] == 0).all() and (corner[1, :, 0] == 0).all()  # rows -1 repeats the edge row 0
    assert (corner[:, -3:, 1] == 79).all()  # columns 79..81 repeat the edge column 79


def test_a_centre_a_float_step_below_half_a_pixel_gets_seven_consecutive_rows() -> None:
    """Each row was rounded on its own: for a centre at row 3.4999999999999996 row 4 was skipped and row 7 taken."""
    below_half = np.nextafter(3.5, 0.0)
    patches = spot_patches(_slide(_ramp_image(), [*SPOTS, (below_half, 30.0), (30.0, below_half)]), out_px=7)
    pixels = np.rint(patches * 255).astype(int)
    np.testing.assert_array_equal(pixels[4, :, 3, 0], np.arange(7))  # the block centred on row 3, its nearest
    np.testing.assert_array_equal(pixels[5, 3, :, 1], np.arange(7))


def test_resampled_patches_keep_their_centre() -> None:
    patches = spot_patches(_slide(_ramp_image().astype(np.float32) / 255, SPOTS), out_px=32)
    assert patches.shape == (4, 32, 32, 3)
    for patch, (row, col) in zip(patches[[0, 1, 3]], [SPOTS[0], SPOTS[1], SPOTS[3]], strict=True):
        assert patch[..., 0].mean() * 255 == pytest.approx(row, abs=1e-3)
        assert patch[..., 1].mean() * 255 == pytest.approx(col, abs=1e-3)


def test_diameter_falls_back_to_nearest_neighbour_distance() -> None:
    grid = [(20.0 + 2 * i, 30.0 + 2 * j) for i in range(3) for j in range(3)]  # 2 px = 4 units apart
    with_factor = spot_patches(_slide(_ramp_image(), grid), out_px=7)
    adata = _slide(_ramp_image(), grid)
    del adata.uns["spatial"]["lib"]["scalefactors"]["spot_diameter_fullres"]
    np.testing.assert_array_equal(spot_patches(adata, out_px=7), with_factor)


def test_wrong_scale_factor_fails_before_training(monkeypatch) -> None:
    adata = _slide(_ramp_image(), SPOTS, tissue_lowres_scalef=SCALE * 10)

    def no_training(*args, **kwargs):
        raise AssertionError("training started before the image was checked")

    monkeypatch.setattr(features_module, "train_byol", no_training)
    with pytest.raises(InputError, match="tissue_lowres_scalef.*= 5.*80 wide and 60 high"):
        image_features(adata)


def test_a_given_slide_for_a_slice_without_a_library_never_borrows_another_slices(monkeypatch) -> None:
    """Slice 'b' stores no library: its spot size is estimated from its spots, not read from slice 'a' (the only
    library stored, which spot_patches would otherwise take)."""
    grid = [(20.0 + 2 * i, 30.0 + 2 * j) for i in range(3) for j in range(3)]  # 2 px = 4 units apart
    a, b = _slide(_ramp_image(), grid), _slide(_ramp_image(), grid)
    a.uns["spatial"] = {"a": a.uns["spatial"]["lib"]}
    del b.uns["spatial"]
    joint = ad.concat([a, b], index_unique="-", uns_merge="first")
    joint.obs["batch"] = ["a"] * 9 + ["b"] * 9
    asked: list[str | None] = []
    diameter = patches_module.spot_diameter
    monkeypatch.setattr(
        patches_module, "spot_diameter", lambda adata, lib, xy: asked.append(lib) or diameter(adata, lib, xy)
    )
    image_features(joint, image={"a": _ramp_image(), "b": _ramp_image()}, scale=SCALE, epochs=0, n_comps=2, out_px=8)
    assert asked == ["a", None]


def _set_lowres(adata: ad.AnnData, image: np.ndarray) -> None:
    adata.uns["spatial"]["lib"]["images"]["lowres"] = image


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a.uns.pop("spatial"), "there is no image"),
        (lambda a: a.uns["spatial"].update(other=a.uns["spatial"]["lib"]), "several libraries"),
        (lambda a: a.uns["spatial"]["lib"]["images"].update(lowres=np.zeros((60, 80, 2))), "H x W"),
        (lambda a: a.uns["spatial"]["lib"]["images"].update(lowres=np.full((60, 80, 3), 255.0)), "divide by 255"),
        # a wide or signed integer type's maximum says nothing about the values' range: refused, not scaled by it
        (lambda a: _set_lowres(a, _ramp_image().astype(np.int64)), r"int64 integers.*image\.astype\(np\.uint8\)"),
        (lambda a: _set_lowres(a, _ramp_image().astype(np.int16) - 100), r"int16 integers.*uint16"),
        (lambda a: _set_lowres(a, np.where(_ramp_image() == 7, np.nan, _ramp_image() / 255)), "NaN or infinite"),
        (lambda a: _set_lowres(a, np.full((60, 80, 3), np.inf)), "NaN or infinite"),
        (lambda a: _set_lowres(a, np.full((60, 80, 3), "a")), "holds <U1 values, not pixel numbers"),
    ],
)
def test_unusable_images_are_refused(change, message: str) -> None:
    adata = _slide(_ramp_image(), SPOTS)
    change(adata)
    with pytest.raises(InputError, match=message):
        spot_patches(adata)


def test_floats_that_overshoot_by_rounding_are_clipped_and_further_ones_refused() -> None:
    """Resampled or stain-normalised float images stray from [0, 1] by rounding: 1.000001 was refused as 'to 1'."""
    unit = _ramp_image() / np.float64(255)
    overshoot = np.where(_ramp_image() == 7, 1.002, unit)  # the blue channel (7) overshoots, others unchanged
    undershoot = np.where(_ramp_image() == 0, -0.002, unit)
    for strayed in (overshoot, undershoot):
        patches = spot_patches(_slide(strayed, SPOTS), out_px=7)
        np.testing.assert_array_equal(patches, spot_patches(_slide(np.clip(strayed, 0, 1), SPOTS), out_px=7))
    with pytest.raises(InputError, match=r"floats from 0 to 1\.01; float images must lie in \[0, 1\]"):
        spot_patches(_slide(np.where(_ramp_image() == 7, 1.01, unit), SPOTS))


def _set_factor(adata: ad.AnnData, **factors: object) -> None:
    adata.uns["spatial"]["lib"]["scalefactors"].update(factors)


MALFORMED_SPATIAL = [
    (lambda a: a.uns.update(spatial={"lib": "oops"}), r"uns\['spatial'\]\['lib'\] is a str"),
    (lambda a: a.uns.update(spatial="hello"), r"uns\['spatial'\] is a str"),
    (lambda a: a.uns.update(spatial=np.array([1, 2, 3])), r"uns\['spatial'\] is a ndarray"),
    (lambda a: a.uns["spatial"]["lib"].update(images="x"), r"uns\['spatial'\]\['lib'\]\['images'\] is a str"),
    (
        lambda a: a.uns["spatial"]["lib"].update(scalefactors=[0.5]),
        r"uns\['spatial'\]\['lib'\]\['scalefactors'\] is a list",
    ),
]


@pytest.mark.parametrize(("change", "where"), MALFORMED_SPATIAL)
def test_malformed_uns_spatial_is_named_with_scanpy_layout(change, where: str) -> None:
    """Refused by name wherever the slide is looked up, never an AttributeError from inside the image code."""
    adata = _slide(_ramp_image(), SPOTS)
    change(adata)
    message = rf"{where}, not a mapping; uns\['spatial'\] must be laid out as scanpy writes it, \{{library_id: "
    with pytest.raises(InputError, match=message):
        spot_patches(adata)
    with pytest.raises(InputError, match=message):
        image_features(adata, out_px=8, epochs=1)  # what image=True and `tissuegraph image-features` run
    with pytest.warns(UserWarning, match=rf"cannot be used, so this run uses gene mode \({where}"):
        assert not has_image(adata)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda a: a.uns["spatial"]["lib"].pop("scalefactors"), r"\['lib'\] has no usable image \(images: lowres"),
        (
            lambda a: _set_factor(a, tissue_lowres_scalef=float("nan")),
            r"\['lib'\]\['scalefactors'\]\['tissue_lowres_scalef'\] is nan; it must",
        ),
        (
            lambda a: a.uns["spatial"].update(other=a.uns["spatial"]["lib"]),
            r" holds several libraries \('lib', 'other'",
        ),
        # judged before training as image mode would judge it (these stopped the run instead)
        (lambda a: _set_lowres(a, np.moveaxis(_ramp_image(), -1, 0)), r"the stored image has shape \(3, 60, 80\)"),
        (lambda a: _set_lowres(a, _ramp_image().astype(np.int32)), r"the image holds int32 integers"),
        (
            lambda a: _set_factor(a, spot_diameter_fullres=0),
            r"uns\['spatial'\]\['lib'\]\['scalefactors'\]\['spot_diameter_fullres'\] is 0",
        ),
    ],
)
def test_a_stored_image_that_cannot_be_used_means_gene_mode_with_a_warning(change, reason: str) -> None:
    adata = _slide(_ramp_image(), SPOTS)
    change(adata)
    with pytest.warns(
        UserWarning, match=rf"uses gene mode \((uns\['spatial'\])?{reason}.*pass image=False \(--no-image\)"
    ):
        assert not has_image(adata)


def test_no_stored_image_means_gene_mode_without_a_word() -> None:
    adata = _slide(_ramp_image(), SPOTS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        adata.uns["spatial"]["lib"] = {"images": {}, "scalefactors": {}}  # read_visium without image files
        assert not has_image(adata)
        del adata.uns["spatial"]
        assert not has_image(adata)


@pytest.mark.parametrize("diameter", [-5.0, 0.0, float("nan"), float("inf"), "abc", pytest.param(10**400, id="1e400")])
def test_spot_diameter_must_be_a_positive_number(diameter: object) -> None:
    """A stored diameter that is no positive number is refused, not silently replaced by the spacing estimate
    (which is for a missing key: test_diameter_falls_back_to_nearest_neighbour_distance)."""
    adata = _slide(_ramp_image(), SPOTS, spot_diameter_fullres=diameter)  # type: ignore[arg-type]
    shown = "1" + "0" * 400 if diameter == 10**400 else diameter
    with pytest.raises(
        InputError,
        match=rf"\['spot_diameter_fullres'\] is {shown}; it must be a positive number.*"
        "delete the key to let tissuegraph estimate",
    ):
        spot_patches(adata)


@pytest.mark.parametrize("scale", [0.0, float("nan"), float("inf")])
def test_given_scale_must_be_a_positive_number(scale: float) -> None:
    with pytest.raises(InputError, match=rf"scale is {scale}; it must be a positive number"):
        spot_patches(_slide(_ramp_image(), SPOTS), image=_ramp_image(), scale=scale)


def test_patches_wider_than_the_image_are_refused_before_any_pixel_is_gathered(monkeypatch) -> None:
    """An absurd spot diameter once asked for 277 GiB of patch pixels; it is refused before _gather allocates."""

    def no_gathering(*args, **kwargs):
        raise AssertionError("patches were gathered before their size was checked")

    monkeypatch.setattr(patches_module, "_gather", no_gathering)
    adata = _slide(_ramp_image(), SPOTS, spot_diameter_fullres=1e6)
    with pytest.raises(
        InputError,
        match=r"patches would be 1750000 px wide, more than the whole 80 x 60 image: spot "
        r"diameter 1e\+06 \(scalefactors\['spot_diameter_fullres'\]\)",
    ):
        spot_patches(adata)
    with pytest.raises(InputError, match=r"patches would be inf px wide"):
        spot_patches(_slide(_ramp_image(), SPOTS), size_factor=float("inf"))


def test_unknown_library_is_named_and_no_image_means_no_image_mode() -> None:
    adata = _slide(_ramp_image(), SPOTS)
    with pytest.raises(InputError, match="'nope' is not in uns"):
        spot_patches(adata, library_id="nope")
    assert has_image(adata)
    del adata.uns["spatial"]
    assert not has_image(adata)
    # also reached from `tissuegraph image-features`, which has no --no-image: the advice names where it applies
    with pytest.raises(InputError, match=r"in tl\.domains / tissuegraph domains, run in gene mode"):
        spot_patches(adata)


def test_integer_images_of_8_and_16_bits_and_bool_are_scaled() -> None:
    image = _ramp_image()
    expected = spot_patches(_slide(image, SPOTS), out_px=7)
    wide = spot_patches(_slide(image.astype(np.uint16) * 257, SPOTS), out_px=7)  # 0..65535: the same fractions
    np.testing.assert_allclose(wide, expected, atol=1e-6)
    swapped = spot_patches(_slide((image.astype(np.uint16) * 257).astype(">u2"), SPOTS), out_px=7)  # was refused
    np.testing.assert_array_equal(swapped, wide)
    mask = image[..., 1] >= 40  # the right half of the columns
    np.testing.assert_array_equal(spot_patches(_slide(mask, SPOTS), out_px=7)[..., 0], mask[_centre_blocks()])


def _centre_blocks() -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the 7 x 7 blocks around SPOTS (edge-clipped), for fancy indexing an image."""
    rows = np.stack([np.clip(np.arange(r - 3, r + 4), 0, 59) for r, _ in SPOTS]).astype(int)
    cols = np.stack([np.clip(np.arange(c - 3, c + 4), 0, 79) for _, c in SPOTS]).astype(int)
    return rows[:, :, None], cols[:, None, :]


def test_several_slices_without_their_images_are_named() -> None:
    """A slice without a stored image gets advice that works with several slices, not library_id=... or image=...."""
    image = _ramp_image()
    first, second = _slide(image, SPOTS), _slide(255 - image, SPOTS)
    first.uns["spatial"] = {"a": first.uns["spatial"]["lib"]}
    del second.uns["spatial"]
    joined = ad.concat({"a": first, "b": second}, label="batch", index_unique="-", uns_merge="unique")
    with pytest.warns(UserWarning, match=r"uses gene mode \(slice 'b' has no image in uns\['spatial'\]"):
        assert not has_image(joined)
    with pytest.raises(InputError, match=r"slice 'b' has no image in uns\['spatial'\] \(libraries: 'a'\)") as info:
        image_features(joined, out_px=8, epochs=1)
    assert "obs['batch']" in str(info.value) and "--no-image" in str(info.value)
    assert "library_id" not in str(info.value)
    # images filed under library names that are not the slice names
    joined.uns["spatial"] = {"lib1": first.uns["spatial"]["a"], "lib2": first.uns["spatial"]["a"]}
    with pytest.raises(InputError, match=r"slice 'a' has no image in uns\['spatial'\] \(libraries: 'lib1', 'lib2'\)"):
        image_features(joined, out_px=8, epochs=1)


def test_slices_named_by_another_column_find_their_images() -> None:
    """has_image follows batch_key, as tl.domains(batch_key=...) does: each slice's image is under its name."""
    image = _ramp_image()
    first, second = _slide(image, SPOTS), _slide(255 - image, SPOTS)
    joined = ad.concat({"a": first, "b": second}, label="section", index_unique="-")
    joined.uns["spatial"] = {"a": first.uns["spatial"]["lib"], "b": second.uns["spatial"]["lib"]}
    assert has_image(joined, batch_key="section")
    with pytest.warns(UserWarning, match="several libraries"):  # no obs['batch']: one slice, two libraries
        assert not has_image(joined)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"batch_size": 0}, r"batch_size must be a whole number >= 2 \(got 0\)"),
        ({"batch_size": 1}, r"batch_size must be a whole number >= 2 \(got 1\)"),
        ({"batch_size": -5}, r"batch_size must be a whole number >= 2 \(got -5\)"),
        ({"epochs": -1}, r"epochs must be a whole number >= 0 \(got -1\)"),
        ({"epochs": 1.5}, r"epochs must be a whole number >= 0 \(got 1.5\)"),
        ({"n_comps": 0}, r"n_comps must be a whole number >= 1 \(got 0\)"),
        ({"out_px": -1}, r"out_px must be a whole number >= 8 \(got -1\)"),
        ({"out_px": 2.5}, r"out_px must be a whole number >= 8 \(got 2.5\)"),
    ],
)
def test_image_settings_that_cannot_work_are_refused_before_any_patch(setting: dict, message: str, monkeypatch) -> None:
    """Some crashed deep in training (batch_size 0 or 1), others ran silently wrong (epochs=-1: untrained)."""
    monkeypatch.setattr(features_module, "spot_patches", lambda *a, **k: pytest.fail("patches were cut"))
    with pytest.raises(InputError, match=message):
        image_features(_slide(_ramp_image(), SPOTS), **setting)


def test_a_file_that_is_no_saved_encoder_is_named(tmp_path) -> None:
    import torch

    from tissuegraph.im.byol import load_encoder

    (tmp_path / "notes.pt").write_text("hello")
    torch.save({"a": 1}, tmp_path / "dict.pt")
    for name in ("notes.pt", "dict.pt"):
        with pytest.raises(InputError, match=rf"{name} is not an image encoder written by save_encoder"):
            load_encoder(tmp_path / name)


def test_an_embedding_under_another_key_keeps_its_own_record(monkeypatch) -> None:
    """A second embedding (key_added='X_alt', seed 5) must not overwrite the record of obsm['X_image'] (seed 0),
    which tl.domains reads to warn about a reused embedding of another seed."""
    from tissuegraph.im.features import image_record_key

    adata = _slide(_ramp_image(), SPOTS)
    image_features(adata, out_px=8, epochs=1, batch_size=2, seed=0)
    image_features(adata, out_px=8, epochs=1, batch_size=2, seed=5, key_added="X_alt")
    assert adata.uns[image_record_key()]["seed"] == 0 and adata.uns[image_record_key("X_alt")]["seed"] == 5
    assert adata.uns["tissuegraph_image_X_alt"]["key_added"] == "X_alt"


def test_a_stored_image_embedding_from_another_seed_is_reused_with_a_warning() -> None:
    from tissuegraph.tl.domains import image_embedding

    adata = _slide(_ramp_image(), SPOTS)
    adata.obsm["X_image"] = np.arange(8, dtype=np.float32).reshape(4, 2)
    adata.uns["tissuegraph_image"] = {"seed": 0, "encoder": "trained"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert image_embedding(adata, seed=0, device=None, batch_key="batch", timings={}) is adata.obsm["X_image"]
    with pytest.warns(UserWarning, match=r"computed with seed 0 and is reused .* seed 3 does not fix the whole result"):
        image_embedding(adata, seed=3, device=None, batch_key="batch", timings={})
    adata.uns["tissuegraph_image"]["encoder"] = "given"  # a fitted encoder: the seed never entered the features
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image_embedding(adata, seed=3, device=None, batch_key="batch", timings={})
    del adata.uns["tissuegraph_image"]  # the caller's own embedding: no record, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image_embedding(adata, seed=3, device=None, batch_key="batch", timings={})


def test_few_spots_outside_the_image_are_warned_about() -> None:
    """Up to 5% of centres off the image pass the cover check; they are named, since their patches are no tissue."""
    inside = [(10.0 + 2 * i, 10.0 + 2 * j) for i in range(4) for j in range(5)]
    adata = _slide(_ramp_image(), [*inside, (30.0, 300.0)])  # column 300 of an 80 px wide image
    adata.obs_names = [f"s{i}" for i in range(20)] + ["far"]
    with pytest.warns(UserWarning, match=r"1 of 21 spot centres fall outside the 80 x 60 image \(e\.g\. 'far'\)"):
        patches = spot_patches(adata, out_px=7)
    assert (np.rint(patches[-1, ..., 1] * 255) == 79).all()  # the far spot's patch is the repeated last column
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spot_patches(adata[:20], out_px=7)  # all inside: no warning


def _section_on_glass(size: int = 240, fluorescence: bool = False, grey: bool = False) -> np.ndarray:
    """A round pink section (radius size / 4, centred) on grey glass, with pixel noise; or, as fluorescence, a
    green section on black; grey drops the colour."""
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[:size, :size]
    inside = (rows - size / 2) ** 2 + (cols - size / 2) ** 2 < (size / 4) ** 2
    glass, tissue = ([0.02, 0.02, 0.02], [0.2, 0.7, 0.3]) if fluorescence else ([0.8, 0.8, 0.8], [0.75, 0.45, 0.7])
    image = np.where(inside[..., None], tissue, glass) + rng.normal(0, 0.02, (size, size, 3))
    if grey:
        image = np.repeat(image.mean(axis=2, keepdims=True), 3, axis=2)
    return np.clip(image, 0, 1).astype(np.float32)


def _grid(centre: tuple[float, float], half_width: float, step: float = 6.0) -> list[tuple[float, float]]:
    offsets = np.arange(-half_width, half_width + 1e-9, step)
    return [(centre[0] + dr, centre[1] + dc) for dr in offsets for dc in offsets]


@pytest.mark.parametrize("style", [{}, {"fluorescence": True}, {"grey": True}, {"fluorescence": True, "grey": True}])
def test_spots_must_sit_on_the_tissue_of_the_image(style: dict) -> None:
    """H&E on glass, fluorescence on black, with or without colour: spots on the section pass, spots on the
    glass (the coordinates of another image, a scale factor of another resolution) are refused."""
    image = _section_on_glass(**style)
    on_section = _grid((120.0, 120.0), 36.0)
    assert spot_patches(_slide(image, on_section, spot_diameter_fullres=8.0), out_px=7).shape[0] == len(on_section)
    on_glass = _grid((40.0, 40.0), 24.0)
    with pytest.raises(InputError, match=r"only 0% of the spots sit on tissue.*scale factor.*--no-image"):
        spot_patches(_slide(image, on_glass, spot_diameter_fullres=8.0), out_px=7)
    half_and_half = on_section[:30] + on_glass[:36]  # 30 of 66 on the section: fewer than half
    with pytest.raises(InputError, match="only 45% of the spots sit on tissue"):
        spot_patches(_slide(image, half_and_half, spot_diameter_fullres=8.0), out_px=7)


def test_a_blank_image_is_refused() -> None:
    rng = np.random.default_rng(0)
    noisy_glass = np.clip(0.8 + rng.normal(0, 0.02, (60, 80, 1)), 0, 1).repeat(3, axis=2).astype(np.float32)
    for image in (np.zeros((60, 80, 3), np.float32), np.ones((60, 80, 3), np.float32), noisy_glass):
        with pytest.raises(InputError, match=r"the image is blank: smoothed over a spot.*--no-image"):
            spot_patches(_slide(image, SPOTS), out_px=7)


def test_a_dim_fluorescence_image_is_judged_by_its_own_range() -> None:
    """A 12-bit camera image stored as uint16 spans only 0..4095 of 0..65535: it is dim, not blank."""
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[:240, :240]
    inside = (rows - 120) ** 2 + (cols - 120) ** 2 < 60**2
    image = np.clip(np.where(inside, 1000, 100) + rng.normal(0, 30, (240, 240)), 0, 4095).astype(np.uint16)
    on_section = _grid((120.0, 120.0), 36.0)
    with pytest.warns(TissuegraphWarning, match=r"brightest pixel is 1\.[0-9]% of its type's range.*image \* 16"):
        patches = spot_patches(_slide(image, on_section, spot_diameter_fullres=8.0), out_px=7)
    assert patches.shape[0] == len(on_section)
    with pytest.raises(InputError, match="only 0% of the spots sit on tissue"):
        spot_patches(_slide(image, _grid((30.0, 30.0), 18.0), spot_diameter_fullres=8.0), out_px=7)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TissuegraphWarning)  # the same image on its full range: no word
        spot_patches(_slide(image * 16, on_section, spot_diameter_fullres=8.0), out_px=7)


def test_an_image_without_background_is_not_judged() -> None:
    """An image cropped to the section has no glass to tell the background by, and a section with holes of glass
    has glass that does not hold the border: no spot is refused for either."""
    image = _section_on_glass()[80:160, 80:160]  # inside the section, which spans 60..180
    rng = np.random.default_rng(1)
    spots = [tuple(p) for p in rng.uniform(5, 75, (40, 2))]
    assert spot_patches(_slide(image, spots, spot_diameter_fullres=8.0), out_px=7).shape[0] == 40
    rows, cols = np.mgrid[:240, :240]
    holes = ((rows - 60) ** 2 + (cols - 60) ** 2 < 40**2) | ((rows - 170) ** 2 + (cols - 170) ** 2 < 50**2)
    pink = np.where(holes[..., None], [0.8, 0.8, 0.8], [0.75, 0.45, 0.7]) + rng.normal(0, 0.02, (240, 240, 3))
    on_pink = [(r, c) for r, c in _grid((120.0, 120.0), 110.0) if not holes[int(r), int(c)]]
    adata = _slide(np.clip(pink, 0, 1).astype(np.float32), on_pink, spot_diameter_fullres=8.0)
    assert spot_patches(adata, out_px=7).shape[0] == len(on_pink)


def test_spots_marked_off_tissue_are_not_held_against_the_image() -> None:
    """An unfiltered matrix (raw_feature_bc_matrix) holds the spots over glass too; Space Ranger's in_tissue marks
    say which to check, so a section covering a third of the capture area passes."""
    image = _section_on_glass()
    capture_area = _grid((120.0, 120.0), 90.0)
    rows, cols = np.mgrid[:240, :240]
    section = (rows - 120) ** 2 + (cols - 120) ** 2 < 60**2
    adata = _slide(image, capture_area, spot_diameter_fullres=8.0)
    with pytest.raises(InputError, match="sit on tissue"):
        spot_patches(adata, out_px=7)
    adata.obs["in_tissue"] = [int(section[int(r), int(c)]) for r, c in capture_area]
    assert adata.obs["in_tissue"].mean() < 0.5
    assert spot_patches(adata, out_px=7).shape[0] == adata.n_obs


def test_a_large_image_is_checked_on_a_thumbnail(monkeypatch) -> None:
    """Beyond THUMBNAIL_PX the check reads every step-th pixel: spot positions are mapped onto it."""
    monkeypatch.setattr(patches_module, "THUMBNAIL_PX", 100)  # the 240 px slide is read with step 3
    image = _section_on_glass()
    spot_patches(_slide(image, _grid((120.0, 120.0), 36.0), spot_diameter_fullres=8.0), out_px=7)
    with pytest.raises(InputError, match="only 0% of the spots sit on tissue"):
        spot_patches(_slide(image, _grid((200.0, 200.0), 18.0), spot_diameter_fullres=8.0), out_px=7)


@pytest.mark.realdata
def test_real_slide_passes_and_a_shrunk_one_is_refused(dlpfc_151673) -> None:
    """On the real 151673 H&E almost every spot sits on tissue, and a window cropped inside the section (no glass to
    judge by) passes too; the coordinates halved (a scale factor of another resolution) or mapped to a third put most
    spots on glass or the fiducial frame."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # as given: no orientation fits better
        spot_patches(dlpfc_151673, out_px=8)
    image, scale, _ = patches_module.stored_image(dlpfc_151673, "151673")
    height = np.asarray(image).shape[0] / scale  # full-resolution pixels
    for name, xy, share in (
        (r"x and y swapped \(x <-> y\)", dlpfc_151673.obsm["spatial"][:, ::-1], 86),
        (
            r"y mirrored \(y -> H - y\)",
            np.c_[dlpfc_151673.obsm["spatial"][:, 0], height - dlpfc_151673.obsm["spatial"][:, 1]],
            91,
        ),
    ):
        turned = dlpfc_151673.copy()
        turned.obsm["spatial"] = xy
        with pytest.warns(
            UserWarning, match=f"^{share}% of the spots sit on tissue .*slice '151673'.*; with {name}, 98%"
        ):
            spot_patches(turned, out_px=8)
    y = dlpfc_151673.obsm["spatial"][:, 1]
    with warnings.catch_warnings():  # half a section: a mirror lays its pale half onto stained tissue, but covers half
        warnings.simplefilter("error")
        spot_patches(dlpfc_151673[y < np.median(y)].copy(), out_px=8)
    wider = np.ones((600, 900, 3), np.float32) * np.median(np.asarray(image)[:5].reshape(-1, 3), axis=0)
    wider[:, 100:700] = np.asarray(image)  # a wider scan: swapped, fewer than half of the spots land on tissue
    swapped = dlpfc_151673.copy()
    swapped.obsm["spatial"] = (dlpfc_151673.obsm["spatial"] + [100 / scale, 0])[:, ::-1]
    with pytest.raises(
        InputError, match=r"only 47% of the spots sit on tissue.*; with x and y swapped \(x <-> y\), 98%"
    ):
        spot_patches(swapped, image=wider, scale=scale, out_px=8)
    r0, c0, width = 370, 190, 60  # a 1.3 mm window inside the section: tissue only, its textures split by Otsu
    xy = dlpfc_151673.obsm["spatial"] * scale - [c0, r0]
    inside = ((xy >= 0) & (xy < width)).all(axis=1)
    window = dlpfc_151673[inside].copy()
    window.obsm["spatial"] = xy[inside] / scale
    crop = np.ascontiguousarray(np.asarray(image)[r0 : r0 + width, c0 : c0 + width])
    assert spot_patches(window, image=crop, scale=scale, out_px=8).shape[0] == window.n_obs > 100
    for factor in (0.5, 0.3):
        shrunk = dlpfc_151673.copy()
        shrunk.obsm["spatial"] = dlpfc_151673.obsm["spatial"] * factor
        with pytest.raises(InputError, match=r"only \d+% of the spots sit on tissue in the image \(obsm\['spatial'\]"):
            spot_patches(shrunk, out_px=8)


def test_image_files_equal_the_in_memory_image(tmp_path, monkeypatch) -> None:
    image = _ramp_image()
    adata = _slide(image, SPOTS)
    expected = spot_patches(adata, image=image, scale=SCALE, out_px=16)
    Image.fromarray(image).save(tmp_path / "slide.png")
    tifffile.imwrite(tmp_path / "slide.tif", image, tile=(16, 16), compression="zlib")
    tifffile.imwrite(tmp_path / "planar.tiff", np.moveaxis(image, -1, 0), photometric="rgb", planarconfig="separate")
    monkeypatch.setattr(patches_module, "_BAND_BYTES", 80 * 3 * 12)  # 12-row bands: several windows per file
    tifffile.imwrite(tmp_path / "lzw.tif", image, tile=(16, 16), compression="lzw")  # as slide scanners write
    for name in ("slide.png", "slide.tif", "planar.tiff", "lzw.tif"):
        got = spot_patches(adata, image=tmp_path / name, scale=SCALE, out_px=16)
        np.testing.assert_array_equal(got, expected)
    rgba = np.concatenate([image, np.full_like(image[..., :1], 255)], axis=-1)
    np.testing.assert_array_equal(spot_patches(adata, image=rgba, scale=SCALE, out_px=16), expected)
    grey = spot_patches(adata, image=image[..., 0], scale=SCALE, out_px=16)
    np.testing.assert_array_equal(grey, np.repeat(expected[..., :1], 3, axis=-1))
    with pytest.raises(InputError, match="default scale.*full resolution"):
        spot_patches(adata, image=tmp_path / "slide.tif")


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_tiff_bands_stay_within_their_byte_budget_for_wide_pixels(tmp_path, monkeypatch, dtype) -> None:
    """Bands were sized for 3-byte pixels: a 16-bit RGB TIFF read twice the budget per window, a float one four
    times."""
    image = _ramp_image()
    adata = _slide(image, SPOTS)
    expected = spot_patches(adata, image=image, scale=SCALE, out_px=16)
    wide = image.astype(dtype) * (257 if dtype == np.uint16 else np.float32(1 / 255))
    tifffile.imwrite(tmp_path / "wide.tif", wide, tile=(16, 16))
    budget = 80 * 3 * 12
    monkeypatch.setattr(patches_module, "_BAND_BYTES", budget)
    read_bytes: list[int] = []
    real_open = patches_module._open_tiff

    @contextmanager
    def counting_open(path):
        with real_open(path) as source:

            def read(*window: int) -> np.ndarray:
                block = source.read(*window)
                read_bytes.append(block.nbytes)
                return block

            yield source._replace(read=read)

    monkeypatch.setattr(patches_module, "_open_tiff", counting_open)
    got = spot_patches(adata, image=tmp_path / "wide.tif", scale=SCALE, out_px=16)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert len(read_bytes) > 2 and max(read_bytes) <= budget


def test_tiffs_whose_samples_are_not_the_colours_are_refused(tmp_path) -> None:
    """Palette indices were read as grey levels, CMYK as RGB, inverted grey as grey: silently wrong patches. A JPEG
    named .tif ended in tifffile's own error."""
    image = _ramp_image()
    adata = _slide(image, SPOTS)
    tifffile.imwrite(tmp_path / "cmyk.tif", np.concatenate([image, image[..., :1]], -1), photometric="separated")
    tifffile.imwrite(tmp_path / "inverted.tif", image[..., 0], photometric="miniswhite")
    palette = np.zeros((3, 256), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "palette.tif", image[..., 0], photometric="palette", colormap=palette)
    for name, model in (("cmyk.tif", "SEPARATED"), ("inverted.tif", "MINISWHITE"), ("palette.tif", "PALETTE")):
        with pytest.raises(InputError, match=f"stores its pixels as {model} \\(not RGB or grey values\\)"):
            spot_patches(adata, image=tmp_path / name, scale=SCALE, out_px=16)
    Image.fromarray(image).save(tmp_path / "photo.tif", format="JPEG")
    with pytest.raises(InputError, match=r"photo.tif is not a TIFF file .*give a TIFF, PNG or JPEG named by its"):
        spot_patches(adata, image=tmp_path / "photo.tif", scale=SCALE, out_px=16)


def test_16_bit_grey_files_keep_their_range(tmp_path) -> None:
    """Pillow opens 16-bit grey as 'I;16' (PNG) or 'I' (PGM); converting those to RGB would clip them to white."""
    grey = np.linspace(0, 65535, 60 * 80).reshape(60, 80).astype(np.uint16)
    adata = _slide(_ramp_image(), SPOTS)
    expected = spot_patches(adata, image=grey, scale=SCALE, out_px=7)
    assert expected.min() < 0.1 and expected.max() > 0.75  # the spots span the ramp: dark to bright
    for name in ("grey16.png", "grey16.pgm"):
        Image.fromarray(grey).save(tmp_path / name)
        np.testing.assert_array_equal(spot_patches(adata, image=tmp_path / name, scale=SCALE, out_px=7), expected)
    unit = grey.astype(np.float32) / 65535  # 32-bit float grey ('F'): was clipped to 0 and 1, then called blank
    np.testing.assert_allclose(patches_module._pillow_array(Image.fromarray(unit), tmp_path / "f.tif")[..., 0], unit)
    wide = Image.fromarray(np.array([[0, 70000]], dtype=np.int32))  # mode 'I' beyond 16 bits
    with pytest.raises(InputError, match="from 0 to 70000.*16-bit"):
        patches_module._pillow_array(wide, tmp_path / "wide.png")


def _sinusoids(low: int, high: int, size: int = 32) -> np.ndarray:
    rows, cols = np.mgrid[:size, :size] / size
    plane = 0.5 + 0.2 * np.sin(2 * np.pi * low * cols) + 0.2 * np.sin(2 * np.pi * high * rows)
    return np.repeat(plane[None, :, :, None], 3, axis=-1).astype(np.float32)


def test_filter_keeps_low_and_removes_high_frequencies() -> None:
    patches = _sinusoids(low=2, high=12)
    filtered = stain_filter(patches)  # default window 17: up to 8 cycles per patch
    before, after = (np.abs(np.fft.fft2(p[0, :, :, 0] - p[0, :, :, 0].mean())) ** 2 for p in (patches, filtered))
    assert after[0, 2] / before[0, 2] > 0.5
    assert after[12, 0] / before[12, 0] < 1e-4
    assert stain_filter(patches, enabled=False) is patches
    narrow = stain_filter(patches, window=3)  # keeps only 1 cycle per patch: the low sinusoid goes too
    assert np.abs(np.fft.fft2(narrow[0, :, :, 0]))[0, 2] ** 2 / before[0, 2] < 1e-3


@pytest.mark.parametrize("size", [32, 40])
def test_default_window_keeps_structure_down_to_a_period_of_four_pixels(size: int) -> None:
    """The documented default: frequencies up to size / 4 cycles per patch (a 4-pixel period) pass untouched."""
    cut = size // 4
    patches = _sinusoids(low=cut, high=cut + 1, size=size)  # cut cycles along the columns, cut + 1 along the rows
    filtered = stain_filter(patches, sigma=0.0)  # no blur: the spectral window alone
    before, after = (np.abs(np.fft.fft2(p[0, :, :, 0])) ** 2 for p in (patches, filtered))
    assert after[0, cut] / before[0, cut] == pytest.approx(1.0, abs=1e-4)
    assert after[cut + 1, 0] / before[cut + 1, 0] < 1e-8
    assert after[0, 0] / before[0, 0] == pytest.approx(1.0, abs=1e-4)  # the mean stays


@pytest.mark.parametrize("sigma", [1.0, 2.0])
def test_blur_reflects_the_image_at_its_borders(sigma: float) -> None:
    """Gaussian blur with mirrored borders (d c b | a b c d | c b a): scipy's 'mirror' mode, 3-sigma kernel."""
    import torch
    from scipy import ndimage

    from tissuegraph.im.filter import gaussian_blur

    images = np.random.default_rng(0).random((2, 3, 12, 9))
    blurred = gaussian_blur(torch.from_numpy(images), sigma).numpy()
    expected = ndimage.gaussian_filter(images, sigma=(0, 0, sigma, sigma), mode="mirror", truncate=3.0)
    np.testing.assert_allclose(blurred, expected, atol=1e-10)
    constant = gaussian_blur(torch.full((1, 1, 10, 7), 0.3, dtype=torch.float64), sigma).numpy()
    np.testing.assert_allclose(constant, 0.3, atol=1e-12)
    ramp = torch.arange(10.0, dtype=torch.float64)[:, None].expand(10, 7).contiguous()
    ramp_blurred = gaussian_blur(ramp[None, None], sigma).numpy()[0, 0]
    taps = np.arange(-3 * sigma, 3 * sigma + 1)
    weights = np.exp(-0.5 * (taps / sigma) ** 2) / np.exp(-0.5 * (taps / sigma) ** 2).sum()
    radius = int(3 * sigma)
    np.testing.assert_allclose(ramp_blurred[radius:-radius], ramp.numpy()[radius:-radius])  # a line away from borders
    np.testing.assert_allclose(ramp_blurred[0], (weights * np.abs(taps)).sum())  # row -t mirrors row t
    np.testing.assert_allclose(ramp_blurred[-1], 9 - (weights * np.abs(taps)).sum())


@pytest.fixture(scope="module")
def real_patches(dlpfc_151673) -> np.ndarray:
    return stain_filter(spot_patches(dlpfc_151673[:512]))


@pytest.mark.realdata
def test_byol_learns_and_is_reproducible(real_patches, tmp_path) -> None:
    # on the CPU: a seed fixes the result bit for bit only on a given device
    first = train_byol(real_patches, epochs=3, batch_size=128, seed=0, device="cpu")
    second = train_byol(real_patches, epochs=3, batch_size=128, seed=0, device="cpu")
    assert first.losses[-1] < first.losses[0]
    embedding = embed_patches(first.encoder, real_patches, device="cpu")
    assert embedding.shape == (512, first.encoder.dim) and np.isfinite(embedding).all()
    # BYOL's loss also falls when the representation collapses to a point or a line: it must not (top axis 0.68 here)
    spectrum = np.linalg.eigvalsh(np.cov(embedding, rowvar=False))[::-1]
    assert spectrum.sum() > 1e-6 and spectrum[0] / spectrum.sum() < 0.9
    np.testing.assert_array_equal(embed_patches(second.encoder, real_patches, device="cpu"), embedding)
    save_encoder(first.encoder, tmp_path / "encoder.pt")
    reloaded = embed_patches(load_encoder(tmp_path / "encoder.pt"), real_patches, device="cpu")
    np.testing.assert_array_equal(reloaded, embedding)
    with pytest.raises(InputError, match="out_px=32"):
        embed_patches(first.encoder, real_patches[:, :16, :16])


@pytest.mark.realdata
def test_image_features_on_a_real_subset(dlpfc_151673, monkeypatch) -> None:
    adata = dlpfc_151673[:300].copy()
    assert has_image(adata)
    seen: list[tuple[int, float]] = []
    image_features(adata, n_comps=16, epochs=2, device="cpu", on_epoch=lambda epoch, loss: seen.append((epoch, loss)))
    assert adata.obsm["X_image"].shape == (300, 16) and np.isfinite(adata.obsm["X_image"]).all()
    record = adata.uns["tissuegraph_image"]
    assert [epoch for epoch, _ in seen] == [0, 1] and record["encoder"] == "trained" and record["epochs"] == 2
    np.testing.assert_array_equal(record["losses"], [loss for _, loss in seen])  # the losses the epochs reported

    patches = stain_filter(spot_patches(adata))  # the defaults: 32 px patches, filter window 17
    encoder = train_byol(patches, epochs=1, seed=1, device="cpu").encoder

    def no_training(*args, **kwargs):
        raise AssertionError("a given encoder was trained again")

    monkeypatch.setattr(features_module, "train_byol", no_training)
    image_features(adata, encoder=encoder, n_comps=encoder.dim, device="cpu", key_added="X_reused")
    reused = adata.obsm["X_reused"]
    record = adata.uns["tissuegraph_image_X_reused"]  # X_image keeps its own record
    assert record["encoder"] == "given" and record["epochs"] == 0 and len(record["losses"]) == 0
    assert adata.uns["tissuegraph_image"]["encoder"] == "trained"
    # the same encoder on the same patches, standardised per feature: with every principal component kept, the
    # PCA is a rotation, so distances between spots are those of the standardised embedding
    direct = embed_patches(encoder, patches, device="cpu").astype(np.float64)
    direct -= direct.mean(axis=0)
    spread = direct.std(axis=0)
    direct /= np.where(spread > 0, spread, 1.0)
    assert reused.shape[0] == 300 and reused.shape[1] <= encoder.dim
    np.testing.assert_allclose(pdist(reused), pdist(direct), rtol=1e-3, atol=1e-3)


@pytest.mark.realdata
def test_pretrained_backbone_reads_shipped_weights_and_can_be_fine_tuned(dlpfc_151673, tmp_path) -> None:
    pytest.importorskip("efficientnet_lite_pytorch", reason="optional extra tissuegraph[pretrained] not installed")
    adata = dlpfc_151673[:200].copy()
    image_features(adata, backbone="efficientnet-lite0", n_comps=16)
    record = adata.uns["tissuegraph_image"]
    assert (record["encoder"], record["backbone"], record["epochs"], record["out_px"]) == (
        "pretrained",
        "efficientnet-lite0",
        0,
        64,
    )
    assert adata.obsm["X_image"].shape == (200, 16) and np.isfinite(adata.obsm["X_image"]).all()
    patches = stain_filter(spot_patches(adata, out_px=64))
    frozen = PretrainedEncoder()
    embedding = embed_patches(frozen, patches)
    assert embedding.shape == (200, 1280) and embedding.std(axis=0).max() > 0
    save_encoder(frozen, tmp_path / "pretrained.pt")
    np.testing.assert_allclose(embed_patches(load_encoder(tmp_path / "pretrained.pt"), patches), embedding, atol=1e-5)
    tuned = train_byol(patches[:64], epochs=1, batch_size=32, encoder=PretrainedEncoder(), seed=0).encoder
    assert not np.allclose(embed_patches(tuned, patches), embedding, atol=1e-3)  # BYOL moved the ImageNet weights


def test_missing_pretrained_extra_names_the_install_command(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)  # import now fails as if not installed
    with pytest.raises(InputError, match=r"tissuegraph\[pretrained\]"):
        image_features(_slide(_ramp_image(), SPOTS), backbone="efficientnet-lite0")
    with pytest.raises(InputError, match="unknown image backbone"):
        image_features(_slide(_ramp_image(), SPOTS), backbone="resnet50")
    with pytest.raises(InputError, match=r"seed must be an integer from 0 to 4294967295 \(got -1\)"):
        image_features(_slide(_ramp_image(), SPOTS), seed=-1)  # torch would take it; numpy would not, later
    encoder = train_byol(spot_patches(_slide(_ramp_image(), SPOTS), out_px=8), epochs=1, batch_size=4).encoder
    with pytest.raises(InputError, match="not both"):
        image_features(_slide(_ramp_image(), SPOTS), encoder=encoder, backbone="efficientnet-lite0")


def _record_filtered_patches(monkeypatch) -> list[np.ndarray]:
    """Every patch array image_features hands to the stain filter (all slices assembled), in call order."""
    seen: list[np.ndarray] = []

    def recording_filter(patches, **kwargs):
        seen.append(patches.copy())
        return stain_filter(patches, **kwargs)

    monkeypatch.setattr(features_module, "stain_filter", recording_filter)
    return seen


def test_several_slices_take_their_own_images(monkeypatch) -> None:
    image = _ramp_image()
    first = _slide(image, SPOTS)
    second = _slide(255 - image, SPOTS)  # the same spots on the complementary image
    first.uns["spatial"] = {"a": first.uns["spatial"]["lib"]}
    second.uns["spatial"] = {"b": second.uns["spatial"]["lib"]}
    joined = ad.concat({"a": first, "b": second}, label="batch", index_unique="-", uns_merge="unique")
    assert has_image(joined)
    in_a = (joined.obs["batch"] == "a").to_numpy()
    own_a, own_b = spot_patches(first, out_px=8), spot_patches(second, out_px=8)
    np.testing.assert_allclose(own_b, 1.0 - own_a, atol=1e-6)  # the slices' patches differ: complements
    seen = _record_filtered_patches(monkeypatch)
    image_features(joined, out_px=8, epochs=1, n_comps=4, device="cpu")
    assert joined.obsm["X_image"].shape == (8, 4) and len(seen) == 1
    np.testing.assert_array_equal(seen[0][in_a], own_a)
    np.testing.assert_array_equal(seen[0][~in_a], own_b)
    with pytest.raises(InputError, match="one image was given for 2 slices"):
        image_features(joined, image=image)


def test_a_dict_of_images_gives_each_slice_its_entry(monkeypatch) -> None:
    image = _ramp_image()
    first, second = _slide(image, SPOTS), _slide(255 - image, SPOTS)
    first.uns["spatial"] = {"a": first.uns["spatial"]["lib"]}
    second.uns["spatial"] = {"b": second.uns["spatial"]["lib"]}
    joined = ad.concat({"a": first, "b": second}, label="batch", index_unique="-", uns_merge="unique")
    in_a = (joined.obs["batch"] == "a").to_numpy()
    seen = _record_filtered_patches(monkeypatch)
    # swapped against the stored images on purpose: slice a's entry is the complementary image, so its patches
    # are those of the stored b image (and the other way round), which only the dict's entries can give
    image_features(joined, image={"a": 255 - image, "b": image}, scale=SCALE, out_px=8, epochs=1, n_comps=4)
    assert len(seen) == 1
    np.testing.assert_array_equal(seen[0][in_a], spot_patches(second, out_px=8))
    np.testing.assert_array_equal(seen[0][~in_a], spot_patches(first, out_px=8))
    with pytest.raises(InputError, match="no entry for slice 'b'"):
        image_features(joined, image={"a": image}, scale=SCALE, out_px=8, epochs=1)
    with pytest.raises(InputError, match="image is a dict but the data holds one slice"):
        image_features(_slide(image, SPOTS), image={"lib": image}, scale=SCALE, out_px=8, epochs=1)
    assert len(seen) == 1  # both refused before any patch was filtered


def test_each_slice_can_take_its_own_scale_with_its_image(monkeypatch) -> None:
    """Captures map full-resolution coordinates onto their images differently: one scale for every slice cut the
    second slice's patches from the wrong place."""
    image = _ramp_image()
    first = _slide(image, SPOTS)
    second = _slide(image, SPOTS)
    second.obsm["spatial"] = second.obsm["spatial"] / 2  # its coordinates map onto the image at twice the scale
    second.uns["spatial"]["lib"]["scalefactors"]["spot_diameter_fullres"] = DIAMETER / 2
    first.uns["spatial"] = {"a": first.uns["spatial"]["lib"]}
    second.uns["spatial"] = {"b": second.uns["spatial"]["lib"]}
    joined = ad.concat({"a": first, "b": second}, label="batch", index_unique="-", uns_merge="unique")
    in_a = (joined.obs["batch"] == "a").to_numpy()
    seen = _record_filtered_patches(monkeypatch)
    image_features(
        joined, image={"a": image, "b": image}, scale={"a": SCALE, "b": 2 * SCALE}, out_px=8, epochs=1, n_comps=4
    )
    np.testing.assert_array_equal(seen[0][in_a], seen[0][~in_a])  # the same spots of the same image
    np.testing.assert_array_equal(seen[0][in_a], spot_patches(first, out_px=8))
    with pytest.raises(InputError, match="scale has no entry for slice 'b'"):
        image_features(joined, image={"a": image, "b": image}, scale={"a": SCALE}, out_px=8, epochs=1)
    with pytest.raises(InputError, match="scale is a dict but the data holds one slice"):
        image_features(_slide(image, SPOTS), scale={"lib": SCALE}, out_px=8, epochs=1)


def test_a_dict_of_images_needs_no_stored_library(monkeypatch) -> None:
    """Slides given per slice for data that stores none: each slice is cut from its own entry."""
    image = _ramp_image()
    grid = [(20.0 + 2 * i, 30.0 + 2 * j) for i in range(3) for j in range(3)]  # the spacing gives the spot size
    first, second = _slide(image, grid), _slide(255 - image, grid)
    for part in (first, second):
        del part.uns["spatial"]
    joined = ad.concat({"a": first, "b": second}, label="batch", index_unique="-")
    in_a = (joined.obs["batch"] == "a").to_numpy()
    seen = _record_filtered_patches(monkeypatch)
    image_features(joined, image={"a": image, "b": 255 - image}, scale=SCALE, out_px=8, epochs=1, n_comps=4)
    np.testing.assert_array_equal(seen[0][in_a], spot_patches(first, image=image, scale=SCALE, out_px=8))
    np.testing.assert_array_equal(seen[0][~in_a], spot_patches(second, image=255 - image, scale=SCALE, out_px=8))
    assert not np.array_equal(seen[0][in_a], seen[0][~in_a])


@pytest.mark.realdata
def test_domains_image_mode_uses_the_histology(dlpfc_151673) -> None:
    """Image mode end to end on a real slice: edge drops from image distances, pseudo-label negatives removed."""
    from tissuegraph import tl

    part = dlpfc_151673[dlpfc_151673.obsm["spatial"][:, 1] < np.median(dlpfc_151673.obsm["spatial"][:, 1])].copy()
    image_features(part, epochs=1, seed=0)
    features = part.obsm["X_image"].copy()
    tl.domains(part, 5, epochs=5, seed=0)  # image=None: the slide has an image, so image mode
    assert part.uns["tissuegraph"]["mode"] == "image"
    np.testing.assert_array_equal(part.obsm["X_image"], features)  # reused, not recomputed
    gene = tl.domains(part.copy(), 5, epochs=5, seed=0, image=False)
    assert gene.uns["tissuegraph"]["mode"] == "gene"
    assert not np.allclose(gene.obsm["X_tissuegraph"], part.obsm["X_tissuegraph"])
    tl.image_domains(part, 4, seed=0)
    assert part.obs["image_domain"].nunique() == 4


@pytest.mark.realdata
def test_integrate_image_mode_takes_each_slice_from_its_own_image(dlpfc_151673, monkeypatch) -> None:
    import functools
    import importlib

    from tissuegraph import tl

    domains_module = importlib.import_module("tissuegraph.tl.domains")  # the module, not tl.domains()

    monkeypatch.setattr(domains_module, "image_features", functools.partial(image_features, epochs=1))
    y = dlpfc_151673.obsm["spatial"][:, 1]
    top, bottom = dlpfc_151673[y < np.quantile(y, 0.3)].copy(), dlpfc_151673[y > np.quantile(y, 0.7)].copy()
    # give the bottom slice the complement of the slide, so patches from the wrong image cannot pass for its own
    (library,) = bottom.uns["spatial"]
    stored = bottom.uns["spatial"][library]
    assert set(stored["images"]) == {"lowres"}
    bottom.uns["spatial"] = {library: {**stored, "images": {"lowres": 1.0 - np.asarray(stored["images"]["lowres"])}}}
    own_top, own_bottom = spot_patches(top), spot_patches(bottom)
    assert not np.allclose(own_bottom, spot_patches(dlpfc_151673[y > np.quantile(y, 0.7)]), atol=0.05)
    seen = _record_filtered_patches(monkeypatch)
    image_epochs: list[int] = []  # the image encoder's progress reaches the caller (the CLI's bar)
    joint = tl.integrate(
        [top, bottom],
        4,
        names=["top", "bottom"],
        image=True,
        epochs=3,
        on_image_epoch=lambda e, _: image_epochs.append(e),
    )
    assert len(image_epochs) == 1
    assert sorted(joint.uns["spatial"]) == ["bottom", "top"]
    assert joint.uns["tissuegraph"]["mode"] == "image"
    assert joint.obsm["X_image"].shape[0] == joint.n_obs and np.isfinite(joint.obsm["X_image"]).all()
    assert len(seen) == 1
    rows = {name: np.flatnonzero(joint.obs["batch"].to_numpy() == name) for name in ("top", "bottom")}
    assert list(joint.obs_names[rows["bottom"]]) == [f"{spot}-bottom" for spot in bottom.obs_names]
    assert list(joint.obs_names[rows["top"]]) == [f"{spot}-top" for spot in top.obs_names]
    np.testing.assert_array_equal(seen[0][rows["top"]], own_top)
    np.testing.assert_array_equal(seen[0][rows["bottom"]], own_bottom)
    with pytest.raises(InputError, match="no image mode"):
        tl.integrate([top, bottom], 4, names=["top", "bottom"], method="staligner", image=True)


def test_a_new_image_embedding_drops_the_image_domains_clustered_from_the_old_one() -> None:
    """Re-running image-features with another seed kept obs['image_domain'] of the replaced embedding."""
    adata = _slide(_ramp_image(), SPOTS)
    adata.obs["image_domain"] = pd.Categorical(["0", "1", "0", "1"])
    image_features(adata, out_px=8, epochs=1)
    assert "X_image" in adata.obsm and "image_domain" not in adata.obs
    adata.obs["image_domain"] = pd.Categorical(["0", "1", "0", "1"])
    image_features(adata, out_px=8, epochs=1, key_added="X_other")  # another embedding: the domains stay
    assert "image_domain" in adata.obs


def test_a_pillow_image_is_read_like_its_pixels_and_other_objects_are_refused() -> None:
    from PIL import Image

    image = _ramp_image()
    adata = _slide(image, SPOTS)
    pillow, array = (spot_patches(adata, image=given, scale=SCALE) for given in (Image.fromarray(image), image))
    np.testing.assert_array_equal(pillow, array)
    with pytest.raises(InputError, match="image is a list; give a path"):
        spot_patches(adata, image=[1, 2], scale=SCALE)


def test_byol_refuses_a_batch_size_below_two_by_name() -> None:
    """train_byol is public: batch_size 1 failed inside batch normalisation, 0 divided by zero."""
    patches = np.random.default_rng(0).random((6, 8, 8, 3)).astype(np.float32)
    for bad in (0, 1):
        with pytest.raises(InputError, match=rf"batch_size must be a whole number >= 2 \(got {bad}\)"):
            train_byol(patches, batch_size=bad, epochs=1)


def test_byol_epochs_train_on_a_bounded_fresh_draw_of_patches(monkeypatch) -> None:
    """An epoch over every patch made BYOL on a 150k-bin Visium HD slide forty times as long as on a Visium slice;
    each epoch now trains on at most patches_per_epoch patches, a new draw each time, and fewer are all used."""
    from tissuegraph.im import byol

    patches = np.random.default_rng(0).random((100, 8, 8, 3)).astype(np.float32)
    seen: list[torch.Tensor] = []
    real_augment = byol.augment

    def counting(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        seen.append(batch[:, 0, 0, 0].clone())  # the pixel that tells the patches apart
        return real_augment(batch, generator)

    monkeypatch.setattr(byol, "augment", counting)
    train_byol(patches, epochs=2, batch_size=8, patches_per_epoch=32, widths=(4, 8), seed=0)
    per_epoch = [torch.cat(seen[i : i + 8 : 2]) for i in (0, 8)]  # two views per batch, four batches per epoch
    assert len(seen) == 16 and all(len(drawn) == 32 for drawn in per_epoch)
    assert set(per_epoch[0].tolist()) != set(per_epoch[1].tolist())  # a fresh draw each epoch
    seen.clear()
    train_byol(patches, epochs=1, batch_size=8, patches_per_epoch=1000, widths=(4, 8), seed=0)
    assert len(seen) == 24 and sorted(torch.cat(seen[::2]).tolist()) == sorted(patches[:, 0, 0, 0].tolist())


def test_the_image_pca_keeps_no_constant_component_with_few_spots() -> None:
    """Five spots have at most four centred components; float32 rounding passed a constant fifth one."""
    features = (np.random.default_rng(0).normal(size=(5, 128)) + 50.0).astype(np.float32)
    reduced = features_module._reduce(features, 64)
    assert reduced.shape == (5, 4) and reduced.std(axis=0).min() > 1e-3


def test_a_stored_image_embedding_with_nan_rows_is_refused_naming_the_spots() -> None:
    """obsm['X_image'] from another tool is used as given: a NaN row failed deep inside k-means."""
    from tissuegraph import tl

    rng = np.random.default_rng(0)
    adata = ad.AnnData(X=rng.poisson(3.0, (40, 12)).astype(np.float32))
    adata.obs_names = [f"s{i}" for i in range(40)]
    adata.obsm["spatial"] = rng.uniform(0, 100, (40, 2))
    adata.obsm["X_image"] = rng.normal(size=(40, 8))
    adata.obsm["X_image"][7] = np.nan
    for run in (lambda: tl.domains(adata, 3, epochs=1), lambda: tl.image_domains(adata, 3)):
        with pytest.raises(InputError, match=r"obsm\['X_image'\] has NaN or infinite values for 1 of 40 spots.*s7"):
            run()
    assert "domain" not in adata.obs and "image_domain" not in adata.obs


def test_histology_pseudo_labels_are_found_within_each_slice() -> None:
    """Two slices with the same image embeddings (a shared encoder that mixes them fully): found over both at once,
    a label held about 45 spots of both slices together, so about 22 of each; within each slice it holds 45."""
    import importlib

    domains_module = importlib.import_module("tissuegraph.tl.domains")
    embedding = np.random.default_rng(0).normal(size=(900, 8))
    image, slices = np.vstack([embedding, embedding]), np.repeat([0, 1], 900)
    labels = domains_module._pseudo_labels(image, slices, 45, seed=0)
    assert not set(labels[:900]) & set(labels[900:])  # no label crosses slices
    assert len(set(labels[:900])) == len(set(labels[900:])) == 20  # 900 / 45 per slice
    np.testing.assert_array_equal(labels, domains_module._pseudo_labels(image, slices, 45, seed=0))
    one = domains_module._pseudo_labels(embedding, None, 45, seed=0)
    assert len(set(one)) == 20
