"""Plots check what is drawn: panels, images, legends, the colour of every spot, matched truth colours."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text
from scipy import sparse

from tissuegraph import pl
from tissuegraph.errors import InputError
from tissuegraph.labels import sorted_labels
from tissuegraph.pl import embedding
from tissuegraph.pl.palette import (
    MISSING_COLOUR,
    batch_palette,
    colour_sequence,
    domain_palette,
    match_labels,
    matched_palette,
)
from tissuegraph.tl.markers import marker_table, markers

#: Ground-truth names of the synthetic domains: a permutation, so truth order differs from domain order.
TRUTH_OF = {"0": "WM", "1": "L1", "2": "L2"}
SCALE = 0.1


def _slice(name: str, rng: np.random.Generator, side: int = 12) -> ad.AnnData:
    """A side x side grid in three horizontal bands (domains 0, 1, 2), domain d marked by gene g<d>."""
    xx, yy = np.meshgrid(np.arange(side), np.arange(side))
    coords = np.c_[xx.ravel(), yy.ravel()].astype(np.float64) * 100.0
    domain = np.minimum(yy.ravel() * 3 // side, 2)
    counts = rng.poisson(2.0, (side * side, 12)).astype(np.float32)
    counts[np.arange(side * side), domain] += rng.poisson(30.0, side * side)
    adata = ad.AnnData(X=sparse.csr_matrix(counts))
    adata.obs_names = [f"spot{i}-{name}" for i in range(side * side)]
    adata.var_names = [f"g{j}" for j in range(counts.shape[1])]
    adata.obsm["spatial"] = coords
    adata.obs["domain"] = [str(d) for d in domain]
    truth = pd.Series([TRUTH_OF[str(d)] for d in domain], index=adata.obs_names, dtype=object)
    truth[rng.random(side * side) < 0.1] = np.nan
    adata.obs["ground_truth"] = truth
    adata.obs["batch"] = name
    return adata


def two_slices(image_for: tuple[str, ...] = ("A",)) -> ad.AnnData:
    """Two slices as tl.integrate writes them; an H&E image for the slices named in ``image_for``."""
    rng = np.random.default_rng(0)
    joint = ad.concat([_slice("A", rng), _slice("B", rng)])
    joint.obs["batch"] = pd.Categorical(joint.obs["batch"], categories=["A", "B"])
    joint.obs["domain"] = pd.Categorical(joint.obs["domain"].astype(str), categories=["0", "1", "2"])
    joint.uns["spatial"] = {
        name: {"images": {"lowres": rng.random((150, 150, 3))}, "scalefactors": {"tissue_lowres_scalef": SCALE}}
        for name in image_for
    }
    codes = joint.obs["domain"].astype(int).to_numpy()
    joint.obsm["X_tissuegraph"] = (rng.normal(0, 0.3, (joint.n_obs, 8)) + 3.0 * np.eye(8)[codes]).astype(np.float32)
    joint.uns["tissuegraph"] = {"method": "staig", "loss": np.linspace(5.0, 1.0, 40).astype(np.float32)}
    return joint


def legend_texts(ax) -> list[str]:
    return [text.get_text() for text in ax.get_legend().get_texts()]


def test_two_slices_with_truth_give_four_panels_with_the_image_only_where_there_is_one() -> None:
    joint = two_slices(image_for=("A",))
    fig = pl.domains(joint)
    assert len(fig.axes) == 4
    assert [len(ax.images) for ax in fig.axes] == [1, 1, 0, 0]
    assert [ax.get_title().split(":")[0] for ax in fig.axes] == ["A", "A", "B", "B"]
    assert "ground_truth" in fig.axes[1].get_title() and "domain" in fig.axes[0].get_title()


def test_without_truth_or_image_one_plain_panel_per_slice() -> None:
    joint = two_slices(image_for=("A", "B"))
    fig = pl.domains(joint, truth_key=None, image=False)
    assert len(fig.axes) == 2
    assert all(len(ax.images) == 0 for ax in fig.axes)
    for ax in fig.axes:
        bottom, top = ax.get_ylim()
        assert bottom > top, "y must point down, as in an image"
        assert ax.get_aspect() == 1.0
    del joint.obs["ground_truth"]
    assert len(pl.domains(joint).axes) == 2


def test_legends_list_the_domains_and_the_truth_labels() -> None:
    fig = pl.domains(two_slices())
    assert legend_texts(fig.axes[0]) == ["0", "1", "2"]
    assert legend_texts(fig.axes[1]) == ["L1", "L2", "WM", "unannotated"]


def test_excluded_cells_are_drawn_and_scored_in_titles_as_unannotated() -> None:
    """osmFISH's 'Excluded' cells were drawn as a region of their own and counted in the panel's ARI."""
    from tissuegraph import metrics

    joint = two_slices()
    truth = joint.obs["ground_truth"].astype(object)
    truth[(joint.obs["domain"] == "0").to_numpy() | (np.arange(joint.n_obs) % 5 == 0)] = "Excluded"
    joint.obs["ground_truth"] = truth
    fig = pl.domains(joint)
    assert legend_texts(fig.axes[1]) == ["L1", "L2", "unannotated"]
    rows = (joint.obs["batch"] == "A").to_numpy()
    assert metrics.ari(truth[rows], joint.obs["domain"][rows]) < 0.9  # 'Excluded' as a region spans all domains
    assert metrics.score(joint[rows])["ari"] == 1.0 and "(ARI 1.00)" in fig.axes[0].get_title()
    excluded = np.flatnonzero(truth[rows].to_numpy() == "Excluded")
    colours = fig.axes[1].collections[0].get_facecolors()[excluded]
    np.testing.assert_allclose(colours, np.tile(MISSING_COLOUR, (len(excluded), 1)))


def test_long_legends_wrap_into_columns_and_sparse_cells_stay_visible() -> None:
    from tissuegraph.pl.spatial import default_spot_size

    joint = two_slices()
    joint.obs["domain"] = pd.Categorical([str(i % 40) for i in range(joint.n_obs)])
    ax = pl.domains(joint, truth_key=None).axes[0]
    assert len(legend_texts(ax)) == 40 and ax.get_legend()._ncols == 3
    assert pl.domains(two_slices(), truth_key=None).axes[0].get_legend()._ncols == 1
    far_apart = np.array([[0.0, 0.0], [1.0, 0.0], [1e4, 1e4]])
    assert default_spot_size(far_apart, 4.0) == 2.0


def test_every_spot_has_the_colour_of_its_domain_at_its_position() -> None:
    joint = two_slices(image_for=("A",))
    palette = domain_palette(joint)
    fig = pl.domains(joint, truth_key=None)
    for ax, name in zip(fig.axes, ["A", "B"], strict=True):
        rows = np.flatnonzero(joint.obs["batch"] == name)
        points = ax.collections[0]
        expected = np.array([palette[d] for d in joint.obs["domain"].iloc[rows].astype(str)])
        np.testing.assert_allclose(points.get_facecolors(), expected)
        scale = SCALE if name == "A" else 1.0
        np.testing.assert_allclose(points.get_offsets(), joint.obsm["spatial"][rows] * scale)


def test_a_slice_drawn_alone_keeps_the_colours_of_the_whole_result(monkeypatch) -> None:
    """A view drops the domains its slice lacks; the report passes the whole result's palette so colours hold."""
    joint = two_slices()
    joint.obs.loc[(joint.obs["batch"] == "B").to_numpy() & (joint.obs["domain"] == "0").to_numpy(), "domain"] = "1"
    palette = domain_palette(joint)
    slice_b = joint[(joint.obs["batch"] == "B").to_numpy()]
    assert list(slice_b.obs["domain"].cat.categories) == ["1", "2"]  # so its own palette would shift
    expected = np.array([palette[d] for d in slice_b.obs["domain"].astype(str)])
    drawn = pl.domains(slice_b, truth_key=None, image=False, palette=palette).axes[0].collections[0]
    np.testing.assert_allclose(drawn.get_facecolors(), expected)
    assert not np.allclose(
        pl.domains(slice_b, truth_key=None, image=False).axes[0].collections[0].get_facecolors(), expected
    )
    with pytest.raises(InputError, match=r"palette has no colour for domain '2'; pass palette=domain_palette"):
        pl.domains(slice_b, truth_key=None, image=False, palette={"0": palette["0"], "1": palette["1"]})
    from tissuegraph.report import sections

    palettes = []
    monkeypatch.setattr(sections.pl, "domains", lambda adata, **kwargs: palettes.append(kwargs) or Figure())
    monkeypatch.setattr(sections, "png_uri", lambda fig: "data:,")
    sections.domain_maps(joint)
    assert [kwargs["palette"] for kwargs in palettes] == [palette, palette]
    # truth labels are matched on the whole result too: one colour per label in every slice, not one per slice
    whole_truth = matched_palette(joint.obs["ground_truth"], joint.obs["domain"], palette)
    assert [kwargs["truth_palette"] for kwargs in palettes] == [whole_truth, whole_truth]


