"""Integration end to end on real slices: every spot of every input kept in order, both methods, the CLI."""

from __future__ import annotations

import importlib

import anndata as ad
import numpy as np
import pytest

from tissuegraph import gr, pp, tl
from tissuegraph.cli import main
from tissuegraph.errors import InputError

from conftest import real_data


def _starmap_as_files(tmp_path) -> list[str]:
    """The three STARmap slices as three files, in an order different from the source file."""
    source = ad.read_h5ad(real_data("starmap_mpfc_3slices.h5ad"))
    paths = []
    for name in list(source.obs["batch"].unique())[::-1]:
        path = tmp_path / f"{name}.h5ad"
        source[source.obs["batch"] == name].copy().write_h5ad(path)
        paths.append(str(path))
    return paths


@pytest.mark.realdata
@pytest.mark.parametrize("method", ["staig", "staligner"])
def test_integrate_cli_keeps_every_spot_of_every_input_in_order(tmp_path, capsys, method: str) -> None:
    inputs = _starmap_as_files(tmp_path)
    out = tmp_path / "joint.h5ad"
    argv = ["integrate", *inputs, "--method", method, "--n-domains", "4", "--epochs", "12", "--quiet"]
    argv += ["--align-to", "20180417_BZ5_control"]
    assert main([*argv, "--out", str(out)]) == 0
    joint = ad.read_h5ad(out)
    originals = [ad.read_h5ad(path) for path in inputs]
    assert joint.n_obs == sum(a.n_obs for a in originals)
    expected_ids = [f"{spot}-{a.obs['batch'].iloc[0]}" for a in originals for spot in a.obs_names]
    assert list(joint.obs_names) == expected_ids
    assert list(joint.obs["batch"].cat.categories) == [a.obs["batch"].iloc[0] for a in originals]
    np.testing.assert_array_equal(joint.obsm["spatial"], np.concatenate([a.obsm["spatial"] for a in originals]))
    assert joint.obs["domain"].nunique() == 4
    assert np.isfinite(joint.obsm["X_tissuegraph"]).all()
    assert joint.uns["tissuegraph"]["method"] == method and len(joint.uns["tissuegraph"]["loss"]) == 12
    assert joint.uns["tissuegraph"]["library_size"] == "counts in X"
    reference = (joint.obs["batch"] == "20180417_BZ5_control").to_numpy()
    np.testing.assert_array_equal(joint.obsm["spatial_aligned"][reference], joint.obsm["spatial"][reference])
    assert not np.allclose(joint.obsm["spatial_aligned"][~reference], joint.obsm["spatial"][~reference])
    printed = capsys.readouterr().out
    assert "median iLISI" in printed and "ARI per slice" in printed


@pytest.mark.realdata
def test_requests_that_cannot_work_are_refused_by_name_before_training(starmap) -> None:
    names = list(starmap.obs["batch"].unique())
    tiny = starmap[(starmap.obs["batch"] != names[2]).to_numpy() | (np.cumsum(starmap.obs["batch"] == names[2]) <= 5)]
    with pytest.raises(InputError, match=rf"slice '{names[2]}' has 5 spots but a 6-nearest-neighbour graph"):
        tl.integrate([tiny.copy()], 4, method="staig")
    with pytest.raises(InputError, match=r"reference=5 names no slice: there are 3 \(0\.\.2"):
        tl.integrate([starmap], 4, method="staligner", pair_mode="star", reference=5)
    with pytest.raises(InputError, match=rf"reference='BZ5' names no slice; the slices are '{names[0]}'"):
        tl.integrate(starmap, 4, method="staligner", pair_mode="star", reference="BZ5")
    with pytest.raises(InputError, match="unknown device 'gpu'"):
        tl.integrate([starmap], 4, device="gpu")


@pytest.mark.realdata
def test_staligner_mixes_slices_more_than_pretraining_alone(starmap) -> None:
    """The triplet phase must pull slices together: higher iLISI than reconstruction alone, same seed."""
    from tissuegraph.metrics import median_ilisi

    scores = {}
    for triplet_epochs in (0, 100):  # five triplet refreshes
        joint = tl.integrate(
            [starmap.copy()], 4, method="staligner", pretrain_epochs=60, triplet_epochs=triplet_epochs, mnn_every=20
        )
        scores[triplet_epochs] = median_ilisi(joint.obsm["X_tissuegraph"], joint.obs["batch"])
    assert scores[100] > scores[0] + 0.1


