"""RiCTrainer: Rewards-in-Context (Yang et al. 2024, arXiv 2402.10207; HaM paper §2.2) on the moalign base.

Training: every pointwise row (x, y, scores) becomes (x', y) with x' = x plus its normalised rewards
written in (:mod:`moalign.data.ric`), and the loss is supervised fine-tuning of the completion,
``-sum_i log p(y_i | x'_i) / sum_i |y_i|`` (the token mean over the batch's completion tokens, as TRL's
completion-only SFT loss). Inference: :meth:`RewardConditioner.prompt_for_preference` maps a preference
w to target rewards (RiC's mapping) and writes them into the prompt.

Why not TRL's ``SFTTrainer``: our models are :class:`~moalign.models.MultiHeadCausalLM` (one head here),
built, saved, resumed and evaluated by the moalign base trainer and registry; ``SFTTrainer`` would
need its own model building, collator and checkpoint format. The loss is the same completion-only
token-mean cross-entropy. RiC's online augmentation step is not implemented.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from moalign.data.conditioning import conditioning_file
from moalign.data.ric import preference_to_targets, render_reward_prompt, round_conditions, target_bounds
from moalign.rewards.base import RewardNormalizer
from moalign.trainers.base_trainer import MultiObjectiveTrainer
from moalign.trainers.collator import PointwiseCollator
from moalign.methods.ham.trainer import pointwise_dataset
from moalign.methods.ric.config import RiCConfig


@dataclass
class RewardConditioner:
    """Normalises scores and writes them into prompts; maps preferences to targets (saved with the model)."""

    normalizer: RewardNormalizer
    bounds: list[tuple[float, float]]  # (min, max) of the rounded normalised training rewards, per objective
    decimals: int = 1

    @classmethod
    def fit(cls, scores: Any, objectives: list[str], method: str = "zscore", decimals: int = 1
            ) -> RewardConditioner:
        normalizer = RewardNormalizer(method, objectives).fit(scores)
        return cls(normalizer, target_bounds(normalizer.transform(scores), decimals), decimals)

    def targets_for_scores(self, scores: Any) -> list[float]:
        """The normalised, rounded rewards of one row's raw scores (what training writes into its prompt)."""
        normalized = self.normalizer.transform(np.asarray([scores], dtype=float))[0]
        return [float(v) for v in round_conditions(normalized, self.decimals)]

    def prompt_for_scores(self, prompt: Any, scores: Any) -> Any:
        return render_reward_prompt(prompt, self.targets_for_scores(scores), self.decimals, len(self.bounds))

    def prompt_for_targets(self, prompt: Any, targets: Any) -> Any:
        """``prompt`` with normalised ``targets`` (checked: one per objective, finite, within the training range)."""
        return render_reward_prompt(prompt, targets, self.decimals, bounds=self.bounds)

    def prompt_for_preference(self, prompt: Any, preference: Any) -> Any:
        """``prompt`` conditioned on the targets of preference ``w`` (RiC's mapping, HaM paper §2.2)."""
        return self.prompt_for_targets(prompt, preference_to_targets(preference, self.bounds, self.decimals))

    def to_dict(self) -> dict[str, Any]:
        return {"normalizer": self.normalizer.to_dict(), "bounds": [list(b) for b in self.bounds],
                "decimals": self.decimals}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "dict") -> RewardConditioner:
        return cls(RewardNormalizer.from_dict(data["normalizer"], source), [tuple(b) for b in data["bounds"]],
                   int(data["decimals"]))

    @classmethod
    def load(cls, directory: str | os.PathLike) -> RewardConditioner:
        path = os.path.join(directory, conditioning_file("ric"))
        with open(path) as handle:
            return cls.from_dict(json.load(handle), source=path)


@dataclass
class RiCCollator(PointwiseCollator):
    """Pointwise rows with each prompt conditioned on its own normalised rewards (``conditioner``)."""

    conditioner: RewardConditioner | None = None

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        if self.conditioner is None:
            raise RuntimeError("RiCCollator needs a fitted RewardConditioner")
        return super().__call__([{**r, "prompt": self.conditioner.prompt_for_scores(r["prompt"], r["scores"])}
                                 for r in rows])


class RiCTrainer(MultiObjectiveTrainer):
    """SFT on reward-conditioned prompts (see the module docstring); one head (``ric``), pointwise data."""

    method_name = "ric"
    data_kind = "pointwise"

    def __init__(self, model: Any, args: RiCConfig, train_dataset: Any = None, eval_dataset: Any = None,
                 objectives: list[str] | None = None, processing_class: Any = None, data_collator: Any = None,
                 **kwargs: Any) -> None:
        train_dataset, eval_dataset = pointwise_dataset(train_dataset), pointwise_dataset(eval_dataset)
        self.conditioner: RewardConditioner | None = None
        if train_dataset is not None:  # fitted before the base builds the collator
            rows = getattr(train_dataset, "dataset", train_dataset)
            names = list(getattr(train_dataset, "objectives", None) or objectives or [])
            self.conditioner = RewardConditioner.fit(np.asarray(rows["scores"], dtype=float), names,
                                                     args.ric_normalization, args.ric_decimals)
        super().__init__(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                         objectives=objectives, processing_class=processing_class, data_collator=data_collator,
                         **kwargs)

    @classmethod
    def head_names_for(cls, config: RiCConfig, objectives: list[str]) -> list[str]:
        """One policy, conditioned by its prompt: a single head ``ric``."""
        return ["ric"]

    def make_collator(self, tokenizer: Any, args: RiCConfig, use_chat_template: bool) -> RiCCollator:
        return RiCCollator(tokenizer, args.max_prompt_length, args.max_completion_length, use_chat_template,
                           conditioner=self.conditioner)

    def method_loss(self, model: Any, inputs: dict[str, torch.Tensor], mode: str) -> torch.Tensor:
        """``-sum log p(y | x') / #completion tokens`` over the batch (completion-only SFT, token mean)."""
        logps = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                      completion_mask=inputs["completion_mask"], average=False)  # (1, B) sums
        tokens = inputs["completion_mask"][:, 1:].sum().clamp(min=1)
        loss = -logps.sum() / tokens
        self.record("nll_per_token", float(loss.detach()), mode)
        return loss

    def method_state(self) -> dict[str, Any]:
        return {"conditioner": self.conditioner.to_dict() if self.conditioner is not None else None}

    def load_method_state(self, state: dict[str, Any]) -> None:
        if state.get("conditioner") is not None:
            self.conditioner = RewardConditioner.from_dict(state["conditioner"], self.state_file_name)
            self.data_collator.conditioner = self.conditioner

    def _save(self, output_dir: str | None = None, state_dict: Any = None) -> None:
        super()._save(output_dir, state_dict)
        if self.conditioner is not None:
            path = os.path.join(output_dir or self.args.output_dir, conditioning_file("ric"))
            with open(path, "w") as handle:
                json.dump(self.conditioner.to_dict(), handle, indent=2)
