"""MOPO math: closed-form ratios, the pessimistic lower bound, the dual step.

Everything here is pure torch and follows the MOPO paper (arXiv:2505.10892) §3 and
App. A.4/A.5, with the decisions recorded in docs/design.md ("MOPO: paper
to code"). Notation: K objectives, one primary ``p`` and ``K-1``
secondary ``q``; a row is (x, y, y', I) with I in [0, 1]^K the probability /
label that y beats y' on each objective.

The functions are written to broadcast over leading dimensions so that the
synthetic benchmarks can run many independent problems (seeds x tau x
datasets) in one tensor program, and the language-model trainer can call the
very same code on a batch of sequences.

Two deliberate departures from the printed paper, both documented in docs/design.md (MOPO 2 and MOPO 3):

* **Lower bound sign.** Eqs. (5), (8) and (12) print ``exp(+Z/chi)`` inside the
  log-mean-exp. With that sign the dual value is ``max_chi -chi log E exp(Z/chi)
  - chi eps`` which is not the value of problem (4) (a *minimisation* over
  pi_k): plugging pi_k ∝ pi_ref exp(+Z/chi) gives the *maximum* of E_pi_k[Z]
  over the KL ball, i.e. an upper bound. We implement the adversarial minimum
  that the text asks for, whose dual is
  ``LB(Z) = max_{chi>0} -chi log E exp(-Z/chi) - chi eps``.
* **Self-normalised weights.** The printed rho is unnormalised; we divide by
  its (reference-weighted) mean so that G = E[w I_q] is a preference
  probability in [0, 1] and is comparable with thresholds b in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from moalign.core.precision import full_precision

Tensor = torch.Tensor
WeightFn = Callable[[Tensor], Tensor]
"""``lambda (..., K-1) -> self-normalised weights (..., n)``: an injected closed-form ratio (see MOPODual.step)."""
THRESHOLD_SOURCES = ("estimate", "lower_bound")
THRESHOLD_RULES = ("attained", "paper", "lower_bound")
"""Adaptive threshold rules (Alg. 1 line 10 and our variants; docs/design.md, MOPO 7):

* ``'attained'`` (our default, not in the paper): ``b <- beta * mean LB``, the mean over the
  lag phase just ended of the lower bound the dual step compared with b (eq. 12 / line 5 of
  the iterates of that phase) -- the same estimator, the same pessimism, the same noise.
* ``'paper'``: ``b <- beta * G_hat`` of the lagged policy (Alg. 1 line 10 as printed);
  with eps > 0 it asks the pessimistic bound for more than the policy attains, lambda diverges.
* ``'lower_bound'``: ``b <- beta * LB`` of the lagged policy at ``w = 1`` (an earlier variant).
"""
CONSTRAINT_ESTIMATORS = ("policy", "row")
"""Which weights the constraint estimate of the per-sample form uses (docs/design.md, MOPO 7):
``'row'`` the closed-form ratio of each row's own labels (eq. 10 as printed: biased upward, the
weight correlates with the row's own secondary label); ``'policy'`` the current policy's own
ratio ``pi_theta / pi_ref`` (label-free, so unbiased for the policy's value, see
:func:`policy_estimate_weights`)."""


# --------------------------------------------------------------------------- data
@full_precision
def symmetric_augmentation(first: Tensor, second: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Append every pair swapped, with labels ``1 - I`` (§3.1, remark after eq. 10).

    ``first``/``second`` index the two responses (any shape ``(N, ...)``),
    ``labels`` is ``(N, K)``. Returns tensors of length ``2N``: the original
    rows followed by the swapped ones. Halves the variance of the win-rate
    estimates and makes every response appear as "first".
    """
    return (
        torch.cat([first, second], dim=0),
        torch.cat([second, first], dim=0),
        torch.cat([labels, 1.0 - labels], dim=0),
    )


