"""How far domains follow sequencing depth: eta squared within slices, the per-domain table and its plot."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from tissuegraph import metrics, pl
from tissuegraph.errors import InputError
from tissuegraph.pl.palette import domain_palette


def spots(depth: np.ndarray, domains, batch=None, seed: int = 0) -> ad.AnnData:
    """Poisson counts over 20 genes with each spot's expected total ``depth``; domains and slices as given."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(np.asarray(depth, dtype=float)[:, None] / 20.0, (len(depth), 20)).astype(np.float32)
    adata = ad.AnnData(X=sparse.csr_matrix(counts))
    adata.obs["domain"] = pd.Categorical([str(d) for d in domains])
    if batch is not None:
        adata.obs["batch"] = pd.Categorical(batch)
    return adata


def test_domains_cut_along_depth_explain_most_of_it_and_random_domains_none() -> None:
    rng = np.random.default_rng(1)
    depth = np.exp(rng.normal(8.0, 0.6, 3000))
    tertile = np.searchsorted(np.quantile(depth, [1 / 3, 2 / 3]), depth)
    assert metrics.depth_explained(spots(depth, tertile)) > 0.75
    assert metrics.depth_explained(spots(depth, rng.integers(0, 5, 3000))) < 0.01


def test_a_depth_difference_between_slices_is_not_counted_as_the_domains() -> None:
    rng = np.random.default_rng(2)
    depth = np.exp(rng.normal(7.0, 0.3, 2000)) * np.repeat([1.0, 10.0], 1000)
    batch = np.repeat(["A", "B"], 1000)
    one_domain_per_slice = np.repeat(["0", "1"], 1000)
    adata = spots(depth, one_domain_per_slice, batch)
    assert metrics.depth_explained(adata) < 0.01
    del adata.obs["batch"]  # pooled over slices, the same domains would seem to be all depth
    assert metrics.depth_explained(adata) > 0.9


def test_the_stored_all_gene_library_size_is_the_depth_when_present() -> None:
    rng = np.random.default_rng(3)
    domains = rng.integers(0, 2, 1000)
    adata = spots(np.full(1000, 500.0), domains)
    assert metrics.depth_explained(adata) < 0.01
    adata.obs["total_counts_all_genes"] = np.where(domains == 1, 4000.0, 1000.0) * rng.uniform(0.9, 1.1, 1000)
    np.testing.assert_array_equal(metrics.library_size(adata), adata.obs["total_counts_all_genes"].to_numpy())
    assert metrics.depth_explained(adata) > 0.95


def test_constant_depth_gives_nan_and_a_missing_domain_column_a_clear_error() -> None:
    adata = ad.AnnData(X=sparse.csr_matrix(np.ones((6, 3), dtype=np.float32)))
    adata.obs["domain"] = ["0", "0", "1", "1", "2", "2"]
    assert np.isnan(metrics.depth_explained(adata))
    assert pl.library_sizes(adata).axes[0].get_title() == "library size per domain (no spread within slices)"
    with pytest.raises(InputError, match=r"obs\['cluster'\] not found"):
        metrics.depth_explained(adata, domain_key="cluster")


def test_table_gives_spots_and_medians_per_domain_in_natural_order() -> None:
    counts = np.array([[5, 0, 1], [3, 3, 0], [10, 0, 0], [1, 1, 1], [0, 2, 0]], dtype=np.float32)
    adata = ad.AnnData(X=sparse.csr_matrix(counts))
    adata.obs["domain"] = ["10", "2", "10", "2", "2"]
    table = metrics.library_size_by_domain(adata)
    assert list(table.index) == ["2", "10"]
    assert table.loc["2"].tolist() == [3, 3.0, 2.0]  # totals 6, 3, 2; detected genes 2, 3, 1
    assert table.loc["10"].tolist() == [2, 8.0, 1.5]  # totals 6, 10; detected genes 2, 1


def test_plot_draws_one_box_per_domain_in_its_colour_at_its_median() -> None:
    rng = np.random.default_rng(4)
    domains = rng.integers(0, 12, 1200)
    adata = spots(np.exp(7.0 + 0.1 * domains), domains)
    ax = pl.library_sizes(adata).axes[0]
    order = [tick.get_text() for tick in ax.get_xticklabels()]
    assert order == [str(d) for d in range(12)]
    palette = domain_palette(adata)
    assert [tuple(patch.get_facecolor()) for patch in ax.patches] == [palette[name] for name in order]
    # medians span the box (width 0.6); caps are half as wide, whiskers vertical
    medians = [line.get_ydata()[0] for line in ax.lines if np.ptp(line.get_xdata()) > 0.5]
    np.testing.assert_allclose(medians, metrics.library_size_by_domain(adata)["median_library_size"].to_numpy())
    assert f"{metrics.depth_explained(adata):.0%}" in ax.get_title()


def test_spots_without_a_label_are_left_out() -> None:
    rng = np.random.default_rng(5)
    depth = np.exp(rng.normal(8.0, 0.5, 600))
    adata = spots(depth, depth > np.median(depth))
    truth = pd.Series(adata.obs["domain"].astype(str).to_numpy(), dtype=object)
    truth[rng.random(600) < 0.2] = np.nan
    adata.obs["ground_truth"] = truth.to_numpy()
    annotated = adata[truth.notna().to_numpy()]
    expected = metrics.depth_explained(annotated, domain_key="ground_truth")
    assert metrics.depth_explained(adata, domain_key="ground_truth") == pytest.approx(expected)
    table = metrics.library_size_by_domain(adata, domain_key="ground_truth")
    assert list(table.index) == ["False", "True"] and table["spots"].sum() == annotated.n_obs
