"""The HTML report end to end: one self-contained file under 10 MB, checked in a real (headless) Chromium.

The browser test needs Debian's Chromium (``apt-get install -y chromium``); Playwright only drives it and
never downloads a browser. Without Chromium the browser tests are skipped with the reason shown.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from playwright.sync_api import sync_playwright
from scipy import sparse

from tissuegraph import metrics, tl
from tissuegraph.cli import main
from tissuegraph.errors import InputError
from tissuegraph.report import sections as report_sections
from tissuegraph.report import write_report

from conftest import real_data

SECTIONS = ("Run settings", "Data", "Spatial domains", "UMAP", "Metrics", "Library size", "Marker genes", "Training")
MAX_BYTES = 10_000_000
STARMAP_SLICES = ("20180417_BZ5_control", "20180419_BZ9_control")


def chromium() -> str:
    """Debian's Chromium, or a skip that says how to install it."""
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.skip("Chromium not found: the browser test needs Debian's chromium (apt-get install -y chromium)")
    return path


def check_self_contained(html: Path) -> str:
    """The report's text, after checking its size and that every src/href stays inside the file."""
    assert html.stat().st_size < MAX_BYTES, f"{html} is {html.stat().st_size / 1e6:.1f} MB"
    text = html.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text
    references = re.findall(r"""\b(?:src|href)\s*=\s*["']([^"']*)""", text)
    assert references and all(ref.startswith(("data:", "#")) for ref in references), references[:5]
    return text


def check_in_browser(html: Path, screenshot_name: str, tmp_path: Path, n_images: int) -> None:
    """Open the report in headless Chromium: no errors, no requests out, every image decoded, every section
    heading shown; a full-page screenshot goes to tmp_path and /tmp for a person to look at."""
    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("request", lambda request: requests.append(request.url))
            page.goto(html.as_uri(), wait_until="load")
            images = page.eval_on_selector_all(
                "img", "images => images.map(img => [img.alt, img.complete, img.naturalWidth, img.naturalHeight])"
            )
            boxes = {}
            for name in SECTIONS:
                heading = page.get_by_role("heading", level=2, name=name, exact=True)
                assert heading.count() == 1 and heading.is_visible(), name
                boxes[name] = heading.bounding_box()
            screenshot = tmp_path / f"{screenshot_name}.png"
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    shutil.copy(screenshot, f"/tmp/tissuegraph_report_screenshot_{screenshot_name}.png")
    assert not errors, errors
    assert all(url.startswith(("file:", "data:")) for url in requests), requests
    assert len(images) == n_images, images
    for alt, complete, width, height in images:
        assert complete and width > 0 and height > 0, f"image {alt!r} did not decode"
    for name, box in boxes.items():
        assert box is not None and box["width"] > 0 and box["height"] > 0, name
    tops = [boxes[name]["y"] for name in SECTIONS]
    assert tops == sorted(tops), "sections out of order"


@pytest.fixture(scope="module")
def dlpfc_result(dlpfc_151673) -> ad.AnnData:
    """A real one-slice result in memory: H&E image in uns['spatial'], ground truth in obs."""
    adata = dlpfc_151673.copy()
    tl.domains(adata, 7, epochs=10, image=False)
    return adata


@pytest.fixture(scope="module")
def starmap_run(tmp_path_factory) -> tuple[Path, Path]:
    """Two STARmap slices integrated on the command line with --report: (result .h5ad, report .html)."""
    folder = tmp_path_factory.mktemp("starmap")
    source = ad.read_h5ad(real_data("starmap_mpfc_3slices.h5ad"))
    inputs = []
    for name in STARMAP_SLICES:
        inputs.append(str(folder / f"{name}.h5ad"))
        source[source.obs["batch"] == name].copy().write_h5ad(inputs[-1])
    out, html = folder / "joint.h5ad", folder / "joint.html"
    argv = ["integrate", *inputs, "--n-domains", "4", "--epochs", "10", "--quiet", "--out", str(out)]
    assert main([*argv, "--report", str(html)]) == 0
    return out, html


