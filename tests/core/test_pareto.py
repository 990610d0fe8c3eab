"""Tests of ``moalign.core.pareto`` against independent ground truth.

Hypervolume is checked three ways: against ``moocore.hypervolume`` called
directly, against an exact inclusion-exclusion sum over subsets of points
(written here; exponential, so only for small fronts) and against a seeded
Monte-Carlo estimate with a tolerance of a few standard errors; plus 2-D
rectangle unions computed by hand. Non-dominated filtering is checked
against an O(n^2) brute-force dominance test written here.
"""

from __future__ import annotations

import itertools

import moocore
import numpy as np
import pytest

from moalign.core import dominates, front_dominance, hypervolume, non_dominated, non_dominated_mask


# =========================================================================== independent references
def _to_max(points: np.ndarray, maximise) -> np.ndarray:
    sign = np.where(np.broadcast_to(np.asarray(maximise, dtype=bool), points.shape[-1:]), 1.0, -1.0)
    return points * sign


def brute_force_hypervolume(points: np.ndarray, reference: np.ndarray, maximise) -> float:
    """Exact hypervolume by inclusion-exclusion over all non-empty subsets (maximisation after sign flip).

    The region dominated by a subset S and bounded by r is the box [r, min_{i in S} x_i];
    HV = sum_S (-1)^(|S|+1) prod_j max(min_{i in S} x_ij - r_j, 0).
    """
    x, r = _to_max(points, maximise), _to_max(reference, maximise)
    total = 0.0
    for size in range(1, len(x) + 1):
        for subset in itertools.combinations(range(len(x)), size):
            corner = x[list(subset)].min(axis=0)
            total += (-1) ** (size + 1) * np.prod(np.clip(corner - r, 0.0, None))
    return float(total)


def monte_carlo_hypervolume(points: np.ndarray, reference: np.ndarray, maximise, n_samples: int,
                            seed: int) -> tuple[float, float]:
    """Dominated fraction of uniform samples in the box [reference, ideal] times the box volume.

    Returns (estimate, standard error).
    """
    x, r = _to_max(points, maximise), _to_max(reference, maximise)
    ideal = x.max(axis=0)
    rng = np.random.default_rng(seed)
    samples = r + (ideal - r) * rng.random((n_samples, x.shape[1]))
    dominated = np.zeros(n_samples, dtype=bool)
    for point in x:  # a sample is dominated when some point is >= it everywhere
        dominated |= np.all(samples <= point, axis=1)
    volume = float(np.prod(ideal - r))
    frac = dominated.mean()
    return volume * frac, volume * np.sqrt(frac * (1 - frac) / n_samples)


def brute_force_non_dominated(points: np.ndarray, maximise) -> np.ndarray:
    """O(n^2): i is kept unless some j is >= everywhere and > somewhere (after the sign flip)."""
    x = _to_max(points, maximise)
    keep = np.ones(len(x), dtype=bool)
    for i in range(len(x)):
        for j in range(len(x)):
            if i != j and np.all(x[j] >= x[i]) and np.any(x[j] > x[i]):
                keep[i] = False
                break
    return keep


def random_front(rng: np.random.Generator, n: int, d: int, maximise) -> tuple[np.ndarray, np.ndarray]:
    """Random points in [1, 2]^d and a reference that is worse than all of them in every objective."""
    pts = rng.uniform(1.0, 2.0, (n, d))
    worse = np.where(np.broadcast_to(np.asarray(maximise, dtype=bool), (d,)), 0.5, 2.5)
    return pts, worse


MAXIMISE_SETTINGS_2D = [True, False, [True, False], [False, True]]
MAXIMISE_SETTINGS_3D = [True, False, [True, False, True], [False, False, True]]


