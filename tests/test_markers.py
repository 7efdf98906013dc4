"""Marker genes per domain and sub-domains: planted markers found, statistics sane, real white-matter markers."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from tissuegraph import pl
from tissuegraph.errors import InputError
from tissuegraph.metrics import ari
from tissuegraph.tl.markers import MARKERS_KEY, SUBDOMAIN_MARKERS_KEY, marker_table, markers, subdomains

WHITE_MATTER = {"MBP", "PLP1", "MOBP", "MAG", "CNP", "TF", "CLDN11", "GFAP"}


def planted(n_per_domain: int = 60, seed: int = 0) -> ad.AnnData:
    """Domains 0, 1, 2 marked by genes g0, g1, g2; domain 1 holds two halves marked by h0 / h1 and apart in
    the embedding; some spots have no ground truth."""
    rng = np.random.default_rng(seed)
    domain = np.repeat(np.arange(3), n_per_domain)
    n = domain.size
    half = np.zeros(n, dtype=int)
    half[(domain == 1) & (np.arange(n) % 2 == 1)] = 1
    names = ["g0", "g1", "g2", "h0", "h1"] + [f"n{j}" for j in range(15)]
    counts = rng.poisson(2.0, (n, len(names))).astype(np.float32)
    counts[np.arange(n), domain] += rng.poisson(25.0, n)
    inside = domain == 1
    counts[inside, 3 + half[inside]] += rng.poisson(25.0, int(inside.sum()))
    adata = ad.AnnData(X=sparse.csr_matrix(counts))
    adata.obs_names = [f"s{i}" for i in range(n)]
    adata.var_names = names
    adata.obs["domain"] = pd.Categorical([str(d) for d in domain], categories=["0", "1", "2"])
    truth = pd.Series([f"T{d}" for d in domain], index=adata.obs_names, dtype=object)
    truth[rng.random(n) < 0.1] = np.nan
    adata.obs["ground_truth"] = truth
    embedding = rng.normal(0, 0.2, (n, 6)) + 3.0 * np.eye(6)[domain]
    embedding[inside, 5] += np.where(half[inside] == 1, 2.0, -2.0)
    adata.obsm["X_tissuegraph"] = embedding.astype(np.float32)
    adata.obsm["spatial"] = rng.random((n, 2))
    adata.uns["half"] = half
    return adata


def test_markers_find_the_planted_genes_with_sane_statistics_and_keep_x(tmp_path) -> None:
    adata = planted()
    before = adata.X.copy()
    markers(adata, n_genes=8)
    assert (adata.X != before).nnz == 0
    store = adata.uns[MARKERS_KEY]
    assert store["params"]["domain_key"] == "domain" and list(store["groups"]) == ["0", "1", "2"]
    for d in "012":
        table = marker_table(adata, d, 5)
        assert list(table.columns) == ["gene", "score", "logfoldchange", "pvals_adj", "pct_in", "pct_out"]
        assert len(table) == 5 and table["gene"].iloc[0] == f"g{d}"
        top = table.iloc[0]
        assert top["logfoldchange"] > 1 and top["pvals_adj"] < 1e-6 and top["pct_in"] >= top["pct_out"]
        assert ((table["pvals_adj"] >= 0) & (table["pvals_adj"] <= 1)).all()
        assert table["score"].is_monotonic_decreasing
    path = tmp_path / "markers.h5ad"
    adata.write_h5ad(path)
    pd.testing.assert_frame_equal(marker_table(ad.read_h5ad(path), "1", 8), marker_table(adata, "1", 8))


def test_spots_without_a_label_are_left_out_and_bad_requests_are_refused() -> None:
    adata = planted()
    markers(adata, domain_key="ground_truth", n_genes=3)
    assert list(adata.uns[MARKERS_KEY]["groups"]) == ["T0", "T1", "T2"]
    assert marker_table(adata, "T2", 1)["gene"].iloc[0] == "g2"
    with pytest.raises(InputError, match="celltype"):
        markers(adata, domain_key="celltype")
    with pytest.raises(InputError, match="unknown marker method"):
        markers(adata, method="logreg")
    with pytest.raises(InputError, match="markers exist for"):
        marker_table(adata, "7")
    adata.X = np.log1p(adata.X)  # normalised data in X would be normalised and logged a second time
    with pytest.raises(InputError, match="non-integer values"):
        markers(adata, domain_key="ground_truth")


@pytest.mark.realdata
def test_white_matter_markers_on_dlpfc(dlpfc_151673) -> None:
    adata = dlpfc_151673[dlpfc_151673.obs["ground_truth"].notna()].copy()
    markers(adata, domain_key="ground_truth", n_genes=20)
    table = marker_table(adata, "WM", 20)
    significant = set(table.loc[table["pvals_adj"] < 0.05, "gene"])
    assert len(significant & WHITE_MATTER) >= 6 and table["gene"].iloc[0] in WHITE_MATTER, table
    assert (table["logfoldchange"] > 0).all()
    records = adata.uns[MARKERS_KEY]["records"]
    assert ((records["pvals_adj"] >= 0) & (records["pvals_adj"] <= 1)).all()
    assert ((records["pct_in"] >= 0) & (records["pct_in"] <= 1)).all()


def test_subdomains_split_one_domain_and_find_what_tells_the_parts_apart() -> None:
    adata = planted()
    markers(adata, n_genes=5)
    subdomains(adata, "1", 2, n_genes=5)
    labels = adata.obs["subdomain"].astype(str).to_numpy()
    inside = (adata.obs["domain"] == "1").to_numpy()
    assert set(labels[inside]) == {"1.0", "1.1"}
    np.testing.assert_array_equal(labels[~inside], adata.obs["domain"].astype(str).to_numpy()[~inside])
    assert ari(adata.uns["half"][inside], labels[inside]) == 1.0
    store = adata.uns[SUBDOMAIN_MARKERS_KEY]
    assert store["params"]["domain"] == "1" and list(store["groups"]) == ["1.0", "1.1"]
    for sub in ("1.0", "1.1"):
        half = adata.uns["half"][inside][labels[inside] == sub][0]
        assert marker_table(adata, sub, 1)["gene"].iloc[0] == f"h{half}"
    assert marker_table(adata, "1", 1)["gene"].iloc[0] == "g1"  # the domain markers are kept
    ax = pl.marker_dotplot(adata, domain_key="subdomain", n_genes=1).axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["1.0", "1.1"]


@pytest.mark.parametrize(
    ("domain", "n", "kwargs", "message"),
    [
        ("9", 2, {}, "domain '9' not found"),
        ("1", 2, {"domain_key": "region"}, "obs\\['region'\\] not found"),
        ("1", 1, {}, "n_subdomains must be a whole number >= 2"),
        ("1", 2.7, {}, "n_subdomains must be a whole number >= 2 \\(got 2.7\\)"),
        ("1", 2, {"seed": -1}, "seed must be an integer from 0"),
        ("1", 61, {}, "only 60 spots"),
        ("1", 2, {"use_rep": "X_other"}, "obsm\\['X_other'\\] not found"),
    ],
)
def test_subdomain_requests_that_cannot_work_are_refused(domain: str, n: int, kwargs: dict, message: str) -> None:
    adata = planted()
    with pytest.raises(InputError, match=message):
        subdomains(adata, domain, n, **kwargs)
    assert "subdomain" not in adata.obs


def test_subdomains_refuse_an_embedding_with_nan_rows_in_the_domain() -> None:
    adata = planted()
    inside = np.flatnonzero(adata.obs["domain"].astype(str).to_numpy() == "1")
    adata.obsm["X_tissuegraph"][inside[3]] = np.nan
    with pytest.raises(InputError, match=r"obsm\['X_tissuegraph'\] has NaN or infinite values for 1 of 60 spots"):
        subdomains(adata, "1", 2)
    assert "subdomain" not in adata.obs


def test_subdomains_refuse_normalised_counts() -> None:
    adata = planted()
    adata.X = np.log1p(adata.X)  # sub-domain markers would normalise and log these a second time
    with pytest.raises(InputError, match="non-integer values.*looks normalised or log-transformed"):
        subdomains(adata, "1", 2)
    assert "subdomain" not in adata.obs and SUBDOMAIN_MARKERS_KEY not in adata.uns


def test_new_domains_make_the_markers_of_the_old_ones_go_away() -> None:
    """Markers and sub-domains describe the domains they were computed for; new domains must not inherit them."""
    from tissuegraph.tl.domains import assign_domains
    from tissuegraph.tl.markers import markers_are_current

    adata = planted()
    markers(adata, n_genes=3)
    subdomains(adata, "1", 2, n_genes=3)
    assert markers_are_current(adata, adata.uns[MARKERS_KEY])
    adata.obs["domain"] = pd.Categorical(np.where(adata.obs["domain"] == "2", "1", adata.obs["domain"]))
    assert not markers_are_current(adata, adata.uns[MARKERS_KEY])  # domains 1 and 2 merged since
    embedding = adata.obsm["X_tissuegraph"]
    adata.obsm["X_umap"] = np.zeros((adata.n_obs, 2))  # a layout of the embedding the new one replaces
    assign_domains(
        adata, embedding, 2, cluster="kmeans", refine=False, refine_neighbors=15, slices=None, seed=0, timings={}
    )
    assert MARKERS_KEY not in adata.uns and SUBDOMAIN_MARKERS_KEY not in adata.uns and "subdomain" not in adata.obs
    assert "X_umap" not in adata.obsm
    truth_markers = markers(planted(), domain_key="ground_truth", n_genes=3)
    assign_domains(
        truth_markers,
        embedding,
        2,
        cluster="kmeans",
        refine=False,
        refine_neighbors=15,
        slices=None,
        seed=0,
        timings={},
    )
    assert truth_markers.uns[MARKERS_KEY]["params"]["domain_key"] == "ground_truth"  # another column's: kept


def test_image_and_expression_domains_forget_their_old_markers_and_old_stores_are_read() -> None:
    from tissuegraph.tl import image_domains
    from tissuegraph.tl.markers import marker_column, markers_are_current

    adata = planted()
    adata.obsm["X_image"] = adata.obsm["X_tissuegraph"]
    adata.X = sparse.csr_matrix(np.log1p(adata.X.toarray()))  # image_domains reads the image only, never the counts
    image_domains(adata, 3)
    adata.X = planted().X
    markers(adata, domain_key="image_domain", n_genes=3)
    image_domains(adata, 2)
    assert MARKERS_KEY not in adata.uns
    markers(adata, n_genes=3)
    store = adata.uns[MARKERS_KEY]
    store["params"] = {"key": "domain", "method": "wilcoxon"}  # written before the parameter was renamed
    assert marker_column(store) == "domain" and markers_are_current(adata, store)
    assert list(marker_table(adata, "0", 2)["gene"])[0] == "g0"


def test_pvals_adj_are_the_benjamini_hochberg_adjustment_of_each_domain_test() -> None:
    """With every gene ranked, each domain's pvals_adj are BH over its Welch t-test p-values (log-normalised counts,
    domain against the rest), computed here independently with scipy."""
    from scipy import stats

    adata = planted()
    markers(adata, n_genes=adata.n_vars, method="t-test")
    records = adata.uns[MARKERS_KEY]["records"]
    counts = adata.X.toarray().astype(np.float64)
    logged = np.log1p(counts / counts.sum(axis=1, keepdims=True) * 1e4)
    labels = adata.obs["domain"].astype(str).to_numpy()
    for domain in "012":
        rows = np.asarray(records["group"]).astype(str) == domain
        genes = adata.var_names.get_indexer(np.asarray(records["gene"])[rows].astype(str))
        assert sorted(genes) == list(range(adata.n_vars))
        raw = stats.ttest_ind(logged[labels == domain], logged[labels != domain], equal_var=False).pvalue
        adjusted = np.asarray(records["pvals_adj"])[rows]
        np.testing.assert_allclose(adjusted, stats.false_discovery_control(raw)[genes], rtol=1e-4)
        assert (adjusted >= raw[genes] * (1 - 1e-4)).all() and (adjusted > raw[genes] * 1.5).any()


def test_stored_markers_of_other_spots_or_genes_are_not_current_even_with_the_same_domains() -> None:
    """Dropping spots (as the README advises for 'Excluded' cells) or a gene keeps the domain names but makes the
    stored markers describe other data; relabelling spots does too."""
    from tissuegraph.tl.markers import markers_are_current

    adata = markers(planted(), n_genes=3)
    store = adata.uns[MARKERS_KEY]
    assert markers_are_current(adata, store)
    assert markers_are_current(adata.copy(), store)  # a copy is the same data
    fewer_spots = adata[adata.obs_names != "s0"].copy()
    fewer_genes = adata[:, adata.var_names != "n3"].copy()
    moved = adata.copy()
    moved.obs.loc["s0", "domain"] = "1"
    for other in (fewer_spots, fewer_genes, moved):
        assert list(other.obs["domain"].cat.categories) == ["0", "1", "2"]
        assert not markers_are_current(other, store)


def test_new_subdomains_drop_markers_computed_for_the_old_ones() -> None:
    adata = subdomains(planted(), "1", 2, n_genes=3)
    markers(adata, domain_key="subdomain", n_genes=3)
    assert "1.0" in list(adata.uns[MARKERS_KEY]["groups"])
    subdomains(adata, "2", 2, n_genes=3)  # obs['subdomain'] is rewritten: domain 1 is whole again
    assert MARKERS_KEY not in adata.uns
    with pytest.raises(InputError, match="no markers stored for '1.0'"):
        marker_table(adata, "1.0")


def test_the_dot_plot_reads_nullable_labels_and_refuses_repeated_gene_names() -> None:
    adata = planted()
    adata.obs["domain"] = pd.array(adata.obs["domain"].astype(int), dtype="Int64")
    adata.obs.loc[["s0", "s1"], "domain"] = pd.NA
    markers(adata, n_genes=3)
    ax = pl.marker_dotplot(adata, n_genes=1).axes[0]
    assert [tick.get_text() for tick in ax.get_yticklabels()] == ["0", "1", "2"]
    repeated = planted()
    repeated.var_names = ["g0", "g0", *repeated.var_names[2:]]
    markers(repeated, n_genes=3)
    with pytest.raises(InputError, match=r"gene names repeat in var_names \(g0\).*var_names_make_unique"):
        pl.marker_dotplot(repeated)


def test_the_report_section_explains_markers_it_cannot_draw() -> None:
    from tissuegraph.report.sections import marker_genes

    repeated = planted()
    repeated.var_names = ["g0", "g0", *repeated.var_names[2:]]
    _, title, body = marker_genes(repeated)
    assert title == "Marker genes" and "no marker genes: gene names repeat in var_names" in body


def test_the_report_recomputes_markers_stored_with_fewer_genes_than_it_shows() -> None:
    """Markers stored with n_genes=3 filled tables captioned 'Top 8 per domain' with three genes each."""
    from tissuegraph.report.sections import N_MARKERS, marker_genes

    adata = planted()
    markers(adata, n_genes=3)
    _, _, body = marker_genes(adata)
    assert adata.uns[MARKERS_KEY]["params"]["n_genes"] >= N_MARKERS
    first_card = body.split("<h3>domain 0</h3>")[1].split("</table>")[0]
    assert first_card.count("<tr>") - 1 == N_MARKERS  # a header row, then one row per marker
