"""Mutual nearest neighbours on small point sets whose answer is known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from tissuegraph.gr.mnn import mutual_nearest_neighbors, nearest_mnn_partner, nearest_mnn_partners_both_ways


def test_mnn_pairs_on_a_line() -> None:
    x = np.array([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0], [30.0, 0.0]])
    y = np.array([[0.5, 0.0], [10.5, 0.0], [100.0, 0.0], [200.0, 0.0]])
    # k = 1: x0<->y0 and x1<->y1 are mutual; y2's nearest x is x2, but x2's nearest y is y1
    np.testing.assert_array_equal(mutual_nearest_neighbors(x, y, 1), [[0, 0], [1, 1]])
    # k = 2 adds x2<->y1 (y1's two nearest x are x1, x2) and x1<->y0 (y0's two nearest are x0, x1)
    np.testing.assert_array_equal(mutual_nearest_neighbors(x, y, 2), [[0, 0], [1, 0], [1, 1], [2, 1]])


def test_nearest_partner_keeps_the_closest_mutual_match() -> None:
    x = np.array([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0], [30.0, 0.0]])
    y = np.array([[0.5, 0.0], [10.5, 0.0], [100.0, 0.0], [200.0, 0.0]])
    np.testing.assert_array_equal(nearest_mnn_partner(x, y, 2), [[0, 0], [1, 1], [2, 1]])


def test_shuffled_copy_is_matched_to_itself() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5))
    order = rng.permutation(200)
    pairs = nearest_mnn_partner(x, x[order] + 1e-6, 10)
    assert len(pairs) == 200
    np.testing.assert_array_equal(order[pairs[:, 1]], pairs[:, 0])


def _brute_force_mnn(x: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """Every (i, j) with y[j] among the k nearest of x[i] and x[i] among the k nearest of y[j], from all distances,
    with k capped at half the smaller set."""
    k = max(1, min(k, len(x) // 2, len(y) // 2))
    distance = np.linalg.norm(x[:, None, :] - y[None, :, :], axis=-1)
    x_to_y = np.zeros(distance.shape, dtype=bool)
    np.put_along_axis(x_to_y, np.argsort(distance, axis=1)[:, :k], True, axis=1)
    y_to_x = np.zeros(distance.shape, dtype=bool)
    np.put_along_axis(y_to_x, np.argsort(distance, axis=0)[:k, :], True, axis=0)
    return np.argwhere(x_to_y & y_to_x)  # row-major: sorted by i, then j


def test_a_slice_smaller_than_k_is_matched_mutually_not_one_sided() -> None:
    """With k = 50 against a 10-spot slice, every big-slice spot has all 10 among its 50 nearest: uncapped, each
    small-slice spot was paired with its 50 nearest whatever they were (500 'mutual' pairs)."""
    rng = np.random.default_rng(0)
    small, big = rng.normal(size=(10, 4)), rng.normal(size=(500, 4))
    pairs = mutual_nearest_neighbors(small, big, 50)
    assert np.bincount(pairs[:, 0], minlength=10).max() <= 5  # k capped at half the smaller slice
    np.testing.assert_array_equal(pairs, _brute_force_mnn(small, big, 5))


def test_k_larger_than_a_set_and_empty_sets_do_not_crash() -> None:
    x = np.random.default_rng(1).normal(size=(50, 3))
    small = x[:4] + 0.01
    pairs = mutual_nearest_neighbors(x, small, 30)
    assert len(pairs) > 0 and pairs[:, 1].max() < 4
    np.testing.assert_array_equal(pairs, _brute_force_mnn(x, small, 30))
    np.testing.assert_array_equal(mutual_nearest_neighbors(small, x, 30), _brute_force_mnn(small, x, 30))
    assert mutual_nearest_neighbors(x, np.empty((0, 3)), 5).shape == (0, 2)
    with pytest.raises(ValueError, match="k must be"):
        mutual_nearest_neighbors(x, small, 0)


@pytest.mark.parametrize(("n_x", "n_y", "k"), [(40, 30, 1), (40, 30, 5), (40, 30, 30), (12, 7, 7), (12, 7, 50)])
def test_mnn_pairs_equal_a_brute_force_search(n_x: int, n_y: int, k: int) -> None:
    rng = np.random.default_rng(n_x + n_y + k)
    x, y = rng.normal(size=(n_x, 4)), rng.normal(size=(n_y, 4))
    expected = _brute_force_mnn(x, y, k)
    assert len(expected) > 0
    np.testing.assert_array_equal(mutual_nearest_neighbors(x, y, k), expected)
    np.testing.assert_array_equal(mutual_nearest_neighbors(y, x, k), expected[np.lexsort(expected.T)][:, ::-1])


def test_one_search_gives_the_nearest_partners_both_ways() -> None:
    """The same pairs as two separate searches, ties included (points on a coarse integer grid tie often)."""
    rng = np.random.default_rng(4)
    x, y = rng.integers(0, 4, (60, 2)).astype(float), rng.integers(0, 4, (45, 2)).astype(float)
    for k in (1, 5, 50):
        forward, backward = nearest_mnn_partners_both_ways(x, y, k)
        np.testing.assert_array_equal(forward, nearest_mnn_partner(x, y, k))
        np.testing.assert_array_equal(backward, nearest_mnn_partner(y, x, k))
        assert len(forward) > 0
