"""The command line end to end on real data: every spot kept in order, labels, embedding, settings, errors."""

from __future__ import annotations

import importlib
import subprocess
import sys

import anndata as ad
import numpy as np
import pytest

from tissuegraph.cli import _name_after_files, main
from tissuegraph.errors import InputError
from tissuegraph.options import CLUSTER_METHODS

from conftest import real_data


@pytest.mark.realdata
def test_domains_cli_writes_every_spot_in_order(tmp_path, capsys) -> None:
    source = real_data("dlpfc_151673.h5ad")
    out = tmp_path / "result.h5ad"
    code = main(
        ["domains", str(source), "--n-domains", "7", "--epochs", "20", "--seed", "3", "--no-image", "--out", str(out)]
    )
    assert code == 0
    result = ad.read_h5ad(out)
    original = ad.read_h5ad(source)
    assert list(result.obs_names) == list(original.obs_names)
    assert result.n_vars == original.n_vars
    np.testing.assert_array_equal(result.X.toarray(), original.X.toarray())
    domains = result.obs["domain"]
    assert domains.map(type).eq(str).all() and domains.nunique() == 7
    assert result.obsm["X_tissuegraph"].shape == (original.n_obs, 64)
    settings = result.uns["tissuegraph"]
    assert settings["seed"] == 3 and settings["settings"]["epochs"] == 20 and settings["mode"] == "gene"
    assert settings["library_size"] == "obs['total_counts_all_genes']"  # the file holds a gene subset
    assert len(settings["loss"]) == 20
    out = capsys.readouterr().out
    assert f"wrote {original.n_obs} spots with 7 domains (STAIG, gene mode) to" in out and "ARI" in out


@pytest.mark.realdata
def test_same_seed_gives_same_domains(tmp_path) -> None:
    source = str(real_data("starmap_mpfc_3slices.h5ad"))
    runs = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.h5ad"
        argv = ["domains", source, "--n-domains", "4", "--epochs", "15", "--device", "cpu", "--quiet"]
        assert main([*argv, "--out", str(out)]) == 0
        runs.append(ad.read_h5ad(out))
    np.testing.assert_array_equal(runs[0].obsm["X_tissuegraph"], runs[1].obsm["X_tissuegraph"])
    assert list(runs[0].obs["domain"]) == list(runs[1].obs["domain"])


def test_bad_input_exits_with_a_message_and_writes_nothing(tmp_path, capsys) -> None:
    bad = ad.AnnData(X=np.ones((20, 5), dtype=np.float32))
    bad.obsm["spatial"] = np.random.default_rng(0).normal(size=(20, 2))
    bad.X[3, 1] = -1.0
    source = tmp_path / "bad.h5ad"
    bad.write_h5ad(source)
    out = tmp_path / "out.h5ad"
    assert main(["domains", str(source), "--n-domains", "3", "--out", str(out)]) == 2
    assert "negative" in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.iterdir()) == [source]


def test_errors_and_warnings_print_on_one_line(tmp_path, monkeypatch, capsys) -> None:
    """A parser's message quoted in ours can hold line breaks (pandas ends its own with one)."""
    import tissuegraph.io
    from tissuegraph.cli import _one_line_warning
    from tissuegraph.errors import TissuegraphWarning

    def failing(path):
        raise InputError("cannot read 'x' (ParserError: Expected 6 fields in line 6, saw 7\n); re-copy it")

    monkeypatch.setattr(tissuegraph.io, "read", failing)
    assert main(["domains", str(tmp_path / "x"), "--n-domains", "3", "--out", str(tmp_path / "o.h5ad")]) == 2
    err = capsys.readouterr().err
    assert err == "tissuegraph: error: cannot read 'x' (ParserError: Expected 6 fields in line 6, saw 7 ); re-copy it\n"
    shown = _one_line_warning(TissuegraphWarning("a warning\nover two lines"), TissuegraphWarning, "run.py", 1)
    assert shown == "tissuegraph: warning: a warning over two lines\n"


def test_log_normalised_input_is_refused_with_the_fix(tmp_path, capsys) -> None:
    data = _small_slice()
    data.layers["counts"] = data.X.copy()
    data.X = np.log1p(data.X)
    source = tmp_path / "logged.h5ad"
    data.write_h5ad(source)
    assert main(["domains", str(source), "--n-domains", "3", "--out", str(tmp_path / "o.h5ad")]) == 2
    err = capsys.readouterr().err
    assert "non-integer" in err and "adata.X = adata.layers['counts']" in err
    assert not (tmp_path / "o.h5ad").exists()


