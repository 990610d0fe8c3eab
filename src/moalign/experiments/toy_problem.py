"""The continuous toy problem of mopo-paper §2 / App. A.1: rewards, data, grids, true front, evaluation.

Everything here is NumPy and independent of the learning code (``toy_policy``,
the baselines, the methods' toy versions): the true Pareto front and the evaluation of a policy use
only the reward functions below, so a learned policy is judged against truth.

* Contexts and actions live in ``[0, 1]``. Policies are evaluated on the
  context grid ``x = linspace(0, 1, 201)`` (the expectation over
  ``x ~ U[0, 1]`` is the plain mean over these 201 nodes) and act on the
  action grid ``y = linspace(0, 1, A)``.
* Preference labels follow the Bradley-Terry model in the exp form of §2,
  ``P(y > y' | x) = sigma(r(x, y) - r(x, y'))``. App. A.1's ratio form
  (eq. 14, ``r(y) / (r(y) + r(y'))``) is not a probability for the negative
  rewards of Set A (``r2 <= 0``) and of Set B (``r2 < 0`` for ``y > x``), so it
  is not used.
* The true front of expected rewards is convex (mixtures of policies are
  policies), so it is traced by pointwise weighted-sum maximisation over a
  fine ``y`` grid for a fine sweep of weights, and consecutive vertices are
  joined by the segments that mixtures achieve.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from moalign.core.pareto import hypervolume, non_dominated

RewardFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

# Eq. (15) of App. A.1 (also §2).
REWARD_SETS: dict[str, tuple[RewardFn, RewardFn]] = {
    "A": (lambda x, y: np.exp(x) + np.sqrt(y) - y, lambda x, y: -np.sin(x) - y**2),
    "B": (lambda x, y: (x + y) ** 2, lambda x, y: np.log((1.0 + x) / (1.0 + y))),
}
NUM_CONTEXTS = 201  # the evaluation grid x = linspace(0, 1, 201) of the brief


def reward_functions(reward_set: str) -> tuple[RewardFn, RewardFn]:
    """``(r1, r2)`` of Set ``"A"`` or ``"B"`` (eq. 15)."""
    if reward_set not in REWARD_SETS:
        raise ValueError(f"reward set must be one of {sorted(REWARD_SETS)}, got {reward_set!r}")
    return REWARD_SETS[reward_set]


def reward_tables(reward_set: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Rewards on a grid: array ``(2, len(x), len(y))`` with ``[k, i, j] = r_k(x_i, y_j)``."""
    r1, r2 = reward_functions(reward_set)
    xx, yy = np.asarray(x, float)[:, None], np.asarray(y, float)[None, :]
    return np.stack([np.broadcast_to(r1(xx, yy), (xx.size, yy.size)),
                     np.broadcast_to(r2(xx, yy), (xx.size, yy.size))])


def context_grid(num: int = NUM_CONTEXTS) -> np.ndarray:
    """The evaluation contexts ``linspace(0, 1, num)``."""
    return np.linspace(0.0, 1.0, num)


def action_grid(num_actions: int) -> np.ndarray:
    """The actions ``linspace(0, 1, A)`` of the categorical policies (end points included)."""
    if num_actions < 2:
        raise ValueError(f"num_actions must be >= 2, got {num_actions}")
    return np.linspace(0.0, 1.0, num_actions)


def cell_widths(num_nodes: int) -> np.ndarray:
    """Lengths of the nearest-node cells of ``linspace(0, 1, n)`` in ``[0, 1]``.

    Interior cells have width ``1/(n-1)``, the two end cells half of it. A
    ``U[0, 1]`` draw falls in cell ``j`` with probability ``width_j``, so these
    are the behaviour policy ``mu`` (and the uniform reference) on the grid.
    """
    widths = np.full(num_nodes, 1.0 / (num_nodes - 1))
    widths[[0, -1]] *= 0.5
    return widths


