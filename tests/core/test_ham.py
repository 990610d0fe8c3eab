"""moalign.core.ham against independent truth: moocore, finite differences, Monte-Carlo rates."""

from __future__ import annotations

import math

import moocore
import numpy as np
import pytest
import torch

from moalign.core.ham import (
    hypervolume_scalarization_constant,
    inclusion_exclusion_hypervolume,
    normalize_log_likelihood,
    random_hypervolume_scalarization,
    sample_positive_directions,
    subset_masks,
    weighted_log_likelihood,
)


def moocore_hv(points: np.ndarray, ref: np.ndarray) -> float:
    """moocore minimises: negate points and reference to get the maximisation hypervolume."""
    return float(moocore.hypervolume(-np.asarray(points), ref=-np.asarray(ref)))


def random_front(rng: np.random.Generator, k: int, j: int, kind: str) -> np.ndarray:
    points = rng.uniform(0.05, 1.0, size=(k, j))
    if kind == "dominated" and k >= 2:
        points[-1] = points[0] * rng.uniform(0.3, 0.9, size=j)  # strictly dominated by point 0
    if kind == "coincident" and k >= 2:
        points[-1] = points[0]
        if k >= 3:
            points[-2, 0] = points[1, 0]  # equal in one coordinate only
    if kind == "below_reference":
        points[0, 0] = -0.2  # does not dominate the reference: contributes nothing
    return points


@pytest.mark.parametrize("j", [2, 3, 4])
@pytest.mark.parametrize("kind", ["random", "dominated", "coincident", "below_reference"])
def test_exact_hypervolume_equals_moocore(j, kind):
    rng = np.random.default_rng(100 * j + len(kind))
    for k in range(1, 9):
        points = random_front(rng, k, j, kind)
        ref = np.zeros(j) if kind != "random" else rng.uniform(-0.2, 0.04, size=j)
        ours = inclusion_exclusion_hypervolume(torch.tensor(points), torch.tensor(ref)).item()
        assert ours == pytest.approx(moocore_hv(points, ref), rel=1e-12, abs=1e-14), (k, j, kind)


def test_two_rectangles_match_the_papers_formula():
    """§3.2: v1 v1' + v2 v2' - min(v1, v2) min(v1', v2')."""
    p = torch.tensor([[0.8, 0.3], [0.4, 0.6]], dtype=torch.float64)
    expected = 0.8 * 0.3 + 0.4 * 0.6 - 0.4 * 0.3
    assert inclusion_exclusion_hypervolume(p, torch.zeros(2)).item() == pytest.approx(expected)


def test_subset_masks_and_signs():
    masks, signs = subset_masks(3)
    assert masks.shape == (7, 3) and len({tuple(m.tolist()) for m in masks}) == 7
    assert torch.equal(signs, torch.tensor([1.0 if m.sum() % 2 else -1.0 for m in masks], dtype=torch.float64))
    with pytest.raises(ValueError, match="random_hypervolume_scalarization"):
        subset_masks(21)


@pytest.mark.parametrize("j", [2, 3])
def test_gradient_equals_finite_differences(j):
    generator = torch.Generator().manual_seed(j)
    points = (0.1 + torch.rand(5, j, generator=generator, dtype=torch.float64)).requires_grad_()
    ref = torch.full((j,), 0.05, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda p: inclusion_exclusion_hypervolume(p, ref), (points,), eps=1e-7,
                                    atol=1e-8)
    dirs = sample_positive_directions(64, j, seed=1, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda p: random_hypervolume_scalarization(p, ref, directions=dirs),
                                    (points,), eps=1e-7, atol=1e-8)


def test_dominated_point_gets_no_gradient():
    points = torch.tensor([[0.9, 0.8], [0.5, 0.4]], dtype=torch.float64, requires_grad=True)
    inclusion_exclusion_hypervolume(points, torch.zeros(2)).backward()
    assert torch.allclose(points.grad[1], torch.zeros(2, dtype=torch.float64)) and (points.grad[0] > 0).all()


