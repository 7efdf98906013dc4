"""Joining several slices: shared genes, unique spot ids, slice names, per-slice HVGs."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from tissuegraph.errors import InputError
from tissuegraph.pp.expression import library_sizes, select_hvgs
from tissuegraph.pp.slices import concat_slices, per_slice_hvgs, slice_names

from conftest import unsorted_csr


def _slice(genes: list[str], n: int = 12, seed: int = 0, batch: str | None = None) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    adata = ad.AnnData(X=sparse.csr_matrix(rng.poisson(2.0, size=(n, len(genes))).astype(np.float32)))
    adata.var_names = genes
    adata.obs_names = [f"AAAC-{i}" for i in range(n)]
    adata.obsm["spatial"] = rng.uniform(0, 100, size=(n, 2))
    if batch is not None:
        adata.obs["batch"] = batch
    return adata


GENES = [f"g{i}" for i in range(30)]


def test_slices_keep_order_coordinates_and_get_unique_ids() -> None:
    a, b = _slice(GENES, 12, 0), _slice(GENES[5:] + ["extra"], 9, 1)
    joint = concat_slices([a, b], names=["left", "right"])
    assert joint.n_obs == 21
    assert list(joint.var_names) == GENES[5:]
    assert joint.obs_names.is_unique
    assert list(joint.obs["batch"].cat.categories) == ["left", "right"]
    assert (joint.obs["batch"].to_numpy()[:12] == "left").all()
    np.testing.assert_array_equal(joint.obsm["spatial"][12:], b.obsm["spatial"])
    np.testing.assert_array_equal(joint[joint.obs["batch"] == "right", "g7"].X.toarray(), b[:, "g7"].X.toarray())


def test_a_file_with_several_batches_counts_as_those_slices() -> None:
    multi = ad.concat([_slice(GENES, 10, 0, "s1"), _slice(GENES, 8, 1, "s2")], index_unique="_")
    joint = concat_slices([multi, _slice(GENES, 7, 2, "s3")])
    assert list(joint.obs["batch"].cat.categories) == ["s1", "s2", "s3"]
    assert joint.obs["batch"].value_counts().to_dict() == {"s1": 10, "s2": 8, "s3": 7}
    with pytest.raises(InputError, match=r"input 1 holds 2 slices \('s1', 's2'\).*the name 'a' cannot apply"):
        concat_slices([multi, _slice(GENES, 7, 2, "s3")], names=["a", "b"])
    with pytest.raises(InputError, match=r"got 3 names for 1 input; give one name per input.*keeps those names"):
        concat_slices([multi], names=["a", "b", "c"])  # said '3 names for 1 slices', hiding the file's two slices
    other = _slice(GENES, 7, 2)
    other.obs["section"] = "s3"
    with pytest.raises(InputError, match=r"input 1 has no obs\['section'\], but its obs\['batch'\] names 2 slices"):
        concat_slices([multi, other], batch_key="section")  # was one slice: edges across the two sections


def test_slice_names_are_the_names_the_join_gives() -> None:
    """Known before joining (the CLI checks --align-to with them): batch values, given names, else positions."""
    multi = ad.concat([_slice(GENES, 10, 0, "s1"), _slice(GENES, 8, 1, "s2")], index_unique="_")
    cases = [
        ([multi, _slice(GENES, 7, 2, "s3"), _slice(GENES, 7, 3)], None),
        ([_slice(GENES, 7, 2, "s3"), _slice(GENES, 7, 3)], ["left", "right"]),
        ([_slice(GENES, 7, 2), _slice(GENES, 7, 3)], None),
    ]
    for inputs, names in cases:
        joined = list(concat_slices(inputs, names=names).obs["batch"].cat.categories)
        assert slice_names(inputs, names) == joined
    assert slice_names(cases[0][0]) == ["s1", "s2", "s3", "slice3"]
    with pytest.raises(InputError, match="distinct name"):
        slice_names([_slice(GENES, batch="s1"), _slice(GENES, seed=1, batch="s1")])


def test_the_same_slice_twice_is_refused_not_mixed_perfectly() -> None:
    """A file given twice integrated with itself and reported perfect batch mixing."""
    dense = _slice(GENES, 12, 0)
    dense.X = dense.X.toarray()
    with pytest.raises(InputError, match=r"slices 'slice1' and 'slice2' hold the same 12 spots .* given twice"):
        concat_slices([_slice(GENES, 12, 0), dense])
    moved = _slice(GENES, 12, 0)
    moved.obsm["spatial"] = moved.obsm["spatial"] + 1.0  # a serial section with the same counts is still joined
    assert concat_slices([_slice(GENES, 12, 0), moved]).n_obs == 24


def test_joining_leaves_the_callers_counts_in_their_order() -> None:
    """Counts stored column-unsorted, as b[:, shared_genes] leaves them: the caller's matrix is not touched."""
    a, b = _slice(GENES, 12, 0), _slice(GENES, 9, 1)
    b.X = unsorted_csr(b.X.toarray().astype(np.int32))
    before = b.X.toarray()
    joint = concat_slices([a, b], names=["a", "b"])
    np.testing.assert_array_equal(b.X.toarray(), before)
    np.testing.assert_array_equal(joint[joint.obs["batch"] == "b"].X.toarray(), before)