def test_a_given_truth_palette_colours_the_truth_panel() -> None:
    joint = two_slices()
    slice_b = joint[(joint.obs["batch"] == "B").to_numpy()]
    names = sorted_labels(slice_b.obs["ground_truth"])
    chosen = {name: (0.1 * i, 0.2, 0.9, 1.0) for i, name in enumerate(names)}
    truth = slice_b.obs["ground_truth"]
    expected = np.array([MISSING_COLOUR if pd.isna(t) else chosen[t] for t in truth])
    drawn = pl.domains(slice_b, image=False, palette=domain_palette(joint), truth_palette=chosen).axes[1]
    np.testing.assert_allclose(drawn.collections[0].get_facecolors(), expected)
    with pytest.raises(InputError, match="truth_palette has no colour for ground_truth"):
        pl.domains(slice_b, image=False, palette=domain_palette(joint), truth_palette={})


def test_truth_labels_take_the_colour_of_their_matched_domain() -> None:
    joint = two_slices()
    palette = domain_palette(joint)
    fig = pl.domains(joint)
    domain_of = {truth: domain for domain, truth in TRUTH_OF.items()}
    for ax, name in zip(fig.axes[1::2], ["A", "B"], strict=True):
        truth = joint.obs["ground_truth"][joint.obs["batch"] == name]
        expected = np.array([MISSING_COLOUR if pd.isna(t) else palette[domain_of[t]] for t in truth])
        np.testing.assert_allclose(ax.collections[0].get_facecolors(), expected)