def _synthetic_slices(n_slices: int = 2, n_genes: int = 120, seed: int = 0) -> ad.AnnData:
    """Slices a, b, ... of 80 spots on a 10 x 8 grid in one AnnData (obs['batch']), each with its own variable
    genes."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(np.arange(10), np.arange(8)), axis=-1).reshape(-1, 2).astype(float)
    rates = rng.gamma(0.5, 4.0, size=(n_slices, 1, n_genes))
    counts = rng.poisson(np.repeat(rates, 80, axis=1).reshape(n_slices * 80, n_genes)).astype(np.float32)
    joint = ad.AnnData(X=counts)
    joint.obs_names = [f"s{i}" for i in range(joint.n_obs)]
    joint.obsm["spatial"] = np.concatenate([grid] * n_slices)
    joint.obs["batch"] = np.repeat(list("abcdefgh"[:n_slices]), 80)
    return joint


@pytest.fixture
def no_training(monkeypatch) -> None:
    """Refusals must come before any training: STAIG training fails the test."""
    integrate_module = importlib.import_module("tissuegraph.tl.integrate")
    domains_module = importlib.import_module("tissuegraph.tl.domains")
    monkeypatch.setattr(integrate_module, "staig_embedding", lambda *a, **k: pytest.fail("STAIG was trained"))
    monkeypatch.setattr(domains_module, "train_staig", lambda *a, **k: pytest.fail("STAIG was trained"))


@pytest.mark.usefixtures("no_training")
def test_a_slice_without_counts_in_a_file_of_several_is_refused_by_name() -> None:
    """The file as a whole has counts, so only a per-slice check catches it (it used to come out as one domain)."""
    both = _synthetic_slices()
    both.X[both.obs["batch"].to_numpy() == "a"] = 0
    for run in (tl.integrate, tl.domains):
        with pytest.raises(InputError, match="slice 'a' holds no counts: all 80 of its spots are 0"):
            run(both.copy(), 3)
    both.X[both.obs["batch"].to_numpy() == "a"] = 3  # few genes: every one is kept, so no HVG step refused it
    for run in (tl.integrate, tl.domains):
        with pytest.raises(InputError, match="slice 'a' has the same counts in all 80 of its spots"):
            run(both.copy(), 3)


@pytest.mark.usefixtures("no_training")
def test_a_slice_whose_spots_all_sit_at_one_position_is_refused_by_name() -> None:
    """The whole file's coordinates spread out, so only a per-slice check catches it; its graph followed row order."""
    both = _synthetic_slices()
    both.obsm["spatial"][both.obs["batch"].to_numpy() == "b"] = (5.0, 5.0)
    for run in (tl.integrate, tl.domains, lambda a, k: gr.spatial_neighbors(a)):
        with pytest.raises(InputError, match=r"slice 'b': all 80 of its spots sit at the same position \(5, 5\)"):
            run(both.copy(), 3)


def test_the_stored_settings_hold_the_expression_pcs_the_edge_dropping_used() -> None:
    few_genes = tl.domains(_synthetic_slices(n_genes=40), 3, epochs=2)  # 64 asked, only 40 genes to span them
    assert few_genes.uns["tissuegraph"]["settings"]["n_pcs_edge_drop"] == 40


def test_unknown_method_and_settings_are_refused(monkeypatch) -> None:
    integrate_module = importlib.import_module("tissuegraph.tl.integrate")  # tl.integrate is the function

    monkeypatch.setattr(integrate_module, "train_staligner", lambda *a, **k: pytest.fail("STAligner was trained"))
    monkeypatch.setattr(integrate_module, "staig_embedding", lambda *a, **k: pytest.fail("STAIG was trained"))
    both = _synthetic_slices()
    with pytest.raises(InputError, match="unknown integration method"):
        tl.integrate([both], 4, method="harmony")
    with pytest.raises(InputError, match="unknown STAligner setting 'tau'"):
        tl.integrate([both], 4, method="staligner", tau=3.0)
    with pytest.raises(InputError, match="n_pcs must be at least 1"):
        tl.integrate([both], 4, method="staligner", n_pcs=0)
    for method in ("staig", "staligner"):  # read by the graph check before: a bare TypeError
        with pytest.raises(InputError, match="setting n_neighbors = '6' cannot work; it must be a whole number"):
            tl.integrate([both], 4, method=method, n_neighbors="6")
    with pytest.raises(InputError, match="slices must be a list of AnnData .*not a dict"):
        tl.integrate({"a": both}, 4)
    with pytest.raises(InputError, match=r"slices 2 \(str\) are not AnnData; read each file first"):
        tl.integrate([both, "b.h5ad"], 4)
    joint = pp.concat_slices(a for a in [both])  # a generator is taken as the list it yields
    assert joint.n_obs == both.n_obs


