"""Exact solutions of the tabular problems MOPO solves on the §4.1 bandit (SciPy), for checks and docs.

* :func:`solve_cop` -- the COP of eq. (1)/(2) with a given reference and threshold (Prop. 3.1's closed
  form, the multiplier by Brent's method);
* :func:`solve_phase` -- the problem of one lag phase of Algorithm 1 as MOPO poses it: the closed-form
  family ``pi_lambda ∝ pi_lag exp((P + lambda Q)/tau)`` (eq. 3/11) with lambda the root of the
  *pessimistic* constraint ``LB_eps(w_lambda Q) = b`` (eq. 4 with the corrected sign, KL ball around
  ``pi_lag``, :func:`moalign.core.mopo.lower_bound`), or 0 when the constraint is slack. With ``eps = 0``
  it is :func:`solve_cop` with reference ``pi_lag``.
"""

from __future__ import annotations

import torch

from moalign.core.mopo import lower_bound


def solve_cop(primary: torch.Tensor, secondary: torch.Tensor, reference: torch.Tensor, tau: float,
              threshold: float) -> torch.Tensor:
    """Exact solution of the tabular COP ``max_pi pi.P - tau KL(pi||ref) s.t. pi.Q >= b`` (eq. 1/2).

    Closed form ``pi_lambda ∝ ref exp((P + lambda Q)/tau)`` (Prop. 3.1) with the
    scalar multiplier found by Brent's method on ``pi_lambda.Q = b`` (``pi.Q``
    is non-decreasing in lambda). Raises if ``b`` exceeds ``max Q`` (infeasible).
    Used for the analysis in docs/bandit.md.
    """
    from scipy.optimize import brentq

    p, q, ref = (t.detach().double() for t in (primary, secondary, reference))

    def policy(lam: float) -> torch.Tensor:
        return torch.softmax(torch.log(ref) + (p + lam * q) / tau, dim=-1)

    def gap(lam: float) -> float:
        return float(policy(lam) @ q) - threshold

    if gap(0.0) >= 0:
        return policy(0.0)
    if threshold > float(q[ref > 0].max()) - 1e-12:
        raise ValueError(f"threshold {threshold} is infeasible: the largest secondary win rate is {float(q.max())}")
    hi = 1.0
    while gap(hi) < 0:
        hi *= 2.0
        if hi > 1e8:
            raise ValueError(f"threshold {threshold} is not reachable with a finite lambda (max Q = {float(q.max())})")
    return policy(brentq(gap, 0.0, hi, xtol=1e-14))


def solve_phase(primary: torch.Tensor, secondary: torch.Tensor, reference: torch.Tensor, tau: float,
                threshold: float, eps: float) -> tuple[torch.Tensor, float]:
    """The constrained optimum of one lag phase: ``(pi_lambda*, lambda*)`` (see the module docstring).

    ``primary``/``secondary`` ``(3,)`` full-data win rates, ``reference`` ``(3,)`` the phase's ``pi_lag``.
    ``LB(w_lambda Q)`` is taken as non-decreasing in lambda (it is on the bandit's datasets; checked by
    Brent's bracket). Raises when ``b`` is above every attainable bound.
    """
    from scipy.optimize import brentq

    p, q, ref = (t.detach().double() for t in (primary, secondary, reference))

    def policy(lam: float) -> torch.Tensor:
        return torch.softmax(torch.log(ref) + (p + lam * q) / tau, dim=-1)

    def gap(lam: float) -> float:
        pi = policy(lam)
        w = torch.where(ref > 0, pi / ref, torch.zeros_like(pi))
        return float(lower_bound(w * q, eps, ref)[0]) - threshold

    if gap(0.0) >= 0:
        return policy(0.0), 0.0
    hi = 1.0
    while gap(hi) < 0:
        hi *= 2.0
        if hi > 1e6:
            raise ValueError(f"threshold {threshold} is not attainable by the lower bound (eps = {eps})")
    lam = brentq(gap, 0.0, hi, xtol=1e-12)
    return policy(lam), lam