@pytest.mark.realdata
def test_one_slice_report_renders_in_a_browser(dlpfc_result, tmp_path) -> None:
    html = write_report(dlpfc_result, tmp_path / "151673.html")
    assert html == tmp_path / "151673.html" and list(tmp_path.iterdir()) == [html]
    text = check_self_contained(html)
    assert "151673" in text and "ARI" in text and "NMI" in text and "median iLISI" not in text
    share = metrics.depth_explained(dlpfc_result)
    assert f"that the domains explain (eta squared, 0 = none, 1 = all): {share:.3f}" in text
    assert "and ground truth" in text and "obs[&#x27;total_counts_all_genes&#x27;]" in text
    # images: domains (over the H&E, truth beside), UMAP, library size, marker dot plot, loss curve
    check_in_browser(html, "dlpfc_151673", tmp_path, n_images=5)
    assert "tissuegraph_markers" in dlpfc_result.uns and "X_umap" in dlpfc_result.obsm


@pytest.mark.realdata
def test_two_slice_report_from_the_cli_renders_in_a_browser(starmap_run, tmp_path) -> None:
    out, html = starmap_run
    text = check_self_contained(html)
    for expected in (*STARMAP_SLICES, "Per slice", "median iLISI", "batch KL"):
        assert expected in text, expected
    # images: one domain figure per slice, UMAP, library size, marker dot plot, loss curve
    check_in_browser(html, "starmap_2slices", tmp_path, n_images=6)
    again = tmp_path / "again.html"
    assert main(["report", str(out), "--out", str(again)]) == 0
    assert check_self_contained(again).count("<img") == 6


@pytest.mark.realdata
def test_unlabelled_result_gets_label_free_scores_and_every_text_escaped(starmap_run, tmp_path) -> None:
    result = ad.read_h5ad(starmap_run[0])
    del result.obs["ground_truth"]
    result.obs["batch"] = result.obs["batch"].cat.rename_categories({STARMAP_SLICES[0]: "<i>slice</i> & co"})
    text = check_self_contained(write_report(result, tmp_path / "r.html", title="<script>alert(1)</script>"))
    assert "silhouette" in text and "Davies-Bouldin" in text and ">ARI<" not in text
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "<i>slice</i>" not in text and "&lt;i&gt;slice&lt;/i&gt; &amp; co" in text


@pytest.mark.realdata
def test_a_result_made_with_another_slice_column_is_reported_by_slice(starmap_run, tmp_path, monkeypatch) -> None:
    """integrate(batch_key='section') was reported, scored and drawn as one slice: the report read obs['batch']."""
    result = ad.read_h5ad(starmap_run[0])
    result.obs = result.obs.rename(columns={"batch": "section"})
    result.uns["tissuegraph"]["batch_key"] = "section"
    drawn = []  # each domain map's panel titles: they name the slice only when the map reads the slice column
    real_domains = report_sections.pl.domains

    def recording_domains(adata, **kwargs):
        figure = real_domains(adata, **kwargs)
        drawn.append([ax.get_title() for ax in figure.axes if ax.get_title()])
        return figure

    monkeypatch.setattr(report_sections.pl, "domains", recording_domains)
    text = check_self_contained(write_report(result, tmp_path / "r.html"))
    assert [titles[0].split(":")[0] for titles in drawn] == list(STARMAP_SLICES), drawn
    assert "spots of 2 slices" in text and "Per slice" in text and "median iLISI" in text
    assert all(f"spatial domains of slice {name}" in text for name in STARMAP_SLICES)
    assert metrics.score(result)["median_ilisi"] == metrics.score(result, batch_key="section")["median_ilisi"]


def test_input_that_is_not_a_result_is_refused_and_nothing_is_written(tmp_path) -> None:
    plain = ad.AnnData(X=np.ones((10, 3), dtype=np.float32))
    plain.obsm["spatial"] = np.random.default_rng(0).normal(size=(10, 2))
    with pytest.raises(InputError, match=r"not a tissuegraph result .*obs\['domain'\]"):
        write_report(plain, tmp_path / "r.html")
    assert list(tmp_path.iterdir()) == []


