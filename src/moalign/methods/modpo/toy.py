"""MODPO (Zhou et al. 2023, arXiv 2310.03708) on the continuous toy problem.

Offline, on the toy's pairwise rows ``(x, y, y', I1, I2)`` (``toy_problem.sample_preference_data``; the
rows DPO and MOPO use), one policy per weight vector ``w = (w_1, w_2)``:

* target objective ``k = argmax_j w_j`` (ties: objective 1; ``core.losses.modpo_target``, the trainer's default
  rule) -- its BT labels ``I_k`` say which response
  wins; the other objective ``o`` enters as a margin from its TRUE reward ``r_o`` (eq. 15, raw: the
  labels were drawn from ``sigma(r_k(y) - r_k(y'))``, so the raw rewards are on the labels' scale);
* loss ``L_MODPO = -log sigma((1/w_k) (beta [h(y_w) - h(y_l)] - w_o [r_o(y_w) - r_o(y_l)]))``
  (MODPO §3; ``moalign.core.losses.modpo_loss``), ``h = log pi - log pi_ref`` with the uniform
  reference as for the toy's DPO, so ``h`` is the policy's log-density of the response's cell.
  Its optimum is ``beta h = w_k r_k + w_o r_o``, the weighted-sum reward on the BT scale.

Choosing the larger weight as the target keeps ``1/w_k <= 2``; with ``w = (1, 0)`` the margin term
vanishes and the loss is DPO on objective 1's labels (tested). The policies are the toy's
:class:`~moalign.experiments.toy_policy.BatchedPolicy` (one MLP on x per w), trained like the DPO
baselines (same steps, batch, learning rate, 101 training context nodes). :func:`run_toy` is MODPO's entry in
``moalign synthetic toy`` (one of the online family's weight grids: :mod:`moalign.experiments.toy_odpo_run`).
"""

from __future__ import annotations

import numpy as np
import torch

from moalign.core.losses import modpo_loss, modpo_target
from moalign.experiments.toy_odpo_run import ODPOToySettings, run_weighted_method
from moalign.experiments.toy_policy import BatchedPolicy
from moalign.experiments.toy_problem import (
    NUM_CONTEXTS,
    ToyPreferenceData,
    context_grid,
    nearest_node,
    reward_functions,
)
from moalign.experiments.toy_run import ToyRun


