"""MOPO's weighted behaviour cloning (MOPO paper eq. 13, Alg. 1 line 8), written once.

The closed-form policy ``pi*(y|x) ∝ pi_lag(y|x) w(x, y)`` (eq. 7/11) is projected onto the parametric policy
by maximising the weighted log-likelihood of the data under the (detached) weights w:

    L(theta) = - sum_i p_i w_i log pi_theta(y_i | x_i)

with p_i the probability of row i (1/n for a batch of n equally likely rows). The trainer calls it on a
batch of sequences, the toy on its tabular cells (p_i w_i summed per cell), and the bandit, which runs without
autograd, uses its closed-form gradient with respect to softmax logits.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor

__all__ = ["behaviour_cloning_loss", "behaviour_cloning_logit_gradient"]


def behaviour_cloning_loss(log_probs: Tensor, target: Tensor, reduction: str = "sum") -> Tensor:
    """Eq. (13): ``-sum(target * log_probs)`` (``'sum'``) or ``-mean(target * log_probs)`` (``'mean'``), a scalar.

    ``'sum'``: ``target`` already carries the rows' probabilities, ``target_i = p_i w_i`` (the toy's cells, the
    bandit's ``pi_lag * w``). ``'mean'``: ``target`` is the weight ``w_i`` of each of n equally likely rows
    (the trainer's batch), i.e. ``p_i = 1/n``. Leading dimensions of independent problems are summed (their
    gradients stay separate). The target is used as given: detach it when it depends on the parameters.
    """
    if reduction == "sum":
        return -(target * log_probs).sum()
    if reduction == "mean":
        return -(target * log_probs).mean()
    raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")


def behaviour_cloning_logit_gradient(logits: Tensor, target: Tensor) -> Tensor:
    """Gradient of :func:`behaviour_cloning_loss` (``'sum'``) of ``log_softmax(logits)`` w.r.t. ``logits``.

    ``d/dpsi [- sum_y t(y) log softmax(psi)_y] = softmax(psi) * sum_y t(y) - t``, which is
    ``softmax(psi) - t`` for a target distribution (``sum_y t(y) = 1`` over the last dimension, as
    ``pi_lag * w`` with self-normalised w is): the form computed here, for tabular policies updated
    without an autograd graph (e.g. under ``torch.inference_mode``).
    """
    return torch.softmax(logits, dim=-1) - target
