"""How close can K policies get at all: the best K points on the true front, by hypervolume (2-D, maximisation).

For HaM with K heads the toy report gives the hypervolume of the best K points of the true front
(discretised), found by an exact dynamic programme, and, as a cross-check, by greedy selection and
(for small inputs) exhaustive search; the chosen points' hypervolume is recomputed with moocore.

Exact 2-D subset selection: on a front sorted by ``r1`` ascending (so ``r2`` descending), the
hypervolume of chosen points ``i_1 < ... < i_k`` above reference ``ref`` is the staircase sum
``sum_t (r1_{i_t} - r1_{i_{t-1}}) (r2_{i_t} - ref_2)`` with ``r1_{i_0} = ref_1``, so
``best[k][i] = max_{j < i} best[k-1][j] + (r1_i - r1_j)(r2_i - ref_2)`` is exact (O(K n^2)).
"""

from __future__ import annotations

import itertools

import numpy as np

from moalign.core.pareto import hypervolume, non_dominated


def _sorted_front(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    pts = non_dominated(np.unique(np.asarray(points, float).reshape(-1, 2), axis=0))
    pts = pts[np.all(pts > reference, axis=1)]
    return pts[np.argsort(pts[:, 0])]


def best_k_points(points: np.ndarray, reference: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    """The ``k`` points of ``points`` (2-D) with the largest hypervolume above ``reference``, exactly (DP)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    ref = np.asarray(reference, float)
    pts = _sorted_front(points, ref)
    n = len(pts)
    if n == 0:
        return np.zeros((0, 2)), 0.0
    k = min(k, n)  # adding a point never lowers the hypervolume, so exactly k points is the best of <= k
    x, h = pts[:, 0], pts[:, 1] - ref[1]
    best = (x - ref[0]) * h  # best[i]: the best set of `level` points whose largest-r1 point is i
    parents = []
    lower = np.tril(np.ones((n, n), dtype=bool), k=-1)  # j < i
    for _ in range(1, k):
        gain = np.where(lower, best[None, :] + (x[:, None] - x[None, :]) * h[:, None], -np.inf)  # [i, j]
        arg = gain.argmax(1)
        parents.append(arg)
        best = gain[np.arange(n), arg]
    i = int(np.argmax(best))
    value, chosen = float(best[i]), [i]
    for arg in reversed(parents):
        i = int(arg[i])
        chosen.append(i)
    return pts[sorted(chosen)], value


def greedy_k_points(points: np.ndarray, reference: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    """Greedy: add, ``k`` times, the point with the largest hypervolume gain (moocore)."""
    ref = np.asarray(reference, float)
    pts = _sorted_front(points, ref)
    chosen: list[int] = []
    value = 0.0
    for _ in range(min(k, len(pts))):
        gains = [hypervolume(pts[chosen + [i]], ref) if i not in chosen else -1.0 for i in range(len(pts))]
        i = int(np.argmax(gains))
        chosen.append(i)
        value = gains[i]
    return pts[sorted(chosen)], float(value)


def brute_force_best_k(points: np.ndarray, reference: np.ndarray, k: int) -> float:
    """Exhaustive search over all ``k``-subsets (moocore hypervolume); small inputs only (tests)."""
    ref = np.asarray(reference, float)
    pts = np.asarray(points, float).reshape(-1, 2)
    return max(hypervolume(pts[list(s)], ref) for s in itertools.combinations(range(len(pts)), min(k, len(pts))))


def front_sample(dense: np.ndarray, max_points: int = 2000) -> np.ndarray:
    """At most ``max_points`` points of a dense front, evenly by index (end points kept)."""
    dense = np.asarray(dense, float)
    if len(dense) <= max_points:
        return dense
    return dense[np.unique(np.linspace(0, len(dense) - 1, max_points).round().astype(int))]
