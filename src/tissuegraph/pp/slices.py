"""Several slices into one AnnData: shared genes, unique spot ids, one ``obs['batch']`` naming each slice.

Coordinates are kept as each slice had them: the graph is built per slice, so slices never need a common
coordinate frame. Each slice's highly variable genes are ranked among its own genes before the join (a slice
measuring genes the others lack ranks its shared genes against those too), as the methods pick HVGs per slice
and then intersect them. A file that already holds several slices (``obs['batch']`` with several values) counts as
those slices.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import anndata as ad
import numpy as np
import pandas as pd
from anndata import AnnData

from tissuegraph.errors import InputError, warn
from tissuegraph.gr.spatial import slice_column
from tissuegraph.io.validate import LIBRARY_SIZE_KEY, check_counts, quote_examples, validate_spatial
from tissuegraph.pp.expression import hvg_ranks, select_hvgs

MIN_SHARED_GENES = 20
TRUTH_KEY = "ground_truth"  # the annotation metrics.score scores against
GENE_ID_KEY = "gene_ids"  # Space Ranger's (and scanpy's) column of stable gene ids, e.g. Ensembl
NAMES_MATCH = "gene names"  # how slices are matched when some slice lacks complete, unique gene ids
ENSEMBL_VERSION = r"^(ENS[A-Z]{0,6}G\d{11})\.\d+$"  # ENSG00000141510.16: the gene and its version
HVG_RANK_KEY = "hvg_rank"  # varm: each shared gene's seurat_v3 rank among its slice's own genes, a column per slice


def _slice_labels(
    adata: AnnData, name: str | None, position: int, batch_key: str
) -> tuple[list[str], pd.Series | None]:
    """The names of the slices ``adata`` holds, in order of first appearance, and each spot's slice label when it
    holds several (else None).

    A single slice is called ``name`` when given, else by the batch value it carries, else by its position. An
    input holding several slices keeps their batch values, so a name given for it is refused rather than dropped.
    An input without the batch column, or whose column holds no label at all, is one slice, whatever ``batch_key``
    is; but one whose ``obs['batch']`` names several slices while another ``batch_key`` was asked for is refused,
    since joining those slices into one would put edges between sections whose coordinates merely overlap.
    """
    n_default = adata.obs["batch"].nunique() if "batch" in adata.obs else 0
    if batch_key not in adata.obs and n_default > 1:  # batch_key is then not 'batch' itself
        raise InputError(
            f"input {position + 1} has no obs[{batch_key!r}], but its obs['batch'] names {n_default} slices; "
            f"copy them into obs[{batch_key!r}] "
            f"(adata.obs[{batch_key!r}] = adata.obs['batch']) so they stay separate slices"
        )
    batches = None
    if batch_key in adata.obs and adata.obs[batch_key].notna().any():
        try:
            batches = slice_column(adata, batch_key).astype(str)
        except InputError as err:  # some spots without a slice label: say which input holds them
            raise InputError(f"input {position + 1}: {err}") from err
    if batches is not None and batches.nunique() > 1:
        if name is not None:
            raise InputError(
                f"input {position + 1} holds {batches.nunique()} slices ({quote_examples(pd.unique(batches))}) named "
                f"by obs[{batch_key!r}], so the name {name!r} cannot apply; leave the names out, or give that file's "
                "slices as separate inputs"
            )
        return list(pd.unique(batches)), batches
    if name is None:
        name = str(batches.iloc[0]) if batches is not None else f"slice{position + 1}"
    return [name], None


def _split_slices(adata: AnnData, name: str | None, position: int, batch_key: str) -> list[tuple[str, AnnData]]:
    """One (name, AnnData) per slice of ``adata`` (see ``_slice_labels``)."""
    labels, batches = _slice_labels(adata, name, position, batch_key)
    if batches is None:
        return [(labels[0], adata)]
    recorded = _recorded_ranks(adata, adata.obs[batch_key])  # a joined file given again keeps its slices' ranks
    pieces = []
    for value in labels:
        piece = adata[(batches == value).to_numpy()].copy()
        piece.varm.pop(HVG_RANK_KEY, None)  # the joined file's column per slice: this slice's own, if any, below
        if value in recorded:
            piece.varm[HVG_RANK_KEY] = recorded[value][:, None]
        pieces.append((value, piece))
    return pieces


def _shallow_copy(adata: AnnData) -> AnnData:
    """The slice with its own obs/var tables, so validating it (CSR float32 counts, unique gene names) leaves the
    caller's AnnData as it was, without copying the counts; layers and raw come along for validation's advice on
    where the raw counts are. A backed file is passed as it is, for validation to refuse with its own advice."""
    if adata.isbacked:
        return adata
    copy = AnnData(
        X=adata.X, obs=adata.obs.copy(), var=adata.var.copy(), uns=adata.uns, layers=dict(adata.layers), raw=adata.raw
    )
    for key, value in adata.obsm.items():
        copy.obsm[key] = value
    for key, value in adata.varm.items():  # a joined file's recorded HVG ranks
        copy.varm[key] = value
    return copy


def _partial_truth(pieces: list[AnnData]) -> np.ndarray | None:
    """The joined ground truth when only some slices have one, NaN in the others (the inner join would drop it), so
    the annotated slices are still scored; built outside the join, which warns about all-NaN filler columns."""
    present = [TRUTH_KEY in piece.obs for piece in pieces]
    if not any(present) or all(present):
        return None
    return np.concatenate(
        [
            piece.obs[TRUTH_KEY].to_numpy(dtype=object) if has else np.full(piece.n_obs, np.nan, dtype=object)
            for piece, has in zip(pieces, present, strict=True)
        ]
    )


def _writable_obs(obs: pd.DataFrame) -> None:
    """Make the joined obs columns writable to h5ad, which stores object columns of strings only.

    Joining turns a column of numbers in one slice and strings in another (or NaN filler, see
    ``_partial_truth``) into objects: values of one type become categories of it, mixed types become text,
    so the result writes after training; missing values stay missing.
    """
    for name in obs.columns:
        column = obs[name]
        if column.dtype != object:
            continue
        kinds = {type(value) for value in column.dropna()}
        if kinds <= {str}:
            continue
        obs[name] = pd.Categorical(column) if len(kinds) == 1 else column.where(column.isna(), column.astype(str))


def _stored_library_sizes(adata: AnnData) -> np.ndarray:
    """A slice's stored all-gene totals, NaN where a spot has none (the column absent, or gaps from an outer join)."""
    if LIBRARY_SIZE_KEY not in adata.obs:
        return np.full(adata.n_obs, np.nan)
    return adata.obs[LIBRARY_SIZE_KEY].to_numpy(dtype=np.float64, na_value=np.nan)


