"""STAIG's neighbour contrastive loss, computed so that no N x N matrix ever exists.

For anchor i with L2-normalised outputs u (view 1) and v (view 2), theta(a, b) = exp(a.b / tau):
positives are v_i and the graph neighbours of i in both views (sparse edge list); the denominator sums
theta over every other node of both views. With ``groups`` (one index tensor per slice) the denominator only
counts the anchor's own slice, so nothing pushes slices apart: the alignment-free integration of STAIG.

The denominator can be computed three ways (``denominator=``):

- ``"exact"``: ``ExpSimilaritySums`` streams exp(a.b / tau) over row tiles and recomputes each tile in its
  analytic backward pass: memory O(tile x N), time O(N^2 D). No masks: a slice restriction is a block, and the
  excluded self-pair is left out inside each tile.
- ``"moments"``: for soft temperatures (tau >= 10, sequencing platforms) the second-order expansion
  sum_b exp(a.b / tau) ~ N + a.S1 / tau + a' S2 a / (2 tau^2), with S1 = sum b and S2 = sum b b', is exact to
  below 1.7e-4 relative in O(N D^2), at linear cost. Its gradient is less exact where the embedding is
  concentrated (every similarity near 1, so the loss's gradient is a small difference of large terms): a
  reviewer measured 7e-3 relative at tau 10 and 8e-4 at tau 30 on such an embedding.
- ``"sampled"``: the anchor's own other-view copy exactly plus an unbiased estimate of the other nodes from
  ``n_negatives`` nodes drawn per slice each call, O(N n_negatives), for sharp temperatures on large inputs.

With ``pseudo_labels`` (image mode: k-means labels of the spots' histology) nodes sharing the anchor's label
are taken out of its denominator, so histologically similar spots are never pushed away. For the exact and moment
denominators their sums are computed exactly label by label as small dense blocks (sum over labels of size^2
work, about N^2 / K for K labels, in bounded chunks) and subtracted: no N x N mask. The sampled estimate never
counts them (sampled nodes sharing the anchor's label are left out, and the rest scaled to the nodes of other
labels): subtracting exact sums from an estimate went below the anchor's own copy at sharp tau.

All exponents are shifted by 1 / tau (the largest possible similarity), which cancels in the ratio and keeps
exp() from overflowing in float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

# exponents run down to -2 / tau (opposite vectors); below this they leave float32's normal range (e^-87)
MIN_TAU = 0.025
MOMENT_MIN_TAU = 10.0  # below this the second-order expansion is no longer exact to 2e-4
DENOMINATORS = ("exact", "moments", "sampled")
MIN_NEGATIVES = 2  # a sampled anchor counts only the other sampled nodes: one node alone would leave it none
EDGE_CHUNK = 4096  # edges per chunk of the positive sums: their gathered rows stay in cache


class ExpSimilaritySums(torch.autograd.Function):
    """Row and column sums of exp((a @ b.T - 1) / tau), tiled over rows of ``a``; never stores the full matrix.

    ``row_keys`` and ``col_keys`` (one integer per row of ``a`` and of ``b``, or both None) leave out of the sums
    every pair whose keys are equal: the anchor itself when ``b`` holds the anchor's own view (keys: node ids), or
    every node sharing the anchor's pseudo-label. Leaving them out inside the tile, rather than subtracting their
    values from the sum afterwards, keeps the sum exact at sharp temperatures, where those terms dwarf the others
    and float32 would cancel them to rounding noise.
    """

    @staticmethod
    def forward(
        ctx,
        a: torch.Tensor,
        b: torch.Tensor,
        inv_tau: float,
        tile: int,
        row_keys: torch.Tensor | None = None,
        col_keys: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.empty(a.shape[0], dtype=a.dtype, device=a.device)
        cols = torch.zeros(b.shape[0], dtype=a.dtype, device=a.device)
        for start in range(0, a.shape[0], tile):
            block = torch.exp(a[start : start + tile] @ b.t() * inv_tau - inv_tau)
            block = _left_out(block, row_keys, col_keys, start)
            rows[start : start + tile] = block.sum(1)
            cols += block.sum(0)
        ctx.save_for_backward(a, b, row_keys, col_keys)
        ctx.inv_tau, ctx.tile = inv_tau, tile
        return rows, cols

    @staticmethod
    def backward(ctx, grad_rows: torch.Tensor | None, grad_cols: torch.Tensor | None):
        a, b, row_keys, col_keys = ctx.saved_tensors
        inv_tau, tile = ctx.inv_tau, ctx.tile
        grad_a = torch.zeros_like(a)
        grad_b = torch.zeros_like(b)
        for start in range(0, a.shape[0], tile):
            a_tile = a[start : start + tile]
            weight = _left_out(torch.exp(a_tile @ b.t() * inv_tau - inv_tau), row_keys, col_keys, start)
            if grad_rows is not None and grad_cols is not None:
                weight *= grad_rows[start : start + tile, None] + grad_cols[None, :]
            elif grad_rows is not None:
                weight *= grad_rows[start : start + tile, None]
            else:
                weight *= grad_cols[None, :]
            grad_a[start : start + tile] = weight @ b
            grad_b += weight.t() @ a_tile
        return grad_a * inv_tau, grad_b * inv_tau, None, None, None, None


def _left_out(
    block: torch.Tensor, row_keys: torch.Tensor | None, col_keys: torch.Tensor | None, start: int
) -> torch.Tensor:
    """``block`` (rows start.. of the similarity matrix) with the pairs of equal keys set to 0, in place."""
    if row_keys is not None:
        block.masked_fill_(row_keys[start : start + block.shape[0], None] == col_keys[None, :], 0.0)
    return block


def _exact_denominators(
    u: torch.Tensor, v: torch.Tensor, inv_tau: float, tile: int
) -> tuple[torch.Tensor, torch.Tensor]:
    itself = torch.arange(u.shape[0], device=u.device)
    uu, _ = ExpSimilaritySums.apply(u, u, inv_tau, tile, itself, itself)
    vv, _ = ExpSimilaritySums.apply(v, v, inv_tau, tile, itself, itself)
    uv_rows, uv_cols = ExpSimilaritySums.apply(u, v, inv_tau, tile)
    return uu + uv_rows, vv + uv_cols


def _moment_denominators(u: torch.Tensor, v: torch.Tensor, inv_tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Denominators from the second-order expansion of exp(a.b / tau) summed over b, in O(N D^2).

    With unit vectors |a.b / tau| <= 1 / tau, so for tau >= 10 the omitted third-order term is below
    (1 / tau)^3 / 6 <= 1.7e-4 relative: exact up to that, with no sampling noise and no N x N work.
    """
    n = u.shape[0]
    shift = torch.exp(torch.tensor(-inv_tau, dtype=u.dtype, device=u.device))

    def sums(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        first = a @ b.sum(0)
        second = ((a @ (b.t() @ b)) * a).sum(1)
        return shift * (n + inv_tau * first + 0.5 * inv_tau**2 * second)

    # the expansion counts each anchor with itself; its true term is 1 for a unit row (exp(0)), but a row that was
    # all zeros normalises to zero, whose self term is exp(-1 / tau). Taken as a value: |u| = 1 has no gradient.
    def itself(a: torch.Tensor) -> torch.Tensor:
        return torch.exp(((a * a).sum(1) - 1.0) * inv_tau).detach()

    return sums(u, u) - itself(u) + sums(u, v), sums(v, v) - itself(v) + sums(v, u)


def _sampled_denominators(
    u: torch.Tensor,
    v: torch.Tensor,
    inv_tau: float,
    tile: int,
    n_negatives: int,
    generator: torch.Generator | None,
    labels: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each anchor's own copy in the other view exactly, plus the other nodes of both views estimated from a sample
    of ``n_negatives`` of them (the caller makes sure there are more nodes than that).

    The anchor's own terms (itself, never counted, and its other-view copy, counted exactly) are left out of the
    sampled sum, and so, with ``labels`` (pseudo-labels, one per node), are the nodes sharing its label, which its
    denominator must not count at all. The sampled nodes left, scaled by (nodes of the anchor's slice it may count)
    / (sampled nodes it may count), give a sum of positive terms: unbiased, and positive however sharp tau is.
    """
    n = u.shape[0]
    picks = torch.randperm(n, generator=generator, device=u.device)[:n_negatives]
    keys = torch.arange(n, device=u.device) if labels is None else labels
    sizes = torch.bincount(keys)  # each node's key class: itself alone, or its pseudo-label
    picked = torch.bincount(keys[picks], minlength=sizes.numel())
    scale = (n - sizes[keys]).to(u.dtype) / (picks.numel() - picked[keys]).clamp_min(1).to(u.dtype)
    u_neg, v_neg, neg_keys = u[picks], v[picks], keys[picks]
    uu, _ = ExpSimilaritySums.apply(u, u_neg, inv_tau, tile, keys, neg_keys)
    uv, _ = ExpSimilaritySums.apply(u, v_neg, inv_tau, tile, keys, neg_keys)
    vv, _ = ExpSimilaritySums.apply(v, v_neg, inv_tau, tile, keys, neg_keys)
    vu, _ = ExpSimilaritySums.apply(v, u_neg, inv_tau, tile, keys, neg_keys)
    own_copy = torch.exp(((u * v).sum(1) - 1.0) * inv_tau)
    return own_copy + scale * (uu + uv), own_copy + scale * (vv + vu)


def same_label_blocks(labels: torch.Tensor) -> list[torch.Tensor]:
    """Members of each label as rows of padded index matrices (-1 pads), labels grouped by size.

    A label of size s lands in the bucket of the next power of two >= s, so padding at most doubles a row.
    The same-label sums are then small dense (labels x size x size) products: no N x N matrix, no pair list.
    """
    order = torch.argsort(labels, stable=True)
    _, counts = torch.unique_consecutive(labels[order], return_counts=True)
    starts = (torch.cumsum(counts, 0) - counts).tolist()
    widths = torch.pow(2, torch.ceil(torch.log2(counts.double())).long()).tolist()
    blocks = []
    for width in sorted(set(widths)):
        picked = [i for i, w in enumerate(widths) if w == width]
        block = torch.full((len(picked), width), -1, dtype=torch.long, device=labels.device)
        for row, label in enumerate(picked):
            size = int(counts[label])
            block[row, :size] = order[starts[label] : starts[label] + size]
        blocks.append(block)
    return blocks


def _node_labels(blocks: list[torch.Tensor], n: int) -> torch.Tensor:
    """Each node's label as the running number of its row in ``same_label_blocks``' output."""
    labels = torch.empty(n, dtype=torch.long, device=blocks[0].device)
    offset = 0
    for block in blocks:
        numbers = torch.arange(offset, offset + block.shape[0], device=block.device)[:, None].expand_as(block)
        labels[block[block >= 0]] = numbers[block >= 0]
        offset += block.shape[0]
    return labels


def _chunk_label_sums(
    a_all: torch.Tensor, b_all: torch.Tensor, valid: torch.Tensor, r0: int, r1: int, inv_tau: float
) -> torch.Tensor:
    """Rows r0:r1 of every label in a block: sum over same-label j != i of theta(a_i, a_j) + theta(a_i, b_j)."""
    keep = valid[:, r0:r1, None] & valid[:, None, :]
    diagonal = torch.arange(r1 - r0, device=valid.device)
    keep[:, diagonal, diagonal + r0] = False  # j != i
    anchors = a_all[:, r0:r1]
    terms = torch.exp((anchors @ a_all.transpose(1, 2) - 1.0) * inv_tau) + torch.exp(
        (anchors @ b_all.transpose(1, 2) - 1.0) * inv_tau
    )
    return (terms * keep).sum(2)


def _same_label_sums(
    a: torch.Tensor, b: torch.Tensor, blocks: list[torch.Tensor], inv_tau: float, budget: int
) -> torch.Tensor:
    """Per anchor i: sum over same-label nodes j != i of theta(a_i, a_j) + theta(a_i, b_j), shifted like the rest.

    Each block of labels is processed in row chunks holding at most ``budget`` similarities at a time, and each
    chunk is recomputed in the backward pass instead of kept (checkpointing): memory stays at one chunk however
    large a pseudo-label grows.
    """
    out = torch.zeros(a.shape[0], dtype=a.dtype, device=a.device)
    for block in blocks:
        valid = block >= 0
        members = block.clamp_min(0)
        a_all, b_all = a[members], b[members]
        width = block.shape[1]
        rows_per_chunk = max(1, budget // (block.shape[0] * width))
        for r0 in range(0, width, rows_per_chunk):
            r1 = min(width, r0 + rows_per_chunk)
            sums = checkpoint(
                _chunk_label_sums, a_all, b_all, valid, r0, r1, inv_tau, use_reentrant=False, preserve_rng_state=False
            )
            rows = valid[:, r0:r1]
            out = out.index_put((block[:, r0:r1][rows],), sums[rows])
    return out


class NeighbourExpSums(torch.autograd.Function):
    """Per node i, the sum over its edges (i, j) of exp((a_i.a_j - 1) / tau) + exp((a_i.b_j - 1) / tau).

    Computed over chunks of ``chunk`` edges, with an analytic backward that recomputes each chunk: autograd
    through gathered (edges x D) copies moved several times more memory than the arithmetic needs, and at 20k
    spots that traffic, not the arithmetic, set the pace of an epoch.
    """

    @staticmethod
    def forward(
        ctx, a: torch.Tensor, b: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, inv_tau: float, chunk: int
    ) -> torch.Tensor:
        sums = torch.zeros(a.shape[0], dtype=a.dtype, device=a.device)
        for start in range(0, src.numel(), chunk):
            i, j = src[start : start + chunk], dst[start : start + chunk]
            a_i = a.index_select(0, i)
            same_view = torch.exp(((a_i * a.index_select(0, j)).sum(1) - 1.0) * inv_tau)
            cross_view = torch.exp(((a_i * b.index_select(0, j)).sum(1) - 1.0) * inv_tau)
            sums.index_add_(0, i, same_view + cross_view)
        ctx.save_for_backward(a, b, src, dst)
        ctx.inv_tau, ctx.chunk = inv_tau, chunk
        return sums

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        a, b, src, dst = ctx.saved_tensors
        inv_tau, chunk = ctx.inv_tau, ctx.chunk
        grad_a, grad_b = torch.zeros_like(a), torch.zeros_like(b)
        for start in range(0, src.numel(), chunk):
            i, j = src[start : start + chunk], dst[start : start + chunk]
            a_i, a_j, b_j = a.index_select(0, i), a.index_select(0, j), b.index_select(0, j)
            g = grad.index_select(0, i) * inv_tau
            same_view = torch.exp(((a_i * a_j).sum(1) - 1.0) * inv_tau) * g
            cross_view = torch.exp(((a_i * b_j).sum(1) - 1.0) * inv_tau) * g
            grad_a.index_add_(0, i, same_view[:, None] * a_j + cross_view[:, None] * b_j)
            grad_a.index_add_(0, j, same_view[:, None] * a_i)
            grad_b.index_add_(0, j, cross_view[:, None] * a_i)
        return grad_a, grad_b, None, None, None, None


def _positives(a: torch.Tensor, b: torch.Tensor, edge_index: torch.Tensor, inv_tau: float) -> torch.Tensor:
    """theta(a_i, b_i) + sum over neighbours j of theta(a_i, a_j) + theta(a_i, b_j), from the sparse edges."""
    own = torch.exp(((a * b).sum(1) - 1.0) * inv_tau)
    return own + NeighbourExpSums.apply(a, b, edge_index[0], edge_index[1], inv_tau, EDGE_CHUNK)


def neighbor_contrastive_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    edge_index: torch.Tensor,
    tau: float,
    *,
    groups: list[torch.Tensor] | None = None,
    denominator: str = "exact",
    n_negatives: int = 512,
    tile_size: int = 1024,
    generator: torch.Generator | None = None,
    label_blocks: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Mean over nodes and both view directions of -log(positives / denominator).

    ``edge_index`` holds both directions of every edge and never links two groups. ``groups`` lists the node
    indices of each slice (None: one slice). ``denominator`` is "exact", "moments" (tau >= 10) or "sampled"
    (``n_negatives`` nodes per slice), see the module docstring. ``label_blocks`` (from ``same_label_blocks`` of
    pseudo-labels that never span two slices) removes same-label nodes from each anchor's denominator.
    """
    if denominator not in DENOMINATORS:
        raise ValueError(f"denominator must be one of {DENOMINATORS}, got {denominator!r}")
    if denominator == "moments" and tau < MOMENT_MIN_TAU:
        raise ValueError(f"the moment expansion needs tau >= {MOMENT_MIN_TAU} (got {tau}); use 'exact' or 'sampled'")
    if denominator == "sampled" and n_negatives < MIN_NEGATIVES:  # the one sampled node would have no other to use
        raise ValueError(f"the sampled denominator needs n_negatives >= {MIN_NEGATIVES} (got {n_negatives})")
    u, v = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    inv_tau = 1.0 / tau
    labels = None if label_blocks is None else _node_labels(label_blocks, u.shape[0])
    den_u = torch.empty(u.shape[0], dtype=u.dtype, device=u.device)
    den_v = torch.empty_like(den_u)
    counts_same_label = torch.ones(u.shape[0], dtype=torch.bool, device=u.device)
    for rows in groups if groups is not None else [None]:
        u_g, v_g = (u, v) if rows is None else (u[rows], v[rows])
        if denominator == "moments":
            du, dv = _moment_denominators(u_g, v_g, inv_tau)
        elif denominator == "exact" or u_g.shape[0] <= n_negatives:  # a slice no larger than the sample: exact
            du, dv = _exact_denominators(u_g, v_g, inv_tau, tile_size)
        else:
            labels_g = labels if labels is None or rows is None else labels[rows]
            du, dv = _sampled_denominators(u_g, v_g, inv_tau, tile_size, n_negatives, generator, labels_g)
            counts_same_label[slice(None) if rows is None else rows] = False
        if rows is None:
            den_u, den_v = du, dv
        else:
            den_u = den_u.index_put((rows,), du)
            den_v = den_v.index_put((rows,), dv)
    if label_blocks is not None and counts_same_label.any():
        # the anchor's own copy in the other view stays: it is the first positive
        own_copy = torch.exp(((u * v).sum(1) - 1.0) * inv_tau)
        budget = 4 * tile_size * tile_size  # similarities per chunk: 16 MB per float32 temporary at the default tile
        without_u = torch.maximum(den_u - _same_label_sums(u, v, label_blocks, inv_tau, budget), own_copy)
        without_v = torch.maximum(den_v - _same_label_sums(v, u, label_blocks, inv_tau, budget), own_copy)
        den_u = torch.where(counts_same_label, without_u, den_u)
        den_v = torch.where(counts_same_label, without_v, den_v)
    loss_u = torch.log(den_u) - torch.log(_positives(u, v, edge_index, inv_tau))
    loss_v = torch.log(den_v) - torch.log(_positives(v, u, edge_index, inv_tau))
    return 0.5 * (loss_u.mean() + loss_v.mean())


def dense_neighbor_contrastive_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    edge_index: torch.Tensor,
    tau: float,
    *,
    groups: torch.Tensor | None = None,
    pseudo_labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """The same loss written with dense N x N matrices and masks: a readable reference for tests on small graphs."""
    u, v = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    n = u.shape[0]
    adj = torch.zeros(n, n, dtype=u.dtype, device=u.device)
    adj[edge_index[0], edge_index[1]] = 1.0
    eye = torch.eye(n, dtype=u.dtype, device=u.device)
    same = (
        torch.ones(n, n, dtype=u.dtype, device=u.device)
        if groups is None
        else (groups[:, None] == groups[None, :]).to(u.dtype)
    )
    if pseudo_labels is not None:  # same-label nodes are no negatives, except the anchor's own other-view copy
        same = same * ((pseudo_labels[:, None] != pseudo_labels[None, :]).to(u.dtype) + eye)

    def one_direction(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        intra = torch.exp(a @ a.t() / tau)
        inter = torch.exp(a @ b.t() / tau)
        positives = inter.diag() + (intra * adj).sum(1) + (inter * adj).sum(1)
        denominator = (intra * (1 - eye) * same).sum(1) + (inter * same).sum(1)
        return -torch.log(positives / denominator)

    return 0.5 * (one_direction(u, v).mean() + one_direction(v, u).mean())
