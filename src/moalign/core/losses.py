"""Preference losses used by the baselines.

``dpo_loss`` is the sigmoid DPO loss of Rafailov et al. (2023), eq. (7):
``-log sigma(beta * [(log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l))])``,
with the conservative label smoothing of cDPO as an option (as in TRL).

``modpo_loss`` is the MODPO loss of Zhou et al. (2023, arXiv 2310.03708, §3, the loss L_MODPO): DPO on the
preferences of one target objective k, with the other objectives' weighted reward differences as a margin
(docs/baselines.md, MODPO); ``modpo_target`` chooses k, for the trainer and the toy alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from moalign.core.precision import full_precision


@full_precision
def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-example sigmoid DPO loss and the implicit rewards.

    Returns ``(losses, chosen_rewards, rejected_rewards)``, each of shape
    ``(batch,)``; rewards are ``beta * (log pi - log pi_ref)`` detached.
    ``label_smoothing`` eps treats each label as flipped with probability eps.
    """
    logits = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    losses = -F.logsigmoid(beta * logits) * (1 - label_smoothing) - F.logsigmoid(-beta * logits) * label_smoothing
    chosen_rewards = beta * (policy_chosen_logps - reference_chosen_logps).detach()
    rejected_rewards = beta * (policy_rejected_logps - reference_rejected_logps).detach()
    return losses, chosen_rewards, rejected_rewards


@full_precision
def modpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    chosen_margin_rewards: torch.Tensor,
    rejected_margin_rewards: torch.Tensor,
    target_weight: float,
    margin_weights: torch.Tensor,
    beta: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-example MODPO loss (Zhou et al. 2023, arXiv 2310.03708, §3, L_MODPO) and the implicit rewards.

    For weights w on the simplex and the target objective k (whose preferences say y_w beats y_l), with the
    other objectives' rewards r_{-k} and their weights w_{-k}::

        r_hat(y) = (1 / w_k) * (beta * [log pi(y) - log pi_ref(y)] - w_{-k}^T r_{-k}(y))
        loss     = -log sigma(r_hat(y_w) - r_hat(y_l))
                 = -log sigma((1/w_k) * (beta * [(pi_w - ref_w) - (pi_l - ref_l)] - w_{-k}^T (r_{-k}(y_w) - r_{-k}(y_l))))

    r_hat is the target objective's reward recovered from the policy read as the collective reward
    ``w^T r = beta * log pi/pi_ref`` (the paper's reparameterisation; the reference code's ``modpo_loss``).
    With K = 1 (no other objective, w_k = 1) this is :func:`dpo_loss`.

    Args:
        policy_*_logps, reference_*_logps: ``(B,)`` sequence log-probs.
        chosen_margin_rewards, rejected_margin_rewards: ``(B, K-1)`` rewards of the other objectives.
        target_weight: w_k > 0.
        margin_weights: ``(K-1,)`` the other objectives' weights w_{-k}.

    Returns ``(losses, chosen_rewards, rejected_rewards)``, each ``(B,)``; the rewards are r_hat, detached.
    """
    if not target_weight > 0:
        raise ValueError(f"MODPO needs a positive weight on the target objective (1/w_k), got {target_weight}")
    margin_weights = torch.as_tensor(margin_weights, dtype=policy_chosen_logps.dtype,
                                     device=policy_chosen_logps.device)
    if chosen_margin_rewards.shape != rejected_margin_rewards.shape or chosen_margin_rewards.shape[-1:] != \
            margin_weights.shape:
        raise ValueError(f"margin rewards {tuple(chosen_margin_rewards.shape)} / "
                         f"{tuple(rejected_margin_rewards.shape)} must be (B, K-1) with K-1 = "
                         f"{margin_weights.numel()} weights")
    chosen = (beta * (policy_chosen_logps - reference_chosen_logps)
              - chosen_margin_rewards.to(margin_weights) @ margin_weights) / target_weight
    rejected = (beta * (policy_rejected_logps - reference_rejected_logps)
                - rejected_margin_rewards.to(margin_weights) @ margin_weights) / target_weight
    losses = -F.logsigmoid(chosen - rejected)
    return losses, chosen.detach(), rejected.detach()


def modpo_target(weights: Any, target: int | None = None) -> np.ndarray:
    """MODPO's target objective k for weight vectors ``weights`` ``(K,)`` or ``(M, K)``: index array ``()`` / ``(M,)``.

    L_MODPO (§3) fits the preferences of one objective k and takes the others as margins, scaled by ``1/w_k``;
    its optimum ``beta log pi/pi_ref = w^T r`` is the same for every k with ``w_k > 0``, so k only decides which
    labels are fitted and how large ``1/w_k`` gets. The paper fixes k by its data (the objective whose preference
    dataset the language-model stage fits; the reference scripts sweep that objective's weight), so:

    * ``target`` given (the trainer's ``target_objective``): that objective for every w (the paper's setting);
    * ``target`` None: the objective with the largest weight, ties to the lowest index -- always admissible
      (``w_k >= 1/K``, so ``1/w_k <= K``), on the whole simplex including its vertices (docs/baselines.md, MODPO).

    ``w_k = 0`` for the chosen k is an error (the loss divides by w_k).
    """
    w = np.asarray(weights, dtype=float)
    if w.ndim not in (1, 2) or w.shape[-1] < 1:
        raise ValueError(f"weights must have shape (K,) or (M, K), got {w.shape}")
    if target is None:
        k = np.argmax(w, axis=-1)  # the first index among equal maxima
    else:
        if not 0 <= target < w.shape[-1]:
            raise ValueError(f"target objective {target} is not an index of {w.shape[-1]} objectives")
        k = np.full(w.shape[:-1], target, dtype=np.int64)
    chosen = np.take_along_axis(w, np.asarray(k)[..., None], axis=-1)[..., 0]
    if np.any(~(chosen > 0)):
        raise ValueError(f"weights {w.tolist()}: the target objective (index {target}) has weight 0; MODPO divides "
                         "by w_k, choose another target (one with w_k > 0)")
    return k