def modpo_terms(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per weight vector: target objective index, its weight ``w_k`` and the margin weight ``w_o``.

    The target is :func:`moalign.core.losses.modpo_target` without a named objective (the trainer's default):
    the larger weight, ties to objective 1.
    """
    weights = np.asarray(weights, float)
    target = modpo_target(weights)
    rows = np.arange(len(weights))
    return target, weights[rows, target], weights[rows, 1 - target]


def modpo_batch_loss(logp_first: torch.Tensor, logp_second: torch.Tensor, first_wins: torch.Tensor,
                     margin_first: torch.Tensor, margin_second: torch.Tensor, target_weight: torch.Tensor,
                     margin_weight: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-row MODPO losses ``(M, B)`` for M policies with their own ``w`` (``target_weight``, ``margin_weight``: (M,)).

    Calls :func:`moalign.core.losses.modpo_loss` once for all M through the identity
    ``(1/w_k)(beta dh - w_o dr) = beta (dh / w_k) - (w_o / w_k) dr``: log-ratios divided by ``w_k``,
    margins multiplied by ``w_o / w_k``, ``target_weight = 1``, margin weight 1 (the reference is uniform,
    so the reference log-probs are 0).
    """
    tw = target_weight.to(logp_first.dtype)[:, None]
    mw = (margin_weight / target_weight).to(logp_first.dtype)[:, None]
    chosen = torch.where(first_wins, logp_first, logp_second) / tw
    rejected = torch.where(first_wins, logp_second, logp_first) / tw
    m_c = torch.where(first_wins, margin_first, margin_second).to(logp_first.dtype) * mw
    m_r = torch.where(first_wins, margin_second, margin_first).to(logp_first.dtype) * mw
    zero = torch.zeros((), dtype=logp_first.dtype)
    losses, _, _ = modpo_loss(chosen, rejected, zero, zero, m_c[..., None], m_r[..., None], 1.0,
                              torch.ones(1, dtype=logp_first.dtype), beta=beta)
    return losses


def train_modpo(data: ToyPreferenceData, reward_set: str, weights: np.ndarray, num_actions: int, beta: float,
                steps: int, batch_size: int, learning_rate: float, hidden: int, seed: int,
                num_contexts: int = 101) -> np.ndarray:
    """MODPO for every row of ``weights (W, 2)`` on one seed's rows; returns probabilities ``(W, 201, A)``."""
    target, tw, mw = modpo_terms(weights)
    n_w = len(weights)
    node = torch.as_tensor(nearest_node(data.x, num_contexts))
    cells = [torch.as_tensor(nearest_node(v, num_actions)) for v in (data.y, data.y_other)]
    # true rewards of both responses, (N,) each: r1(y), r1(y'), r2(y), r2(y')
    rewards = [torch.as_tensor(f(data.x, v), dtype=torch.float32) for f in reward_functions(reward_set)
               for v in (data.y, data.y_other)]
    labels = torch.as_tensor(data.labels > 0.5)  # (N, 2)
    target_t = torch.as_tensor(target)
    margin_is_r2 = (target_t == 0)[:, None]  # the margin is the OTHER objective's reward
    x_nodes = torch.as_tensor(context_grid(num_contexts))
    gen = torch.Generator().manual_seed(int(seed) * 7919 + 41)
    policy = BatchedPolicy(n_w, num_actions, hidden, generator=gen)
    opt = torch.optim.Adam(policy.parameters(), lr=learning_rate)
    tw_t, mw_t = torch.as_tensor(tw, dtype=torch.float32), torch.as_tensor(mw, dtype=torch.float32)
    for _ in range(steps):
        idx = torch.randint(len(data), (batch_size,), generator=gen)  # one draw shared by the W policies
        g = node[idx]
        log_density = policy.log_density(x_nodes).reshape(n_w, -1)  # (M, X*A)
        lp1 = log_density[:, g * num_actions + cells[0][idx]]
        lp2 = log_density[:, g * num_actions + cells[1][idx]]
        margin_first = torch.where(margin_is_r2, rewards[2][idx][None], rewards[0][idx][None])  # (M, B)
        margin_second = torch.where(margin_is_r2, rewards[3][idx][None], rewards[1][idx][None])
        wins = labels[idx].T[target_t]  # (M, B): the target objective's BT label (True: y > y')
        losses = modpo_batch_loss(lp1, lp2, wins, margin_first, margin_second, tw_t, mw_t, beta)
        opt.zero_grad()
        losses.mean(-1).sum().backward()
        opt.step()
    return policy.probabilities(context_grid(NUM_CONTEXTS))


def run_toy(run: ToyRun) -> None:
    """MODPO for every seed on the seed's pairwise rows: one policy per weight vector of the grids, each recording
    its target objective."""
    cfg = run.cfg

    def train(s: ODPOToySettings, index: int, seed: int, weights: np.ndarray) -> np.ndarray:
        # the seed's pairwise rows: the same (x, y, y', I1, I2) as DPO/MOPO draw from default_rng(seed)
        data = run.pairwise_rows(index)
        return train_modpo(data, cfg.set, weights, cfg.num_actions, s.modpo_beta, s.modpo_steps, s.modpo_batch_size,
                           s.modpo_learning_rate, cfg.hidden, seed, cfg.train_contexts)

    def targets(weights: np.ndarray) -> list[dict]:
        return [{"target_objective": f"r{k + 1}"} for k in modpo_terms(weights)[0]]

    run_weighted_method(run, "modpo", "MODPO", train, targets)