@full_precision
def tabular_win_rates(actions: Tensor, labels: Tensor, num_actions: int) -> tuple[Tensor, Tensor]:
    """Empirical win rate of each action: mean label over rows where it is first.

    This is the tabular estimate of ``E_{y'~mu} p_k(y > y')`` that enters the
    closed-form ratio of eq. (11). ``actions`` is ``(..., N)`` (long), ``labels``
    ``(..., N, K)``. Returns ``(win_rate (..., A, K), counts (..., A))``.
    An action that never appears first has no evidence of winning and gets a
    win rate of 0, as eq. (11)'s sum over rows gives it (this is what makes
    MOPO down-weight the unobserved action of dataset D5 in §4.1).
    """
    one_hot = torch.nn.functional.one_hot(actions, num_actions).to(labels.dtype)  # (..., N, A)
    sums = one_hot.transpose(-1, -2) @ labels  # (..., A, K)
    counts = one_hot.sum(dim=-2)  # (..., A)
    rates = sums / counts.clamp_min(1.0).unsqueeze(-1)
    return rates, counts


# --------------------------------------------------------------------------- ratio
@full_precision
def closed_form_log_ratio(primary: Tensor, secondary: Tensor, lam: Tensor, tau: float | Tensor) -> Tensor:
    """``log rho_lambda = (I_p + lambda^T I_q) / tau - 1`` (eq. 3 / eq. 11).

    ``primary`` is ``(...)``, ``secondary`` ``(..., K-1)`` and ``lam``
    broadcastable to ``(..., K-1)``. In the tabular form the inputs are win
    rates per action; in the per-sample form they are the row's own labels.
    ``tau`` may be a tensor broadcastable to ``primary`` (vectorised sweeps).
    """
    return (primary + (secondary * lam).sum(dim=-1)) / tau - 1.0


@full_precision
def self_normalised_weights(log_weights: Tensor, probs: Tensor | None = None) -> Tensor:
    """Weights ``w = rho / E[rho]`` over the last dimension (docs/design.md, MOPO 2).

    With ``probs=None`` the expectation is the plain batch mean, so the
    weights have mean 1 over the batch. With ``probs`` (e.g. pi_ref over the
    actions of a tabular policy) the expectation is ``sum probs * rho``, so
    ``E_probs[w] = 1`` and ``probs * w`` is the distribution pi ∝ pi_ref rho.
    Computed in log space, so ratios of ``exp(1/tau)`` do not overflow.
    """
    if probs is None:
        n = log_weights.shape[-1]
        return torch.softmax(log_weights, dim=-1) * n
    log_norm = torch.logsumexp(log_weights + torch.log(probs), dim=-1, keepdim=True)
    return torch.exp(log_weights - log_norm)


@full_precision
def constraint_estimate(weights: Tensor, secondary: Tensor, probs: Tensor | None = None) -> Tensor:
    """``G_hat = E[w * I_q]`` over the last sample dimension (eq. 10's constraint).

    ``weights`` ``(..., n)``, ``secondary`` ``(..., n, K-1)``; returns ``(..., K-1)``.
    """
    z = weights.unsqueeze(-1) * secondary
    if probs is None:
        return z.mean(dim=-2)
    return (probs.unsqueeze(-1) * z).sum(dim=-2)


# --------------------------------------------------------------------------- lower bound
def _tilted_kl(chi: Tensor, z: Tensor, log_p: Tensor) -> Tensor:
    """KL(q_chi || p) for q_chi ∝ p exp(-z / chi), over the last dim."""
    logits = log_p - z / chi.unsqueeze(-1)
    log_q = torch.log_softmax(logits, dim=-1)
    q = log_q.exp()
    # 0 log 0 = 0: actions outside the support of p (p = 0, hence q = 0) add nothing, not NaN.
    return torch.where(q > 0, q * (log_q - log_p), torch.zeros_like(q)).sum(dim=-1)


