"""MOPO's adaptive threshold rules in one place (MOPO paper Alg. 1 line 10; docs/design.md, MOPO 7).

Every lag phase (every t0 steps) MOPO relaxes the threshold b of each secondary objective to
``b <- beta * (a value the previous policy attained)``. *Which* value is the rule; the trainer
(:class:`moalign.methods.mopo.trainer.MOPOTrainer`), the toy (:mod:`moalign.methods.mopo.toy_dual`) and the
bandit (:mod:`moalign.experiments.bandit`) all call :func:`next_threshold`, so that the published toy and bandit
figures test the trainer's rule.

The values a rule may need are costly (a lower bound over the data), so the caller passes them lazily: the
phase mean of the bound it checked, and a function ``reference_value(source)`` that evaluates the new lagged
reference with ``source`` in :data:`REFERENCE_SOURCES`. Only the value the rule scales is computed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from moalign.core.mopo import THRESHOLD_RULES, adaptive_threshold

Tensor = torch.Tensor

HYPOTHESIS_RULES = ("primary_winrate",)
"""Rules that are a hypothesis about the paper's figures, not a method: offered by the bandit only."""
ALL_THRESHOLD_RULES = (*THRESHOLD_RULES, *HYPOTHESIS_RULES)
REFERENCE_SOURCES = ("estimate", "lower_bound", "primary_estimate")
"""What ``reference_value(source)`` evaluates for the reference (the policy that becomes pi_lag): its
constraint estimate G_hat (eq. 10), the pessimistic lower bound of it (eq. 4/12, at w = 1), or its primary
objective's estimate F_hat (the ``primary_winrate`` hypothesis)."""
ReferenceValue = Callable[[str], Tensor]

__all__ = ["ALL_THRESHOLD_RULES", "HYPOTHESIS_RULES", "REFERENCE_SOURCES", "ReferenceValue", "next_threshold",
           "rule_source"]


def rule_source(rule: str, phase_mean_available: bool = True) -> str:
    """What ``rule`` scales: ``'phase_lower_bound'`` or one of :data:`REFERENCE_SOURCES`.

    ``'attained'`` scales the phase mean of the lower bound the dual step compared with b; before the first
    phase (b^(0), ``phase_mean_available=False``) there is none, and it uses the reference's lower bound.
    """
    if rule not in ALL_THRESHOLD_RULES:
        raise ValueError(f"threshold rule must be one of {ALL_THRESHOLD_RULES}, got {rule!r}")
    if rule == "attained":
        return "phase_lower_bound" if phase_mean_available else "lower_bound"
    return {"paper": "estimate", "lower_bound": "lower_bound", "primary_winrate": "primary_estimate"}[rule]


def next_threshold(rule: str, beta: float | Tensor, phase_lower_bound: Tensor | None = None,
                   reference_value: ReferenceValue | None = None) -> Tensor:
    """The threshold b for the next lag phase under ``rule`` (Alg. 1 line 10), ``beta * value``.

    * ``'attained'`` (our default, not in the paper): ``b <- beta * phase_lower_bound``, the mean over the
      phase just ended of the lower bound that the dual step compared with b (eq. 12 at the phase's
      iterates): the same estimator, pessimism and noise as the constraint it sets, so b never asks for more
      than was attained and lambda stays bounded (docs/bandit.md, docs/toy.md). Without a phase mean (the
      initial b^(0)): ``beta * reference_value('lower_bound')``.
    * ``'paper'``: ``b <- beta * G_hat`` of the reference (eq. 10; Alg. 1 line 10 as printed).
    * ``'lower_bound'``: ``b <- beta * LB`` of the reference at w = 1 (eq. 4; an earlier variant).
    * ``'primary_winrate'`` (a hypothesis about Figure 4, not in the paper): ``b <- beta * F_hat``, the
      reference's *primary* estimate.

    ``reference_value(source)`` evaluates the reference (see :data:`REFERENCE_SOURCES`); it is called at most
    once, and only when the rule needs it.
    """
    source = rule_source(rule, phase_lower_bound is not None)
    if source == "phase_lower_bound":
        return adaptive_threshold(phase_lower_bound, beta)
    if reference_value is None:
        raise ValueError(f"threshold rule {rule!r} needs reference_value (the reference's {source})")
    return adaptive_threshold(reference_value(source), beta)