def _warn_partial_library_sizes(parts: list[tuple[str, AnnData]]) -> None:
    """Say so when only some spots have stored all-gene library sizes: the others are normalised by their counts in
    X."""
    missing = {label: int(np.isnan(_stored_library_sizes(adata)).sum()) for label, adata in parts}
    without = [label for label, adata in parts if missing[label]]
    if without and sum(missing.values()) < sum(adata.n_obs for _, adata in parts):
        counts = ", ".join(f"{label}: {missing[label]} of {adata.n_obs}" for label, adata in parts if missing[label])
        warn(
            f"obs[{LIBRARY_SIZE_KEY!r}] is missing for some spots ({counts}) in slice(s) {quote_examples(without)}; "
            "those spots are normalised by their counts over all their genes in X, the others by the stored totals "
            "(give it to every spot, or to none, to silence this)"
        )


def _gene_keys(parts: list[tuple[str, AnnData]]) -> tuple[list[pd.Index], str]:
    """What each slice's genes are matched by: ``var['gene_ids']`` when every slice has complete, unique ids (their
    Ensembl versions left out when the ids stay unique without them), else the gene names.

    Symbols repeat (two Ensembl genes are called HSPA14), and ``var_names_make_unique`` numbers the repeats in each
    file's own order, so 'HSPA14' in one file can be another gene than 'HSPA14' in the next; ids cannot.
    """
    ids = []
    for _, adata in parts:
        column = adata.var.get(GENE_ID_KEY)
        if column is None or column.isna().any() or not column.is_unique:
            return [adata.var_names for _, adata in parts], NAMES_MATCH
        ids.append(pd.Index(column.astype(str)))
    unversioned = [key.str.replace(ENSEMBL_VERSION, r"\1", regex=True) for key in ids]
    versioned = any(not plain.equals(key) for plain, key in zip(unversioned, ids, strict=True))
    if versioned and all(key.is_unique for key in unversioned):  # ENSG00000141510.16 and .17: one gene, two releases
        return unversioned, f"var[{GENE_ID_KEY!r}] (Ensembl versions ignored)"
    return ids, f"var[{GENE_ID_KEY!r}]"