def test_one_anndata_and_names_in_any_sequence_are_taken_as_given() -> None:
    """A bare AnnData is one input (not a sequence of spots); names may be an array, an Index or one string."""
    multi = ad.concat([_slice(GENES, 10, 0, "s1"), _slice(GENES, 8, 1, "s2")], index_unique="_")
    joint = concat_slices(multi)
    assert list(joint.obs["batch"].cat.categories) == ["s1", "s2"] and joint.n_obs == 18
    pair = [_slice(GENES, 10, 0), _slice(GENES, 8, 1)]
    for names in (np.array(["left", "right"]), pd.Index(["left", "right"]), ("left", "right")):
        assert list(concat_slices(pair, names=names).obs["batch"].cat.categories) == ["left", "right"]
    assert list(concat_slices(_slice(GENES, 10, 0), names="only").obs["batch"].cat.categories) == ["only"]


def test_a_file_with_interleaved_slices_groups_its_spots_by_slice() -> None:
    """As documented: slices in the order they first appear, each keeping the order of its spots."""
    multi = ad.concat([_slice(GENES, 6, 0, "s1"), _slice(GENES, 6, 1, "s2")], index_unique="_")
    mixed = multi[[6, 0, 7, 1, 8, 2, 9, 3, 10, 4, 11, 5]].copy()
    joint = concat_slices([mixed])
    assert list(joint.obs["batch"].cat.categories) == ["s2", "s1"]
    expected = [f"{spot}-{batch}" for batch in ("s2", "s1") for spot in mixed.obs_names[mixed.obs["batch"] == batch]]
    assert list(joint.obs_names) == expected


def test_unnamed_slices_take_their_batch_value_or_position() -> None:
    joint = concat_slices([_slice(GENES, 10, 0, "151673"), _slice(GENES, 10, 1)])
    assert list(joint.obs["batch"].cat.categories) == ["151673", "slice2"]


def test_ensembl_versions_do_not_keep_one_gene_apart() -> None:
    """ENSG00000141510.16 and ENSG00000141510.17 are one gene in two annotation releases: 0 shared genes before."""
    a, b = _slice(GENES), _slice(GENES, seed=1)
    a.var["gene_ids"] = [f"ENSG{i:011d}" for i in range(30)]
    b.var["gene_ids"] = [f"ENSG{i:011d}.{i % 3 + 1}" for i in range(30)]
    assert concat_slices([a, b], names=["a", "b"]).n_vars == 30
    b.var["gene_ids"] = [f"ENSG{i // 2:011d}.{i}" for i in range(30)]  # not unique without versions: kept whole
    with pytest.raises(InputError, match=r"share only 0 gene.*matched by var\['gene_ids'\] \(genes per slice"):
        concat_slices([a, b], names=["a", "b"])