def test_the_summary_says_how_many_domains_the_result_holds(tmp_path, capsys) -> None:
    source = tmp_path / "in.h5ad"
    _small_slice(60).write_h5ad(source)
    out = tmp_path / "o.h5ad"
    assert main(["domains", str(source), "--n-domains", "12", "--epochs", "3", "--quiet", "--out", str(out)]) == 0
    found = ad.read_h5ad(out).obs["domain"].nunique()
    asked = "" if found == 12 else ", 12 asked for"
    assert f"with {found} domains (STAIG, gene mode{asked}) to" in capsys.readouterr().out


def test_training_shows_a_progress_bar_that_names_the_wait_after_it(tmp_path, capsys) -> None:
    source = tmp_path / "in.h5ad"
    _small_slice(60).write_h5ad(source)
    argv = ["domains", str(source), "--n-domains", "3", "--epochs", "3", "--out", str(tmp_path / "o.h5ad")]
    assert main(argv) == 0
    bar = capsys.readouterr().err.replace("\r", "\n").splitlines()
    assert any("training: 100%" in line and "3/3" in line and "; clustering" in line for line in bar)
    assert main([*argv, "--quiet"]) == 0
    assert "epoch" not in capsys.readouterr().err


def test_image_mode_without_an_image_is_refused_clearly(tmp_path, capsys) -> None:
    source = tmp_path / "in.h5ad"
    _small_slice().write_h5ad(source)
    assert main(["domains", str(source), "--n-domains", "3", "--image", "--out", str(tmp_path / "o.h5ad")]) == 2
    err = capsys.readouterr().err
    assert "there is no image" in err and "--no-image" in err
    assert not (tmp_path / "o.h5ad").exists()


def test_out_must_name_an_h5ad_file_and_not_a_folder(tmp_path, capsys) -> None:
    source = tmp_path / "in.h5ad"
    _small_slice().write_h5ad(source)
    assert main(["domains", str(source), "--n-domains", "3", "--out", str(tmp_path / "x.csv")]) == 2
    assert "--out must name an .h5ad file" in capsys.readouterr().err
    folder = tmp_path / "results.h5ad"
    folder.mkdir()
    assert main(["domains", str(source), "--n-domains", "3", "--out", str(folder)]) == 2
    assert "is a folder; give a file name such as" in capsys.readouterr().err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in.h5ad", "results.h5ad"]
    assert list(folder.iterdir()) == []
    (tmp_path / "notes").write_text("a file where a folder is meant")
    for option in ("--out", "--report"):
        name = "r.h5ad" if option == "--out" else "r.html"
        argv = ["domains", str(source), "--n-domains", "3", "--out", str(tmp_path / "o.h5ad")]
        assert main([*argv, option, str(tmp_path / "notes" / "sub" / name)]) == 2
        assert (
            f"{option} '{tmp_path / 'notes' / 'sub' / name}' cannot be written: '{tmp_path / 'notes'}' is a file"
            in (capsys.readouterr().err)
        )
    assert not (tmp_path / "o.h5ad").exists()


def test_out_may_not_overwrite_the_input(tmp_path, capsys) -> None:
    source = tmp_path / "in.h5ad"
    _small_slice().write_h5ad(source)
    before = source.read_bytes()
    assert main(["domains", str(source), "--n-domains", "3", "--out", str(tmp_path / "." / "in.h5ad")]) == 2
    assert "is the input file; write the result to a new file" in capsys.readouterr().err
    assert source.read_bytes() == before


def test_warnings_are_printed_as_one_line(tmp_path) -> None:
    import subprocess
    import sys

    inputs = _two_slice_files(tmp_path)
    argv = ["integrate", inputs[0], "--n-domains", "2", "--epochs", "2", "--quiet", "--out", str(tmp_path / "o.h5ad")]
    done = subprocess.run([sys.executable, "-m", "tissuegraph", *argv], capture_output=True, text=True, check=True)
    assert "tissuegraph: warning: only one slice was given" in done.stderr and ".py:" not in done.stderr