def _shared_genes(keys: list[pd.Index]) -> pd.Index:
    """The keys every slice has, in the first slice's order."""
    shared = keys[0]
    for key in keys[1:]:
        shared = shared.intersection(key, sort=False)
    return shared


def _case_hint(keys: list[pd.Index], n_shared: int) -> str:
    """Advice when ignoring case would at least double the shared genes: 'Gapdh' in one file, 'GAPDH' in another."""
    folded = len(_shared_genes([key.str.lower() for key in keys]))
    if folded < 2 * max(n_shared, 1):
        return ""
    return (
        f"; compared ignoring case they would share {folded} (e.g. 'Gapdh' vs 'GAPDH'): write the gene names in "
        "the same case in every slice"
    )


def _name_hint(parts: list[tuple[str, AnnData]], matched_by: str, shared: pd.Index) -> str:
    """Advice when the gene names would match where the ids do not (ids from another annotation, say)."""
    if matched_by == NAMES_MATCH:
        return ""
    by_name = len(_shared_genes([adata.var_names for _, adata in parts]))
    if by_name < 2 * max(len(shared), 1):
        return ""
    return (
        f"; by gene name they would share {by_name}: to match by name, delete the ids first "
        f"(del adata.var[{GENE_ID_KEY!r}] for each slice, then save it)"
    )


def _own_gene_ranks(adata: AnnData, columns: np.ndarray) -> np.ndarray:
    """The shared genes' (``columns``) seurat_v3 ranks among all genes of ``adata``: as recorded when ``adata`` is a
    slice cut from a joined file (its own genes are gone), else computed; NaN when it has no other genes (ranking
    them on the joint gives the same) or seurat_v3 cannot rank them."""
    recorded = adata.varm.get(HVG_RANK_KEY)
    if recorded is not None and recorded.shape[1] == 1:
        return np.asarray(recorded[columns, 0], dtype=np.float32)
    if adata.n_vars > len(columns):
        ranks = hvg_ranks(adata)
        if ranks is not None:
            return ranks[columns]
    return np.full(len(columns), np.nan, dtype=np.float32)


def _inputs(
    slices: Sequence[AnnData] | AnnData, names: Sequence[str] | str | None
) -> tuple[list[AnnData], list[str] | None]:
    """The slices as a list and the names as text, one per input, or an ``InputError`` saying what to pass."""
    if isinstance(slices, AnnData):  # one file holding several slices; indexing it would walk its spots
        slices = [slices]
    if isinstance(slices, Mapping) or not isinstance(slices, Iterable):
        raise InputError(
            f"slices must be a list of AnnData (or one AnnData), not a {type(slices).__name__}; e.g. "
            "[tg.read(path) for path in paths], with names=... for their names"
        )
    slices = list(slices)  # a generator is walked once
    strangers = [f"{i + 1} ({type(s).__name__})" for i, s in enumerate(slices) if not isinstance(s, AnnData)]
    if strangers:
        raise InputError(
            f"slices {', '.join(strangers)} are not AnnData; read each file first (tg.read(path)), or give the "
            "paths on the command line (tissuegraph integrate FILE1 FILE2 ...)"
        )
    if isinstance(names, str):
        names = [names]
    names = None if names is None else [str(name) for name in names]  # arrays and Index have no truth value
    if len(slices) == 0:
        raise InputError("no slices given; pass at least one AnnData or file")
    if names is not None and len(names) != len(slices):
        inputs = f"{len(slices)} input{'s' if len(slices) != 1 else ''}"
        raise InputError(
            f"got {len(names)} names for {inputs}; give one name per input, in the order given (an input whose "
            "obs['batch'] names several slices, such as the STARmap file, keeps those names and takes no name)"
        )
    return slices, names