def test_ids_from_another_annotation_point_to_the_names() -> None:
    a, b = _slice(GENES), _slice(GENES, seed=1)
    a.var["gene_ids"] = [f"ENSG{i:011d}" for i in range(30)]
    b.var["gene_ids"] = [f"ENSMUSG{i:011d}" for i in range(30)]
    with pytest.raises(InputError, match=r"by gene name they would share 30: .*del adata.var\['gene_ids'\]"):
        concat_slices([a, b], names=["a", "b"])


def test_slices_sharing_too_few_genes_are_rejected() -> None:
    with pytest.raises(InputError, match=r"share only 0 gene.*and species$"):
        concat_slices([_slice(GENES), _slice([f"ENSG{i}" for i in range(30)])])
    with pytest.raises(InputError, match=r"share only 0 gene.*ignoring case they would share 30"):
        concat_slices([_slice(GENES), _slice([gene.upper() for gene in GENES])])


def test_slices_sharing_under_half_their_genes_warn_with_the_counts() -> None:
    """Integration on a small overlap runs, but the user is told: the gene names rarely follow one scheme."""
    genes = [f"Gene{i}" for i in range(60)]
    b_genes = genes[:25] + [gene.upper() for gene in genes[25:]]  # another tool upper-cased most names
    with pytest.warns(
        UserWarning, match=r"share only 25 genes .* smallest slice's 60 .*ignoring case they would share 60"
    ):
        joint = concat_slices([_slice(genes), _slice(b_genes, seed=1)], names=["a", "b"])
    assert joint.n_vars == 25
    with pytest.warns(UserWarning, match=r"share only 25 genes .*annotation versions$"):
        concat_slices([_slice(genes), _slice(genes[:25] + [f"x{i}" for i in range(35)], seed=1)], names=["a", "b"])


def test_genes_are_matched_by_id_when_every_slice_has_ids() -> None:
    """A repeated symbol made unique per file ('HSPA14', 'HSPA14-1') can name different genes in two files."""
    a = _slice(["HSPA14", "g1", "g2"] + GENES[3:], seed=0)
    a.var["gene_ids"] = ["ENSG_A", "ENSG_1", "ENSG_2"] + [f"ENSG{i}" for i in range(3, 30)]
    b = _slice(["HSPA14", "HSPA14-1", "g1"] + GENES[3:], seed=1)
    b.var["gene_ids"] = ["ENSG_B", "ENSG_A", "ENSG_1"] + [f"ENSG{i}" for i in range(3, 30)]
    joint = concat_slices([a, b], names=["a", "b"])
    assert list(joint.var_names[:2]) == ["HSPA14", "g1"] and "g2" not in joint.var_names  # the first slice names them
    from_b = joint[joint.obs["batch"] == "b", "HSPA14"].X.toarray()
    np.testing.assert_array_equal(from_b, b[:, "HSPA14-1"].X.toarray())  # same id, not same symbol
    del b.var["gene_ids"]  # without ids on every slice, names decide
    by_name = concat_slices([a, b], names=["a", "b"])
    from_b = by_name[by_name.obs["batch"] == "b", "HSPA14"].X.toarray()
    np.testing.assert_array_equal(from_b, b[:, "HSPA14"].X.toarray())


def test_ids_that_share_too_few_genes_are_named_in_the_error() -> None:
    a, b = _slice(GENES), _slice(GENES, seed=1)
    a.var["gene_ids"] = [f"ENSG{i}.1" for i in range(30)]
    b.var["gene_ids"] = [f"ENSG{i}.2" for i in range(30)]  # versioned differently
    with pytest.raises(InputError, match=r"share only 0 gene\(s\) matched by var\['gene_ids'\]"):
        concat_slices([a, b])


@pytest.mark.parametrize("bad", ["", " ", "s/1"])
def test_slice_names_that_cannot_key_a_file_are_refused_before_any_work(bad: str) -> None:
    """An empty name, or one with '/', broke the write of a Visium result (images are filed under slice names)."""
    with pytest.raises(InputError, match="a slice name must be non-empty text without '/'"):
        concat_slices([_slice(GENES, 12, 0), _slice(GENES, 9, 1)], names=[bad, "b"])
    with pytest.raises(InputError, match=r"rename them in obs\['batch'\]"):
        concat_slices([_slice(GENES, 12, 0, bad), _slice(GENES, 9, 1, "b")])