def test_one_line_warnings_name_another_library_as_such() -> None:
    from tissuegraph.cli import _one_line_warning
    from tissuegraph.errors import TissuegraphWarning

    # ours are told by their kind: the file shown is the caller's, which may be anywhere
    ours = _one_line_warning("41 spots\nhave no counts", TissuegraphWarning, "/home/u/notebook.py", 3)
    theirs_file = "/home/u/tissuegraph/.venv/lib/python3.11/site-packages/anndata/_core/anndata.py"
    theirs = _one_line_warning("names are not unique", UserWarning, theirs_file, 9)
    assert ours == "tissuegraph: warning: 41 spots have no counts\n"
    assert theirs == "tissuegraph: warning from anndata (UserWarning): names are not unique\n"


def test_image_features_refuses_a_domain_count_before_training(tmp_path, capsys, monkeypatch) -> None:
    import tissuegraph.cli as cli

    monkeypatch.setattr(cli, "_image_features", lambda *args, **kwargs: pytest.fail("the encoder was trained"))
    source = tmp_path / "in.h5ad"
    _small_slice().write_h5ad(source)
    assert main(["image-features", str(source), "--n-domains", "1", "--out", str(tmp_path / "o.h5ad")]) == 2
    assert "n_domains must be at least 2" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "message"),
    [(["--n-domains", "1"], "n_domains must be at least 2"), (["--n-domains", "3", "--tau", "0"], "tau = 0.0")],
)
def test_domains_refuses_a_request_before_the_image_encoder_trains(
    tmp_path, capsys, monkeypatch, options: list[str], message: str
) -> None:
    """The image encoder takes 30-60 s per Visium slice: a request that cannot work is refused before it."""
    import tissuegraph.cli as cli

    monkeypatch.setattr(cli, "_image_features", lambda *args, **kwargs: pytest.fail("the encoder was trained"))
    source = tmp_path / "in.h5ad"
    _small_slice().write_h5ad(source)
    assert main(["domains", str(source), "--image", *options, "--out", str(tmp_path / "o.h5ad")]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "o.h5ad").exists()


def test_too_few_spots_for_the_graph(tmp_path, capsys) -> None:
    data = ad.AnnData(X=np.ones((5, 4), dtype=np.float32))
    data.obsm["spatial"] = np.arange(10, dtype=float).reshape(5, 2)
    source = tmp_path / "tiny.h5ad"
    data.write_h5ad(source)
    assert main(["domains", str(source), "--n-domains", "2", "--out", str(tmp_path / "o.h5ad")]) == 2
    err = capsys.readouterr().err
    assert "has 5 spots but the spatial graph needs at least 7" in err and "lower --k" in err
    assert len(err.strip().splitlines()) == 1 and "epoch" not in err  # refused inside the API: no empty bar drawn


