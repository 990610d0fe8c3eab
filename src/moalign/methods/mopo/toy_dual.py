"""MOPO's dual on the toy problem: threshold rules, per-phase records, the estimate vs the truth.

:class:`DualTracker` is driven by :func:`moalign.methods.mopo.toy.train_mopo`, once per
step and once per lag phase (Alg. 1 lines 9-11). Everything is batched over the (seed, primary, b)
runs, MOPODual's leading dimensions ``(S, P, K)``.

* **Threshold rules** (docs/design.md, MOPO 7): ``'fixed'`` (b stays at its sweep value: the COP
  of eq. 1 with a lagged reference, how the toy traces a front), or an adaptive rule applied by
  core's :func:`~moalign.core.thresholds.next_threshold`, the trainer's function: ``'attained'``
  (b <- beta * the phase's mean of the lower bound the dual step checked), ``'paper'`` (b <- beta *
  G_hat of the new reference, Alg. 1 line 10) and ``'lower_bound'`` (b <- beta * LB of the new
  reference). With fixed b the sweep value is b throughout; with an adaptive rule it is b^(0).
* **Truth.** On the toy the true win rate of every (context node, action) cell is known
  (:func:`moalign.experiments.toy_problem.true_win_rates`), so the true secondary value of a policy
  is ``G*(pi) = sum_g m(g) sum_a pi(a | g) P*_q(g, a)``. Each step records the two estimates of
  eq. (10) -- ``G_row = E_data[w I_q]`` with the ratio's own weights (the printed estimate; per-row
  labels in the ``sample_row`` form) and ``G_policy = E_data[w~ I_q]`` with the label-free weights
  ``w~ = clip(pi_theta / mu)`` (core's :func:`policy_estimate_weights`) -- and the truths of the two
  policies they estimate: the ratio's target ``pi_w(a | g) = E_data[w | g, a] mu(a | g)`` (what
  line 8 clones) and the network ``pi_theta``.
"""

from __future__ import annotations

import numpy as np
import torch

from moalign.core.mopo import MOPODual, MOPOStepOutput, constraint_estimate, constraint_value
from moalign.core.thresholds import next_threshold

TOY_THRESHOLD_RULES = ("fixed", "attained", "paper", "lower_bound")
TOY_CONSTRAINT_ESTIMATORS = ("row", "policy")
PHASE_KEYS = ("lambda", "threshold", "G_hat", "lower_bound", "G_true_policy", "G_true_target")
"""Per lag phase (at its end): lambda, the b in force during the phase, the phase means of the estimate
and lower bound the dual step compared with b, the true secondary value of pi_theta at the phase's end and
the phase mean of the true value of the ratio's target."""
ERRORS = {"row_vs_target": ("G_row", "true_target"), "row_vs_policy": ("G_row", "true_policy"),
          "policy_vs_policy": ("G_policy", "true_policy")}
"""Estimate - truth pairs tracked at every step: the printed estimate against its own target policy
and against the network, and the policy estimate against the network."""