# =========================================================================== hypervolume
def test_hypervolume_2d_hand_computed_rectangle_unions():
    # Two boxes from (0, 0): [0,1]x[0,2] and [0,2]x[0,1]; union = 2 + 2 - 1 = 3.
    assert hypervolume([[1, 2], [2, 1]], [0, 0]) == pytest.approx(3.0, abs=1e-12)
    # Staircase (1,3), (2,2), (3,1) from (0,0): 3 + 2 + 1 (vertical strips of width 1) = 6.
    assert hypervolume([[1, 3], [2, 2], [3, 1]], [0, 0]) == pytest.approx(6.0, abs=1e-12)
    # A dominated point adds nothing: (1, 1) is inside the box of (2, 2).
    assert hypervolume([[2, 2], [1, 1]], [0, 0]) == pytest.approx(4.0, abs=1e-12)
    # Reference not at the origin: boxes [0.5,3]x[1,2] (2.5) and [0.5,1]x[1,4] (1.5), overlap [0.5,1]x[1,2] (0.5).
    assert hypervolume([[3, 2], [1, 4]], [0.5, 1]) == pytest.approx(3.5, abs=1e-12)
    # Minimisation with reference (4, 4): boxes [1,4]x[3,4] (3) and [3,4]x[1,4] (3), overlap [3,4]x[3,4] (1) -> 5.
    assert hypervolume([[1, 3], [3, 1]], [4, 4], maximise=False) == pytest.approx(5.0, abs=1e-12)
    # Mixed: maximise x (ref 0), minimise y (ref 3): (1, 2) -> [0,1]x[2,3] = 1; (2, 1) -> [0,2]x[1,3] = 4,
    # which contains the first box: union 4.
    assert hypervolume([[1, 2], [2, 1]], [0, 3], maximise=[True, False]) == pytest.approx(4.0, abs=1e-12)
    # A point not strictly better than the reference in some objective contributes 0.
    assert hypervolume([[0, 5], [2, 1]], [0, 0]) == pytest.approx(2.0, abs=1e-12)


def test_hypervolume_3d_hand_computed():
    # Unit cube corner (1,1,1) plus (2, 0.5, 0.5): 1 + 2*0.25 - 1*0.25 = 1.25
    assert hypervolume([[1, 1, 1], [2, 0.5, 0.5]], [0, 0, 0]) == pytest.approx(1.25, abs=1e-12)


def check_random_front(front_seed: int, num_points: int, dim: int, maximise, mc_seed: int) -> None:
    """hypervolume() of a random front equals moocore's, the brute-force value and (within 4.5 SE) Monte Carlo."""
    pts, ref = random_front(np.random.default_rng(front_seed), num_points, dim, maximise)
    hv = hypervolume(pts, ref, maximise=maximise)
    assert hv == pytest.approx(float(moocore.hypervolume(pts, ref=ref, maximise=maximise)), rel=1e-12)
    assert hv == pytest.approx(brute_force_hypervolume(pts, ref, maximise), rel=1e-10)
    mc, se = monte_carlo_hypervolume(pts, ref, maximise, 200_000, seed=mc_seed)
    assert abs(hv - mc) < 4.5 * se + 1e-12, (hv, mc, se)


@pytest.mark.parametrize("maximise", MAXIMISE_SETTINGS_2D)
@pytest.mark.parametrize("seed", [0, 1])
def test_hypervolume_2d_random_fronts(maximise, seed):
    check_random_front(seed, 9, 2, maximise, mc_seed=100 + seed)


@pytest.mark.parametrize("maximise", MAXIMISE_SETTINGS_3D)
@pytest.mark.parametrize("seed", [0, 1])
def test_hypervolume_3d_random_fronts(maximise, seed):
    check_random_front(10 + seed, 8, 3, maximise, mc_seed=200 + seed)


def test_hypervolume_larger_3d_front_against_monte_carlo_only():
    """40 points (too many for inclusion-exclusion): moocore and Monte Carlo agree."""
    rng = np.random.default_rng(7)
    # points near the sphere x^2+y^2+z^2 = 1 in the positive octant: a genuine trade-off front
    v = np.abs(rng.normal(size=(40, 3)))
    pts = v / np.linalg.norm(v, axis=1, keepdims=True)
    ref = np.zeros(3)
    hv = hypervolume(pts, ref)
    assert hv == pytest.approx(float(moocore.hypervolume(pts, ref=ref, maximise=True)), rel=1e-12)
    mc, se = monte_carlo_hypervolume(pts, ref, True, 300_000, seed=3)
    assert abs(hv - mc) < 4.5 * se, (hv, mc, se)


def test_hypervolume_rejects_bad_input():
    with pytest.raises(ValueError, match="reference has 3 coordinates but points have 2 objectives"):
        hypervolume([[1, 2], [2, 1]], [0, 0, 0])
    with pytest.raises(ValueError, match=r"non-finite value at row 1, column 0"):
        hypervolume([[1, 2], [np.nan, 1]], [0, 0])
    with pytest.raises(ValueError, match="non-finite"):
        hypervolume([[1, 2], [2, np.inf]], [0, 0])
    # moocore itself returns 0.0 for a NaN reference; the wrapper must refuse it.
    with pytest.raises(ValueError, match="reference has a non-finite value at coordinate 1"):
        hypervolume([[1, 2], [2, 1]], [0, np.nan])
    with pytest.raises(ValueError, match="reference has a non-finite value at coordinate 0"):
        hypervolume([[1, 2], [2, 1]], [-np.inf, 0])
    with pytest.raises(ValueError, match="2-D array"):
        hypervolume(np.ones((2, 2, 2)), [0, 0])