def test_two_slices_with_one_name_are_rejected() -> None:
    with pytest.raises(InputError, match=r"distinct name .*names= \(--names on the command line\)"):
        concat_slices([_slice(GENES, batch="s1"), _slice(GENES, seed=1, batch="s1")])


def test_per_slice_hvgs_intersection_is_inside_union() -> None:
    rng = np.random.default_rng(0)
    genes = [f"g{i}" for i in range(100)]
    a, b = _slice(genes, 80, 0), _slice(genes, 80, 1)
    bursts = rng.poisson(30, (80, 20)) * rng.integers(0, 2, (80, 20))  # genes 0-19 vary strongly in slice a only
    a.X = sparse.csr_matrix(a.X.toarray() + np.pad(bursts, ((0, 0), (0, 80))))
    joint = concat_slices([a, b], names=["a", "b"])
    both = per_slice_hvgs(joint, 60, combine="intersection")
    either = per_slice_hvgs(joint, 60, combine="union")
    own_a, own_b = select_hvgs(a, 60), select_hvgs(b, 60)  # each slice on its own (same genes, same order)
    np.testing.assert_array_equal(both, own_a & own_b)
    np.testing.assert_array_equal(either, own_a | own_b)
    assert both.sum() < either.sum()
    assert not (both & ~either).any()
    assert both[:20].sum() < either[:20].sum()  # variable in one slice only: in the union, not all in both
    with pytest.raises(InputError, match="unknown gene combination"):
        per_slice_hvgs(joint, 60, combine="average")


def test_hvgs_are_ranked_among_each_slices_own_genes() -> None:
    """A slice measuring extra genes picks its HVGs among all of them, as it would on its own, then intersects."""
    rng = np.random.default_rng(0)
    shared = [f"g{i}" for i in range(60)]
    a, b = _slice(shared + [f"x{i}" for i in range(20)], 80, 0), _slice(shared, 80, 1)
    bursts = rng.poisson(30, (80, 20)) * rng.integers(0, 2, (80, 20))  # a's extra genes are its most variable
    a.X = sparse.csr_matrix(a.X.toarray() + np.pad(bursts, ((0, 0), (60, 0))))
    joint = concat_slices([a, b], names=["a", "b"])
    assert joint.varm["hvg_rank"].shape == (60, 2)  # one column per slice
    assert np.isnan(joint.varm["hvg_rank"][:, 1]).all()  # b has no other genes: ranked on the joint, the same
    both = per_slice_hvgs(joint, 50)
    expected = select_hvgs(a, 50)[:60] & select_hvgs(b, 50)
    np.testing.assert_array_equal(both, expected)
    assert both.sum() <= 30  # 20 of a's 50 HVGs are genes b lacks; ranking a's shared genes alone keeps >= 40


def test_domains_on_a_file_with_several_slices_uses_the_per_slice_hvgs() -> None:
    """``domains`` on several slices in one file picks the model genes exactly as ``integrate`` does."""
    from tissuegraph.tl import domains

    rng = np.random.default_rng(1)
    genes = [f"g{i}" for i in range(100)]
    a, b = _slice(genes, 80, 0, "a"), _slice(genes, 80, 1, "b")
    bursts = rng.poisson(30, (80, 20)) * rng.integers(0, 2, (80, 20))  # genes 0-19 vary strongly in slice a only
    a.X = sparse.csr_matrix(a.X.toarray() + np.pad(bursts, ((0, 0), (0, 80))))
    both = ad.concat([a, b], index_unique="-")
    domains(both, 2, epochs=1, n_top_genes=60)
    expected = select_hvgs(a, 60) & select_hvgs(b, 60)
    assert expected.sum() < 60  # the slices disagree on some genes, so the intersection is a real choice
    np.testing.assert_array_equal(both.var["highly_variable"].to_numpy(), expected)


