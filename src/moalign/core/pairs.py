"""Pair labels from weighted rewards (MO-ODPO paper eqs. 1-2), written once for the trainer and the toy.

For a weight vector w and two responses with reward vectors r_1, r_2, the scalarised scores are
``s_i = sum_k w_k r_ik`` (eq. 1) and y_1 is preferred when ``s_1 > s_2`` (eq. 2). Eq. 2 as printed gives a tie
to y_2; a tie carries no preference, so by default it is left out of the loss instead (``tie_rule='skip'``;
docs/design.md, MO-ODPO). Used by :class:`moalign.methods.mo_odpo.trainer.MOODPOTrainer` (torch tensors) and
the toy's online methods (:mod:`moalign.experiments.toy_online`, numpy arrays): the function is written with
operations both array types share.
"""

from __future__ import annotations

from typing import Any

TIE_RULES = ("skip", "second")

__all__ = ["TIE_RULES", "weighted_pair_labels"]


def weighted_pair_labels(rewards_1: Any, rewards_2: Any, weights: Any, tie_rule: str = "skip",
                         tie_tolerance: float = 0.0) -> tuple[Any, Any, Any, Any]:
    """Eqs. 1-2: ``(first_wins, used, s_1, s_2)`` for pairs with ``(..., K)`` rewards and weights.

    ``s_i = sum_k w_k r_ik``; y_1 wins when ``s_1 > s_2`` by more than ``tie_tolerance``. A tie
    (``|s_1 - s_2| <= tie_tolerance``) is not used (``tie_rule='skip'``) or goes to y_2 (``'second'``, eq. 2
    as written: ``first_wins`` False, ``used`` True). Works on torch tensors and numpy arrays alike.
    """
    if tie_rule not in TIE_RULES:
        raise ValueError(f"tie_rule must be one of {TIE_RULES}, got {tie_rule!r}")
    s1, s2 = (rewards_1 * weights).sum(-1), (rewards_2 * weights).sum(-1)
    tie = abs(s1 - s2) <= tie_tolerance
    first_wins = (s1 > s2) & ~tie
    used = ~tie if tie_rule == "skip" else tie | ~tie
    return first_wins, used, s1, s2