def _check_labels(labels: list[str], batch_key: str) -> None:
    unusable = [label for label in labels if not label.strip() or "/" in label]
    if unusable:  # the result files each slice's image under its name, and .h5ad reads '/' in a key as nesting
        raise InputError(
            f"slice names {quote_examples(unusable)} cannot be used: a slice name must be non-empty text without "
            f"'/'; pass other names= (--names on the command line), or rename them in obs[{batch_key!r}]"
        )
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise InputError(
            f"several slices are named {quote_examples(repeated)}; give each input a distinct name "
            "(e.g. set obs['batch'] per file, or pass names= (--names on the command line))"
        )


def _check_distinct(parts: list[tuple[str, AnnData]]) -> None:
    """Refuse two slices with the same spots (coordinates, genes and counts): the same file given twice would integrate
    perfectly with itself and report perfect mixing."""
    for first, (label_a, a) in enumerate(parts):
        for label_b, b in parts[first + 1 :]:
            same_genes = a.shape == b.shape and a.var_names.equals(b.var_names)
            if same_genes and np.array_equal(a.obsm["spatial"], b.obsm["spatial"]) and (a.X != b.X).nnz == 0:
                raise InputError(
                    f"slices {label_a!r} and {label_b!r} hold the same {a.n_obs} spots (same coordinates and "
                    "counts): the same file given twice? Give each section once"
                )


def slice_names(
    slices: Sequence[AnnData] | AnnData, names: Sequence[str] | str | None = None, *, batch_key: str = "batch"
) -> list[str]:
    """The names ``concat_slices`` gives these inputs' slices, in its order, found without joining them: a caller
    can check a slice name (say, the reference to align to) before a long run. Refuses what the join refuses about
    the names."""
    slices, names = _inputs(slices, names)
    labels = [
        label
        for position, adata in enumerate(slices)
        for label in _slice_labels(adata, None if names is None else names[position], position, batch_key)[0]
    ]
    _check_labels(labels, batch_key)
    return labels