def test_hungarian_matching_recovers_a_permutation_and_ignores_missing_truth() -> None:
    rng = np.random.default_rng(1)
    predicted = rng.integers(0, 4, 400).astype(str)
    permutation = {"0": "c", "1": "a", "2": "d", "3": "b"}
    truth = pd.Series([permutation[p] for p in predicted], dtype=object)
    noisy = rng.random(400) < 0.1
    truth[noisy] = rng.choice(list("abcd"), int(noisy.sum()))
    truth[rng.random(400) < 0.2] = np.nan
    assert match_labels(truth, predicted) == permutation

    truth_with_extra = truth.copy()
    truth_with_extra[:30] = "e"
    palette = dict(zip(["0", "1", "2", "3"], colour_sequence(4), strict=True))
    colours = matched_palette(truth_with_extra, predicted, palette)
    assert all(colours[t] == palette[p] for p, t in match_labels(truth_with_extra, predicted).items())
    assert colours["e"] not in palette.values()


def test_palette_is_stable_across_subsets_and_sorted_naturally() -> None:
    joint = two_slices()
    whole = domain_palette(joint)
    assert domain_palette(joint[joint.obs["batch"] == "B"]) == whole
    labels = ad.AnnData(obs=pd.DataFrame({"domain": pd.Categorical(["10", "2", "1", "2"])}, index=list("abcd")))
    palette = domain_palette(labels)
    assert list(palette) == ["1", "2", "10"]
    assert list(palette.values()) == colour_sequence(3)
    many = colour_sequence(120)
    assert len({tuple(np.round(c, 4)) for c in many}) == 120
    # no domain is drawn in a grey like that of unannotated spots (domain 17 was (0.78, 0.78, 0.78))
    assert min(max(c[:3]) - min(c[:3]) for c in many) > 0.05
    # the fixed maps' near-twins are left out: domains 0 and 38 were #1f77b4 and #3182bd (0.07 apart at most)
    rgb = np.array([c[:3] for c in many[:37]])
    gaps = np.abs(rgb[:, None] - rgb[None]).max(axis=-1)
    assert gaps[np.triu_indices(37, k=1)].min() > 0.08
    slices = np.array([c[:3] for c in batch_palette([str(i) for i in range(17)]).values()])
    assert np.ptp(slices, axis=1).min() > 0.05  # Set1's and Dark2's greys were slices 8 and 17