def _kl_gap(chi: Tensor, z: Tensor, eps: float | Tensor, log_p: Tensor) -> Tensor:
    """:func:`lower_bound_kl_gap` with ``log p`` precomputed (the bisection calls it 60 times per solve)."""
    return _tilted_kl(chi.unsqueeze(-1).expand(z.shape[:-1]), z, log_p).mean(dim=-1) - eps


@full_precision
def lower_bound_dual(chi: Tensor, z: Tensor, eps: float | Tensor, probs: Tensor | None = None) -> Tensor:
    """The dual objective ``-chi log E exp(-Z/chi) - chi eps`` (eq. 5 with the corrected sign).

    ``z`` is ``(..., M, n)``: M mini-batches of n values each; the value is the
    mean over the M batches with one shared chi (eq. 12). ``chi`` is ``(...)``.
    ``probs`` (same shape as z, rows summing to 1) defaults to uniform.
    """
    log_p = _log_probs(z, probs)
    c = chi[..., None, None]
    value = -c.squeeze(-1) * torch.logsumexp(log_p - z / c, dim=-1)
    # eps is a scalar or shaped like chi (...): subtract it after the mean over the M batches.
    return value.mean(dim=-1) - chi * eps


def _log_probs(z: Tensor, probs: Tensor | None) -> Tensor:
    if probs is None:
        return torch.full_like(z, -torch.log(torch.tensor(float(z.shape[-1]), dtype=z.dtype)).item())
    return torch.log(probs)


@full_precision
def lower_bound_kl_gap(chi: Tensor, z: Tensor, eps: float | Tensor, probs: Tensor | None = None) -> Tensor:
    """d/dchi of :func:`lower_bound_dual`: ``mean_m KL(q_chi,m || p_m) - eps``.

    Decreasing in chi, so the maximiser of the concave dual is the root of
    this function (or chi -> 0 when it stays negative).
    """
    return _kl_gap(chi, z, eps, _log_probs(z, probs))


@full_precision
def lower_bound(
    z: Tensor,
    eps: float | Tensor,
    probs: Tensor | None = None,
    iterations: int = 60,
    chi_range: tuple[float, float] = (1e-6, 1e6),
) -> tuple[Tensor, Tensor]:
    """Pessimistic lower bound of ``E[Z]`` over a KL ball, solved exactly for chi.

    Implements problem (4): ``min_{pi_k: KL(pi_k||pi_ref) <= eps} E_{pi_k}[Z]``
    via its dual ``LB(Z) = max_{chi>0} -chi log E exp(-Z/chi) - chi eps``
    (Prop. 3.2, corrected sign -- see the module docstring). The dual is
    concave in chi and its derivative is ``KL(q_chi || p) - eps`` with
    ``q_chi ∝ p exp(-Z/chi)``; we find the root by bisection in log chi, which
    is exact to float precision after ``iterations`` halvings.

    ``z`` is ``(..., M, n)`` (M mini-batches sharing chi, eq. 12) or ``(..., n)``
    for a single batch. Returns ``(lb, chi)`` with shapes ``(...)``.

    Properties (tested): LB <= mean(Z); LB -> mean(Z) as eps -> 0;
    LB -> min(Z) as eps -> infinity; LB is non-increasing in eps.
    With ``eps == 0`` the bound is the plain estimate mean(Z) (chi = +inf).
    """
    squeeze = z.dim() == 1
    if squeeze:  # a single batch of n values
        z = z.unsqueeze(0)
        probs = probs.unsqueeze(0) if probs is not None else None
    batch_shape = z.shape[:-2]
    eps_t = torch.as_tensor(eps, dtype=z.dtype, device=z.device)
    lo = torch.full(batch_shape, float(torch.log(torch.tensor(chi_range[0]))), dtype=z.dtype, device=z.device)
    hi = torch.full(batch_shape, float(torch.log(torch.tensor(chi_range[1]))), dtype=z.dtype, device=z.device)
    log_p = _log_probs(z, probs)
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        gap = _kl_gap(mid.exp(), z, eps_t, log_p)
        # gap > 0: KL too large, chi too small -> move right.
        lo = torch.where(gap > 0, mid, lo)
        hi = torch.where(gap > 0, hi, mid)
    chi = (0.5 * (lo + hi)).exp()
    lb = lower_bound_dual(chi, z, eps_t, probs)
    # eps == 0: the sup is the limit chi -> inf, i.e. the plain mean.
    # The sup is attained between its two limits: chi -> 0 gives the (essential)
    # minimum of Z, chi -> inf (or eps == 0) the plain mean. Clamping to them
    # removes the bisection's finite chi range from the answer.
    plain = _mean(z, probs).mean(dim=-1)
    support_min = (z if probs is None else z.masked_fill(probs <= 0, float("inf"))).amin(dim=-1).mean(dim=-1)
    lb = torch.where(eps_t <= 0, plain, torch.minimum(lb.clamp_min(support_min), plain))
    chi = torch.where(eps_t <= 0, torch.full_like(chi, float("inf")), chi)
    return lb, chi