def concat_slices(
    slices: Sequence[AnnData] | AnnData,
    names: Sequence[str] | str | None = None,
    *,
    batch_key: str = "batch",
    min_shared_genes: int = MIN_SHARED_GENES,
) -> AnnData:
    """Concatenate slices on their shared genes, in the order given, spots in their original order.

    ``slices`` is a list of AnnData, or one AnnData; an input whose ``obs[batch_key]`` names several slices is cut
    into them, in the order each first appears, so its spots are grouped by slice (each keeps its spots' order).

    Genes are matched by ``var['gene_ids']`` when every slice has unique ids (Space Ranger output does; Ensembl
    versions such as the '.16' of ENSG00000141510.16 are ignored), else by name; the joint takes the first slice's
    gene names. ``varm['hvg_rank']`` (one column per slice, in the order of ``obs[batch_key]``'s categories) keeps
    each shared gene's HVG rank among its slice's own genes, which the join would otherwise lose.

    ``obs[batch_key]`` names each slice (``names``, else the slice's own batch value, else its position);
    spot ids become ``<id>-<slice>`` so the same barcode on two slices stays two spots (a joined file given again
    keeps its ids, and its recorded ranks). When the join drops genes of some slice, or some slice stores its
    all-gene totals, every slice's library size lands in ``obs['total_counts_all_genes']`` (its own counts over all
    its genes where none is stored), so each slice is normalised by its own total. Images in
    ``uns['spatial']`` are kept per library, a slice's single library filed under the slice name. Raises
    ``InputError`` when the slices share fewer than ``min_shared_genes`` genes or two slices get the same name, and
    warns when they share fewer than half of the smallest slice's genes.
    """
    slices, names = _inputs(slices, names)
    parts: list[tuple[str, AnnData]] = []
    split: set[str] = set()  # slices cut out of a file holding several
    for position, adata in enumerate(slices):
        checked = validate_spatial(_shallow_copy(adata), what=f"slice {position + 1}")
        found = _split_slices(checked, None if names is None else names[position], position, batch_key)
        parts.extend(found)
        if len(found) > 1:
            split.update(label for label, _ in found)
    labels = [label for label, _ in parts]
    _check_labels(labels, batch_key)
    _check_distinct(parts)
    keys, matched_by = _gene_keys(parts)
    shared = _shared_genes(keys)
    sizes = ", ".join(f"{label}: {adata.n_vars}" for label, adata in parts)
    fewest = min(adata.n_vars for _, adata in parts)
    if len(shared) < min_shared_genes:
        raise InputError(
            f"the slices share only {len(shared)} gene(s) matched by {matched_by} (genes per slice: {sizes}); "
            f"integration needs at least {min_shared_genes}: check that every slice uses the same gene naming "
            f"(symbols vs Ensembl ids) and species{_case_hint(keys, len(shared))}"
            + _name_hint(parts, matched_by, shared)
        )
    if 2 * len(shared) < fewest:
        warn(
            f"the slices share only {len(shared)} genes matched by {matched_by}, fewer than half of the smallest "
            f"slice's {fewest} (genes per slice: {sizes}); integration uses those alone. The usual cause is "
            f"gene names from different naming schemes or annotation versions{_case_hint(keys, len(shared))}"
        )
    # each slice is normalised by its own total: the shared genes' total would make one slice's features depend on
    # which other slices it is joined with
    own_totals = any(adata.n_vars > len(shared) or LIBRARY_SIZE_KEY in adata.obs for _, adata in parts)
    pieces = []
    ranks = []
    spatial_uns: dict = {}
    gene_names = parts[0][1].var_names[keys[0].get_indexer(shared)]  # the first slice names the shared genes
    for (label, adata), key in zip(parts, keys, strict=True):
        columns = key.get_indexer(shared)
        piece = AnnData(X=adata.X[:, columns], obs=adata.obs.copy(), var=adata.var.iloc[columns].copy())
        piece.var_names = gene_names
        piece.obsm["spatial"] = np.asarray(adata.obsm["spatial"], dtype=np.float64)[:, :2]
        if own_totals:  # a spot without a stored total (none stored, or a gap) gets its own over all its genes
            stored = _stored_library_sizes(adata)
            own = np.asarray(adata.X.sum(axis=1, dtype=np.float64)).ravel() if np.isnan(stored).any() else stored
            piece.obs[LIBRARY_SIZE_KEY] = np.where(np.isnan(stored), own, stored)
        piece.obs[batch_key] = label
        suffix = f"-{label}"
        if not (label in split and adata.obs_names.str.endswith(suffix).all()):  # a joined file's ids are kept
            piece.obs_names = [f"{spot}{suffix}" for spot in adata.obs_names]
        pieces.append(piece)
        ranks.append(_own_gene_ranks(adata, columns))
        libraries = _stored_libraries(adata, label)
        if label in split:  # the file's libraries belong to all its slices: only the one named like this slice is its
            libraries = {key: value for key, value in libraries.items() if key == label}
        elif len(libraries) == 1:  # one slice, one image: file it under the slice's name, as image mode looks it up
            libraries = {label: next(iter(libraries.values()))}
        spatial_uns.update(libraries)
    spot_ids = pd.Index([spot for piece in pieces for spot in piece.obs_names])
    repeated_ids = spot_ids[spot_ids.duplicated()]
    if len(repeated_ids):  # refused before joining, which would add anndata's own advice (make them unique)
        raise InputError(
            f"spot ids collide once the slice names are appended (e.g. {quote_examples(list(repeated_ids))}): "
            "'-' in the spot ids and the slice names makes '<id>-<slice>' ambiguous; name the slices without '-' "
            "(names= (--names on the command line))"
        )
    _warn_partial_library_sizes(parts)
    joint = ad.concat(pieces, join="inner", merge="first")  # obs columns too: one missing in a slice is dropped
    truth = _partial_truth(pieces)
    if truth is not None:
        joint.obs[TRUTH_KEY] = truth
    _writable_obs(joint.obs)
    joint.obs[batch_key] = pd.Categorical(joint.obs[batch_key], categories=labels)
    joint.varm[HVG_RANK_KEY] = np.stack(ranks, axis=1)
    if spatial_uns:
        joint.uns["spatial"] = spatial_uns
    return joint