def test_scalarization_constant():
    assert hypervolume_scalarization_constant(1) == pytest.approx(1.0)
    assert hypervolume_scalarization_constant(2) == pytest.approx(math.pi / 4)
    assert hypervolume_scalarization_constant(3) == pytest.approx(math.pi / 6)  # (4/3) pi / 8


def test_directions_are_on_the_positive_unit_sphere_and_seeded():
    d = sample_positive_directions(500, 3, seed=7)
    assert (d >= 0).all() and torch.allclose(d.norm(dim=1), torch.ones(500), atol=1e-6)
    assert torch.equal(d, sample_positive_directions(500, 3, seed=7))
    assert not torch.equal(d, sample_positive_directions(500, 3, seed=8))


@pytest.mark.parametrize("j", [2, 3])
def test_random_scalarization_converges_at_rate_one_over_sqrt_n(j):
    """Mean absolute error over 40 seeds at N and 16 N: unbiased (small mean error) and ratio ~ sqrt(16) = 4."""
    rng = np.random.default_rng(j)
    points = torch.tensor(rng.uniform(0.1, 1.0, size=(6, j)), dtype=torch.float64)
    ref = torch.zeros(j, dtype=torch.float64)
    exact = inclusion_exclusion_hypervolume(points, ref).item()

    def errors(n: int) -> np.ndarray:
        return np.array([random_hypervolume_scalarization(points, ref, n, seed=s).item() - exact
                         for s in range(40)])

    small, large = errors(256), errors(4096)
    ratio = np.sqrt(np.mean(small ** 2)) / np.sqrt(np.mean(large ** 2))
    assert 2.5 < ratio < 6.5, ratio  # 1/sqrt(N) predicts 4; a biased or 1/N estimator fails
    assert abs(large.mean()) < 3 * large.std() / np.sqrt(len(large)) + 1e-12  # no bias beyond noise
    assert np.sqrt(np.mean(large ** 2)) < 0.03 * exact


def test_weighted_log_likelihood_is_eq9():
    logps = torch.tensor([[-2.0, -4.0, -1.0], [-3.0, -1.0, -5.0]])
    rewards = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    f = weighted_log_likelihood(logps, rewards)
    expected = torch.tensor([[(-2 - 2) / 3, (-2 - 1) / 3], [(-3 - 0.5) / 3, (-0.5 - 5) / 3]])
    assert torch.allclose(f, expected)
    with pytest.raises(ValueError, match="same B"):
        weighted_log_likelihood(logps, rewards[:2])


def test_normalisation_clip_kills_the_gradient_and_softplus_does_not():
    f = torch.tensor([-0.5, -3.0], requires_grad=True)  # with z = 2: inside, and below -z
    clipped = normalize_log_likelihood(f, z=2.0)
    assert torch.allclose(clipped, torch.tensor([0.75, 0.0]))
    (g_clip,) = torch.autograd.grad(clipped.sum(), f)
    assert g_clip[0] == pytest.approx(0.5) and g_clip[1] == 0.0
    smooth = normalize_log_likelihood(f, z=2.0, smooth_temperature=0.1)
    (g_smooth,) = torch.autograd.grad(smooth.sum(), f)
    assert (g_smooth > 0).all()
    assert (smooth - clipped).abs().max() <= 0.1 * math.log(2) + 1e-6
    with pytest.raises(ValueError, match="z must be > 0"):
        normalize_log_likelihood(f, z=0.0)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="reference point is required"):
        inclusion_exclusion_hypervolume(torch.ones(2, 2), None)
    with pytest.raises(ValueError, match="reference has 3 coordinates"):
        inclusion_exclusion_hypervolume(torch.ones(2, 2), torch.zeros(3))
    with pytest.raises(ValueError, match=r"\(K, J\)"):
        random_hypervolume_scalarization(torch.ones(3), torch.zeros(3))
