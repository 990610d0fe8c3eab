"""Online methods on the continuous toy problem: MO-ODPO, P-MORL and the soups' specialists.

MO-ODPO (mo-odpo-paper, arXiv 2503.00295, Algorithm 1, §3.2-3.4) on the toy of mopo-paper §2 / App. A.1:

* **Policy** (:class:`CondPolicy`): a small MLP per model, input ``(2x - 1, 2 w_1 - 1)`` (the conditioned
  input ``x' = p + x`` of §3.3; for K = 2 the weight vector is ``(w_1, 1 - w_1)``), output logits over the
  action grid ``y = linspace(0, 1, A)``, ``pi(a | x, w) = softmax_a(MLP_a + log mu_a)`` with ``mu`` the cell
  widths; the output layer starts at zero, so the initial policy -- the anchor ``pi_theta0`` -- is the
  uniform density for every ``(x, w)``. Unconditioned policies (the soups' specialists) take ``2x - 1`` only.
* **Weights** (§3.2): per sample ``w ~ Dirichlet(alpha)`` quantised to one decimal
  (:func:`moalign.data.conditioning.sample_quantized_dirichlet`), so training sees the 11 grid values.
* **Pairs** (§3.4): two actions ``a_1, a_2 ~ pi(. | x, w)`` from the current policy; each scored by the
  TRUE reward functions of eq. (15), normalised per objective to [0, 1] by their min and max over the
  201 x 51 evaluation grid (the paper: "reward scores linearly scaled roughly to [0, 1]");
  ``s_i = sum_k w_k r~_k(x, y_{a_i})`` (eq. 1); the pair is labelled by ``s_1 > s_2``
  (deterministic, as Alg. 1). Ties (``s_1 = s_2``: in practice ``a_1 = a_2``, whose DPO gradient is 0
  anyway) are dropped from the mean.
* **Loss**: DPO (mo-odpo-paper eq. 3 = ``moalign.core.losses.dpo_loss``) against the fixed anchor
  (the initial policy).

P-MORL (the MO-ODPO paper's prompt-conditioned RL baseline): the same policy, the same ``(x, w)``
samples and scores, RLOO (REINFORCE with the leave-one-out baseline) on ``s = w^T r~``, plus an exact
``kl_coef * KL(pi(. | x, w) || anchor)`` over the action grid.

Specialists of the soups: the same loops with an unconditioned policy and a fixed one-hot ``w``
(RLOO: Rewarded Soups; online DPO: ODPO Soups); ``toy_soups`` interpolates them.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch

from moalign.core.losses import dpo_loss
from moalign.core.normalization import fit_normalization, normalize
from moalign.core.pairs import weighted_pair_labels
from moalign.data.conditioning import sample_quantized_dirichlet
from moalign.experiments.toy_problem import (
    NUM_CONTEXTS,
    action_grid,
    cell_widths,
    context_grid,
    reward_functions,
    reward_tables,
)


class CondPolicy(torch.nn.Module):
    """``M`` MLPs ``features -> A`` logits (two tanh layers), features ``(2x - 1[, 2 w_1 - 1])``.

    Parameters are stacked over models (``w1: (M, in, H)`` ...), so one Adam over them is ``M`` independent
    optimisers; :func:`cond_log_probs` evaluates any stack of parameters (the soups' interpolations).
    """

    NAMES = ("w1", "b1", "w2", "b2", "w3", "b3")

    def __init__(self, num_models: int, num_actions: int, in_dim: int, hidden: int = 32,
                 generator: torch.Generator | None = None):
        super().__init__()
        m, h, a = num_models, hidden, num_actions
        self.w1 = torch.nn.Parameter(torch.randn(m, in_dim, h, generator=generator))
        self.b1 = torch.nn.Parameter(torch.rand(m, 1, h, generator=generator) * 2.0 - 1.0)
        self.w2 = torch.nn.Parameter(torch.randn(m, h, h, generator=generator) / math.sqrt(h))
        self.b2 = torch.nn.Parameter(torch.zeros(m, 1, h))
        self.w3 = torch.nn.Parameter(torch.zeros(m, h, a))  # zero output: the anchor is the uniform density
        self.b3 = torch.nn.Parameter(torch.zeros(m, 1, a))
        self.register_buffer("log_mu", torch.as_tensor(np.log(cell_widths(a)), dtype=torch.float32))
        self.in_dim = in_dim

    def params(self) -> dict[str, torch.Tensor]:
        return {n: getattr(self, n) for n in self.NAMES}

    def log_probs(self, feats: torch.Tensor) -> torch.Tensor:
        """``log pi(a | features)`` for features ``(M, B, in)``; returns ``(M, B, A)``."""
        return cond_log_probs(self.params(), self.log_mu, feats)


def cond_log_probs(params: dict[str, torch.Tensor], log_mu: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
    """The MLP of :class:`CondPolicy` for a parameter stack ``params`` (leading dim M) on ``feats (M, B, in)``."""
    hidden = torch.tanh(3.0 * feats.to(torch.float32) @ params["w1"] + params["b1"])
    hidden = torch.tanh(hidden @ params["w2"] + params["b2"])
    return torch.log_softmax(hidden @ params["w3"] + params["b3"] + log_mu, dim=-1)


def features(x: torch.Tensor, w1: torch.Tensor | None) -> torch.Tensor:
    """Inputs ``(..., 1 or 2)``: ``2x - 1`` and, for a conditioned policy, ``2 w_1 - 1``."""
    cols = [2.0 * x - 1.0] + ([] if w1 is None else [2.0 * w1 - 1.0])
    return torch.stack([c.to(torch.float32) for c in cols], dim=-1)


# --------------------------------------------------------------------------- rewards and labels
@dataclass
class RewardScale:
    """Per-objective affine map to [0, 1]: ``r~_k = (r_k - low_k) / spread_k``, a min-max fit over the grid.

    It is a fit, by the same function as the trainers' (:func:`moalign.core.normalization.fit_normalization`,
    ``'minmax'``), but on the whole reward table of the evaluation grid (every context node x action) instead of
    MO-ODPO's / P-MORL's first batch of the initial policy's samples: the toy knows its rewards, so the scale is
    fixed before training and is the same for every method and seed. Neither objective is constant on the grid
    (rule ``'raise'``).
    """

    reward_set: str
    low: np.ndarray
    spread: np.ndarray

    @property
    def high(self) -> np.ndarray:
        """The largest reward on the grid, ``low + spread``."""
        return self.low + self.spread

    @classmethod
    def of(cls, reward_set: str, num_actions: int) -> RewardScale:
        table = reward_tables(reward_set, context_grid(NUM_CONTEXTS), action_grid(num_actions))  # (2, C, A)
        low, spread = fit_normalization(table.reshape(table.shape[0], -1).T, "minmax", "raise")
        return cls(reward_set, low, spread)

    def rewards(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Normalised true rewards ``(..., 2)`` at contexts ``x`` and responses ``y`` (same shape)."""
        r1, r2 = reward_functions(self.reward_set)
        raw = np.stack([np.broadcast_to(r1(x, y), np.shape(x)), np.broadcast_to(r2(x, y), np.shape(x))], -1)
        return normalize(raw, self.low, self.spread)