def _mean(z: Tensor, probs: Tensor | None) -> Tensor:
    return z.mean(dim=-1) if probs is None else (probs * z).sum(dim=-1)


@full_precision
def lower_bound_gradient_step(
    chi: Tensor, z: Tensor, eps: float | Tensor, lr: float, probs: Tensor | None = None, chi_min: float = 1e-4
) -> Tensor:
    """One projected gradient step on chi (Alg. 1 line 5, on eq. 12 with the corrected sign).

    Minimises ``J(chi) = chi log E exp(-Z/chi) + chi eps`` whose gradient is
    ``eps - KL(q_chi || p)``: ``chi <- max(chi - lr * (eps - KL), chi_min)``.
    ``z`` is ``(..., M, n)``. The paper's option; :func:`lower_bound` is exact.
    """
    grad = -lower_bound_kl_gap(chi, z, eps, probs)
    return (chi - lr * grad).clamp_min(chi_min)


# --------------------------------------------------------------------------- dual and thresholds
@full_precision
def dual_step(lam: Tensor, lower_bound_value: Tensor, threshold: Tensor, lr: float,
              lam_max: float | None = None) -> Tensor:
    """Projected dual step ``lambda <- [lambda - lr (LB - b)]_+`` (eq. 13, Alg. 1 line 6).

    lambda grows while the lower bound violates the threshold and shrinks to
    zero when the constraint is slack. ``lam_max`` (optional, not in the paper)
    projects onto ``[0, lam_max]`` instead.
    """
    return (lam - lr * (lower_bound_value - threshold)).clamp(0.0, lam_max)


@full_precision
def adaptive_threshold(previous_estimate: Tensor, beta: float | Tensor) -> Tensor:
    """``b <- beta ⊙ G_hat`` of the previous iterate (§3.1, Alg. 1 line 10).

    ``previous_estimate`` is what :func:`constraint_value` returns for the lagged
    policy: the paper's G_hat (``source='estimate'``) or its lower bound.
    """
    return beta * previous_estimate