def test_slices_sharing_too_few_hvgs_get_a_clear_error() -> None:
    """Slices whose HVGs barely overlap are refused, by integrate's gene choice and by domains alike."""
    from tissuegraph.tl import domains

    rng = np.random.default_rng(2)
    genes = [f"g{i}" for i in range(100)]
    a, b = _slice(genes, 80, 0, "a"), _slice(genes, 80, 1, "b")
    for part, start in ((a, 0), (b, 30)):  # each slice's own strongly variable genes: 0-29 in a, 30-59 in b
        bursts = rng.poisson(30, (80, 30)) * rng.integers(0, 2, (80, 30))
        part.X = sparse.csr_matrix(part.X.toarray() + np.pad(bursts, ((0, 0), (start, 70 - start))))
    with pytest.raises(InputError, match="highly variable in every slice.*n_top_genes.*genes='union'"):
        per_slice_hvgs(concat_slices([a, b], names=["a", "b"]), 25)
    with pytest.raises(InputError, match=r"highly variable in any slice \(at least 20 are needed\); choose more"):
        per_slice_hvgs(concat_slices([a, b], names=["a", "b"]), 5, combine="union")
    with pytest.raises(InputError, match="highly variable in every slice"):
        domains(ad.concat([a, b], index_unique="-"), 2, n_top_genes=25)


def test_domains_on_joined_slices_takes_the_genes_and_tau_that_integrate_takes() -> None:
    """Each slice's HVGs among its own genes, intersected; tau from the HVGs each slice contributes, counted on the
    genes the slices share (min(n_top_genes, shared genes) / 100), not from the smaller intersection."""
    from tissuegraph.tl import domains, integrate

    rng = np.random.default_rng(3)
    genes = [f"g{i}" for i in range(300)]
    a, b = _slice(genes, 80, 0, "a"), _slice(genes[50:], 80, 1, "b")  # b measures 250 of a's genes
    for part in (a, b):
        part.X = sparse.csr_matrix(part.X.toarray() + rng.poisson(20, part.shape) * rng.integers(0, 2, part.shape))
    joint = concat_slices([a, b], names=["a", "b"])
    shared = per_slice_hvgs(joint, 200)
    assert 20 <= shared.sum() < 200  # the intersection is smaller than each slice's 200, so the two rules differ
    found = domains(joint.copy(), 2, n_top_genes=200, epochs=1)
    np.testing.assert_array_equal(found.var["highly_variable"].to_numpy(), shared)
    assert joint.n_vars == 250 and found.uns["tissuegraph"]["settings"]["tau"] == pytest.approx(2.0)
    together = integrate([a, b], 2, names=["a", "b"], n_top_genes=200, epochs=1)
    assert together.uns["tissuegraph"]["settings"]["tau"] == found.uns["tissuegraph"]["settings"]["tau"]


def test_joining_leaves_the_inputs_as_they_were() -> None:
    a = _slice(GENES, 12, 0)
    a.X = sparse.csr_matrix(a.X.toarray().astype(np.int32))
    a.var_names = ["g0", "g0", *GENES[2:]]  # duplicated names are made unique in the joint only
    concat_slices([a, _slice(GENES, 9, 1)], names=["a", "b"])
    assert a.X.dtype == np.int32 and list(a.var_names[:2]) == ["g0", "g0"]


@pytest.mark.filterwarnings("error")  # pandas' warning about joining an all-NaN filler is noise to the user
@pytest.mark.parametrize(
    "labels", [["L1"] * 6 + ["L2"] * 6, [1] * 6 + [2] * 6, pd.Categorical(["L1"] * 6 + ["L2"] * 6)]
)
def test_a_truth_annotating_some_slices_only_is_kept(tmp_path, labels: list | pd.Categorical) -> None:
    a, b = _slice(GENES, 12, 0), _slice(GENES, 9, 1)
    a.obs["ground_truth"] = labels
    a.obs["region"] = "x"
    joint = concat_slices([a, b], names=["a", "b"])
    truth = joint.obs["ground_truth"]
    assert list(truth.iloc[:12]) == list(labels) and truth.iloc[12:].isna().all()
    assert "region" not in joint.obs  # other columns missing from a slice are still dropped
    joint.write_h5ad(tmp_path / "joint.h5ad")  # numbers next to the NaN filler must stay writable
    assert list(ad.read_h5ad(tmp_path / "joint.h5ad").obs["ground_truth"].iloc[:12]) == list(labels)