def test_a_single_slice_is_run_but_said_to_integrate_nothing() -> None:
    rng = np.random.default_rng(0)
    one = ad.AnnData(X=rng.poisson(3.0, size=(60, 25)).astype(np.float32))
    one.obsm["spatial"] = np.stack(np.meshgrid(np.arange(10), np.arange(6)), axis=-1).reshape(-1, 2).astype(float)
    with pytest.warns(UserWarning, match="only one slice was given, so nothing is integrated"):
        joint = tl.integrate([one], 3, epochs=2)
    assert joint.n_obs == 60 and joint.obs["batch"].nunique() == 1 and "domain" in joint.obs


@pytest.mark.realdata
def test_integration_normalises_each_slice_by_its_own_total(dlpfc_151673) -> None:
    half = dlpfc_151673.n_obs // 2
    top, bottom = dlpfc_151673[:half].copy(), dlpfc_151673[half:].copy()
    joint = tl.integrate([top, bottom], 7, names=["top", "bottom"], epochs=2)
    assert joint.uns["tissuegraph"]["library_size"] == "obs['total_counts_all_genes']"
    del bottom.obs["total_counts_all_genes"]
    partial = r"missing for some spots \(bottom: \d+ of \d+\) in slice\(s\) 'bottom'; those spots are normalised"
    with pytest.warns(UserWarning, match=partial):
        joint = tl.integrate([top, bottom], 7, names=["top", "bottom"], epochs=2)
    assert joint.uns["tissuegraph"]["library_size"] == "obs['total_counts_all_genes']"
    totals = joint.obs["total_counts_all_genes"].to_numpy()
    np.testing.assert_array_equal(totals[:half], top.obs["total_counts_all_genes"])
    np.testing.assert_allclose(totals[half:], np.asarray(bottom.X.sum(axis=1)).ravel())


@pytest.mark.realdata
def test_staligner_shortcut_keeps_the_published_model_when_every_axis_is_kept(starmap) -> None:
    """All axes: the genes rotated (same geometry), reconstruction weight 1; fewer axes: weight n_pcs / n_genes."""
    from tissuegraph.pp import concat_slices
    from tissuegraph.tl.integrate import staligner_inputs
    from tissuegraph.tl.settings import StalignerSettings

    joint = concat_slices([starmap])
    settings = StalignerSettings(n_pcs=10_000)
    work, edges, weight = staligner_inputs(joint, settings)
    genes = work.obsm["X_log"]
    assert work.obsm["X_pca"].shape[1] == genes.shape[1] and weight == 1.0
    assert settings.n_pcs == genes.shape[1]  # what was used is recorded, not the 10,000 asked for
    sample = genes[::10].astype(np.float64)
    rotated = work.obsm["X_pca"][::10].astype(np.float64)
    np.testing.assert_allclose(rotated @ rotated.T, sample @ sample.T, rtol=1e-3, atol=1e-2)
    loops = edges[:, 0] == edges[:, 1]
    assert np.array_equal(np.sort(edges[loops, 0]), np.arange(joint.n_obs))  # one self loop per spot
    _, _, weight = staligner_inputs(joint, StalignerSettings(n_pcs=20))
    assert weight == pytest.approx(20 / genes.shape[1])


@pytest.mark.parametrize("method", ["staig", "staligner"])
def test_a_slice_column_with_another_name_gives_the_same_result(method: str) -> None:
    """batch_key names the slice column of the inputs and of the result; the run is the same as with 'batch'."""
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(np.arange(10), np.arange(8)), axis=-1).reshape(-1, 2).astype(float)
    rates = rng.gamma(0.5, 4.0, size=(2, 1, 120))  # each slice with its own variable genes
    both = ad.AnnData(X=rng.poisson(np.repeat(rates, 80, axis=0).reshape(160, 120)).astype(np.float32))
    both.obsm["spatial"] = np.concatenate([grid, grid])
    both.obs["sample"] = np.repeat(["a", "b"], 80)
    both.obs["batch"] = "one lab"  # an unrelated column that must not be taken for the slices
    renamed = both.copy()
    renamed.obs["batch"] = renamed.obs.pop("sample")
    options = dict(method=method, seed=1, epochs=4, n_top_genes=80)  # per-slice HVGs differ from pooled ones
    joint = tl.integrate([both], 3, batch_key="sample", **options)
    reference = tl.integrate([renamed], 3, **options)
    assert list(joint.obs["sample"].cat.categories) == ["a", "b"]
    np.testing.assert_array_equal(joint.obsm["X_tissuegraph"], reference.obsm["X_tissuegraph"])
    assert list(joint.obs["domain"]) == list(reference.obs["domain"])


