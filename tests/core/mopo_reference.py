"""Independent reference computations (SciPy / NumPy) shared by the MOPO core tests."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import brentq, minimize, minimize_scalar  # noqa: F401
from scipy.special import logsumexp, softmax  # noqa: F401

F64 = torch.float64


def t64(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=F64)


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    return 0.5 * float(np.abs(np.asarray(p) - np.asarray(q)).sum())


# =========================================================================== independent solvers
def scipy_cop(P: np.ndarray, Q: np.ndarray, b: np.ndarray, tau: float, pi_ref: np.ndarray) -> np.ndarray:
    """Solve problem (1) on the simplex with SLSQP: max pi.P - tau KL(pi||pi_ref) s.t. pi.Q >= b.

    Written from the problem statement only (objective, gradient, linear
    constraints); nothing here knows the closed form of eq. (3).
    """
    A, K1 = Q.shape

    def neg_objective(pi):
        return -(pi @ P - tau * np.sum(pi * (np.log(pi) - np.log(pi_ref))))

    def neg_gradient(pi):
        return -(P - tau * (np.log(pi) - np.log(pi_ref) + 1.0))

    constraints = [{"type": "eq", "fun": lambda pi: pi.sum() - 1.0, "jac": lambda pi: np.ones(A)}]
    for k in range(K1):
        constraints.append({"type": "ineq", "fun": lambda pi, k=k: pi @ Q[:, k] - b[k], "jac": lambda pi, k=k: Q[:, k]})
    res = minimize(neg_objective, pi_ref.copy(), jac=neg_gradient, bounds=[(1e-12, 1.0)] * A,
                   constraints=constraints, method="SLSQP", options={"ftol": 1e-15, "maxiter": 2000})
    pi = res.x
    # Independent sanity of the reference solution itself: feasible and on the simplex.
    assert abs(pi.sum() - 1.0) < 1e-9, res
    assert np.all(pi @ Q >= b - 1e-9), res
    return pi


def scipy_kl_ball_minimum(z: np.ndarray, p: np.ndarray, eps: float) -> float:
    """Primal problem (4): min_q sum q_i z_i s.t. KL(q||p) <= eps, sum q = 1, q >= 0.

    Solved twice with SLSQP -- once over q on the simplex (handles optima on a face
    of the simplex, i.e. large eps) and once over logits u with q = softmax(u)
    (well conditioned for interior optima) -- and the best *feasible* value is kept.
    Every feasible q gives an upper bound on the minimum, and by weak duality the
    code's dual value can never exceed the minimum, so keeping the best is sound.
    """
    n, log_p = len(z), np.log(p)
    candidates = []

    def kl_q(q):
        return float(np.sum(q * (np.log(np.clip(q, 1e-300, None)) - log_p)))

    res = minimize(lambda q: q @ z, p.copy(), jac=lambda q: z, bounds=[(0.0, 1.0)] * n, method="SLSQP",
                   constraints=[
                       {"type": "eq", "fun": lambda q: q.sum() - 1.0, "jac": lambda q: np.ones(n)},
                       {"type": "ineq", "fun": lambda q: eps - kl_q(q),
                        "jac": lambda q: -(np.log(np.clip(q, 1e-300, None)) - log_p + 1.0)},
                   ], options={"ftol": 1e-15, "maxiter": 1000})
    if abs(res.x.sum() - 1.0) < 1e-9 and np.all(res.x >= 0) and kl_q(res.x) <= eps + 1e-9:
        candidates.append(float(res.x @ z))

    def kl_u(u):
        log_q = u - logsumexp(u)
        return float(np.sum(np.exp(log_q) * (log_q - log_p)))

    def kl_u_grad(u):
        log_q = u - logsumexp(u)
        q = np.exp(log_q)
        g = q * (log_q - log_p)
        return g - q * g.sum()

    def value_u(u):
        return float(softmax(u) @ z)

    def value_u_grad(u):
        q = softmax(u)
        return q * (z - q @ z)

    res = minimize(value_u, log_p.copy(), jac=value_u_grad, method="SLSQP",
                   constraints=[{"type": "ineq", "fun": lambda u: eps - kl_u(u), "jac": lambda u: -kl_u_grad(u)}],
                   options={"ftol": 1e-15, "maxiter": 2000})
    if kl_u(res.x) <= eps + 1e-9:
        candidates.append(value_u(res.x))
    assert candidates, "SciPy found no feasible point"
    return min(candidates)


def numpy_minibatch_dual(chi: float, z: np.ndarray, eps: float) -> float:
    """Eq. (12) with the lower-bound sign, uniform weights: mean_m[-chi log mean_j exp(-z_mj/chi)] - chi eps."""
    n = z.shape[-1]
    return float(np.mean(-chi * (logsumexp(-z / chi, axis=-1) - np.log(n))) - chi * eps)


def numpy_tilted_kl(chi: float, z: np.ndarray, p: np.ndarray) -> float:
    """KL(q||p) for q proportional to p exp(-z/chi)."""
    log_q = np.log(p) - z / chi
    log_q = log_q - logsumexp(log_q)
    return float(np.sum(np.exp(log_q) * (log_q - np.log(p))))


# =========================================================================== data: augmentation and win rates

TABULAR_CASES = {
    "binding_uniform_ref": (
        [0.9, 0.7, 0.35, 0.1], [[0.05], [0.3], [0.7], [0.95]], [0.55], 0.1, [0.25, 0.25, 0.25, 0.25], "positive"),
    "slack_lambda_to_zero": (
        [0.9, 0.7, 0.35, 0.1], [[0.05], [0.3], [0.7], [0.95]], [0.04], 0.1, [0.25, 0.25, 0.25, 0.25], "zero"),
    "constraint_driven_optimum": (
        # b close to max Q: the policy is pushed onto the worst action for the primary objective.
        [0.9, 0.6, 0.4, 0.1], [[0.1], [0.4], [0.6], [0.9]], [0.87], 0.1, [0.25, 0.25, 0.25, 0.25], "positive"),
    "non_uniform_ref": (
        [0.8, 0.7, 0.3, 0.2, 0.5], [[0.2], [0.3], [0.9], [0.6], [0.5]], [0.6], 0.2, [0.4, 0.3, 0.1, 0.1, 0.1],
        "positive"),
    "two_secondary_both_binding": (
        [0.9, 0.6, 0.4, 0.1, 0.5], [[0.1, 0.5], [0.4, 0.9], [0.6, 0.2], [0.9, 0.4], [0.5, 0.5]], [0.5, 0.55], 0.1,
        [0.1, 0.2, 0.3, 0.2, 0.2], "positive"),
    "two_secondary_one_slack": (
        [0.9, 0.6, 0.4, 0.1, 0.5], [[0.1, 0.5], [0.4, 0.9], [0.6, 0.2], [0.9, 0.4], [0.5, 0.5]], [0.45, 0.2], 0.1,
        [0.1, 0.2, 0.3, 0.2, 0.2], "mixed"),
}


def random_z(seed: int, shape) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g, dtype=F64) * 1.5