def test_a_column_of_strings_in_one_slice_and_numbers_in_another_is_written_as_text(tmp_path) -> None:
    a, b = _slice(GENES, 12, 0), _slice(GENES, 9, 1)
    a.obs["ground_truth"] = ["L1"] * 6 + [None] * 6
    b.obs["ground_truth"] = np.arange(9) % 3
    a.obs["depth"], b.obs["depth"] = 1.5, 2.5  # consistent columns keep their type
    joint = concat_slices([a, b], names=["a", "b"])
    assert joint.obs["depth"].dtype == np.float64
    joint.write_h5ad(tmp_path / "joint.h5ad")
    truth = ad.read_h5ad(tmp_path / "joint.h5ad").obs["ground_truth"]
    assert list(truth.iloc[:6]) == ["L1"] * 6 and truth.iloc[6:12].isna().all()
    assert list(truth.iloc[12:]) == ["0", "1", "2"] * 3


@pytest.mark.parametrize("names", [None, ["a", "b"]])
def test_spots_without_a_slice_label_are_refused_not_named_nan(names: list[str] | None) -> None:
    b = _slice(GENES, 9, 1, "s2")
    b.obs["batch"] = b.obs["batch"].astype(object)
    b.obs.iloc[:2, b.obs.columns.get_loc("batch")] = np.nan
    with pytest.raises(InputError, match=r"input 2: 2 of 9 spots .*'AAAC-0', 'AAAC-1'.* no slice label .*fill those"):
        concat_slices([_slice(GENES, 12, 0, "s1"), b], names=names)
    b.obs["batch"] = np.nan  # no label at all: the input is one slice, named by its position or the name given
    joint = concat_slices([_slice(GENES, 12, 0, "s1"), b], names=names)
    assert list(joint.obs["batch"].cat.categories) == (["s1", "slice2"] if names is None else names)


def test_per_slice_hvgs_refuses_spots_without_a_slice_label() -> None:
    joint = concat_slices([_slice(GENES, 20, 0), _slice(GENES, 20, 1)], names=["a", "b"])
    joint.obs["batch"] = joint.obs["batch"].astype(object)
    joint.obs.iloc[0, joint.obs.columns.get_loc("batch")] = None
    with pytest.raises(InputError, match="1 of 40 spots"):
        per_slice_hvgs(joint, 10)


def test_a_slice_with_normalised_counts_is_told_where_its_raw_counts_are() -> None:
    a = _slice(GENES, 12, 0)
    a.layers["counts"] = a.X.copy()
    a.X = sparse.csr_matrix(np.log1p(a.X.toarray()))
    with pytest.raises(InputError, match=r"layers\['counts'\]: adata.X = adata.layers\['counts'\]"):
        concat_slices([a, _slice(GENES, 9, 1)], names=["a", "b"])


def test_each_slice_of_a_file_gets_only_its_own_image() -> None:
    one, two = _slice(GENES, 10, 0, "s1"), _slice(GENES, 8, 1, "s2")
    multi = ad.concat([one, two], index_unique="_")
    multi.uns["spatial"] = {"s1": {"images": {"lowres": np.full((4, 4, 3), 0.7)}, "scalefactors": {}}}
    joint = concat_slices([multi])
    assert list(joint.uns["spatial"]) == ["s1"]  # s2 has no image: it must not borrow s1's


@pytest.mark.parametrize("spatial", ["lowres.png", {"s1": "lowres.png"}])
def test_a_malformed_stored_image_is_left_behind_with_a_warning(spatial) -> None:
    """tl.domains runs gene mode past it with a warning; joining crashed (dict() of a string) or carried it on."""
    a, b = _slice(GENES, 10, 0), _slice(GENES, 8, 1)
    a.uns["spatial"] = spatial
    b.uns["spatial"] = {"s2": {"images": {"lowres": np.full((4, 4, 3), 0.7)}, "scalefactors": {}}}
    with pytest.warns(UserWarning, match="slice 'a': uns\\['spatial'\\] is not laid out as scanpy writes it"):
        joint = concat_slices([a, b], names=["a", "b"])
    assert joint.n_obs == 18 and list(joint.uns["spatial"]) == ["b"]