def test_report_path_is_checked_before_any_work(tmp_path, capsys) -> None:
    missing = str(tmp_path / "missing.h5ad")
    argv = ["domains", missing, "--n-domains", "3", "--out", str(tmp_path / "r.h5ad"), "--report"]
    assert main([*argv, str(tmp_path / "r.pdf")]) == 2
    assert "--report must name an .html file" in capsys.readouterr().err
    assert main(["report", missing, "--out", str(tmp_path / "r.txt")]) == 2
    assert "--out must name an .html file" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def _small_result() -> ad.AnnData:
    """A one-slice result as tl.domains writes it, without training: a 10 x 10 grid in three bands (domains 0-2),
    domain d marked by gene g<d>, an embedding that separates the bands, and a loss curve."""
    rng = np.random.default_rng(0)
    xx, yy = np.meshgrid(np.arange(10), np.arange(10))
    domain = np.minimum(yy.ravel() * 3 // 10, 2)
    counts = rng.poisson(2.0, (100, 8)).astype(np.float32)
    counts[np.arange(100), domain] += rng.poisson(20.0, 100)
    adata = ad.AnnData(X=sparse.csr_matrix(counts))
    adata.obs_names = [f"spot{i}" for i in range(100)]
    adata.var_names = [f"g{j}" for j in range(8)]
    adata.obsm["spatial"] = np.c_[xx.ravel(), yy.ravel()].astype(np.float64) * 100.0
    adata.obs["domain"] = pd.Categorical([str(d) for d in domain], categories=["0", "1", "2"])
    adata.obsm["X_tissuegraph"] = (rng.normal(0, 0.3, (100, 4)) + 3.0 * np.eye(4)[domain]).astype(np.float32)
    adata.uns["tissuegraph"] = {"method": "staig", "mode": "gene", "loss": np.linspace(5.0, 1.0, 20)}
    return adata


def test_a_failed_write_leaves_the_previous_report_and_no_temporary_file(tmp_path, monkeypatch) -> None:
    report = tmp_path / "run.html"
    report.write_text("the previous report", encoding="utf-8")
    real_replace = os.replace
    staged: list[tuple[Path, str]] = []

    def failing_replace(src, dst, *args, **kwargs):
        if Path(dst) != report:  # anything else (e.g. a plotting cache) goes through
            return real_replace(src, dst, *args, **kwargs)
        staged.append((Path(src), Path(src).read_text(encoding="utf-8")))
        raise OSError("disk full")

    # os.replace itself, wherever the writer calls it from (it looks it up on the os module at call time)
    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_report(_small_result(), report)
    # the whole page was staged in a separate file beside the report, then removed when the move failed
    assert len(staged) == 1
    temporary, text = staged[0]
    assert temporary.parent == tmp_path and temporary != report and "</html>" in text
    assert sorted(tmp_path.iterdir()) == [report]
    assert report.read_text(encoding="utf-8") == "the previous report"


def test_timings_count_image_features_computed_by_an_earlier_run() -> None:
    from tissuegraph.report.sections import training

    adata = ad.AnnData(X=np.ones((3, 2), dtype=np.float32))
    run = {"method": "staig", "mode": "image", "loss": np.array([2.0, 1.0]), "timings": {"train_s": 3.0}}
    adata.uns["tissuegraph"] = run
    adata.uns["tissuegraph_image"] = {"seed": 0, "patches_s": 1.5, "byol_s": 10.0, "n_comps": 64}
    _, _, body = training(run, adata)
    assert re.search(r"image features</td><td[^>]*>11\.5<", body)
    assert re.search(r"total</td><td[^>]*>14\.5<", body)
    run["timings"]["image_features_s"] = 11.5  # computed within this run: counted once
    _, _, body = training(run, adata)
    assert "image features<" not in body and "image_features<" in body and re.search(r"total</td><td[^>]*>14\.5<", body)


def test_results_the_report_cannot_describe_are_refused_in_one_line(tmp_path) -> None:
    """Loadable but broken results: named, never a traceback from deep inside a figure; nothing is written."""
    no_domain = _small_result()
    no_domain.obs["domain"] = pd.Categorical([np.nan] * no_domain.n_obs, categories=["0"])
    nan_row = _small_result()
    nan_row.obsm["X_tissuegraph"][7] = np.nan
    text_run = _small_result()
    text_run.uns["tissuegraph"] = "staig"
    for result, message in (
        (no_domain, r"obs\['domain'\] holds no domain"),
        (nan_row, r"obsm\['X_tissuegraph'\] has NaN or infinite values for 1 of 100 spots \('spot7'\)"),
        (text_run, r"uns\['tissuegraph'\] is not the record of a run"),
    ):
        with pytest.raises(InputError, match=message):
            write_report(result, tmp_path / "r.html")
    assert list(tmp_path.iterdir()) == []


def test_a_result_without_a_loss_curve_still_gets_its_report(tmp_path) -> None:
    result = _small_result()
    del result.uns["tissuegraph"]["loss"]
    result.uns["tissuegraph"]["timings"] = {"train_s": 2.0, "note": "n/a"}
    text = write_report(result, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "No loss curve is stored with this result." in text and all(title in text for title in SECTIONS)
    assert re.search(r"total</td><td[^>]*>2\.0<", text)


def test_a_16_bit_or_grey_slide_is_drawn_as_image_mode_reads_it() -> None:
    """imshow clips a uint16 image to white and draws a grey one in false colour: both go through the same
    conversion to RGB in [0, 1] as the patches image mode cuts."""
    from tissuegraph import pl

    result = _small_result()
    grey = np.linspace(0.2, 0.8, 150 * 150).reshape(150, 150)
    for stored, expected in (
        ((np.repeat(grey[..., None], 3, axis=2) * 65535).round().astype(np.uint16), np.repeat(grey[..., None], 3, 2)),
        (grey.astype(np.float32), np.repeat(grey[..., None], 3, axis=2)),
    ):
        result.uns["spatial"] = {"s": {"images": {"lowres": stored}, "scalefactors": {"tissue_lowres_scalef": 0.1}}}
        drawn = pl.domains(result, truth_key=None).axes[0].images[0].get_array()
        assert drawn.shape == (150, 150, 3)
        np.testing.assert_allclose(np.asarray(drawn, dtype=np.float64), expected, atol=1e-4)


@pytest.mark.parametrize(
    ("spatial", "reason"),
    [
        (
            {"s": {"images": {"lowres": np.zeros((3, 150, 150))}, "scalefactors": {"tissue_lowres_scalef": 0.1}}},
            "shape",
        ),
        (
            {"s": {"images": {"lowres": np.zeros((150, 150, 3))}, "scalefactors": {"tissue_lowres_scalef": "n/a"}}},
            "n/a",
        ),
        ({"s": {"images": {"lowres": np.zeros((150, 150, 3))}, "scalefactors": {"tissue_lowres_scalef": 0}}}, "is 0"),
        ({"s": "lowres.png"}, "not a mapping"),
    ],
)
def test_a_stored_image_image_mode_would_refuse_is_left_out_of_the_report_with_one_warning(
    spatial, reason, tmp_path
) -> None:
    """Image mode warns and runs gene mode on such an image; the report drew it anyway and crashed (channels
    first, a text scale factor, a library that is not a mapping) or put every spot at pixel (0, 0) (factor 0)."""
    result = _small_result()
    result.uns["spatial"] = spatial
    with pytest.warns(UserWarning, match="slide image is not drawn") as caught:
        text = write_report(result, tmp_path / "r.html").read_text(encoding="utf-8")
    image_warnings = [w for w in caught if "slide image" in str(w.message)]
    assert len(image_warnings) == 1 and reason in str(image_warnings[0].message)
    assert all(title in text for title in SECTIONS)
    assert re.search(r"\(one slice\)</td>(<td[^>]*>[^<]*</td>){2}<td[^>]*>no<", text)


def test_excluded_cells_count_as_unannotated_in_the_data_table_and_the_depth_note(tmp_path) -> None:
    """osmFISH's 'Excluded' cells were counted as annotated and grouped as a truth region in the depth note."""
    result = _small_result()
    truth = np.array(["L1", "L2", "WM"], dtype=object)[result.obs["domain"].astype(int).to_numpy()]
    truth[:30] = "Excluded"
    result.obs["ground_truth"] = truth
    text = write_report(result, tmp_path / "r.html").read_text(encoding="utf-8")
    assert re.search(r"\(one slice\)</td><td[^>]*>100</td><td[^>]*>70<", text)
    scored = result[30:]
    depth = metrics.depth_explained(scored, domain_key="ground_truth")
    assert depth != pytest.approx(metrics.depth_explained(result, domain_key="ground_truth"), abs=1e-3)
    assert f"ground truth {depth:.3f}" in text