# =========================================================================== non-dominated filtering
@pytest.mark.parametrize("maximise", MAXIMISE_SETTINGS_3D)
def test_non_dominated_mask_matches_brute_force_with_ties(maximise):
    rng = np.random.default_rng(5)
    # integer grid values: many ties and exact duplicates, the hard cases for dominance
    pts = rng.integers(0, 4, size=(60, 3)).astype(float)
    pts = np.vstack([pts, pts[:5]])  # explicit duplicates
    expected = brute_force_non_dominated(pts, maximise)
    mask = non_dominated_mask(pts, maximise)
    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_array_equal(non_dominated(pts, maximise), pts[expected])


@pytest.mark.parametrize("maximise", MAXIMISE_SETTINGS_2D)
def test_non_dominated_mask_matches_brute_force_continuous_2d(maximise):
    rng = np.random.default_rng(6)
    pts = rng.normal(size=(80, 2))
    np.testing.assert_array_equal(non_dominated_mask(pts, maximise), brute_force_non_dominated(pts, maximise))


def test_non_dominated_hand_example():
    pts = [[1, 5], [2, 2], [3, 3], [5, 1], [3, 3], [0, 0]]
    # (2,2) is dominated by (3,3); (0,0) by everything; the duplicate (3,3)s do not dominate each other.
    np.testing.assert_array_equal(non_dominated_mask(pts), [True, False, True, True, True, False])
    np.testing.assert_array_equal(non_dominated(pts), [[1, 5], [3, 3], [5, 1], [3, 3]])
    # minimising: only (0, 0) survives
    np.testing.assert_array_equal(non_dominated(pts, maximise=False), [[0, 0]])


def test_non_dominated_rejects_nan():
    with pytest.raises(ValueError, match="non-finite value at row 0, column 1"):
        non_dominated_mask([[1, np.nan], [2, 1]])


def test_dominates_by_hand():
    assert dominates([2, 2], [1, 2])
    assert not dominates([2, 2], [2, 2])  # equal points do not dominate
    assert not dominates([3, 1], [1, 3])  # incomparable
    assert dominates([1, 2], [2, 2], maximise=False)
    assert dominates([3, 1], [2, 2], maximise=[True, False])
    assert not dominates([3, 3], [2, 2], maximise=[True, False])


# =========================================================================== front dominance
def test_front_dominance_hand_made_fronts():
    a = [[3, 1], [1, 3], [2, 2]]
    b = [[2.5, 0.5], [0.5, 2.5], [4, 4], [2, 2]]
    out = front_dominance(a, b)
    # B: (2.5,.5) dominated by (3,1); (.5,2.5) by (1,3); (4,4) by nothing; (2,2) only equal to a point of A.
    assert out["a_dominates_fraction_of_b"] == pytest.approx(2 / 4)
    # A: (3,1), (1,3), (2,2) are all dominated by (4,4).
    assert out["b_dominates_fraction_of_a"] == pytest.approx(1.0)
    assert out["a_covers_b"] is False  # (4,4) is not weakly dominated by A
    assert out["b_covers_a"] is True
    # Weak dominance: a front covers itself but dominates none of its own points.
    self_cmp = front_dominance(a, a)
    assert self_cmp["a_covers_b"] and self_cmp["b_covers_a"]
    assert self_cmp["a_dominates_fraction_of_b"] == 0.0 and self_cmp["b_dominates_fraction_of_a"] == 0.0


def test_front_dominance_respects_maximise():
    a = [[1, 1]]
    b = [[2, 2], [0, 3]]
    out = front_dominance(a, b, maximise=False)
    # minimising: (1,1) dominates (2,2) but not (0,3)
    assert out["a_dominates_fraction_of_b"] == pytest.approx(0.5)
    assert out["b_dominates_fraction_of_a"] == 0.0
    out = front_dominance(a, b, maximise=[False, True])
    # minimise x, maximise y: (0,3) dominates (1,1); (1,1) vs (2,2) incomparable
    assert out["b_dominates_fraction_of_a"] == 1.0
    assert out["a_dominates_fraction_of_b"] == 0.0


def test_front_dominance_rejects_nan_naming_the_front():
    with pytest.raises(ValueError, match="front_b has a non-finite value at row 1, column 0"):
        front_dominance([[1, 2]], [[1, 2], [np.nan, 0]])
