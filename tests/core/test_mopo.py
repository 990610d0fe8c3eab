"""Tests of ``moalign.core.mopo`` against independent ground truth.

Truth comes from SciPy (SLSQP on the primal problems (1) and (4) of
the MOPO paper, scalar root finding / maximisation of duals written
out here in NumPy), and from values computed by hand. The code under test is
never used to produce its own reference value. All exactness tests run in
float64 and are deterministic (fixed seeds, full-batch quantities).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import brentq, minimize, minimize_scalar
from scipy.special import logsumexp, softmax

from moalign.core import (
    MOPODual,
    adaptive_threshold,
    closed_form_log_ratio,
    constraint_estimate,
    constraint_value,
    dual_step,
    lagged_reference_log_weight,
    lower_bound,
    lower_bound_dual,
    lower_bound_gradient_step,
    self_normalised_weights,
    symmetric_augmentation,
    tabular_win_rates,
)

from tests.core.mopo_reference import (  # noqa: F401
    F64,
    TABULAR_CASES,
    random_z,
    scipy_cop,
    scipy_kl_ball_minimum,
    t64,
    total_variation,
)
# The dual/bisection loops run thousands of tiny tensor ops; intra-op threads only add
# contention on a shared 2-core machine (measured: 10-30x slower with 2 threads under load).
torch.set_num_threads(1)



def test_symmetric_augmentation_swaps_pairs_and_flips_labels():
    first, second = torch.tensor([0, 0, 1]), torch.tensor([1, 2, 2])
    labels = t64([[1, 1], [1, 0], [1, 0]])
    f, s, lab = symmetric_augmentation(first, second, labels)
    assert f.tolist() == [0, 0, 1, 1, 2, 2]
    assert s.tolist() == [1, 2, 2, 0, 0, 1]
    assert lab.tolist() == [[1, 1], [1, 0], [1, 0], [0, 0], [0, 1], [0, 1]]


def test_tabular_win_rates_on_paper_dataset_d3_by_hand():
    """Dataset D3 of §4.1 (antichain): (y1,y2,(1,1)), (y1,y3,(1,0)), (y2,y3,(1,0)).

    After augmentation the swapped rows are (y2,y1,(0,0)), (y3,y1,(0,1)), (y3,y2,(0,1)).
    By hand, rows where each action is first:
      y1: (1,1), (1,0) -> win rates (1, 1/2)
      y2: (1,0), (0,0) -> (1/2, 0)
      y3: (0,1), (0,1) -> (0, 1)
    and every action is first in exactly 2 rows.
    """
    first, second = torch.tensor([0, 0, 1]), torch.tensor([1, 2, 2])
    labels = t64([[1, 1], [1, 0], [1, 0]])
    f, _, lab = symmetric_augmentation(first, second, labels)
    rates, counts = tabular_win_rates(f, lab, 3)
    np.testing.assert_allclose(rates.numpy(), [[1.0, 0.5], [0.5, 0.0], [0.0, 1.0]], atol=0)
    np.testing.assert_allclose(counts.numpy(), [2, 2, 2], atol=0)


def test_tabular_win_rates_unobserved_action_gets_zero_on_d5():
    """D5 = (y1,y2,(1,1)), (y2,y1,(0,1)); y3 never appears.

    Augmented, y1 is first in (1,1),(1,0) -> (1, 1/2); y2 in (0,1),(0,0) -> (0, 1/2);
    y3 is never first: count 0 and win rate 0 (no evidence of winning).
    """
    f, _, lab = symmetric_augmentation(torch.tensor([0, 1]), torch.tensor([1, 0]), t64([[1, 1], [0, 1]]))
    rates, counts = tabular_win_rates(f, lab, 3)
    np.testing.assert_allclose(rates.numpy(), [[1.0, 0.5], [0.0, 0.5], [0.0, 0.0]], atol=0)
    np.testing.assert_allclose(counts.numpy(), [2, 2, 0], atol=0)


def test_tabular_win_rates_batched_matches_loop():
    g = torch.Generator().manual_seed(0)
    actions = torch.randint(0, 4, (3, 20), generator=g)
    labels = torch.rand(3, 20, 2, generator=g, dtype=F64)
    rates, counts = tabular_win_rates(actions, labels, 4)
    for b in range(3):
        for a in range(4):
            rows = actions[b] == a
            assert counts[b, a].item() == rows.sum().item()
            expected = labels[b][rows].mean(0).numpy() if rows.any() else np.zeros(2)
            np.testing.assert_allclose(rates[b, a].numpy(), expected, rtol=1e-12, atol=1e-15)


# =========================================================================== ratio, weights, dual step
def test_closed_form_log_ratio_by_hand():
    # (0.7 + 1.5*0.2 + 0.5*0.9) / 0.1 - 1 = 1.45 / 0.1 - 1 = 13.5
    # (0.1 + 1.5*1.0 + 0.5*0.0) / 0.1 - 1 = 16 - 1 = 15
    out = closed_form_log_ratio(t64([0.7, 0.1]), t64([[0.2, 0.9], [1.0, 0.0]]), t64([1.5, 0.5]), 0.1)
    np.testing.assert_allclose(out.numpy(), [13.5, 15.0], rtol=1e-12)
    # lambda = 0 leaves only the primary objective: 0.4/0.5 - 1 = -0.2
    out = closed_form_log_ratio(t64([0.4]), t64([[0.3]]), t64([0.0]), 0.5)
    np.testing.assert_allclose(out.numpy(), [-0.2], rtol=1e-12)
    # tau as a tensor broadcast over leading problems: (0.5 + 2*0.25)/tau - 1 for tau = 0.5, 2
    out = closed_form_log_ratio(t64([[0.5], [0.5]]), t64([[[0.25]], [[0.25]]]), t64([2.0]), t64([[0.5], [2.0]]))
    np.testing.assert_allclose(out.numpy(), [[1.0], [-0.5]], rtol=1e-12)


def test_self_normalised_weights_mean_one_and_by_hand():
    log_w = t64([0.0, np.log(2.0), np.log(5.0), -1.0])
    w = self_normalised_weights(log_w)
    rho = np.array([1.0, 2.0, 5.0, np.exp(-1.0)])
    np.testing.assert_allclose(w.numpy(), rho / rho.mean(), rtol=1e-12)
    assert abs(w.mean().item() - 1.0) < 1e-14


def test_self_normalised_weights_with_probs_has_unit_expectation():
    probs = np.array([0.5, 0.3, 0.2])
    log_w = t64([1.0, 3.0, -2.0])
    w = self_normalised_weights(log_w, t64(probs)).numpy()
    rho = np.exp([1.0, 3.0, -2.0])
    np.testing.assert_allclose(w, rho / (probs @ rho), rtol=1e-12)
    assert abs(probs @ w - 1.0) < 1e-14
    # probs * w is the distribution pi proportional to pi_ref * rho
    np.testing.assert_allclose(probs * w, probs * rho / (probs * rho).sum(), rtol=1e-12)


def test_self_normalised_weights_do_not_overflow_at_small_tau():
    # log ratios of order 1/tau with tau = 1e-3: exp(1000) overflows float64, the weights must not.
    log_w = t64([[1000.0, 999.0, 990.0], [-1000.0, -1001.0, -1000.0]])
    w = self_normalised_weights(log_w).numpy()
    assert np.all(np.isfinite(w))
    shifted = np.exp(np.array([[0.0, -1.0, -10.0], [0.0, -1.0, 0.0]]))
    np.testing.assert_allclose(w, 3 * shifted / shifted.sum(-1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(w.mean(-1), [1.0, 1.0], rtol=1e-14)


def test_constraint_estimate_by_hand():
    w = t64([2.0, 1.0, 0.0, 1.0])
    iq = t64([[1.0, 0.0], [0.5, 1.0], [1.0, 1.0], [0.0, 0.5]])
    # mean(w * I_q) = ([2 + .5 + 0 + 0]/4, [0 + 1 + 0 + .5]/4)
    np.testing.assert_allclose(constraint_estimate(w, iq).numpy(), [0.625, 0.375], rtol=1e-12)
    probs = t64([0.1, 0.2, 0.3, 0.4])
    # sum p * w * I_q = (.1*2*1 + .2*1*.5, .2*1*1 + .4*1*.5) = (0.3, 0.4)
    np.testing.assert_allclose(constraint_estimate(w, iq, probs).numpy(), [0.3, 0.4], rtol=1e-12)


def test_dual_step_projection_by_hand():
    lam = t64([0.5, 0.1, 0.0, 2.0])
    lb = t64([0.3, 0.9, 0.7, 0.6])
    b = t64([0.6, 0.6, 0.6, 0.6])
    out = dual_step(lam, lb, b, lr=1.0).numpy()
    # violated -> grows: 0.5 + 0.3; slack -> shrinks and is projected at 0; exactly tight -> unchanged
    np.testing.assert_allclose(out, [0.8, 0.0, 0.0, 2.0], atol=1e-15)
    out = dual_step(lam, lb, b, lr=0.5).numpy()
    np.testing.assert_allclose(out, [0.65, 0.0, 0.0, 2.0], atol=1e-15)
    assert np.all(out >= 0)


def test_adaptive_threshold_by_hand():
    np.testing.assert_allclose(adaptive_threshold(t64([0.8, 0.5]), 0.9).numpy(), [0.72, 0.45], rtol=1e-12)
    np.testing.assert_allclose(adaptive_threshold(t64([0.8, 0.5]), t64([0.5, 1.0])).numpy(), [0.4, 0.5], rtol=1e-12)


def test_lagged_reference_log_weight_clips_both_sides():
    lag = t64([-1.0, -20.0, 0.0, -3.0])
    ref = t64([-2.0, -1.0, -30.0, -3.0])
    np.testing.assert_allclose(lagged_reference_log_weight(lag, ref, clip=5.0).numpy(), [1.0, -5.0, 5.0, 0.0])
    np.testing.assert_allclose(lagged_reference_log_weight(lag, ref, clip=0.5).numpy(), [0.5, -0.5, 0.5, 0.0])


# =========================================================================== tabular MOPO == SciPy COP
# (P, Q, b, tau, pi_ref, expectation on lambda)


@pytest.mark.parametrize("name", list(TABULAR_CASES))
def test_tabular_mopo_dual_converges_to_scipy_cop(name):
    """Full-batch dual iterations (eps = 0) reach the exact solution of problem (1) computed by SLSQP.

    The dual function's curvature is Cov_pi(Q)/tau <= (K-1)/(4 tau), so lr_lambda = 3 tau is a
    stable gradient step for K-1 <= 2.
    """
    P, Q, b, tau, pi_ref, lam_kind = TABULAR_CASES[name]
    P, Q, b, pi_ref = (np.asarray(v, dtype=np.float64) for v in (P, Q, b, pi_ref))
    expected = scipy_cop(P, Q, b, tau, pi_ref)

    dual = MOPODual(lam=torch.zeros(Q.shape[1], dtype=F64), threshold=t64(b), tau=tau, eps=0.0, lr_lambda=3 * tau)
    for _ in range(500):
        out = dual.step(t64(P), t64(Q), probs=t64(pi_ref))
    pi = (t64(pi_ref) * out.weights).numpy()

    assert abs(pi.sum() - 1.0) < 1e-12
    assert total_variation(pi, expected) < 1e-3, (pi, expected)
    assert total_variation(pi, expected) < 1e-6  # in fact exact to solver precision
    lam = dual.lam.numpy()
    slack = pi @ Q - b
    if lam_kind == "zero":
        assert np.all(lam < 1e-8) and np.all(slack > 1e-3)
    elif lam_kind == "positive":
        assert np.all(lam > 1e-2) and np.all(np.abs(slack) < 1e-6)
    else:  # one binding constraint, one slack one
        assert lam[0] > 1e-2 and abs(slack[0]) < 1e-6
        assert lam[1] < 1e-8 and slack[1] > 1e-3
    # The estimate reported by the step is G_hat = pi.Q of the policy before the last dual step.
    np.testing.assert_allclose(out.estimate.numpy(), pi @ Q, atol=1e-6)


def test_constraint_driven_case_really_moves_the_policy():
    """Guard for the 'constraint driven' case: the unconstrained optimum is infeasible by a wide margin."""
    P, Q, b, tau, pi_ref, _ = TABULAR_CASES["constraint_driven_optimum"]
    P, Q, pi_ref = np.asarray(P), np.asarray(Q), np.asarray(pi_ref)
    unconstrained = pi_ref * np.exp(P / tau)
    unconstrained /= unconstrained.sum()
    assert unconstrained @ Q[:, 0] < b[0] - 0.5
    constrained = scipy_cop(P, Q, np.asarray(b), tau, pi_ref)
    assert constrained.argmax() == 3 and total_variation(constrained, unconstrained) > 0.5


def test_tabular_mopo_with_adam_behaviour_cloning_converges_to_scipy_cop():
    """Policy softmax(psi) trained by Adam on the weighted BC loss of eq. (7)/(13), dual steps interleaved.

    Loss: -sum_y pi_ref(y) w(y) log softmax(psi)_y with w the (detached) self-normalised rho_lambda.
    """
    torch.manual_seed(0)
    P, Q, b, tau, pi_ref, _ = TABULAR_CASES["non_uniform_ref"]
    P, Q, b, pi_ref = (np.asarray(v, dtype=np.float64) for v in (P, Q, b, pi_ref))
    expected = scipy_cop(P, Q, b, tau, pi_ref)

    dual = MOPODual(lam=torch.zeros(1, dtype=F64), threshold=t64(b), tau=tau, eps=0.0, lr_lambda=0.2)
    psi = torch.zeros(len(P), dtype=F64, requires_grad=True)
    opt = torch.optim.Adam([psi], lr=0.1)
    schedule = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.99)
    Pt, Qt, ref = t64(P), t64(Q), t64(pi_ref)
    for _ in range(600):
        w = dual.step(Pt, Qt, probs=ref).weights
        loss = -(ref * w.detach() * torch.log_softmax(psi, dim=-1)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
    pi = torch.softmax(psi, dim=-1).detach().numpy()
    assert total_variation(pi, expected) < 1e-3, (pi, expected)


def test_tabular_mopo_from_paper_dataset_matches_scipy():
    """End to end on D3 (§4.1): augmentation -> win rates -> dual iterations == SciPy COP on those win rates."""
    first, second = torch.tensor([0, 0, 1]), torch.tensor([1, 2, 2])
    f, _, lab = symmetric_augmentation(first, second, t64([[1, 1], [1, 0], [1, 0]]))
    rates, _ = tabular_win_rates(f, lab, 3)
    # primary = objective 2 (column 1), secondary = objective 1 (column 0); hand values from the test above
    P, Q = np.array([0.5, 0.0, 1.0]), np.array([[1.0], [0.5], [0.0]])
    np.testing.assert_allclose(rates[:, 1].numpy(), P)
    np.testing.assert_allclose(rates[:, :1].numpy(), Q)
    tau, b, pi_ref = 0.5, np.array([0.6]), np.full(3, 1 / 3)
    expected = scipy_cop(P, Q, b, tau, pi_ref)
    dual = MOPODual(lam=torch.zeros(1, dtype=F64), threshold=t64(b), tau=tau, eps=0.0, lr_lambda=1.0)
    for _ in range(300):
        out = dual.step(rates[:, 1], rates[:, :1], probs=t64(pi_ref))
    assert total_variation((t64(pi_ref) * out.weights).numpy(), expected) < 1e-6


def test_pessimistic_mopo_fixed_point_meets_threshold_with_scipy_lower_bound():
    """With eps > 0 the constraint that binds is the pessimistic lower bound of eq. (4).

    At convergence the KL-ball minimum of E[w Q] (computed by SLSQP on the primal problem,
    with pi_ref as centre) equals b, while the plain estimate pi.Q exceeds b.
    b must be reachable: with self-normalised weights the pessimistic bound is not
    monotone in lambda (concentrated weights are easy for the adversary to discount);
    for this problem and eps = 0.01 it rises to about 0.54 (SciPy scan), so b = 0.45.
    """
    P, Q, b, tau, pi_ref, _ = TABULAR_CASES["non_uniform_ref"]
    P, Q, pi_ref = (np.asarray(v, dtype=np.float64) for v in (P, Q, pi_ref))
    b, eps = np.array([0.45]), 0.01
    dual = MOPODual(lam=torch.zeros(1, dtype=F64), threshold=t64(b), tau=tau, eps=eps, lr_lambda=2.0)
    for _ in range(150):
        out = dual.step(t64(P), t64(Q), probs=t64(pi_ref))
    w = out.weights.numpy()
    lb_scipy = scipy_kl_ball_minimum(w * Q[:, 0], pi_ref, eps)
    assert dual.lam.item() > 1e-2
    assert abs(lb_scipy - b[0]) < 1e-6
    assert (pi_ref * w) @ Q[:, 0] > b[0] + 1e-2


# =========================================================================== lower bound: properties



def test_mopo_dual_rejects_unknown_chi_solver_and_bad_minibatch_split():
    with pytest.raises(ValueError, match="chi_solver"):
        MOPODual(lam=torch.zeros(1), threshold=torch.zeros(1), chi_solver="newton")
    dual = MOPODual(lam=torch.zeros(1, dtype=F64), threshold=t64([0.5]), eps=0.1, num_minibatches=3)
    with pytest.raises(ValueError, match="must divide"):
        dual.step(t64([0.1, 0.2, 0.3, 0.4]), t64([[0.1], [0.2], [0.3], [0.4]]))


# =========================================================================== one step for every caller
def test_mopo_dual_weight_fn_drives_the_dual_step_by_hand():
    """An injected ratio (the toy's form: eq. 11 normalised per context) drives MOPODual.step's line 5-7 update.

    Truth by hand in NumPy: 6 rows in 2 contexts of 3, data mass m, weights w = rho / E_m[rho | context] with
    rho = exp((p + lambda q) / tau - 1), G_hat = sum m w q, and lambda <- [lambda - lr (G_hat - b)]_+ (eps = 0,
    LB = G_hat exactly). The weights are float32, lambda float64: the dual runs in lambda's dtype.
    """
    p_np, q_np = np.array([0.9, 0.4, 0.1, 0.7, 0.5, 0.2]), np.array([0.1, 0.5, 0.9, 0.2, 0.6, 0.8])
    mass_np = np.array([0.1, 0.2, 0.2, 0.15, 0.15, 0.2])
    tau, b, lr = 0.2, 0.62, 0.8
    mass = torch.as_tensor(mass_np, dtype=torch.float32)

    def weight_fn(lam: torch.Tensor) -> torch.Tensor:
        log_rho = closed_form_log_ratio(torch.as_tensor(p_np, dtype=torch.float32),
                                        torch.as_tensor(q_np, dtype=torch.float32)[:, None], lam.float(), tau)
        per_context = (mass / mass.reshape(2, 3).sum(-1, keepdim=True).repeat_interleave(3)).reshape(2, 3)
        return self_normalised_weights(log_rho.reshape(2, 3), per_context).reshape(6)

    dual = MOPODual(lam=torch.zeros(1, dtype=F64), threshold=t64([b]), tau=tau, eps=0.0, lr_lambda=lr)
    lam_hand = 0.0
    for _ in range(40):
        out = dual.step(None, torch.as_tensor(q_np, dtype=torch.float32)[:, None], probs=mass, weight_fn=weight_fn)
        rho = np.exp((p_np + lam_hand * q_np) / tau - 1).reshape(2, 3)
        m = mass_np.reshape(2, 3)
        w = rho / ((m * rho).sum(-1, keepdims=True) / m.sum(-1, keepdims=True))
        g_hat = float((m * w * q_np.reshape(2, 3)).sum())
        lam_hand = max(lam_hand - lr * (g_hat - b), 0.0)
        assert out.estimate.dtype == F64 and out.lam.dtype == F64
        assert torch.equal(out.lower_bound, out.estimate)
        assert out.estimate.item() == pytest.approx(g_hat, abs=1e-6)
        assert dual.lam.item() == pytest.approx(lam_hand, abs=1e-5)
    assert lam_hand > 0.1  # the constraint binds: the comparison is not between zeros
    with pytest.raises(ValueError, match="weight_fn"):
        dual.step(t64(p_np), t64(q_np)[:, None], weight_fn=weight_fn)
    with pytest.raises(ValueError, match="primary"):
        dual.step(None, t64(q_np)[:, None])


def test_mopo_dual_batched_runs_equal_separate_runs():
    """Leading dimensions are independent problems (the bandit's runs, the toy's (seed, primary, b) grid):
    4 runs with their own data, tau and b in one MOPODual equal 4 separate ones (consistency, both solvers)."""
    g = torch.Generator().manual_seed(5)
    runs, n, steps = 4, 5, 30
    P, Q = torch.rand(steps, runs, n, generator=g, dtype=F64), torch.rand(steps, runs, n, 2, generator=g, dtype=F64)
    ref = torch.softmax(torch.randn(runs, n, generator=g, dtype=F64), -1)
    tau, b = t64([0.1, 0.3, 0.5, 1.0]), torch.rand(runs, 2, generator=g, dtype=F64) * 0.4 + 0.4
    for solver in ("exact", "gradient"):
        settings = dict(eps=0.05, lr_lambda=0.5, chi_solver=solver, lr_chi=0.5)
        batched = MOPODual(lam=torch.zeros(runs, 2, dtype=F64), threshold=b, tau=tau, **settings)
        single = [MOPODual(lam=torch.zeros(2, dtype=F64), threshold=b[r], tau=float(tau[r]), **settings)
                  for r in range(runs)]
        for t in range(steps):
            out = batched.step(P[t], Q[t], probs=ref)
            for r, dual in enumerate(single):
                one = dual.step(P[t, r], Q[t, r], probs=ref[r])
                for name in ("weights", "estimate", "lower_bound", "chi", "lam"):
                    torch.testing.assert_close(getattr(out, name)[r], getattr(one, name), rtol=0, atol=1e-12)
        assert batched.lam.gt(1e-3).any()
