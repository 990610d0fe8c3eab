"""MODPOTrainer: multi-objective DPO with margins (Zhou et al. 2023, arXiv 2310.03708, §3, L_MODPO).

One model per weight vector w (``MODPOConfig.weights``), as the paper: the target objective k's pairwise
``preference`` is fitted by the DPO-style loss of :func:`moalign.core.losses.modpo_loss`, whose margin
``w_{-k}^T (r_{-k}(y_a) - r_{-k}(y_b))`` comes from the rows' ``scores_a`` / ``scores_b`` (the other
objectives' rewards; the paper's margin reward models). The reference is the base model (adapters off,
base output layer) or precomputed log-probs, as every trainer of the family.

Soft labels: with p = ``preference[k]`` the loss is ``p * L(a > b) + (1 - p) * L(b > a)``, the Bradley-Terry
cross-entropy; for hard labels (0 or 1) it is exactly the paper's loss with the preferred answer as y_w.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from moalign.core.losses import modpo_loss, modpo_target
from moalign.rewards.base import RewardNormalizer
from moalign.trainers.base_trainer import MultiObjectiveTrainer
from moalign.trainers.collator import PairwiseCollator
from moalign.methods.modpo.config import MODPOConfig, check_simplex_weights


@dataclass
class ScoredPairwiseCollator(PairwiseCollator):
    """:class:`PairwiseCollator` plus ``scores`` ``(2B, K)`` = ``[scores_a; scores_b]`` (required)."""

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        missing = [i for i, r in enumerate(rows) if r.get("scores_a") is None or r.get("scores_b") is None]
        if missing:
            raise ValueError("MODPO needs `scores_a` and `scores_b` in every row (the margin rewards of the other "
                             f"objectives); rows {missing} of the batch have none")
        batch = super().__call__(rows)
        scores = [list(r["scores_a"]) for r in rows] + [list(r["scores_b"]) for r in rows]
        batch["scores"] = torch.tensor(scores, dtype=torch.float32)
        return batch


class MODPOTrainer(MultiObjectiveTrainer):
    """One policy (one head) trained by the MODPO loss for the configured weight vector."""

    method_name = "modpo"
    data_kind = "pairwise"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        config: MODPOConfig = self.args
        config.weights = check_simplex_weights(config.weights, "weights")
        if len(config.weights) != len(self.objectives):
            raise ValueError(f"weights {config.weights} has {len(config.weights)} entries but the data has "
                             f"{len(self.objectives)} objectives {self.objectives}")
        named = config.target_objective
        if named is not None and named not in self.objectives:
            raise ValueError(f"target_objective {named!r} is not one of the objectives {self.objectives}")
        try:  # the named objective, else the largest weight (core.losses.modpo_target, the toy's rule too)
            self.target = int(modpo_target(config.weights, None if named is None else self.objectives.index(named)))
        except ValueError as err:
            raise ValueError(f"{err} (target_objective {named!r})") from err
        self.others = [k for k in range(len(self.objectives)) if k != self.target]
        self.target_weight = float(config.weights[self.target])
        self.margin_weights = torch.tensor([config.weights[k] for k in self.others], dtype=torch.float32)
        self.normalizer = self._fit_normalizer(self.train_dataset) if config.margin_normalization != "none" else None

    @classmethod
    def head_names_for(cls, config: MODPOConfig, objectives: list[str]) -> list[str]:
        """One head: the single policy of this weight vector (``modpo_w_0.3_0.7``)."""
        weights = check_simplex_weights(config.weights, "weights")
        return ["modpo_w_" + "_".join(f"{w:g}" for w in weights)]

    def make_collator(self, tokenizer: Any, args: MODPOConfig, use_chat_template: bool) -> Any:
        return ScoredPairwiseCollator(tokenizer, args.max_prompt_length, args.max_completion_length, use_chat_template)

    def _fit_normalizer(self, dataset: Any) -> RewardNormalizer | None:
        if not self.others or dataset is None:
            return None
        scores = np.array([list(r) for r in dataset["scores_a"]] + [list(r) for r in dataset["scores_b"]], dtype=float)
        names = [self.objectives[k] for k in self.others]
        return RewardNormalizer(self.args.margin_normalization, names).fit(scores[:, self.others])

    def margin_rewards(self, scores: torch.Tensor) -> torch.Tensor:
        """``(N, K-1)`` rewards r_{-k} of the other objectives, normalised as configured."""
        other = scores[:, self.others].float()
        if self.normalizer is not None:
            other = torch.as_tensor(self.normalizer.transform(other.cpu().numpy()), dtype=torch.float32)
        return other

    def method_loss(self, model: Any, inputs: dict[str, torch.Tensor], mode: str) -> torch.Tensor:
        """The label-weighted MODPO loss of the batch's B pairs (module docstring); no state changes."""
        hidden = self.shared_hidden_states(model, inputs)
        policy = self.policy_logps(model, inputs, hidden)[0]  # (2B,)
        reference = self.reference_logps(model, inputs, hidden).to(policy)
        half = policy.shape[0] // 2
        margins = self.margin_rewards(inputs["scores"]).to(policy)
        p = inputs["preference"][:half, self.target].to(policy)
        weights = self.margin_weights.to(policy)
        args = (self.target_weight, weights, self.args.beta)
        a, b = slice(0, half), slice(half, 2 * half)
        loss_ab, reward_a, reward_b = modpo_loss(policy[a], policy[b], reference[a], reference[b], margins[a],
                                                 margins[b], *args)
        loss_ba, _, _ = modpo_loss(policy[b], policy[a], reference[b], reference[a], margins[b], margins[a], *args)
        losses = p * loss_ab + (1 - p) * loss_ba
        decided = p != 0.5
        correct = ((reward_a > reward_b) == (p > 0.5)).float()[decided]
        self.record("modpo/reward_margin", float(((reward_a - reward_b) * (2 * p - 1)).mean()), mode)
        if correct.numel():
            self.record("modpo/accuracy", float(correct.mean()), mode)
        return losses.mean()

    def method_state(self) -> dict[str, Any]:
        return {"normalizer": self.normalizer.to_dict() if self.normalizer is not None else None}

    def load_method_state(self, state: dict[str, Any]) -> None:
        if state.get("normalizer") is not None:
            self.normalizer = RewardNormalizer.from_dict(state["normalizer"], "checkpoint")