def _stored_libraries(adata: AnnData, label: str) -> dict:
    """The slice's ``uns['spatial']`` libraries; a malformed one (not scanpy's mapping of mappings) is left behind
    with a warning, as ``tl.domains`` runs gene mode past it: the joint result must not fail for an image that
    only ``--image`` would use (and that then reports the slice as having none)."""
    spatial = adata.uns.get("spatial", {})
    if isinstance(spatial, Mapping) and all(isinstance(library, Mapping) for library in spatial.values()):
        return dict(spatial)
    warn(
        f"slice {label!r}: uns['spatial'] is not laid out as scanpy writes it ({{library_id: {{'images': ..., "
        "'scalefactors': ...}}}), so its image is not carried into the joint result; rebuild it (tissuegraph.io."
        "read_visium reads a Space Ranger folder that way) to use the image"
    )
    return {}


def _recorded_ranks(adata: AnnData, batch: pd.Series | None) -> dict[str, np.ndarray]:
    """Each slice's HVG ranks among its own genes as ``concat_slices`` recorded them, by slice name."""
    ranks = adata.varm.get(HVG_RANK_KEY)
    if (
        ranks is None
        or batch is None
        or not isinstance(batch.dtype, pd.CategoricalDtype)
        or len(batch.cat.categories) != ranks.shape[1]
    ):
        return {}
    return {str(name): ranks[:, i] for i, name in enumerate(batch.cat.categories) if not np.isnan(ranks[:, i]).any()}


def per_slice_hvgs(
    adata: AnnData, n_top_genes: int, *, batch_key: str = "batch", combine: str = "intersection"
) -> np.ndarray:
    """Highly variable genes chosen in each slice on its own, then combined across slices.

    Each slice's ``n_top_genes`` are its top-ranked genes among all the genes it measured
    (``varm['hvg_rank']`` from ``concat_slices``), else among the genes of ``adata``. ``combine='intersection'``
    keeps genes variable in every slice (the methods' default), ``'union'`` those variable in any. A gene
    measured in several slices but variable in one only is then left out (or kept), so no slice's noise
    dominates the joint features.
    """
    if combine not in ("intersection", "union"):
        raise InputError(f"unknown gene combination {combine!r}; use 'intersection' or 'union'")
    check_counts(adata)  # seurat_v3 ranks raw counts
    if adata.n_vars < MIN_SHARED_GENES:
        raise InputError(
            f"the slices measure only {adata.n_vars} shared genes; integrating slices needs at least "
            f"{MIN_SHARED_GENES} (one slice on its own can run with fewer)"
        )
    column = slice_column(adata, batch_key)
    batches = np.full(adata.n_obs, "") if column is None else column.astype(str).to_numpy()
    recorded = _recorded_ranks(adata, column)
    masks = []
    for value in pd.unique(batches):
        own = recorded.get(value)
        masks.append(select_hvgs(adata[batches == value], n_top_genes) if own is None else own < n_top_genes)
    combined = np.logical_and.reduce(masks) if combine == "intersection" else np.logical_or.reduce(masks)
    if combined.sum() < MIN_SHARED_GENES:
        where = "any" if combine == "union" else "every"
        union = "; or combine them by union (genes='union' in tl.integrate, --genes union on the command line)"
        raise InputError(
            f"only {int(combined.sum())} genes are highly variable in {where} slice (at least {MIN_SHARED_GENES} are "
            f"needed); choose more per slice (n_top_genes= in Python){'' if combine == 'union' else union}"
        )
    return combined