def test_spot_ids_that_collide_after_the_slice_suffix_are_refused() -> None:
    a, b = _slice(GENES, 3, 0), _slice(GENES, 3, 1)
    a.obs_names = ["1-2", "x", "y"]
    b.obs_names = ["1", "z", "w"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # only tissuegraph's error, not anndata's advice to make the ids unique
        with pytest.raises(InputError, match=r"spot ids collide .*'1-2-3'.*name the slices without '-'"):
            concat_slices([a, b], names=["3", "2-3"])


def test_too_few_measured_genes_are_named_as_such() -> None:
    few = [f"g{i}" for i in range(15)]
    joint = concat_slices([_slice(few, 20, 0), _slice(few, 20, 1)], names=["a", "b"], min_shared_genes=10)
    with pytest.raises(
        InputError, match="the slices measure only 15 shared genes; integrating slices needs at least 20"
    ):
        per_slice_hvgs(joint, 3000)


@pytest.mark.realdata
def test_each_slice_keeps_its_own_library_size_whatever_it_is_joined_with(dlpfc_151673) -> None:
    """Normalising by the shared genes' total made one slice's features depend on the other slice's gene panel."""
    half = dlpfc_151673.n_obs // 2
    top = dlpfc_151673[:half].copy()
    del top.obs["total_counts_all_genes"]
    own = np.asarray(top.X.sum(axis=1)).ravel()
    for other_genes in (slice(None), slice(0, 1500)):
        other = dlpfc_151673[half:, other_genes].copy()
        del other.obs["total_counts_all_genes"]
        joint = concat_slices([top, other], names=["top", "other"])
        stored = library_sizes(joint)  # None: normalised by the counts in X, here all of each slice's genes
        used = np.asarray(joint.X.sum(axis=1)).ravel() if stored is None else stored
        np.testing.assert_allclose(used[:half], own)


def test_a_spot_without_a_stored_total_gets_its_own_not_every_slice_the_shared_genes_total() -> None:
    """One gap in a slice's stored totals (an outer join) made every spot of every slice normalise by the shared
    genes' counts, which depend on the slices it is joined with."""
    a = _slice(GENES[:20], n=12, seed=0)
    b = _slice(GENES[5:30], n=12, seed=1)
    stored = np.asarray(b.X.sum(axis=1)).ravel() * 3.0  # b's file kept a third of its counts' genes
    stored[4] = np.nan
    b.obs["total_counts_all_genes"] = stored
    with pytest.warns(UserWarning, match=r"missing for some spots \(a: 12 of 12, b: 1 of 12\) in slice\(s\) 'a', 'b'"):
        joint = concat_slices([a, b], names=["a", "b"], min_shared_genes=10)
    used = library_sizes(joint)
    assert used is not None
    np.testing.assert_allclose(used[:12], np.asarray(a.X.sum(axis=1)).ravel())  # all of a's 20 genes, not 15 shared
    np.testing.assert_allclose(np.delete(used[12:], 4), np.delete(stored, 4))
    assert used[16] == b.X[4].sum()


@pytest.mark.realdata
def test_a_joined_file_given_again_keeps_its_spot_ids_and_gene_ranks(dlpfc_151673) -> None:
    """Re-running integration on a saved result: its slices were re-ranked among the shared genes only (other HVGs)
    and their ids got the slice name twice."""
    half = dlpfc_151673.n_obs // 2
    top, bottom = dlpfc_151673[:half].copy(), dlpfc_151673[half:, 500:].copy()  # bottom lacks 500 genes
    joint = concat_slices([top, bottom], names=["top", "bottom"])
    assert not np.isnan(joint.varm["hvg_rank"][:, 0]).any()  # top ranked among genes the join dropped
    again = concat_slices(joint)
    assert list(again.obs_names) == list(joint.obs_names)
    np.testing.assert_array_equal(again.varm["hvg_rank"], joint.varm["hvg_rank"])
    np.testing.assert_array_equal(per_slice_hvgs(again, 1000), per_slice_hvgs(joint, 1000))