@pytest.mark.parametrize("method", ["staig", "staligner"])
def test_union_of_the_slices_hvgs_reaches_the_model_and_every_spot_is_kept(monkeypatch, method: str) -> None:
    """genes='union': the model reads the genes variable in any slice, here more than those variable in all."""
    from tissuegraph.pp import concat_slices, per_slice_hvgs

    integrate_module = importlib.import_module("tissuegraph.tl.integrate")
    original, model_genes = integrate_module.staig_embedding, []

    def recording(work, *args, **kwargs):
        model_genes.append(work.obsm["X_expr"].shape[1])
        return original(work, *args, **kwargs)

    monkeypatch.setattr(integrate_module, "staig_embedding", recording)
    both = _synthetic_slices(n_genes=300)
    union = int(per_slice_hvgs(concat_slices([both]), 150, combine="union").sum())
    shared = int(per_slice_hvgs(concat_slices([both]), 150, combine="intersection").sum())
    assert union > shared  # so the numbers checked below tell the two apart
    joint = tl.integrate([both], 3, method=method, genes="union", n_top_genes=150, epochs=2)
    expected_ids = [f"{spot}-{batch}" for spot, batch in zip(both.obs_names, both.obs["batch"], strict=True)]
    assert list(joint.obs_names) == expected_ids
    assert joint.n_vars == 300 and joint.obs["domain"].notna().all()
    assert np.isfinite(joint.obsm["X_tissuegraph"]).all() and joint.obsm["X_tissuegraph"].shape[0] == 160
    run = joint.uns["tissuegraph"]
    assert run["genes"] == "union"
    if method == "staig":  # tau follows the HVGs each slice contributes (150 / 100), not their union or intersection
        assert model_genes == [union]
        assert run["settings"]["tau"] == pytest.approx(1.5)
    else:  # the reconstruction weight is n_pcs / the genes the autoencoder models
        assert run["settings"]["reconstruction_weight"] == pytest.approx(50 / union)
        assert list(run["n_triplets"]) == [run["n_triplets"][0]] and run["n_triplets"][0] > 0  # one MNN search


@pytest.mark.parametrize(
    ("pair_mode", "reference", "expected"),
    [
        ("star", 2, [(2, 0), (2, 1)]),
        ("star", "c", [(2, 0), (2, 1)]),
        ("chain", 0, [(0, 1), (1, 2)]),
        ("all", 0, [(0, 1), (0, 2), (1, 2)]),
    ],
)
def test_staligner_pair_modes_pair_the_slices_they_name(
    monkeypatch, pair_mode: str, reference: int | str, expected
) -> None:
    """The triplets come from the slice pairs the pair mode names (a star's reference by position or by slice name),
    and the run records the mode and the reference's position."""
    staligner_module = importlib.import_module("tissuegraph.nn.staligner")
    original = staligner_module.mnn_triplets
    seen = []

    def recording(embedding, slice_codes, pairs, k, generator):
        found = original(embedding, slice_codes, pairs, k, generator)
        seen.append((list(pairs), slice_codes[found[:, 0]], slice_codes[found[:, 1]]))
        return found

    monkeypatch.setattr(staligner_module, "mnn_triplets", recording)
    three = _synthetic_slices(n_slices=3)
    options = dict(pretrain_epochs=1, triplet_epochs=2, mnn_every=1, hidden_dim=32)
    joint = tl.integrate([three], 3, method="staligner", pair_mode=pair_mode, reference=reference, **options)
    assert len(seen) == 2  # one MNN search per triplet epoch
    for pairs, anchor_slices, positive_slices in seen:
        assert pairs == expected
        used = {tuple(sorted(pair)) for pair in zip(anchor_slices.tolist(), positive_slices.tolist(), strict=True)}
        assert used == {tuple(sorted(pair)) for pair in expected}
    settings = joint.uns["tissuegraph"]["settings"]
    assert settings["pair_mode"] == pair_mode and settings["reference"] == (2 if reference == "c" else reference)
    assert len(joint.uns["tissuegraph"]["loss"]) == 3 and joint.n_obs == 240
