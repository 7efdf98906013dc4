"""Marker genes per domain, and finer sub-domains inside one domain with their own markers.

Markers are ranked by scanpy's ``rank_genes_groups`` (each group against all other spots) on counts
normalised to 1e4 per spot and log1p-transformed in a copy: ``X`` keeps the raw counts. Results are stored
as plain arrays (h5ad-writable, no DataFrames) in long format, one record per (group, rank):

``uns['tissuegraph_markers']`` = ``{'params': {...}, 'groups': [group names], 'records': {'group', 'rank',
'gene', 'score', 'logfoldchange', 'pvals_adj', 'pct_in', 'pct_out'}}`` (``pct_in``/``pct_out``: fraction of
spots inside/outside the group with a count of the gene). ``subdomains`` stores the same structure for the
sub-domains of one domain in ``uns['tissuegraph_subdomain_markers']``; ``marker_table`` reads either.
"""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pandas as pd
import scanpy as sc
from anndata import AnnData
from scipy import sparse

from tissuegraph.cluster import gmm_eee
from tissuegraph.errors import InputError, warn
from tissuegraph.io.validate import check_counts, check_embedding
from tissuegraph.labels import labels_as_text, natural_key, sorted_labels
from tissuegraph.options import check_seed, check_whole

MARKERS_KEY = "tissuegraph_markers"
SUBDOMAIN_MARKERS_KEY = "tissuegraph_subdomain_markers"
METHODS = ("wilcoxon", "t-test", "t-test_overestim_var")
COLUMNS = ("gene", "score", "logfoldchange", "pvals_adj", "pct_in", "pct_out")


def log_normalised(counts: sparse.spmatrix | np.ndarray) -> sparse.csr_matrix | np.ndarray:
    """A new float32 matrix: counts scaled to 1e4 per spot, then log1p (the input is left untouched)."""
    matrix = sparse.csr_matrix(counts, dtype=np.float32, copy=True) if sparse.issparse(counts) else None
    if matrix is None:
        matrix = np.array(counts, dtype=np.float32, copy=True)
    work = AnnData(X=matrix)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.pp.normalize_total(work, target_sum=1e4)
        sc.pp.log1p(work)
    return work.X


def check_request(method: str, n_genes: int) -> None:
    """Reject a test or a gene count that cannot work, before any computation."""
    if method not in METHODS:
        raise InputError(f"unknown marker method {method!r}; choose one of {', '.join(METHODS)}")
    if n_genes < 1:
        raise InputError(f"n_genes must be at least 1 (got {n_genes})")


def marker_groups(labels: np.ndarray) -> list[str]:
    """The groups that get markers: those of two or more spots (one spot has no statistics), in natural order."""
    names, sizes = np.unique(np.asarray(labels).astype(str), return_counts=True)
    return sorted((str(name) for name in names[sizes >= 2]), key=natural_key)


def rank_markers(
    counts: sparse.spmatrix | np.ndarray, labels: np.ndarray, var_names: pd.Index, n_genes: int, method: str
) -> tuple[list[str], dict[str, np.ndarray]]:
    """Markers of every group against the rest: (group names, long-format records), or InputError.

    Groups of a single spot have no statistics and are left out with a warning.
    """
    check_request(method, n_genes)
    labels = np.asarray(labels).astype(str)
    names, sizes = np.unique(labels, return_counts=True)
    single = names[sizes < 2]
    if single.size:
        warn(f"groups with a single spot have no markers and are left out: {', '.join(single)}")
    groups = marker_groups(labels)
    if len(groups) < 2:
        raise InputError(f"marker genes need at least 2 groups of 2 or more spots; found {len(groups)}")
    keep = np.isin(labels, groups)
    work = AnnData(
        X=log_normalised(counts[np.flatnonzero(keep)]),
        obs=pd.DataFrame(
            {"group": pd.Categorical(labels[keep], categories=groups)}, index=np.arange(keep.sum()).astype(str)
        ),
        var=pd.DataFrame(index=pd.Index(var_names.astype(str))),
    )
    work.var_names_make_unique()
    n_genes = min(int(n_genes), work.n_vars)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.tl.rank_genes_groups(work, "group", method=method, n_genes=n_genes, pts=True, use_raw=False)
    result = work.uns["rank_genes_groups"]
    records: dict[str, list[np.ndarray]] = {name: [] for name in ("group", "rank", *COLUMNS)}
    for group in groups:
        genes = np.asarray(result["names"][group]).astype(str)
        positions = work.var_names.get_indexer(genes)
        records["group"].append(np.full(genes.size, group, dtype=object))
        records["rank"].append(np.arange(genes.size, dtype=np.int32))
        records["gene"].append(np.asarray(var_names.astype(str))[positions].astype(object))
        records["score"].append(np.asarray(result["scores"][group], dtype=np.float32))
        records["logfoldchange"].append(np.asarray(result["logfoldchanges"][group], dtype=np.float32))
        records["pvals_adj"].append(np.asarray(result["pvals_adj"][group], dtype=np.float64))
        records["pct_in"].append(result["pts"][group].to_numpy(dtype=np.float32)[positions])
        records["pct_out"].append(result["pts_rest"][group].to_numpy(dtype=np.float32)[positions])
    return groups, {name: np.concatenate(parts) for name, parts in records.items()}