def pair_labels(rewards_1: np.ndarray, rewards_2: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Alg. 1 / eq. (1): ``s_i = sum_k w_k r_i^k``; returns (``first_wins = s_1 > s_2``, ``tie = s_1 == s_2``).

    The trainer's labels (:func:`moalign.core.pairs.weighted_pair_labels`, tie rule 'skip', no tolerance).
    """
    first_wins, used, _, _ = weighted_pair_labels(rewards_1, rewards_2, weights, "skip")
    return first_wins, ~used


# --------------------------------------------------------------------------- training
@dataclass
class OnlineSettings:
    steps: int = 1500
    batch_size: int = 256  # (x, w) samples per model and step; two actions each
    learning_rate: float = 0.01
    beta: float = 0.1  # DPO beta (MO-ODPO, ODPO specialists)
    kl_coef: float = 0.0  # KL to the anchor (P-MORL, RS specialists)
    alpha: float = 0.5  # Dirichlet alpha (paper: 1.0 HH, 0.7 TL;DR; 0.5 samples the ends w = (1,0), (0,1) more)
    hidden: int = 32


def train_online(reward_set: str, num_actions: int, loss: str, settings: OnlineSettings, seed: int,
                 fixed_weights: np.ndarray | None = None, shared_init: bool = False) -> CondPolicy:
    """Train ``M`` policies online; ``loss`` is ``"dpo"`` (MO-ODPO / ODPO) or ``"rloo"`` (P-MORL / RS).

    ``fixed_weights=None``: one policy conditioned on ``w ~ quantised Dirichlet(alpha)`` per sample (M = 1).
    ``fixed_weights (M, 2)``: M unconditioned policies, model m always scored with ``fixed_weights[m]``
    (the specialists); ``shared_init`` starts all M from model 0's initialisation (Rewarded Soups needs a
    shared starting point). Randomness: ``torch.Generator`` and ``np.random.default_rng`` seeded from ``seed``.
    """
    if loss not in ("dpo", "rloo"):
        raise ValueError(f"loss must be 'dpo' or 'rloo', got {loss!r}")
    conditioned = fixed_weights is None
    m = 1 if conditioned else int(np.asarray(fixed_weights).shape[0])
    gen = torch.Generator().manual_seed(int(seed) * 6007 + (11 if loss == "dpo" else 29))
    rng = np.random.default_rng([int(seed), 12, 3])
    policy = CondPolicy(m, num_actions, 2 if conditioned else 1, settings.hidden, generator=gen)
    if shared_init:
        with torch.no_grad():
            for p in policy.params().values():
                p.copy_(p[:1].expand_as(p))
    anchor = copy.deepcopy(policy).requires_grad_(False)
    opt = torch.optim.Adam(policy.parameters(), lr=settings.learning_rate)
    scale = RewardScale.of(reward_set, num_actions)
    y_grid = action_grid(num_actions)
    b = settings.batch_size
    for _ in range(settings.steps):
        x = rng.random((m, b))
        if conditioned:
            w = sample_quantized_dirichlet(settings.alpha, b, generator=rng, num_objectives=2)[None]  # (1, B, 2)
        else:
            w = np.broadcast_to(np.asarray(fixed_weights, float)[:, None, :], (m, b, 2))
        feats = features(torch.as_tensor(x), torch.as_tensor(w[..., 0]) if conditioned else None)
        logp = policy.log_probs(feats)  # (M, B, A)
        with torch.no_grad():
            ref = anchor.log_probs(feats)
            acts = torch.multinomial(logp.exp().reshape(-1, num_actions), 2, replacement=True,
                                     generator=gen).reshape(m, b, 2)
        a_np = acts.numpy()
        r = scale.rewards(np.repeat(x[..., None], 2, -1), y_grid[a_np])  # (M, B, 2 samples, 2 objectives)
        lp = logp.gather(-1, acts)  # (M, B, 2)
        if loss == "dpo":
            first, tie = pair_labels(r[:, :, 0], r[:, :, 1], w)
            first_t = torch.as_tensor(first)
            chosen = torch.where(first_t, acts[..., 0], acts[..., 1])[..., None]
            rejected = torch.where(first_t, acts[..., 1], acts[..., 0])[..., None]
            losses, _, _ = dpo_loss(logp.gather(-1, chosen)[..., 0], logp.gather(-1, rejected)[..., 0],
                                    ref.gather(-1, chosen)[..., 0], ref.gather(-1, rejected)[..., 0],
                                    beta=settings.beta)
            keep = torch.as_tensor(~tie, dtype=torch.float32)
            total = ((losses * keep).sum(-1) / keep.sum(-1).clamp_min(1.0)).sum()
        else:
            s = torch.as_tensor((r * np.asarray(w)[:, :, None, :]).sum(-1), dtype=torch.float32)  # (M, B, 2)
            adv = s - s.flip(-1)  # RLOO with two samples: s_i - s_{other}
            kl = (logp.exp() * (logp - ref)).sum(-1)  # exact KL(pi || anchor) per (x, w)
            total = (-(adv * lp).mean(-1) + settings.kl_coef * kl).mean(-1).sum()
        opt.zero_grad()
        total.backward()
        opt.step()
    return policy


@torch.no_grad()
def conditioned_probs(policy: CondPolicy, weights: np.ndarray) -> np.ndarray:
    """Probabilities ``(M, W, 201, A)`` of a conditioned policy at every ``w_1`` of ``weights (W, 2)``."""
    x = torch.as_tensor(context_grid(NUM_CONTEXTS))
    w1 = torch.as_tensor(np.asarray(weights, float)[:, 0])
    feats = features(x[None, :].expand(w1.numel(), -1), w1[:, None].expand(-1, x.numel()))  # (W, X, 2)
    m = policy.w1.shape[0]
    logp = policy.log_probs(feats.reshape(1, -1, 2).expand(m, -1, -1)).double()
    probs = logp.exp().reshape(m, w1.numel(), x.numel(), -1)
    return (probs / probs.sum(-1, keepdim=True)).numpy()


def weight_grid(count: int) -> np.ndarray:
    """``(count, 2)`` weights ``(w, 1 - w)``, ``w = linspace(1, 0, count)`` rounded to 12 decimals."""
    w = np.round(np.linspace(1.0, 0.0, count), 12)
    return np.stack([w, np.round(1.0 - w, 12)], axis=1)