def nearest_node(values: np.ndarray, num_nodes: int) -> np.ndarray:
    """Index of the nearest node of ``linspace(0, 1, num_nodes)`` for values in ``[0, 1]``."""
    values = np.asarray(values, float)
    if values.size and (values.min() < 0.0 or values.max() > 1.0):
        raise ValueError(f"values must lie in [0, 1], got range [{values.min()}, {values.max()}]")
    return np.rint(values * (num_nodes - 1)).astype(np.int64)


# --------------------------------------------------------------------------- data
def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic


@dataclass
class ToyPreferenceData:
    """Pairs ``(x, y, y')`` with Bradley-Terry labels; ``label = 1`` means ``y > y'``.

    ``labels`` is ``(N, 2)``: independent draws from BT(r1) and BT(r2) on the
    same pairs (the multi-objective rows of MOPO; D1 uses column 0, D2 column
    1, DJ the rows where both agree). ``combined`` is ``(N, len(weights))``,
    boolean: one draw from BT(w r1 + (1-w) r2) per weight (the datasets D_C(w)).
    """

    x: np.ndarray
    y: np.ndarray
    y_other: np.ndarray
    labels: np.ndarray
    combined_weights: np.ndarray
    combined: np.ndarray

    def __len__(self) -> int:
        return int(self.x.shape[0])


def sample_preference_data(reward_set: str, num_rows: int, combined_weights: np.ndarray,
                           rng: np.random.Generator) -> ToyPreferenceData:
    """Draw ``x, y, y' ~ U[0, 1]`` and the labels of D1, D2 (jointly) and D_C(w) for every w (App. A.1)."""
    if num_rows < 1:
        raise ValueError(f"num_rows must be >= 1, got {num_rows}")
    r1, r2 = reward_functions(reward_set)
    x, y, y_other = rng.random(num_rows), rng.random(num_rows), rng.random(num_rows)
    d1, d2 = r1(x, y) - r1(x, y_other), r2(x, y) - r2(x, y_other)
    labels = (rng.random((num_rows, 2)) < sigmoid(np.stack([d1, d2], axis=1))).astype(np.float64)
    w = np.asarray(combined_weights, float).reshape(-1)
    combined = np.empty((num_rows, w.size), dtype=bool)
    for i, wi in enumerate(w):  # one weight at a time keeps the peak memory at O(N)
        combined[:, i] = rng.random(num_rows) < sigmoid(wi * d1 + (1.0 - wi) * d2)
    return ToyPreferenceData(x, y, y_other, labels, w, combined)


# --------------------------------------------------------------------------- evaluation
def expected_rewards(reward_set: str, probs: np.ndarray, x: np.ndarray | None = None,
                     y: np.ndarray | None = None) -> np.ndarray:
    """Expected ``(r1, r2)`` of categorical policies under ``x ~ U`` (mean over the context grid).

    ``probs`` is ``(..., len(x), len(y))``: each policy's probability vector
    over the action grid ``y`` at every context ``x`` (defaults: the 201-node
    context grid, and ``linspace(0, 1, A)`` for the last axis). Returns
    ``(..., 2)``. Rows must be probability vectors (checked).
    """
    probs = np.asarray(probs, float)
    x = context_grid(probs.shape[-2]) if x is None else np.asarray(x, float)
    y = action_grid(probs.shape[-1]) if y is None else np.asarray(y, float)
    if probs.shape[-2:] != (x.size, y.size):
        raise ValueError(f"probs has grid shape {probs.shape[-2:]}, expected ({x.size}, {y.size})")
    if np.any(probs < -1e-9) or not np.allclose(probs.sum(-1), 1.0, atol=1e-6):
        raise ValueError("probs must be non-negative and sum to 1 over the action axis")
    table = reward_tables(reward_set, x, y)  # (2, X, Y)
    return np.einsum("...xy,kxy->...k", probs, table) / x.size


@dataclass
class TrueFront:
    """The true Pareto front of expected rewards and the hypervolume yardstick.

    ``vertices``: front points found by weighted-sum maximisation, sorted by
    ``r1``; ``dense``: the same front with the mixture segments between
    consecutive vertices filled in (what the hypervolume is computed on);
    ``reference``: the fixed hypervolume reference point; ``hypervolume``:
    the front's hypervolume w.r.t. it.
    """

    vertices: np.ndarray
    dense: np.ndarray
    reference: np.ndarray
    hypervolume: float
    ideal: np.ndarray
    nadir: np.ndarray