def test_umap_panels_cache_and_colours(monkeypatch) -> None:
    joint = two_slices()
    fig = pl.umap(joint)
    assert [ax.get_title() for ax in fig.axes] == ["domain", "batch"]
    assert joint.obsm["X_umap"].shape == (joint.n_obs, 2) and np.isfinite(joint.obsm["X_umap"]).all()
    assert legend_texts(fig.axes[0]) == ["0", "1", "2"] and legend_texts(fig.axes[1]) == ["A", "B"]
    domain_at = {tuple(row): d for row, d in zip(joint.obsm["X_umap"], joint.obs["domain"].astype(str), strict=True)}
    palette = domain_palette(joint)
    points = fig.axes[0].collections[0]
    expected = [palette[domain_at[tuple(xy)]] for xy in np.asarray(points.get_offsets(), dtype=np.float32)]
    np.testing.assert_allclose(points.get_facecolors(), expected)

    def fail(*args, **kwargs):
        raise AssertionError("UMAP recomputed although cached")

    cached = joint.obsm["X_umap"].copy()
    monkeypatch.setattr(embedding, "compute_umap", fail)
    assert len(pl.umap(joint, color="domain").axes) == 1
    np.testing.assert_array_equal(joint.obsm["X_umap"], cached)
    calls = []
    monkeypatch.setattr(embedding, "compute_umap", lambda x, seed: calls.append(seed) or np.zeros((x.shape[0], 2)))
    pl.umap(joint, seed=3)
    assert calls == [3]

    single = joint[joint.obs["batch"] == "A"].copy()
    assert [ax.get_title() for ax in pl.umap(single).axes] == ["domain"]
    as_numbers = joint.copy()
    as_numbers.obs["domain"] = as_numbers.obs["domain"].astype(int)  # domains stored as numbers stay labels
    numbered = pl.umap(as_numbers, color="domain")
    assert len(numbered.axes) == 1 and legend_texts(numbered.axes[0]) == ["0", "1", "2"]
    np.testing.assert_allclose(numbered.axes[0].collections[0].get_facecolors(), points.get_facecolors())
    with pytest.raises(InputError, match="not found"):
        pl.umap(joint, color=("domain", "celltype"))
    with pytest.raises(InputError, match="no column 'sample' naming the slices"):  # named on purpose: not skipped
        pl.umap(joint, batch_key="sample")


def test_a_hundred_domains_widen_the_figure_instead_of_covering_the_next_panel() -> None:
    joint = two_slices()
    few = pl.domains(joint).get_size_inches()[0]
    joint.obs["domain"] = pd.Categorical([str(i % 100) for i in range(joint.n_obs)])
    fig = pl.domains(joint)
    assert fig.get_size_inches()[0] >= few + 2 * 4 * 1.6  # two domain panels per row, four more legend columns
    FigureCanvasAgg(fig).draw()  # lays the figure out
    domain_legend = fig.axes[0].get_legend().get_window_extent()
    assert domain_legend.x1 <= fig.axes[1].get_window_extent().x0  # ends before the ground-truth panel
    assert pl.umap(joint, color="domain").get_size_inches()[0] >= 4 + 6 * 1.6


def test_plots_refuse_what_they_cannot_draw_and_draw_tiny_results() -> None:
    joint = two_slices()
    joint.obsm["spatial"][3] = np.nan
    with pytest.raises(InputError, match="NaN or infinite coordinates for 1 spots"):
        pl.domains(joint)
    joint = two_slices()
    joint.obsm["X_tissuegraph"][5] = np.nan
    with pytest.raises(InputError, match=r"obsm\['X_tissuegraph'\] has NaN or infinite values for 1 of"):
        pl.umap(joint)
    with pytest.raises(InputError, match=r"obs\['layer'\] not found, so there is no annotation"):
        pl.domains(two_slices(), truth_key="layer")  # a typo must not silently drop the truth panels
    unlabelled = two_slices()
    del unlabelled.obs["ground_truth"]
    assert len(pl.domains(unlabelled).axes) == len(pl.domains(two_slices(), truth_key=None).axes)
    three = two_slices()[:3].copy()
    assert np.isfinite(embedding.umap_coordinates(three)).all()  # the spectral start needs four spots