def fingerprint(adata: AnnData, domain_key: str) -> str:
    """A digest of the spots, their labels in ``obs[domain_key]`` and the genes: stored markers whose digest differs
    were computed on other data (spots dropped, genes removed, labels moved) even where the group names match."""
    text = labels_as_text(adata.obs[domain_key], missing="\x00")
    digest = hashlib.sha1()
    for part in (adata.obs_names.astype(str), text, adata.var_names.astype(str)):
        digest.update("\x1f".join(part).encode())
        digest.update(b"\x1e")
    return digest.hexdigest()


def _labels(adata: AnnData, domain_key: str) -> pd.Series:
    if domain_key not in adata.obs:
        raise InputError(
            f"obs[{domain_key!r}] not found; run tl.domains first or name an existing column (domain_key=...)"
        )
    return adata.obs[domain_key]


def markers(adata: AnnData, *, domain_key: str = "domain", n_genes: int = 100, method: str = "wilcoxon") -> AnnData:
    """Top ``n_genes`` marker genes of every group of ``obs[domain_key]`` against all other spots.

    Spots without a label (NaN, e.g. unannotated ground truth) are left out. Written to
    ``uns['tissuegraph_markers']`` (see the module docstring); ``X`` is not changed. Returns ``adata``.
    """
    labels = _labels(adata, domain_key)
    check_request(method, n_genes)
    annotated = labels.notna().to_numpy()
    rows = np.flatnonzero(annotated)
    check_counts(adata)
    groups, records = rank_markers(adata.X[rows], labels.iloc[rows].to_numpy(), adata.var_names, n_genes, method)
    adata.uns[MARKERS_KEY] = {
        "params": {
            "domain_key": domain_key,
            "method": method,
            "n_genes": int(n_genes),
            "reference": "rest",
            "fingerprint": fingerprint(adata, domain_key),
        },
        "groups": np.asarray(groups, dtype=object),
        "records": records,
    }
    return adata


def _stores(adata: AnnData) -> list[dict]:
    return [adata.uns[name] for name in (MARKERS_KEY, SUBDOMAIN_MARKERS_KEY) if name in adata.uns]


def marker_store(adata: AnnData, domain_key: str) -> dict:
    """The stored markers computed for the groups of ``obs[domain_key]`` (domains or sub-domains)."""
    for store in _stores(adata):
        if marker_column(store) == domain_key:
            return _current(adata, store)
    raise InputError(
        f"no marker genes stored for obs[{domain_key!r}]; run tl.markers(adata, domain_key={domain_key!r}) first"
    )


def marker_column(store: dict, *, parent: bool = False) -> str | None:
    """The obs column a marker store was computed for (for sub-domains with ``parent``: the column they split);
    stores written before the parameter was called domain_key name it key."""
    params = store["params"]
    if parent:
        return params.get("parent_domain_key", params.get("parent_key"))
    return params.get("domain_key", params.get("key"))


def forget_markers(adata: AnnData, domain_key: str = "domain") -> None:
    """Drop the markers (and the sub-domains with theirs) computed for ``obs[domain_key]``: called when new domains
    are written there, since markers of the old domains would be reported as the new ones'."""
    stored = adata.uns.get(MARKERS_KEY)
    if stored is not None and marker_column(stored) == domain_key:
        del adata.uns[MARKERS_KEY]
    split = adata.uns.get(SUBDOMAIN_MARKERS_KEY)
    if split is not None and marker_column(split, parent=True) == domain_key:
        adata.obs.drop(columns=str(marker_column(split)), errors="ignore", inplace=True)
        del adata.uns[SUBDOMAIN_MARKERS_KEY]


def markers_are_current(adata: AnnData, store: dict) -> bool:
    """Whether a marker store still describes the column it was computed for: the same spots, labels and genes
    (stores written before the digest was kept: the same group names)."""
    domain_key = marker_column(store)
    if domain_key not in adata.obs:
        return False
    if "fingerprint" in store["params"]:
        return str(store["params"]["fingerprint"]) == fingerprint(adata, domain_key)
    labels = adata.obs[domain_key]
    current = marker_groups(labels[labels.notna()].to_numpy())
    return current == [str(group) for group in store["groups"]]


def _current(adata: AnnData, store: dict) -> dict:
    """The store, if it still describes its column: markers of relabelled domains would be shown as the new ones'."""
    if not markers_are_current(adata, store):
        key = marker_column(store)
        raise InputError(
            f"the markers stored for obs[{key!r}] were computed for other labels (the column changed since, or is "
            f"gone); run tl.markers(adata, domain_key={key!r}) again"
        )
    return store