def _upper_hull(points: np.ndarray) -> np.ndarray:
    """Indices of the vertices of the upper-right convex hull of 2-D points (monotone chain).

    The maximiser of ``w r1 + (1 - w) r2`` (``w in [0, 1]``) over a finite set
    is always one of these vertices, so restricting the weighted-sum search to
    them is exact.
    """
    order = np.lexsort((-points[:, 1], -points[:, 0]))  # r1 descending, ties: r2 descending
    hull: list[int] = []
    best_r2 = -np.inf
    for i in order:  # non-dominated points come in r1-descending, r2-ascending order
        if points[i, 1] <= best_r2:
            continue
        best_r2 = points[i, 1]
        while len(hull) >= 2:
            a, b = points[hull[-2]], points[hull[-1]]
            if (b[0] - a[0]) * (points[i, 1] - a[1]) - (b[1] - a[1]) * (points[i, 0] - a[0]) <= 0:
                hull.pop()  # b lies on or below the chord a -> i
            else:
                break
        hull.append(int(i))
    return np.array(hull)


def weighted_sum_front(reward_set: str, x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """For each ``w``: per context, ``argmax_y w r1 + (1 - w) r2``; returns the mean rewards ``(len(w), 2)``.

    The search per context runs over the hull vertices of that context's
    ``(r1, r2)`` points (:func:`_upper_hull`), which gives the same maxima as
    a search over every ``y`` at a fraction of the cost.
    """
    table = reward_tables(reward_set, x, y)
    weights = np.asarray(weights, float)
    out = np.zeros((weights.size, 2))
    for i in range(x.size):
        pts = table[:, i, :].T  # (Y, 2)
        cand = pts[_upper_hull(pts)]  # (H, 2)
        best = np.argmax(weights[:, None] * cand[None, :, 0] + (1.0 - weights[:, None]) * cand[None, :, 1], axis=1)
        out += cand[best]
    return out / x.size


def densify(vertices: np.ndarray, per_segment: int = 40) -> np.ndarray:
    """Fill the segments between consecutive front vertices (mixtures of two policies)."""
    if len(vertices) < 2:
        return vertices.copy()
    t = np.linspace(0.0, 1.0, per_segment, endpoint=False)[None, :, None]
    seg = vertices[:-1, None, :] * (1.0 - t) + vertices[1:, None, :] * t
    return np.concatenate([seg.reshape(-1, 2), vertices[-1:]], axis=0)


def true_front(reward_set: str, num_contexts: int = NUM_CONTEXTS, num_y: int = 2001, num_weights: int = 2001,
               reference_margin: float = 0.1) -> TrueFront:
    """Trace the true front and fix the hypervolume reference point.

    Weighted-sum maximisation over ``y = linspace(0, 1, num_y)`` per context,
    for ``num_weights`` weights ``w`` evenly in ``[0, 1]``; the achievable set
    is convex, so this recovers the front (its vertices). The reference point
    is the front's nadir minus ``reference_margin`` times the ideal-nadir range
    in each objective: every Pareto-optimal policy dominates it, and the
    margin gives the two extreme policies a non-zero share.
    """
    x = context_grid(num_contexts)
    pts = weighted_sum_front(reward_set, x, np.linspace(0.0, 1.0, num_y), np.linspace(0.0, 1.0, num_weights))
    vertices = non_dominated(np.unique(pts, axis=0))
    vertices = vertices[np.argsort(vertices[:, 0])]
    ideal, nadir = vertices.max(0), vertices.min(0)
    reference = nadir - reference_margin * (ideal - nadir)
    dense = densify(vertices)
    return TrueFront(vertices, dense, reference, hypervolume(dense, reference), ideal, nadir)


def hypervolume_ratio(points: np.ndarray, front: TrueFront) -> float:
    """Hypervolume of a method's policies (no mixtures) over the true front's, same reference point."""
    points = np.asarray(points, float).reshape(-1, 2)
    return hypervolume(points, front.reference) / front.hypervolume


def mixture_hull(points: np.ndarray) -> np.ndarray:
    """Non-dominated points plus the segments between them that mixtures of the policies reach.

    The upper-right convex hull (concave majorant) of the non-dominated set,
    densified; its hypervolume is that of every randomisation over a
    method's policies.
    """
    nd = non_dominated(np.asarray(points, float).reshape(-1, 2))
    nd = np.unique(nd, axis=0)
    nd = nd[np.argsort(nd[:, 0])]
    hull: list[np.ndarray] = []
    for p in nd:  # monotone chain, keep right turns only (concave chain as r1 increases)
        while len(hull) >= 2:
            u, v = hull[-1] - hull[-2], p - hull[-2]
            if u[0] * v[1] - u[1] * v[0] < 0:  # hull[-1] lies strictly above the chord hull[-2] -> p
                break
            hull.pop()
        hull.append(p)
    return densify(np.array(hull))


def mixture_hypervolume_ratio(points: np.ndarray, front: TrueFront) -> float:
    """Hypervolume of a method's policies and their mixtures (:func:`mixture_hull`) over the true front's.

    Unlike :func:`hypervolume_ratio` it does not depend on how evenly the policies spread along the front.
    """
    return hypervolume(mixture_hull(points), front.reference) / front.hypervolume


def gap_to_front(points: np.ndarray, front: TrueFront) -> np.ndarray:
    """Normalised additive-epsilon distance of each point to the true front (0 = on or beyond it).

    ``max(0, min_F max_k (F_k - P_k) / range_k)`` with ``range = ideal - nadir``:
    how far (as a fraction of each objective's front range) the point must
    move up in both objectives to weakly dominate some front point.
    """
    points = np.asarray(points, float).reshape(-1, 2)
    scale = front.ideal - front.nadir
    diff = (front.dense[None, :, :] - points[:, None, :]) / scale
    return np.maximum(diff.max(-1).min(-1), 0.0)


def true_win_rates(reward_set: str, num_contexts: int, num_actions: int, sub: int = 4,
                   num_opponents: int = 1000) -> np.ndarray:
    """True win rates of the toy's data cells: ``(2, num_contexts, num_actions)``.

    ``[k, g, a] = E[sigma(r_k(x, y) - r_k(x, y')) | x in cell g, y in cell a]`` with
    ``y' ~ U[0, 1]``: the probability that a response in action a's nearest-node
    cell beats a uniform opponent on objective k (BT, exp form of §2) at a context
    in node g's cell, i.e. what a cell's mean label estimates (eq. 11's win rate).
    Midpoint rule with ``sub`` points per cell in x and y and ``num_opponents`` in y'.
    A policy's true secondary value is ``sum_g m(g) sum_a pi(a | g) [k, g, a]``.
    """
    def cell_points(n: int) -> np.ndarray:  # (n, sub) midpoints of each nearest-node cell
        lo = np.clip((np.arange(n) - 0.5) / (n - 1), 0.0, 1.0)
        hi = np.clip((np.arange(n) + 0.5) / (n - 1), 0.0, 1.0)
        return lo[:, None] + (np.arange(sub) + 0.5)[None, :] / sub * (hi - lo)[:, None]

    xs, ys = cell_points(num_contexts), cell_points(num_actions).reshape(-1)
    opponents = (np.arange(num_opponents) + 0.5) / num_opponents
    out = np.zeros((2, num_contexts, num_actions))
    for k, reward in enumerate(reward_functions(reward_set)):
        for g in range(num_contexts):
            x = xs[g][:, None, None]
            p = sigmoid(reward(x, ys[None, :, None]) - reward(x, opponents[None, None, :]))  # (sub, A*sub, Y')
            out[k, g] = p.mean(axis=(0, 2)).reshape(num_actions, sub).mean(-1)
    return out