def test_names_with_dollar_signs_are_drawn_as_written() -> None:
    """A slice called '$\\foo$' made saving the report fail in matplotlib's math parser; 'a$b$c' turned italic."""
    joint = two_slices()
    joint.obs["batch"] = joint.obs["batch"].cat.rename_categories(["$\\foo$", "a$b$c"])
    for fig in (pl.domains(joint), pl.umap(joint)):  # the slice names are panel titles and a legend
        FigureCanvasAgg(fig).draw()  # raised ValueError: Unknown symbol: \\foo
        named = [text for text in fig.findobj(Text) if "foo$" in text.get_text() or "a$b$c" in text.get_text()]
        assert named and not any(text.get_parse_math() for text in named)
    nothing = two_slices()
    nothing.obs["domain"] = pd.Series(np.nan, index=nothing.obs_names, dtype=object)
    with pytest.raises(InputError, match=r"obs\['domain'\] labels no spot"):
        pl.library_sizes(nothing)


def test_long_slice_names_are_shortened_in_titles_and_legends() -> None:
    """Two 206-character slice names collapsed the layout (matplotlib: 'axes sizes collapsed to zero'), the domain
    and truth titles ran into each other and the slice legend ran off the figure."""
    joint = two_slices()
    long_names = ["x" * 200 + "_left", "x" * 200 + "_right"]
    joint.obs["batch"] = joint.obs["batch"].cat.rename_categories(long_names)
    for fig in (pl.domains(joint), pl.umap(joint)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the collapsed layout was a UserWarning
            FigureCanvasAgg(fig).draw()
        texts = [text.get_text() for text in fig.findobj(Text)]
        assert max(map(len, texts)) <= 60 and any("x…x" in text and "_right" in text for text in texts)
        assert not any(name in text for text in texts for name in long_names)


def test_dotplot_has_one_row_per_domain_and_dots_from_the_stored_markers() -> None:
    joint = two_slices()
    markers(joint, n_genes=10)
    fig = pl.marker_dotplot(joint, n_genes=2)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "1", "2"]
    genes = list(dict.fromkeys(g for d in "012" for g in marker_table(joint, d, 2)["gene"]))
    assert [t.get_text() for t in ax.get_xticklabels()] == genes
    dots = ax.collections[0]
    assert len(dots.get_offsets()) == 3 * len(genes)
    means = np.asarray(dots.get_array()).reshape(3, len(genes))
    for d in range(3):  # the planted marker of a domain is brightest in that domain
        assert means[:, genes.index(f"g{d}")].argmax() == d
    with pytest.raises(InputError, match="tl.markers"):
        pl.marker_dotplot(joint, domain_key="ground_truth")
    # domains 0 and 1 swapped after the markers were found: their markers would be drawn against the wrong rows
    joint.obs["domain"] = joint.obs["domain"].cat.rename_categories({"0": "1", "1": "0"})
    stale = r"markers stored for obs\['domain'\] were computed for other labels .*run tl.markers"
    with pytest.raises(InputError, match=stale):
        pl.marker_dotplot(joint)
    with pytest.raises(InputError, match=stale):
        marker_table(joint, "0")


def test_loss_curve_draws_the_stored_loss() -> None:
    joint = two_slices()
    line = pl.loss_curve(joint).axes[0].lines[0]
    np.testing.assert_array_equal(line.get_xdata(), np.arange(1, 41))
    np.testing.assert_allclose(line.get_ydata(), joint.uns["tissuegraph"]["loss"])
    joint.uns["tissuegraph"] = {"method": "staligner", "loss": np.ones(10), "settings": {"pretrain_epochs": 6}}
    ax = pl.loss_curve(joint).axes[0]
    assert len(ax.lines) == 2
    np.testing.assert_array_equal(ax.lines[1].get_xdata(), [6.5, 6.5])  # between epoch 6 (pretraining) and 7
    assert legend_texts(ax) == ["loss", "triplets start"]
    joint.uns["tissuegraph"]["settings"]["pretrain_epochs"] = 2
    np.testing.assert_array_equal(pl.loss_curve(joint).axes[0].lines[1].get_xdata(), [2.5, 2.5])
    del joint.uns["tissuegraph"]
    with pytest.raises(InputError, match="tl.domains"):
        pl.loss_curve(joint)


def test_labels_equal_by_value_sort_by_their_text_whatever_the_input_order() -> None:
    """'2' and '02' compare equal by value; their order followed the string hash seed, run to run."""
    assert sorted_labels(["2", "02", "10", "L2"]) == sorted_labels(["L2", "10", "02", "2"]) == ["02", "2", "10", "L2"]