class DualTracker:
    """Per-step and per-phase bookkeeping of MOPO's dual for the toy, and the adaptive thresholds.

    ``secondary (S, P, 1, n, 1)`` and ``mass (S, 1, 1, n)`` are what G_hat averages (train_mopo's
    units); ``true_rates (P, G, A)`` the true win rate of each primary's secondary objective per
    cell (None: no truth tracked); ``repeat`` units per (g, a) cell.
    """

    def __init__(self, dual: MOPODual, secondary: torch.Tensor, mass: torch.Tensor, true_rates: torch.Tensor | None,
                 rule: str, beta: float, shape: tuple[int, ...], repeat: int):
        if rule not in TOY_THRESHOLD_RULES:
            raise ValueError(f"threshold rule must be one of {TOY_THRESHOLD_RULES}, got {rule!r}")
        self.dual, self.secondary, self.mass, self.rule, self.beta = dual, secondary, mass, rule, beta
        self.shape, self.repeat = shape, repeat  # (S, P, K, G, A)
        s, _, _, g, a = shape
        self.cell_mass = mass.reshape(s, 1, 1, g, a, repeat).sum(-1)  # (S, 1, 1, G, A)
        self.context_mass = self.cell_mass.sum(-1)  # (S, 1, 1, G)
        self.truth = None if true_rates is None else true_rates.to(torch.float32)[None, :, None]  # (1, P, 1, G, A)
        zeros = torch.zeros(shape[:3], dtype=torch.float64)
        self.lam_max = zeros.clone()
        self.steps = 0
        self.err_sum = {k: zeros.clone() for k in ERRORS}
        self.err_abs = {k: zeros.clone() for k in ERRORS}
        self.err_max = {k: zeros.clone() for k in ERRORS}
        self.last: dict[str, torch.Tensor] = {}
        self._phase_sum = {k: zeros.clone() for k in ("G_hat", "lower_bound", "G_true_target")}
        self._phase_count = 0
        self.phases: dict[str, list[torch.Tensor]] = {k: [] for k in PHASE_KEYS}

    def true_value(self, pi: torch.Tensor) -> torch.Tensor:
        """``G*(pi) = sum_g m(g) sum_a pi(a | g) P*_q(g, a)`` for ``pi (S, P, K, G, A)``: ``(S, P, K)``."""
        return (self.context_mass * (pi * self.truth).sum(-1)).sum(-1).double()

    @torch.no_grad()
    def step(self, out: MOPOStepOutput, ratio_weights: torch.Tensor, policy_weights: torch.Tensor,
             log_pi: torch.Tensor) -> None:
        """After one dual step: ``ratio_weights`` the ratio's weights the step started from, ``policy_weights`` the
        label-free ones of ``log_pi`` (pi_theta before its BC update), ``(S, P, K, n)``."""
        self.steps += 1
        self.lam_max = torch.maximum(self.lam_max, self.dual.lam[..., 0])
        self._phase_sum["G_hat"] += out.estimate[..., 0].double()
        self._phase_sum["lower_bound"] += out.lower_bound[..., 0].double()
        self._phase_count += 1
        if self.truth is None:
            return
        s, p, k, g, a = self.shape
        target = (ratio_weights * self.mass).reshape(s, p, k, g, a, self.repeat).sum(-1)  # pi_w(a|g) m(g)
        values = {
            "G_row": constraint_estimate(ratio_weights, self.secondary, self.mass)[..., 0].double(),
            "G_policy": constraint_estimate(policy_weights, self.secondary, self.mass)[..., 0].double(),
            "true_target": (target * self.truth).sum((-1, -2)).double(),
            "true_policy": self.true_value(log_pi.exp()),
        }
        self._phase_sum["G_true_target"] += values["true_target"]
        for name, (est, truth) in ERRORS.items():
            err = values[est] - values[truth]
            self.err_sum[name] += err
            self.err_abs[name] += err.abs()
            self.err_max[name] = torch.maximum(self.err_max[name], err.abs())
        self.last = values

    @torch.no_grad()
    def end_phase(self, log_pi: torch.Tensor, standstill_weights: torch.Tensor, adapt: bool = True) -> None:
        """Alg. 1 lines 9-10 after the phase's last step: record it, then set b by the rule.

        ``log_pi`` is the new reference (pi_theta now), ``standstill_weights (S, P, K, n)`` its own
        weights at w = 1 (label-free, so the same under either estimator). ``adapt=False`` (a warm-up
        phase) keeps b.
        """
        n = max(self._phase_count, 1)
        means = {key: value / n for key, value in self._phase_sum.items()}
        record = {"lambda": self.dual.lam[..., 0].clone(), "threshold": self.dual.threshold[..., 0].clone(),
                  "G_hat": means["G_hat"], "lower_bound": means["lower_bound"],
                  "G_true_policy": (self.true_value(log_pi.exp()) if self.truth is not None
                                    else torch.full_like(means["G_hat"], float("nan"))),
                  "G_true_target": means["G_true_target"] if self.truth is not None
                  else torch.full_like(means["G_hat"], float("nan"))}
        for key in PHASE_KEYS:
            self.phases[key].append(record[key])
        eps = self.dual.eps
        if adapt and self.rule != "fixed":  # the trainer's rule (core.thresholds.next_threshold)

            def reference_value(source: str) -> torch.Tensor:  # the new reference at w = 1 (its own weights)
                return constraint_value(self.secondary, source, eps, weights=standstill_weights,
                                        probs=self.mass).double()

            self.dual.threshold = next_threshold(self.rule, self.beta, means["lower_bound"][..., None],
                                                 reference_value)
        for value in self._phase_sum.values():
            value.zero_()
        self._phase_count = 0

    def report(self) -> dict:
        """NumPy arrays over the runs ``(S, P, K)``: lambda (final, max), b (final), per-phase records
        ``phases[key] (S, P, K, phases)``, and per error of :data:`ERRORS` its mean, mean |.| and max |.|
        over the steps (NaN without truth)."""
        out = {"lambda_final": self.dual.lam[..., 0].numpy().copy(), "lambda_max": self.lam_max.numpy().copy(),
               "threshold_final": self.dual.threshold[..., 0].numpy().copy(),
               "phases": {key: (torch.stack(v, -1).numpy() if v else np.zeros(self.shape[:3] + (0,)))
                          for key, v in self.phases.items()}}
        n = max(self.steps, 1)
        nan = np.full(self.shape[:3], np.nan)
        out["errors"] = {name: {"mean": (self.err_sum[name] / n).numpy() if self.truth is not None else nan,
                                "mean_abs": (self.err_abs[name] / n).numpy() if self.truth is not None else nan,
                                "max_abs": self.err_max[name].numpy() if self.truth is not None else nan}
                         for name in ERRORS}
        out["final"] = {key: value.numpy() for key, value in self.last.items()}
        return out