def marker_table(adata: AnnData, domain: str, n: int = 20) -> pd.DataFrame:
    """The top ``n`` markers of one domain (or sub-domain), best first: gene, score, logfoldchange, pvals_adj,
    pct_in, pct_out."""
    stores = _stores(adata)
    if not stores:
        raise InputError("no marker genes stored; run tl.markers(adata) (or tl.subdomains) first")
    domain = str(domain)
    for store in stores:
        records = store["records"]
        rows = np.flatnonzero(np.asarray(records["group"]).astype(str) == domain)
        if rows.size:
            _current(adata, store)
            rows = rows[np.argsort(np.asarray(records["rank"])[rows], kind="stable")][: max(int(n), 0)]
            return pd.DataFrame({column: np.asarray(records[column])[rows] for column in COLUMNS})
    known = [str(group) for store in stores for group in store["groups"]]
    raise InputError(f"no markers stored for {domain!r}; markers exist for: {', '.join(known)}")


def subdomains(
    adata: AnnData,
    domain: str,
    n_subdomains: int,
    *,
    domain_key: str = "domain",
    use_rep: str = "X_tissuegraph",
    seed: int = 0,
    key_added: str = "subdomain",
    n_genes: int = 100,
    method: str = "wilcoxon",
) -> AnnData:
    """Split one domain into ``n_subdomains`` finer sub-domains and find what tells them apart.

    The spots of ``domain`` are clustered on their embedding (``obsm[use_rep]``) with the same mclust-EEE
    Gaussian mixture as the domains. Sub-domains are named ``'<domain>.0'``, ``'<domain>.1'``, ... from the
    largest down and written to ``obs[key_added]``, where every other spot keeps its domain label. Their markers
    are ranked within the domain (each sub-domain against the others) into
    ``uns['tissuegraph_subdomain_markers']``. Returns ``adata``.
    """
    labels = _labels(adata, domain_key)
    check_request(method, n_genes)
    seed = check_seed(seed)
    n_subdomains = check_whole(n_subdomains, "n_subdomains", 2)  # 2.7 was cut to 2 without a word
    check_counts(adata)  # markers normalise X themselves: normalised X would be normalised twice
    if use_rep not in adata.obsm:
        raise InputError(f"obsm[{use_rep!r}] not found; run tl.domains or tl.integrate first, or name it (use_rep=)")
    domain = str(domain)
    text = labels.astype(object).where(labels.notna(), None)
    inside = np.asarray([value is not None and str(value) == domain for value in text])
    if not inside.any():
        raise InputError(
            f"domain {domain!r} not found in obs[{domain_key!r}]; domains are: {', '.join(sorted_labels(labels))}"
        )
    n_spots = int(inside.sum())
    if n_subdomains > n_spots:
        raise InputError(
            f"asked for {n_subdomains} sub-domains but domain {domain!r} has only {n_spots} spots; ask for fewer"
        )
    rows = np.flatnonzero(inside)
    embedding = check_embedding(np.asarray(adata.obsm[use_rep])[rows], adata.obs_names[rows], f"obsm[{use_rep!r}]")
    raw = gmm_eee(embedding, n_subdomains, seed=seed) if n_spots > n_subdomains else np.arange(n_spots)
    found, first, sizes = np.unique(raw, return_index=True, return_counts=True)
    ranked = found[np.lexsort((first, -sizes))]
    renamed = {int(old): f"{domain}.{new}" for new, old in enumerate(ranked)}
    sub_labels = np.asarray([renamed[int(c)] for c in raw], dtype=object)

    column = np.asarray([None if value is None else str(value) for value in text], dtype=object)
    column[rows] = sub_labels
    stored = adata.uns.get(MARKERS_KEY)
    if stored is not None and marker_column(stored) == key_added:  # markers of the column being overwritten
        del adata.uns[MARKERS_KEY]
    adata.obs[key_added] = pd.Categorical(column, categories=sorted_labels(column))

    params = {
        "domain_key": key_added,
        "parent_domain_key": domain_key,
        "domain": domain,
        "n_subdomains": n_subdomains,
        "use_rep": use_rep,
        "seed": seed,
        "method": method,
        "n_genes": int(n_genes),
        "reference": "rest of the domain",
        "fingerprint": fingerprint(adata, key_added),
    }
    adata.uns.pop(SUBDOMAIN_MARKERS_KEY, None)
    try:
        groups, records = rank_markers(adata.X[rows], sub_labels, adata.var_names, n_genes, method)
    except InputError as error:  # only too few sub-domains of 2+ spots: the split itself stands
        warn(f"no sub-domain markers: {error}")
        return adata
    adata.uns[SUBDOMAIN_MARKERS_KEY] = {
        "params": params,
        "groups": np.asarray(groups, dtype=object),
        "records": records,
    }
    return adata