@full_precision
def constraint_value(secondary: Tensor, source: str = "estimate", eps: float = 0.0, weights: Tensor | None = None,
                     probs: Tensor | None = None, num_minibatches: int = 1) -> Tensor:
    """The value that the adaptive threshold scales (Alg. 1 line 10), ``(..., K-1)``.

    The policy is given by its self-normalised weights over the samples
    (``weights`` ``(..., n)``; None: all 1, i.e. the reference/lagged policy
    itself) and, in the tabular form, ``probs`` ``(..., n)`` over the actions.
    ``secondary`` is ``(..., n, K-1)``.

    * ``source='estimate'`` (the paper's rule): ``G_hat = E[w I_q]`` (eq. 10,
      :func:`constraint_estimate`).
    * ``source='lower_bound'`` (a variant): the exact pessimistic bound
      ``LB(w I_q)`` of eq. (4)/(12) with radius ``eps`` and ``num_minibatches``
      groups sharing chi -- the value MOPODual.step's lower bound takes at the
      next iterate if the policy does not move, so ``LB >= beta * LB`` stays
      attainable. Equal to the estimate for ``eps <= 0``.
    """
    if source not in THRESHOLD_SOURCES:
        raise ValueError(f"source must be one of {THRESHOLD_SOURCES}, got {source!r}")
    w = torch.ones(secondary.shape[:-1], dtype=secondary.dtype, device=secondary.device) if weights is None \
        else weights
    if source == "estimate" or eps <= 0:
        return constraint_estimate(w, secondary, probs)
    z_m, p_m = _minibatches(w, secondary, probs, num_minibatches)
    return lower_bound(z_m, eps, p_m)[0]


@full_precision
def policy_estimate_weights(policy_logp: Tensor, reference_logp: Tensor, clip: float = 5.0,
                            probs: Tensor | None = None) -> Tensor:
    """Label-free weights ``w~ = clip(pi_theta / pi_ref)`` self-normalised over the batch (docs/design.md, MOPO 7).

    The constraint estimate of the per-sample form, ``G_hat = E[w I_q]`` (eq. 10),
    is biased upward when ``w`` is the closed-form ratio of the row's own labels
    (eq. 11): ``E[rho I_q] - E[E[rho|y] E[I_q|y]] = E[Cov(rho, I_q | y)] > 0`` for
    lambda > 0. With the policy's own importance ratio the weight of a row does
    not depend on its label, so ``mean(w~ I_q)`` estimates the policy's secondary
    value ``E_{y~pi_theta} p_q(y > mu)`` (self-normalised importance sampling,
    data ``y ~ mu ~ pi_ref``). ``policy_logp``/``reference_logp`` ``(..., n)``; ``probs`` (optional,
    broadcastable to ``(..., n)``): the data distribution over the samples when they are weighted
    units (the toy's tabular cells), as in :func:`self_normalised_weights`.
    """
    return self_normalised_weights((policy_logp - reference_logp).clamp(-clip, clip), probs)


@full_precision
def lagged_reference_log_weight(logp_lagged: Tensor, logp_reference: Tensor, clip: float = 5.0) -> Tensor:
    """``log rho_lag = clip(log pi_lag(y) - log pi_ref(y))`` (§3.1, "Lagged reference policy").

    Added to the closed-form log ratio before self-normalisation so every
    expectation of eq. (10) is re-weighted toward the lagged policy without
    new data. Clipping bounds the variance of the importance weights.
    """
    return (logp_lagged - logp_reference).clamp(-clip, clip)


# --------------------------------------------------------------------------- one MOPO step
@dataclass
class MOPOStepOutput:
    """What one MOPO dual step produces for a batch."""

    weights: Tensor  # (..., n) self-normalised, detached: the behaviour-cloning weights of eq. (13)
    estimate: Tensor  # (..., K-1) G_hat = E[w I_q]
    lower_bound: Tensor  # (..., K-1)
    chi: Tensor  # (..., K-1)
    lam: Tensor  # (..., K-1) after the dual step