def _r(values: np.ndarray) -> list:
    return np.round(np.asarray(values, float), 6).tolist()


def mopo_dual_report(report: dict, thresholds: torch.Tensor, primaries: list[int], seeds: list[int],
                     lag_steps: int, settings: dict) -> dict:
    """The JSON record ``mopo_dual`` of run_toy: one entry per (seed, primary, b^(0)) run, plus a summary.

    Each run: ``b_initial`` (the sweep value), ``lambda_final``/``lambda_max`` (over every step),
    ``threshold_final``, ``phases`` (per lag phase, :data:`PHASE_KEYS`), ``errors`` (estimate - truth over
    the steps, :data:`ERRORS`: mean, mean |.|, max |.|) and ``final`` (last step's estimates and truths).
    ``summary``: per primary, the largest final and maximum lambda over the runs, and the errors averaged
    over the runs.
    """
    runs, summary = [], {}
    for pi, primary in enumerate(primaries):
        name = f"r{primary + 1}"
        summary[name] = {"lambda_final_max": float(report["lambda_final"][:, pi].max()),
                         "lambda_max_max": float(report["lambda_max"][:, pi].max()),
                         "errors": {e: {stat: float(np.mean(v[stat][:, pi])) if stat != "max_abs"
                                        else float(np.max(v[stat][:, pi])) for stat in v}
                                    for e, v in report["errors"].items()}}
        for si, seed in enumerate(seeds):
            for ki in range(thresholds.shape[-1]):
                idx = (si, pi, ki)
                runs.append({"seed": seed, "primary": name, "secondary": f"r{2 - primary}",
                             "b_initial": float(thresholds[idx]),
                             "lambda_final": float(report["lambda_final"][idx]),
                             "lambda_max": float(report["lambda_max"][idx]),
                             "threshold_final": float(report["threshold_final"][idx]),
                             "phases": {key: _r(v[idx]) for key, v in report["phases"].items()},
                             "errors": {e: {stat: float(a[idx]) for stat, a in v.items()}
                                        for e, v in report["errors"].items()},
                             "final": {key: float(v[idx]) for key, v in report["final"].items()}})
    return {"note": "MOPO's dual per (seed, primary, b_initial) run. b_initial is the sweep value (b "
                    "throughout under threshold_rule 'fixed', b^(0) under an adaptive rule). phases[key][j]: at the "
                    "end of lag phase j (steps phase_steps[j]): lambda, the b in force, the phase means of G_hat and "
                    "LB the dual step compared with b, the true secondary win rate of pi_theta (G_true_policy) and "
                    "the phase mean of that of the ratio's target (G_true_target). errors: estimate - truth over "
                    "every step: row_vs_target = the ratio-weighted estimate vs its target policy, row_vs_policy = "
                    "the same vs pi_theta, policy_vs_policy = the label-free clip(pi_theta/mu) estimate vs pi_theta.",
            **settings, "phase_steps": [(j + 1) * lag_steps for j in range(report["phases"]["lambda"].shape[-1])],
            "runs": runs, "summary": summary}
