"""The toy problem's own baselines (MOPO paper §2 / App. A.1): the COP oracle and DPO on single-label data.

They are no training methods of the registry: the COP oracle knows the true rewards, and DPO on D1, D2, DJ and
D_C(w) is the paper's reference for what single-objective preference data gives.

* :func:`cop_oracle` -- ``pi(x) = argmax_y r1(x, y) s.t. r2(x, y) >= b`` per context on
  the action grid, from the true rewards (the paper's oracle, b a per-context
  threshold as printed), and a variant whose threshold is relative to the
  context's best ``r2``.
* :func:`train_dpo` -- DPO (``moalign.core.losses.dpo_loss``, uniform reference)
  on D1, D2, DJ and D_C(w) for every w, all seeds, as one batch of networks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from moalign.core.losses import dpo_loss
from moalign.experiments.toy_policy import BatchedPolicy
from moalign.experiments.toy_problem import (
    NUM_CONTEXTS,
    ToyPreferenceData,
    action_grid,
    context_grid,
    nearest_node,
    reward_tables,
)


# --------------------------------------------------------------------------- COP oracle
def cop_oracle(reward_set: str, thresholds: np.ndarray, num_actions: int, num_contexts: int = 201,
               relative: bool = False) -> np.ndarray:
    """Deterministic COP policies on the grids, one per threshold: ``(len(b), X, A)`` one-hot arrays.

    Per context: the action with the largest ``r1`` among those with
    ``r2 >= b`` (``relative``: ``r2 >= max_y r2(x, y) - b``). Where no action
    is feasible the policy takes the action with the largest ``r2`` (the least
    violation). Ties go to the larger ``r2``.
    """
    table = reward_tables(reward_set, context_grid(num_contexts), action_grid(num_actions))  # (2, X, A)
    r1, r2 = table
    b = np.asarray(thresholds, float).reshape(-1, 1, 1)
    bound = (r2.max(-1, keepdims=True) - b) if relative else b
    feasible = r2[None] >= bound - 1e-12
    score = np.where(feasible, r1[None] + 1e-9 * r2[None], -np.inf)
    choice = np.where(feasible.any(-1), score.argmax(-1), r2.argmax(-1)[None])  # (B, X)
    return np.eye(num_actions)[choice]


def cop_threshold_range(reward_set: str, num_actions: int, num_contexts: int = 201,
                        relative: bool = False) -> tuple[float, float]:
    """The thresholds between the r1-optimal policy (slack) and the r2-optimal one, over all contexts."""
    r1, r2 = reward_tables(reward_set, context_grid(num_contexts), action_grid(num_actions))
    rows = np.arange(r1.shape[0])
    at_r1_best = r2[rows, r1.argmax(-1)]
    if relative:
        return 0.0, float((r2.max(-1) - at_r1_best).max())
    return float(at_r1_best.min()), float(r2.max())


# --------------------------------------------------------------------------- DPO
@dataclass
class DPOSettings:
    beta: float
    steps: int
    batch_size: int
    learning_rate: float
    hidden: int


DPO_FIXED = ("D1", "D2", "DJ")


def dpo_datasets(data: ToyPreferenceData) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The DPO datasets: names, labels of D1, D2, DJ ``(N, 3)`` (True: y > y'), and DJ's rows ``(N,)``.

    D1 has the r1 labels, D2 the r2 labels, DJ the r1 label on the rows where
    both labels coincide; D_C(w) for every weight of ``data.combined_weights``
    are the columns of ``data.combined`` (names ``DC(w=...)`` follow D1, D2, DJ).
    """
    names = list(DPO_FIXED) + [f"DC(w={w:g})" for w in data.combined_weights]
    fixed = np.empty((len(data), 3), dtype=bool)
    fixed[:, 0] = data.labels[:, 0] > 0.5
    fixed[:, 1] = data.labels[:, 1] > 0.5
    fixed[:, 2] = fixed[:, 0]
    return names, fixed, fixed[:, 0] == fixed[:, 1]


def train_dpo(datasets: list[ToyPreferenceData], num_actions: int, settings: DPOSettings, seeds: list[int],
              num_contexts: int = 201, progress: bool = True) -> tuple[list[str], np.ndarray]:
    """DPO on every dataset of every seed; returns dataset names and probabilities ``(S, D, 201, A)``.

    Training uses ``num_contexts`` context nodes (each row's x rounded to the
    nearest); the returned policies are evaluated on the 201-node grid.

    The reference is the uniform density (log-density 0), so the DPO log-ratio
    of a response is the policy's log-density in its cell. Mini-batches of
    ``batch_size`` rows are drawn with replacement (one index draw per seed,
    shared by that seed's datasets; DJ averages over its rows in the batch).
    """
    x_nodes = torch.as_tensor(context_grid(num_contexts))
    per_seed = [dpo_datasets(d) for d in datasets]
    names = per_seed[0][0]
    s, d = len(datasets), len(names)
    node = torch.stack([torch.as_tensor(nearest_node(dd.x, num_contexts)) for dd in datasets])  # (S, N)
    first = torch.stack([torch.as_tensor(nearest_node(dd.y, num_actions)) for dd in datasets])
    second = torch.stack([torch.as_tensor(nearest_node(dd.y_other, num_actions)) for dd in datasets])
    fixed = [torch.from_numpy(p[1]) for p in per_seed]  # per seed (N, 3) bool: rows contiguous
    combined = [torch.from_numpy(dd.combined) for dd in datasets]  # per seed (N, K) bool
    joint = names.index("DJ")
    agree = torch.stack([torch.from_numpy(p[2]) for p in per_seed]).float()  # (S, N) rows kept in DJ
    gen = torch.Generator().manual_seed(int(seeds[0]) * 7919 + 17)
    policy = BatchedPolicy(s * d, num_actions, settings.hidden, generator=gen)
    opt = torch.optim.Adam(policy.parameters(), lr=settings.learning_rate)
    n_rows = node.shape[1]
    zero = torch.zeros(())
    for _ in tqdm(range(settings.steps), desc="DPO", disable=not progress, leave=False):
        idx = torch.randint(n_rows, (s, settings.batch_size), generator=gen)
        g = node.gather(1, idx)  # (S, B)
        cell_a = (g * num_actions + first.gather(1, idx))[:, None, :].expand(s, d, -1).contiguous()
        cell_b = (g * num_actions + second.gather(1, idx))[:, None, :].expand(s, d, -1).contiguous()
        lab = torch.stack([torch.cat([f[i], c[i]], dim=-1) for f, c, i in zip(fixed, combined, idx)])
        lab = lab.transpose(1, 2)  # (S, D, B): True where y > y'
        log_density = policy.log_density(x_nodes).reshape(s, d, -1)  # (S, D, X*A)
        logp_a, logp_b = log_density.gather(2, cell_a), log_density.gather(2, cell_b)
        losses, _, _ = dpo_loss(torch.where(lab, logp_a, logp_b), torch.where(lab, logp_b, logp_a), zero, zero,
                                beta=settings.beta)
        m = torch.ones_like(losses)
        m[:, joint] = agree.gather(1, idx)
        loss = ((losses * m).sum(-1) / m.sum(-1).clamp_min(1.0)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    probs = policy.probabilities(context_grid(NUM_CONTEXTS)).reshape(s, d, NUM_CONTEXTS, num_actions)
    return names, probs