def test_demo_prints_the_scores_of_the_result_it_writes(tmp_path, capsys) -> None:
    import re

    from tissuegraph import datasets, metrics

    out = tmp_path / "demo.h5ad"
    assert main(["demo", "--epochs", "10", "--quiet", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "6471 cells x 33 genes" in printed
    ari, nmi = (float(value) for value in re.search(r"ARI (\d\.\d{3})  NMI (\d\.\d{3})", printed).groups())
    result = ad.read_h5ad(out)
    truth = datasets.scoring_labels(result)
    assert result.n_obs == 6471 and result.obs["domain"].nunique() <= datasets.DEMO_N_DOMAINS
    assert ari == pytest.approx(metrics.ari(truth, result.obs["domain"]), abs=5e-4)
    assert nmi == pytest.approx(metrics.nmi(truth, result.obs["domain"]), abs=5e-4)
    assert ari > 0.1  # far above chance even after 10 epochs
    # the file's own truth is the scored one, so its report and score() repeat the printed ARI
    assert "Excluded" not in set(result.obs["ground_truth"].dropna())
    assert (result.obs["published_region"] == "Excluded").sum() == result.obs["ground_truth"].isna().sum() > 0
    assert metrics.score(result)["ari"] == pytest.approx(ari, abs=5e-4)


def _two_slice_files(tmp_path) -> list[str]:
    paths = []
    rng = np.random.default_rng(1)
    for name in ("A", "B"):
        data = ad.AnnData(X=rng.poisson(2, size=(40, 25)).astype(np.float32))  # integration needs 20 shared genes
        data.obsm["spatial"] = rng.normal(size=(40, 2))
        data.obs["batch"] = name
        paths.append(str(tmp_path / f"{name}.h5ad"))
        data.write_h5ad(paths[-1])
    return paths


@pytest.mark.parametrize(("method", "source"), [("staig", "STAIG, gene mode"), ("staligner", "STAligner")])
def test_the_summary_names_the_method_that_ran(tmp_path, capsys, method: str, source: str) -> None:
    argv = ["integrate", *_two_slice_files(tmp_path), "--n-domains", "3", "--epochs", "2", "--quiet"]
    assert main([*argv, "--method", method, "--out", str(tmp_path / "joint.h5ad")]) == 0
    found = ad.read_h5ad(tmp_path / "joint.h5ad").obs["domain"].nunique()
    asked = "" if found == 3 else ", 3 asked for"
    assert f"with {found} domains ({source}{asked}) to" in capsys.readouterr().out


def test_inputs_without_slice_labels_are_named_after_their_files(tmp_path, capsys) -> None:
    """--align-to takes these names; 'slice1' and 'slice2' said nothing about which file was which."""
    paths = _two_slice_files(tmp_path)
    for path, stem in zip(paths, ("left", "right"), strict=True):
        data = ad.read_h5ad(path)
        del data.obs["batch"]
        data.write_h5ad(tmp_path / f"{stem}.h5ad")
        (tmp_path / stem).mkdir()
        data.write_h5ad(tmp_path / stem / "sample.h5ad")  # same file name in two folders
    argv = ["integrate", "--n-domains", "3", "--epochs", "2", "--quiet"]
    out = tmp_path / "joint.h5ad"
    assert (
        main(
            [*argv, str(tmp_path / "left.h5ad"), str(tmp_path / "right.h5ad"), "--align-to", "right"]
            + ["--out", str(out)]
        )
        == 0
    )
    joint = ad.read_h5ad(out)
    assert list(joint.obs["batch"].cat.categories) == ["left", "right"] and "spatial_aligned" in joint.obsm
    clashing = [str(tmp_path / stem / "sample.h5ad") for stem in ("left", "right")]
    assert main([*argv, *clashing, "--out", str(out)]) == 0  # one name for both: positional names, as before
    assert list(ad.read_h5ad(out).obs["batch"].cat.categories) == ["slice1", "slice2"]
    assert main([*argv, paths[1], str(tmp_path / "left.h5ad"), "--out", str(out)]) == 0  # 'B' is labelled
    assert list(ad.read_h5ad(out).obs["batch"].cat.categories) == ["B", "left"]


def test_compressed_gem_inputs_are_named_without_their_suffixes(tmp_path) -> None:
    """chip_a.gem.gz names its slice 'chip_a' (Path.stem left 'chip_a.gem'), as left.h5ad names 'left'."""
    slices = [ad.AnnData(np.ones((2, 1), dtype=np.float32)) for _ in range(3)]
    _name_after_files(slices, [str(tmp_path / n) for n in ("chip_a.gem.gz", "chip_b.GEM", "slide.h5ad")])
    assert [a.obs["batch"].iloc[0] for a in slices] == ["chip_a", "chip_b", "slide"]


def test_align_to_an_unknown_slice_is_refused_before_training(tmp_path, capsys) -> None:
    out = tmp_path / "joint.h5ad"
    argv = ["integrate", *_two_slice_files(tmp_path), "--n-domains", "3", "--epochs", "2", "--quiet"]
    assert main([*argv, "--align-to", "C", "--out", str(out)]) == 2
    printed = capsys.readouterr()
    assert "--align-to 'C' names no slice; the slices are 'A', 'B'" in printed.err
    assert "wrote" not in printed.out and not out.exists()


def test_align_to_an_unknown_landmark_keeps_the_trained_result(tmp_path, capsys) -> None:
    """Domains exist only after training, so a landmark that names none is reported then, without losing it."""
    out = tmp_path / "joint.h5ad"
    argv = ["integrate", *_two_slice_files(tmp_path), "--n-domains", "3", "--epochs", "2", "--quiet"]
    html = tmp_path / "joint.html"
    landmark = ["--align-to", "B", "--landmark", "no-such-domain"]
    assert main([*argv, *landmark, "--out", str(out), "--report", str(html)]) == 2
    printed = capsys.readouterr()
    err = printed.err
    assert "wrote 80 spots of 2 slices (A, B)" in printed.out and "iLISI" in printed.out  # the scores still shown
    assert "'no-such-domain' has no spots" in err
    assert f"written to {out} (and its report to {html}) without obsm['spatial_aligned']" in err
    assert "tg.tl.align(joint, SLICE, landmark_domain=DOMAIN)" in err
    written = ad.read_h5ad(out)
    assert written.n_obs == 80 and "domain" in written.obs and "spatial_aligned" not in written.obsm
    assert "Spatial domains" in html.read_text()


def test_landmark_without_align_to_is_refused_before_any_work(tmp_path, capsys) -> None:
    out = tmp_path / "joint.h5ad"
    argv = ["integrate", *_two_slice_files(tmp_path), "--n-domains", "3", "--landmark", "1", "--out", str(out)]
    assert main(argv) == 2
    assert "--landmark picks the domain for --align-to" in capsys.readouterr().err
    assert not out.exists()


def _small_slice(n: int = 30) -> ad.AnnData:
    rng = np.random.default_rng(0)
    data = ad.AnnData(X=rng.poisson(2, size=(n, 8)).astype(np.float32))
    data.obsm["spatial"] = rng.normal(size=(n, 2))
    return data


def _striped_slice(seed: int = 0) -> ad.AnnData:
    """A 12 x 10 grid cut into three vertical stripes, each with its own mean expression of 40 genes; the stripes'
    edges zigzag by 2 columns from row to row, so the spatial vote straightens some of them."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(np.arange(12), np.arange(10)), axis=-1).reshape(-1, 2).astype(float)
    rates = rng.gamma(1.0, 2.0, size=(3, 40))
    stripe = np.minimum((grid[:, 0] + 2 * (grid[:, 1] % 2)) // 4, 2).astype(int)
    data = ad.AnnData(X=rng.poisson(rates[stripe]).astype(np.float32))
    data.obsm["spatial"] = grid
    return data


@pytest.mark.parametrize("cluster", ["leiden", "kmeans"])
def test_domains_are_the_chosen_clusterers_labels_refined_only_when_asked(cluster: str) -> None:
    """refine=False: obs['domain'] is the clusterer's labelling of the stored embedding; refine=True: the same labels
    after the spatial plurality vote over refine_neighbors spots."""
    from tissuegraph import tl
    from tissuegraph.cluster import kmeans, leiden_n_clusters, refine_labels

    settings = {"cluster": cluster, "epochs": 3, "seed": 0}
    raw = tl.domains(_striped_slice(), 3, refine=False, **settings)
    labels = {"leiden": leiden_n_clusters, "kmeans": kmeans}[cluster](raw.obsm["X_tissuegraph"], 3, seed=0)
    assert list(raw.obs["domain"]) == [str(label) for label in labels]
    run = raw.uns["tissuegraph"]
    assert run["cluster"] == cluster and run["refine"] is False and len(run["loss"]) == 3

    refined = tl.domains(_striped_slice(), 3, refine=True, **settings)
    np.testing.assert_array_equal(refined.obsm["X_tissuegraph"], raw.obsm["X_tissuegraph"])  # same seed, same model
    voted = refine_labels(labels, refined.obsm["spatial"], n_neighbors=run["settings"]["refine_neighbors"])
    assert (voted != labels).any()  # the vote changes some spots here, so the two runs can be told apart
    assert list(refined.obs["domain"]) == [str(label) for label in voted]
    assert refined.uns["tissuegraph"]["refine"] is True


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_domains": 1}, "at least 2"),
        ({"n_domains": 30}, "only 30 spots"),
        ({"n_domains": 3, "cluster": "dbscan"}, "unknown clustering method"),
        ({"n_domains": 4.5}, r"n_domains must be an integer \(got 4.5, a float\)"),
        ({"n_domains": 3, "seed": -1}, r"seed must be an integer from 0 to 4294967295 \(got -1\)"),
        ({"n_domains": 3, "seed": 2**32}, "seed must be an integer"),
    ],
)
@pytest.mark.parametrize("function", ["domains", "expression_domains"])
def test_domains_api_rejects_impossible_requests_before_training(kwargs, message, function: str, monkeypatch) -> None:
    from tissuegraph import tl
    from tissuegraph.errors import InputError

    domains_module = importlib.import_module("tissuegraph.tl.domains")  # tl.domains is the function

    def reached(step: str):
        return lambda *args, **kwargs: pytest.fail(f"{step} ran before the request was refused")

    monkeypatch.setattr(domains_module, "_expression_workspace", reached("preprocessing"))
    monkeypatch.setattr(domains_module, "train_staig", reached("training"))
    with pytest.raises(InputError, match=message):
        getattr(tl, function)(_small_slice(), **kwargs)


@pytest.mark.realdata
@pytest.mark.parametrize("backbone", ["scratch", "efficientnet-lite0"])
def test_image_features_cli_then_domains_reuses_the_stored_embedding(tmp_path, capsys, backbone: str) -> None:
    if backbone != "scratch":
        pytest.importorskip("efficientnet_lite_pytorch", reason="optional extra tissuegraph[pretrained] not installed")
    subset = tmp_path / "subset.h5ad"
    ad.read_h5ad(real_data("dlpfc_151673.h5ad"))[:400].copy().write_h5ad(subset)
    features, result = tmp_path / "features.h5ad", tmp_path / "result.h5ad"
    cli = ["image-features", str(subset), "--backbone", backbone, "--n-domains", "4", "--quiet", "--out", str(features)]
    assert main(cli) == 0
    stored = ad.read_h5ad(features)
    assert stored.uns["tissuegraph_image"]["backbone"] == backbone
    assert stored.obsm["X_image"].shape[0] == 400 and stored.obs["image_domain"].nunique() == 4
    assert "image-only domains: ARI" in capsys.readouterr().out
    assert main(["domains", str(features), "--n-domains", "4", "--epochs", "5", "--quiet", "--out", str(result)]) == 0
    done = ad.read_h5ad(result)
    assert done.uns["tissuegraph"]["mode"] == "image"
    np.testing.assert_array_equal(done.obsm["X_image"], stored.obsm["X_image"])  # reused, not recomputed


def test_help_and_the_parser_load_no_heavy_library() -> None:
    """The package and the parser import torch, scanpy and scikit-learn only when a command runs."""
    code = (
        "import sys; import tissuegraph; from tissuegraph.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch', 'scanpy', 'sklearn', 'anndata') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_every_public_submodule_resolves_on_first_use_in_a_fresh_interpreter() -> None:
    """tg.nn raised AttributeError until something else had imported tissuegraph.nn."""
    names = ("pp", "gr", "im", "tl", "pl", "cluster", "metrics", "datasets", "report", "io", "nn")  # README's table
    code = f"import tissuegraph as tg; print([getattr(tg, name).__name__ for name in {names!r}])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == str([f"tissuegraph.{name}" for name in names])


def test_choice_names_match_what_the_api_accepts() -> None:
    import tissuegraph as tg
    from tissuegraph.tl.domains import CLUSTERERS

    assert tuple(CLUSTERERS) == CLUSTER_METHODS
    assert tg.tl.integrate.__module__ == "tissuegraph.tl.integrate"  # lazy submodules resolve on first use
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        _ = tg.nonexistent


def test_unknown_choice_is_refused_by_the_parser(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["integrate", "a.h5ad", "b.h5ad", "--method", "harmony", "--n-domains", "7", "--out", "x.h5ad"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'harmony'" in capsys.readouterr().err


@pytest.mark.parametrize("seed", ["-1", "4294967296", "1.5"])
def test_a_seed_no_library_accepts_is_refused_by_the_parser(capsys, seed: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["domains", "a.h5ad", "--n-domains", "7", "--seed", seed, "--out", "x.h5ad"])
    assert exit_info.value.code == 2
    assert f"invalid seed '{seed}': a whole number from 0 to 2**32 - 1" in capsys.readouterr().err


def test_an_interrupted_run_says_so_in_one_line(tmp_path, capsys, monkeypatch) -> None:
    import tissuegraph.cli as cli

    def interrupted(args) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_domains", interrupted)
    assert main(["domains", str(tmp_path / "in.h5ad"), "--n-domains", "3", "--out", str(tmp_path / "o.h5ad")]) == 130
    assert capsys.readouterr().err == "tissuegraph: interrupted; no partial output was left behind\n"


def test_version_answers_through_the_module_entry_point() -> None:
    import tissuegraph as tg

    done = subprocess.run([sys.executable, "-m", "tissuegraph", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == f"tissuegraph {tg.__version__}"


def test_tau_with_staligner_is_refused_by_its_flag(tmp_path, capsys) -> None:
    """It said "unknown STAligner setting 'tau'", a Python name, for a flag the help offered to both methods."""
    out = tmp_path / "joint.h5ad"
    argv = ["integrate", *_two_slice_files(tmp_path), "--n-domains", "3", "--method", "staligner", "--tau", "5"]
    assert main([*argv, "--out", str(out)]) == 2
    assert (
        "--tau is STAIG's contrastive temperature; STAligner (--method staligner) has none" in capsys.readouterr().err
    )
    assert not out.exists()


def test_read_tables_turns_text_tables_into_an_input_the_other_commands_take(tmp_path, capsys) -> None:
    """Real counts written as text come back exactly; a wrong coordinate column is refused in the CLI's own terms."""
    import pandas as pd

    import tissuegraph as tg

    demo = tg.datasets.osmfish()[:300]
    counts = pd.DataFrame(demo.X.toarray().astype(int), index=demo.obs_names, columns=demo.var_names)
    counts.to_csv(tmp_path / "counts.csv")
    pd.DataFrame(demo.obsm["spatial"], index=demo.obs_names, columns=["col", "row"]).to_csv(
        tmp_path / "xy.tsv", sep="\t"
    )
    out = tmp_path / "slice.h5ad"
    assert main(["read-tables", str(tmp_path / "counts.csv"), str(tmp_path / "xy.tsv"), "--out", str(out)]) == 0
    assert "wrote 300 spots x 33 genes" in capsys.readouterr().out
    result = tg.io.read(out)
    assert list(result.obs_names) == list(demo.obs_names)
    np.testing.assert_array_equal(result.X.toarray(), demo.X.toarray())
    np.testing.assert_allclose(result.obsm["spatial"], demo.obsm["spatial"])  # col is x, row is y
    bad = tmp_path / "bad.h5ad"
    argv = ["read-tables", str(tmp_path / "counts.csv"), str(tmp_path / "xy.tsv"), "--x", "col", "--y", "z"]
    assert main([*argv, "--out", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "has no column 'z'" in err and "(--x and --y)" in err and len(err.strip().splitlines()) == 1
    assert not bad.exists()
    argv = ["read-tables", str(tmp_path / "counts.csv"), str(tmp_path / "xy.tsv"), "--out", str(out)]
    assert main([*argv, "--sep", "comma", "\\t"]) == 0  # one per table; a tab as a shell passes '\t'
    np.testing.assert_array_equal(tg.io.read(out).X.toarray(), demo.X.toarray())


def _write_10x_h5(path, adata: ad.AnnData, controls: int = 0) -> None:
    """Counts in the 10x h5 layout Space Ranger and Xenium write; ``controls`` extra features typed as negative control
    probes, as Xenium's matrix holds them."""
    import h5py
    from scipy import sparse

    counts = sparse.hstack([sparse.csr_matrix(adata.X), sparse.csr_matrix((adata.n_obs, controls))]).tocsr()
    names = [*adata.var_names, *(f"NegControlProbe_{i:05d}" for i in range(controls))]
    types = ["Gene Expression"] * adata.n_vars + ["Negative Control Probe"] * controls
    with h5py.File(path, "w") as f:
        matrix = f.create_group("matrix")
        matrix["barcodes"] = np.array(adata.obs_names, dtype="S")
        matrix["data"] = counts.data.astype(np.int32)
        matrix["indices"] = counts.indices.astype(np.int64)
        matrix["indptr"] = counts.indptr.astype(np.int64)
        matrix["shape"] = np.array([len(names), adata.n_obs], dtype=np.int32)
        features = matrix.create_group("features")
        features["id"] = np.array(names, dtype="S")
        features["name"] = np.array(names, dtype="S")
        features["feature_type"] = np.array(types, dtype="S")
        features["genome"] = np.array(["GRCh38"] * len(names), dtype="S")


@pytest.mark.realdata
def test_domains_reads_a_visium_hd_bin_folder_and_a_xenium_folder(tmp_path, dlpfc_151673, starmap) -> None:
    """Real counts laid out as Space Ranger writes a Visium HD bin and Xenium its output run end to end, every spot
    kept in order with its counts and coordinates."""
    import json

    import pandas as pd
    from PIL import Image

    slide = dlpfc_151673
    bins = tmp_path / "dlpfc_hd" / "outs" / "binned_outputs" / "square_016um"
    (bins / "spatial").mkdir(parents=True)
    _write_10x_h5(bins / "filtered_feature_bc_matrix.h5", slide)
    positions = slide.obs[["in_tissue", "array_row", "array_col"]].assign(
        pxl_row_in_fullres=slide.obsm["spatial"][:, 1], pxl_col_in_fullres=slide.obsm["spatial"][:, 0]
    )
    positions.rename_axis("barcode").reset_index().to_parquet(bins / "spatial" / "tissue_positions.parquet")
    library = slide.uns["spatial"]["151673"]
    lowres = np.rint(np.asarray(library["images"]["lowres"]) * 255).astype(np.uint8)
    Image.fromarray(lowres).save(bins / "spatial" / "tissue_lowres_image.png")
    (bins / "spatial" / "scalefactors_json.json").write_text(json.dumps(library["scalefactors"]))

    cells = starmap[starmap.obs["batch"] == starmap.obs["batch"].cat.categories[0]].copy()
    xenium = tmp_path / "xenium_run"
    xenium.mkdir()
    _write_10x_h5(xenium / "cell_feature_matrix.h5", cells, controls=3)
    order = np.random.default_rng(0).permutation(cells.n_obs)  # the cells table in its own order
    table = pd.DataFrame({"cell_id": cells.obs_names, "x_centroid": cells.obsm["spatial"][:, 0]})
    table.assign(y_centroid=cells.obsm["spatial"][:, 1]).iloc[order].to_parquet(xenium / "cells.parquet")

    for folder, source, k in ((bins, slide, "7"), (xenium, cells, "4")):
        out = tmp_path / f"{folder.name}.h5ad"
        argv = ["domains", str(folder), "--n-domains", k, "--epochs", "5", "--no-image", "--quiet", "--out", str(out)]
        assert main(argv) == 0
        result = ad.read_h5ad(out)
        assert list(result.obs_names) == list(source.obs_names) and list(result.var_names) == list(source.var_names)
        np.testing.assert_array_equal(result.X.toarray(), np.asarray(source.X.todense()))
        np.testing.assert_allclose(result.obsm["spatial"], source.obsm["spatial"])
        assert result.obs["domain"].nunique() == int(k)
    assert list(ad.read_h5ad(tmp_path / "square_016um.h5ad").uns["spatial"]) == ["dlpfc_hd_square_016um"]


@pytest.mark.realdata
def test_read_gem_bins_real_molecules_back_into_their_cells(tmp_path, starmap, capsys) -> None:
    """Real STARmap counts written as a Stereo-seq GEM, one DNB per cell, come back cell for cell in bins of one
    DNB, and the result runs through `domains`."""
    import gzip

    import pandas as pd
    from scipy import sparse

    cells = starmap[starmap.obs["batch"] == starmap.obs["batch"].cat.categories[0]].copy()
    dnb = np.rint(cells.obsm["spatial"]).astype(np.int64)
    assert len(np.unique(dnb, axis=0)) == cells.n_obs  # one cell per DNB, so bins of one DNB are the cells
    entries = sparse.coo_matrix(cells.X)
    rows = pd.DataFrame(
        {
            "geneID": cells.var_names[entries.col],
            "x": dnb[entries.row, 0],
            "y": dnb[entries.row, 1],
            "MIDCount": entries.data.astype(np.int64),
        }
    ).sample(frac=1.0, random_state=0)  # GEM rows in no particular order
    gem = tmp_path / "chip.gem.gz"
    with gzip.open(gem, "wt") as handle:
        handle.write("#FileFormat=GEMv0.1\n#BinSize=1\n")
        rows.to_csv(handle, sep="\t", index=False)
    binned = tmp_path / "binned.h5ad"
    assert main(["read-gem", str(gem), "--bin-size", "1", "--out", str(binned)]) == 0
    assert f"wrote {cells.n_obs} bins of 1 x 1 DNBs" in capsys.readouterr().out
    result = ad.read_h5ad(binned)
    order = pd.MultiIndex.from_arrays(dnb.T).get_indexer(pd.MultiIndex.from_arrays((result.obsm["spatial"] - 0.5).T))
    assert (order >= 0).all()
    expected = cells[order, result.var_names]
    np.testing.assert_array_equal(result.X.toarray(), np.asarray(expected.X.todense()))
    out = tmp_path / "domains.h5ad"
    argv = ["domains", str(binned), "--n-domains", "4", "--epochs", "5", "--quiet", "--out", str(out)]
    assert main(argv) == 0 and ad.read_h5ad(out).obs["domain"].nunique() == 4
