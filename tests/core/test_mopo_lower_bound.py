"""Tests of the pessimistic lower bound of ``moalign.core.mopo`` (MOPO paper eq. 4, 5, 12) against SciPy.

Split from tests/core/test_mopo.py; the reference solvers live in tests/core/mopo_reference.py.
The code under test is never used to produce its own reference value.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scipy.optimize import brentq, minimize_scalar
from scipy.special import logsumexp

from moalign.core import (
    MOPODual,
    adaptive_threshold,
    constraint_value,
    lower_bound,
    lower_bound_dual,
    lower_bound_gradient_step,
)
from tests.core.mopo_reference import (  # noqa: F401
    F64,
    TABULAR_CASES,
    numpy_minibatch_dual,
    random_z,
    numpy_tilted_kl,
    scipy_kl_ball_minimum,
    t64,
)

torch.set_num_threads(1)

def test_lower_bound_below_mean_and_limits():
    z = random_z(0, (12,))
    mean, zmin = z.mean().item(), z.min().item()
    for eps in [1e-4, 1e-2, 0.1, 0.5, 1.0]:
        lb, _ = lower_bound(z, eps)
        assert zmin - 1e-12 <= lb.item() <= mean + 1e-12
        assert lb.item() < mean  # strictly pessimistic for eps > 0 on non-constant Z
    # eps -> 0: the plain mean (exactly at 0, and O(sqrt(eps)) close for tiny eps)
    assert lower_bound(z, 0.0)[0].item() == pytest.approx(mean, abs=1e-14)
    gap = mean - lower_bound(z, 1e-10)[0].item()
    assert 0 <= gap < 1e-4
    # eps -> infinity: the minimum (KL to a point mass on argmin is log n < eps)
    assert lower_bound(z, 50.0)[0].item() == pytest.approx(zmin, abs=1e-10)
    assert lower_bound(z, np.log(12) + 1e-3)[0].item() == pytest.approx(zmin, abs=1e-6)


def test_lower_bound_monotone_non_increasing_in_eps():
    z = random_z(1, (3, 10))  # three batches sharing chi
    eps_grid = np.concatenate([[0.0], np.logspace(-6, 1.5, 60)])
    # one vectorised call over the eps grid (consistency with scalar eps is tested separately)
    values = lower_bound(z.expand(len(eps_grid), 3, 10), t64(eps_grid))[0].numpy()
    assert np.all(np.diff(values) <= 1e-12), np.diff(values).max()
    assert values[0] - values[-1] > 0.3  # and it actually moves


def test_lower_bound_constant_z_is_the_constant():
    z = torch.full((7,), 0.37, dtype=F64)
    for eps in [0.0, 0.1, 10.0]:
        assert lower_bound(z, eps)[0].item() == pytest.approx(0.37, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("uniform", [True, False])
def test_lower_bound_equals_scipy_primal_problem_4(seed, uniform):
    """The strongest check: the dual value equals the KL-ball minimum of problem (4) solved by SLSQP."""
    rng = np.random.default_rng(seed)
    n = 8
    z = rng.uniform(0.0, 1.5, n)
    p = np.full(n, 1.0 / n) if uniform else rng.dirichlet(2.0 * np.ones(n))
    for eps in [1e-3, 0.05, 0.3, 1.0, 5.0]:
        expected = scipy_kl_ball_minimum(z, p, eps)
        lb, _ = lower_bound(t64(z), eps, None if uniform else t64(p))
        assert lb.item() == pytest.approx(expected, abs=1e-6), (eps, lb.item(), expected)


def test_lower_bound_with_zero_probability_actions_equals_scipy_on_the_support():
    """An action with p = 0 cannot receive adversarial mass (KL would be infinite): the bound is the
    KL-ball minimum over the support. Regression: 0 * log 0 used to give NaN and the bound collapsed
    to min(Z) on the support for every eps > 0."""
    z = np.array([0.0, 0.5, 1.0, 0.8, 0.3])
    p = np.array([0.0, 0.3, 0.3, 0.25, 0.15])
    support = p > 0
    for eps in [0.01, 0.05, 0.3]:
        expected = scipy_kl_ball_minimum(z[support], p[support], eps)
        lb, _ = lower_bound(t64(z), eps, t64(p))
        assert lb.item() == pytest.approx(expected, abs=1e-6)
        assert lb.item() > z[support].min() + 1e-3


def test_lower_bound_chi_is_the_root_of_the_kl_gap():
    """chi* solves KL(q_chi||p) = eps (brentq on the tilted KL written in NumPy)."""
    rng = np.random.default_rng(3)
    z, p, eps = rng.uniform(0, 1, 10), rng.dirichlet(3 * np.ones(10)), 0.2
    chi_star = brentq(lambda c: numpy_tilted_kl(c, z, p) - eps, 1e-4, 1e4, xtol=1e-15, rtol=1e-14)
    _, chi = lower_bound(t64(z), eps, t64(p))
    assert chi.item() == pytest.approx(chi_star, rel=1e-6)
    # and the dual evaluated at that chi is the bound: -chi log E_p exp(-z/chi) - chi eps
    dual_np = -chi_star * logsumexp(np.log(p) - z / chi_star) - chi_star * eps
    value = lower_bound_dual(t64(chi_star), t64(z)[None], eps, t64(p)[None])
    assert value.item() == pytest.approx(dual_np, abs=1e-12)


@pytest.mark.parametrize("eps", [0.01, 0.1, 0.5])
def test_lower_bound_minibatch_equals_scipy_max_over_shared_chi(eps):
    """Eq. (12): z of shape (M, n) with one chi; value = max_chi mean_m dual_m(chi)."""
    rng = np.random.default_rng(int(eps * 1000))
    z = rng.uniform(0, 1, (4, 6))
    res = minimize_scalar(lambda s: -numpy_minibatch_dual(np.exp(s), z, eps), bounds=(-12, 8), method="bounded",
                          options={"xatol": 1e-12})
    lb, chi = lower_bound(t64(z), eps)
    assert lb.item() == pytest.approx(-res.fun, abs=1e-9)
    assert chi.item() == pytest.approx(np.exp(res.x), rel=1e-4)
    # The mini-batch bound is not the bound of the pooled batch (the log sits inside the batch mean).
    pooled, _ = lower_bound(t64(z.reshape(-1)), eps)
    assert abs(pooled.item() - lb.item()) > 1e-4
    # lower_bound_dual at the optimum reproduces the NumPy dual
    assert lower_bound_dual(chi, t64(z), eps).item() == pytest.approx(numpy_minibatch_dual(chi.item(), z, eps),
                                                                      abs=1e-12)


def test_lower_bound_vectorised_over_leading_dims_matches_separate_problems():
    rng = np.random.default_rng(4)
    z = rng.uniform(0, 1, (2, 3, 2, 5))  # (B1, B2, M, n)
    p = rng.dirichlet(np.ones(5), size=(2, 3, 2))
    lb_all, chi_all = lower_bound(t64(z), 0.1, t64(p))
    assert lb_all.shape == (2, 3) and chi_all.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            lb_ij, chi_ij = lower_bound(t64(z[i, j]), 0.1, t64(p[i, j]))
            assert lb_all[i, j].item() == pytest.approx(lb_ij.item(), abs=1e-12)
            assert chi_all[i, j].item() == pytest.approx(chi_ij.item(), rel=1e-9)


def test_lower_bound_vectorised_eps_tensor():
    """A tensor of eps broadcast over leading problems gives the same as one call per eps."""
    z = random_z(5, (4, 1, 9))
    eps = t64([0.0, 0.01, 0.2, 3.0])
    lb, _ = lower_bound(z, eps)
    for k in range(4):
        assert lb[k].item() == pytest.approx(lower_bound(z[k], float(eps[k]))[0].item(), abs=1e-12)


def test_lower_bound_gradient_steps_converge_to_exact_chi():
    rng = np.random.default_rng(6)
    z, p, eps = rng.uniform(0, 1, 10), rng.dirichlet(3 * np.ones(10)), 0.2
    chi_star = brentq(lambda c: numpy_tilted_kl(c, z, p) - eps, 1e-4, 1e4, xtol=1e-15, rtol=1e-14)
    chi = torch.tensor(1.0, dtype=F64)
    for _ in range(500):
        chi = lower_bound_gradient_step(chi, t64(z)[None], eps, lr=0.5, probs=t64(p)[None])
    assert chi.item() == pytest.approx(chi_star, rel=1e-8)
    # Projection: a step that would go negative stops at chi_min.
    big_eps_step = lower_bound_gradient_step(torch.tensor(0.01, dtype=F64), t64(z)[None], 10.0, lr=1.0,
                                             probs=t64(p)[None], chi_min=1e-4)
    assert big_eps_step.item() == pytest.approx(1e-4)


def test_mopo_dual_gradient_chi_solver_tracks_exact_lower_bound():
    """The paper's projected-gradient chi (Alg. 1 line 5) inside MOPODual ends where SciPy's primal LB says."""
    P, Q, _, tau, pi_ref, _ = TABULAR_CASES["non_uniform_ref"]
    P, Q, pi_ref = (np.asarray(v, dtype=np.float64) for v in (P, Q, pi_ref))
    b, eps = np.array([0.45]), 0.01
    dual = MOPODual(lam=torch.zeros(1, dtype=F64), threshold=t64(b), tau=tau, eps=eps, lr_lambda=0.3,
                    chi_solver="gradient", lr_chi=5.0)
    for _ in range(1200):
        out = dual.step(t64(P), t64(Q), probs=t64(pi_ref))
    w = out.weights.numpy()
    assert abs(scipy_kl_ball_minimum(w * Q[:, 0], pi_ref, eps) - b[0]) < 1e-6
    # chi converged to the root of KL(q_chi||pi_ref) = eps for the final Z (brentq in NumPy)
    chi_star = brentq(lambda c: numpy_tilted_kl(c, w * Q[:, 0], pi_ref) - eps, 1e-3, 1e3, xtol=1e-14)
    assert dual.chi.item() == pytest.approx(chi_star, rel=1e-5)


def test_constraint_value_is_the_estimate_or_the_scipy_lower_bound():
    """Alg. 1 line 10's source rule: 'estimate' = sum_y p w q by hand; 'lower_bound' = SciPy's KL-ball minimum
    (primal of eq. 4) of w q; the two agree at eps = 0; b = beta * value; mini-batches as in eq. (12)."""
    q = t64([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8]])
    p, w, eps = t64([0.5, 0.3, 0.2]), t64([1.2, 0.8, 0.5]), 0.1
    by_hand = (p[:, None] * w[:, None] * q).sum(0)
    torch.testing.assert_close(constraint_value(q, "estimate", eps, weights=w, probs=p), by_hand, rtol=0, atol=1e-15)
    torch.testing.assert_close(constraint_value(q, probs=p), p @ q, rtol=0, atol=1e-15)  # default: w = 1
    torch.testing.assert_close(constraint_value(q, "lower_bound", 0.0, weights=w, probs=p), by_hand, rtol=0, atol=0)
    lb = constraint_value(q, "lower_bound", eps, weights=w, probs=p)
    for k in range(2):
        assert lb[k].item() == pytest.approx(scipy_kl_ball_minimum((w * q[:, k]).numpy(), p.numpy(), eps), abs=1e-7)
        assert lb[k] < by_hand[k] - 1e-3
    np.testing.assert_allclose(adaptive_threshold(lb, 0.9).numpy(), 0.9 * lb.numpy(), rtol=1e-15)
    # per-sample form with M = 2 groups sharing chi (the trainer's lower_bound_minibatches)
    rows = torch.rand(8, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    grouped = constraint_value(rows, "lower_bound", eps, num_minibatches=2)
    torch.testing.assert_close(grouped, lower_bound(rows.T.reshape(2, 2, 4), eps)[0], rtol=0, atol=0)
    with pytest.raises(ValueError, match="source"):
        constraint_value(q, "batch")