@dataclass
class MOPODual:
    """The dual state of MOPO for one primary objective, and its per-batch update: Alg. 1 lines 5-7.

    This is the one implementation of the MOPO step: the language-model
    trainer, the bandit of §4.1 (75 runs in one call) and the toy problem of
    §2 all call :meth:`step`. Holds lambda and chi (one per secondary
    objective) and the thresholds b; ``step`` returns the behaviour-cloning
    weights of line 8. Works for the tabular form (pass per-action win rates
    and ``probs = pi_ref``), the per-sample form (pass the rows' labels,
    ``probs=None``), or any other closed-form ratio passed as ``weight_fn``.

    Leading dimensions are independent problems: ``lam``, ``threshold`` and
    ``chi`` are ``(..., K-1)`` and ``tau`` a float or a tensor of the leading
    shape ``(...)`` (e.g. one run per (dataset, tau, seed)). The dual
    quantities (G_hat, LB, chi, lambda) are computed in ``lam``'s dtype.

    ``lr_lambda``: dual step size. ``eps``: KL radius of the lower bound
    (0 disables pessimism: LB = G_hat). ``chi_solver``: "exact" (bisection) or
    "gradient" (the paper's projected step with ``lr_chi``).
    """

    lam: Tensor
    threshold: Tensor
    chi: Tensor = field(default=None)  # type: ignore[assignment]
    tau: float | Tensor = 0.1
    eps: float = 0.0
    lr_lambda: float = 0.1
    chi_solver: str = "exact"
    lr_chi: float = 0.01
    num_minibatches: int = 1
    lam_max: float | None = None  # projection [0, lam_max] of line 6 (None: [0, inf) as printed)

    def __post_init__(self) -> None:
        if self.chi is None:
            self.chi = torch.ones_like(self.lam)
        if self.chi_solver not in ("exact", "gradient"):
            raise ValueError(f"chi_solver must be 'exact' or 'gradient', got {self.chi_solver!r}")

    @full_precision
    def weights(self, primary: Tensor, secondary: Tensor, extra_log_weight: Tensor | None = None,
                probs: Tensor | None = None) -> Tensor:
        """Self-normalised ``rho_lambda`` (times the lagged-reference ratio) for the current lambda."""
        return self._weights_at(self.lam, primary, secondary, extra_log_weight, probs)

    def _weights_at(self, lam: Tensor, primary: Tensor, secondary: Tensor, extra_log_weight: Tensor | None,
                    probs: Tensor | None) -> Tensor:
        """Eq. (11) (``log rho = (I_p + lambda^T I_q)/tau - 1``) plus ``extra_log_weight``, self-normalised."""
        log_w = closed_form_log_ratio(primary, secondary, lam.unsqueeze(-2), _expand_tau(self.tau, primary))
        if extra_log_weight is not None:
            log_w = log_w + extra_log_weight
        return self_normalised_weights(log_w, probs)

    @full_precision
    def step(self, primary: Tensor | None, secondary: Tensor, extra_log_weight: Tensor | None = None,
             probs: Tensor | None = None, weight_fn: WeightFn | None = None,
             estimate_weights: Tensor | None = None) -> MOPOStepOutput:
        """G_hat and the lower bound (line 5), the dual step (line 6), the new ratio (line 7).

        ``primary`` ``(..., n)``, ``secondary`` ``(..., n, K-1)``,
        ``extra_log_weight`` ``(..., n)`` (lagged reference, eq. 11 times
        ``pi_lag / pi_ref``), ``probs`` ``(..., n)`` for tabular expectations.
        The lower bound is computed on ``Z = w * I_q`` split into
        ``num_minibatches`` groups (eq. 12); ``G_hat = E[w I_q]`` (eq. 10).

        ``weight_fn`` (optional) replaces the closed-form ratio of eq. (11):
        a map ``lambda -> w`` of self-normalised weights ``(..., n)`` (e.g. a
        ratio averaged over rows, or normalised per context); then
        ``primary`` and ``extra_log_weight`` must be None (fold them into
        ``weight_fn``) and ``secondary`` is what G_hat and LB average.

        ``estimate_weights`` (optional, ``(..., n)``, self-normalised) are the
        weights of line 5 instead of the ratio's: e.g. the label-free
        :func:`policy_estimate_weights` of the per-sample form (docs/design.md,
        MOPO 7). The returned ``weights`` (line 7, for cloning) are the ratio's.
        """
        if weight_fn is not None and (primary is not None or extra_log_weight is not None):
            raise ValueError("with `weight_fn`, pass primary=None and fold extra_log_weight into weight_fn")
        if weight_fn is None and primary is None:
            raise ValueError("MOPODual.step needs `primary` unless a `weight_fn` is given")

        def ratio(lam: Tensor) -> Tensor:  # line 7: w = rho_lambda / E[rho_lambda]
            if weight_fn is not None:
                return weight_fn(lam)
            return self._weights_at(lam, primary, secondary, extra_log_weight, probs)  # type: ignore[arg-type]

        with torch.no_grad():
            w = ratio(self.lam) if estimate_weights is None else estimate_weights
            estimate = constraint_estimate(w, secondary, probs).to(self.lam.dtype)  # G_hat, eq. (10)
            lb = self._lower_bound(w, secondary, probs, estimate)  # line 5
            self.lam = dual_step(self.lam, lb, self.threshold, self.lr_lambda, self.lam_max)  # line 6, eq. (13)
            new_w = ratio(self.lam)  # line 7
        return MOPOStepOutput(weights=new_w, estimate=estimate, lower_bound=lb, chi=self.chi, lam=self.lam)

    def _lower_bound(self, w: Tensor, secondary: Tensor, probs: Tensor | None, estimate: Tensor) -> Tensor:
        """Alg. 1 line 5: LB of ``Z = w I_q`` (eq. 12); updates chi. With eps = 0 and one group it is G_hat."""
        if self.eps <= 0 and self.num_minibatches == 1:
            return estimate
        z_m, p_m = _minibatches(w, secondary, probs, self.num_minibatches, self.lam.dtype)
        if self.eps <= 0:
            return _mean(z_m, p_m).mean(dim=-1)
        if self.chi_solver == "exact":
            lb, self.chi = lower_bound(z_m, self.eps, p_m)
            return lb
        self.chi = lower_bound_gradient_step(self.chi, z_m, self.eps, self.lr_chi, p_m)
        return torch.minimum(lower_bound_dual(self.chi, z_m, self.eps, p_m), _mean(z_m, p_m).mean(dim=-1))

    def state_dict(self) -> dict:
        return {"lam": self.lam.clone(), "chi": self.chi.clone(), "threshold": self.threshold.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.lam = state["lam"].clone()
        self.chi = state["chi"].clone()
        self.threshold = state["threshold"].clone()


def _expand_tau(tau: float | Tensor, like: Tensor) -> float | Tensor:
    if isinstance(tau, Tensor) and tau.dim() > 0:
        return tau.reshape(tau.shape + (1,) * (like.dim() - tau.dim()))
    return tau


def _minibatches(w: Tensor, secondary: Tensor, probs: Tensor | None, m: int,
                 dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor | None]:
    """``Z = w I_q`` as ``(..., K-1, m, n // m)`` mini-batches (eq. 12) and their renormalised probs, in ``dtype``."""
    z = (w.unsqueeze(-1) * secondary).movedim(-1, -2)  # (..., K-1, n)
    p = None if probs is None else probs.unsqueeze(-2).expand_as(z)
    if dtype is not None:
        z, p = z.to(dtype), (None if p is None else p.to(dtype))
    return _split(z, p, m)


def _split(z: Tensor, p: Tensor | None, m: int) -> tuple[Tensor, Tensor | None]:
    """Split the sample dimension into ``m`` equal mini-batches: ``(..., n) -> (..., m, n // m)``.

    With ``m > 1`` each group's probs are renormalised to sum to 1; a single
    group keeps the caller's distribution as given.
    """
    n = z.shape[-1]
    if m < 1 or n % m:
        raise ValueError(f"num_minibatches={m} must divide the batch size {n}")
    z = z.reshape(z.shape[:-1] + (m, n // m))
    if p is not None:
        p = p.reshape(p.shape[:-1] + (m, n // m))
        if m > 1:
            p = p / p.sum(dim=-1, keepdim=True)
    return z, p
