"""Population analysis of MOPO's ratio forms on the toy problem (docs/toy.md, "Why not the per-sample form").

With infinite data and exact (tabular) policy extraction, Algorithm 1 with a
lagged reference multiplies the policy by the same tilt every period:
``pi_{n+1}(y | x) ∝ pi_n(y | x) T_lambda(x, y)``. For the per-sample form
(each row's own labels in ``rho = exp((I1 + lambda I2) / tau - 1)``) the tilt
is ``T = E_{y'}[(1 + (e^{1/tau} - 1) p1(y > y')) (1 + (e^{lambda/tau} - 1) p2(y > y'))]``
(independent Bernoulli labels given the pair); for the win-rate form of
eq. (11) it is ``exp((p1(y > mu) + lambda p2(y > mu)) / tau)``. After ``n``
periods from the uniform reference ``pi_n ∝ mu T^n``. Sweeping lambda gives
the policies each form can reach at all; their hypervolume ratio is an upper
bound for the learned ones. Everything here uses the true rewards.
"""

from __future__ import annotations

import numpy as np

from moalign.experiments.toy_problem import (
    TrueFront,
    action_grid,
    cell_widths,
    context_grid,
    expected_rewards,
    gap_to_front,
    hypervolume_ratio,
    mixture_hypervolume_ratio,
    reward_tables,
    sigmoid,
)


def pairwise_win_probabilities(reward_set: str, num_actions: int = 51, num_opponents: int = 401) -> np.ndarray:
    """``P(y_a > y') = sigma(r_k(x, y_a) - r_k(x, y'))`` on the grids: ``(2, X, A, Y')``, y' ~ U on a fine grid."""
    x = context_grid()
    own = reward_tables(reward_set, x, action_grid(num_actions))
    other = reward_tables(reward_set, x, np.linspace(0.0, 1.0, num_opponents))
    return sigmoid(own[:, :, :, None] - other[:, :, None, :])


def log_tilt(pairwise: np.ndarray, form: str, tau: float, lam: float, primary: int = 0) -> np.ndarray:
    """Per-period log tilt ``log T_lambda(x, y)`` of the 'sample' or 'winrate' form: ``(X, A)``."""
    p, q = pairwise[primary], pairwise[1 - primary]
    if form == "winrate":
        return (p.mean(-1) + lam * q.mean(-1)) / tau
    if form == "sample":
        a = np.expm1(1.0 / tau)
        if lam <= 0:
            return np.log((1.0 + a * p).mean(-1))
        log_c = lam / tau + np.log(-np.expm1(-lam / tau))  # log(e^{lam/tau} - 1), overflow-free
        return log_c + np.log(((1.0 + a * p) * (np.exp(-log_c) + q)).mean(-1))
    raise ValueError(f"form must be 'sample' or 'winrate', got {form!r}")


def reachable_policies(reward_set: str, form: str, tau: float, periods: float, lambdas: np.ndarray,
                       primaries: tuple[int, ...] = (0,), pairwise: np.ndarray | None = None) -> np.ndarray:
    """Expected rewards ``(len(primaries) * len(lambdas), 2)`` of ``pi ∝ mu T^periods`` (``inf``: the argmax)."""
    pairwise = pairwise_win_probabilities(reward_set) if pairwise is None else pairwise
    log_mu = np.log(cell_widths(pairwise.shape[2]))
    points = []
    for primary in primaries:
        for lam in lambdas:
            tilt = log_tilt(pairwise, form, tau, float(lam), primary)
            if np.isinf(periods):
                probs = np.eye(tilt.shape[-1])[tilt.argmax(-1)]
            else:
                logits = log_mu + periods * tilt
                probs = np.exp(logits - logits.max(-1, keepdims=True))
                probs /= probs.sum(-1, keepdims=True)
            points.append(expected_rewards(reward_set, probs))
    return np.array(points)


def reachable_summary(front: TrueFront, reward_set: str, form: str, tau: float, periods: float,
                      primaries: tuple[int, ...] = (0,), num_lambdas: int = 61,
                      pairwise: np.ndarray | None = None) -> dict:
    """HV ratios and median gap of the policies reachable with ``lambda in {0} ∪ logspace(-3, 3)``.

    ``hv_ratio_mixtures`` (the reachable policies and their mixtures) does not
    depend on how evenly the lambda grid happens to spread them along the
    front, so it is the bound to compare forms with.
    """
    lambdas = np.concatenate([[0.0], np.logspace(-3, 3, num_lambdas - 1)])
    pts = reachable_policies(reward_set, form, tau, periods, lambdas, primaries, pairwise)
    return {"hv_ratio": hypervolume_ratio(pts, front),
            "hv_ratio_mixtures": mixture_hypervolume_ratio(pts, front),
            "gap_to_front_median": float(np.median(gap_to_front(pts, front)))}
