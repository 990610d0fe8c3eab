"""P-MORL: prompt-conditioned RL fine-tuning (the MO-ODPO paper's §4.2 baseline, after Jang et al. 2023).

As MO-ODPO, every training prompt x gets weights w ~ Dirichlet(alpha) quantised to one decimal (§3.2) and is
rewritten to x' with the system-instruction block (§3.3), by the same :mod:`moalign.data.conditioning`
functions that MO-ODPO and the evaluation use. Unlike MO-ODPO the policy is trained by RL (TRL's
``GRPOTrainer``) on the scalar reward ``w^T r(x, y)``, each r_k scored on the *unconditioned* prompt x and
min-max normalised (statistics of the initial policy's samples, frozen). The dataset carries ``weights`` and
``original_prompt`` columns, which TRL hands to :class:`WeightedSumReward` as keyword arguments.

Output: a PEFT adapter folder (the policy) with ``p_morl_conditioning.json`` (the conditioning spec and the
normaliser), read by :func:`moalign.data.conditioning.load_conditioning` for ``Policy.conditioned`` at evaluation.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from moalign.data.conditioning import (
    ConditioningSpec,
    ConditioningTemplate,
    conditioning_file,
    sample_quantized_dirichlet,
)
from moalign.rewards.base import RewardFunction, RewardNormalizer
from moalign.rewards.registry import resolve_rewards
from moalign.methods.p_morl.config import PMORLConfig
from moalign.trainers.rl_common import require_rewards, train_grpo, use_chat


class WeightedSumReward:
    """TRL reward function ``sum_k w_k r~_k(x, y)`` with w read per row from the ``weights`` column.

    r~_k is reward k (a :class:`RewardFunction`) on the unconditioned prompt (``original_prompt`` column),
    mapped by ``normalizer`` (or as it is).
    """

    __name__ = "weighted_reward"

    def __init__(self, rewards: Sequence[RewardFunction], normalizer: RewardNormalizer | None = None) -> None:
        self.rewards = list(rewards)
        self.normalizer = normalizer

    def scores(self, prompts: list[Any], completions: list[Any]) -> np.ndarray:
        """``(N, K)`` normalised rewards of the completions on ``prompts``."""
        raw = np.array([reward(prompts=prompts, completions=completions) for reward in self.rewards], dtype=float).T
        return self.normalizer.transform(raw) if self.normalizer is not None else raw

    def __call__(self, prompts: list[Any], completions: list[Any], weights: list[Sequence[float]] | None = None,
                 original_prompt: list[Any] | None = None, **kwargs: Any) -> list[float]:
        if weights is None or original_prompt is None:
            raise ValueError("the P-MORL reward needs the dataset's 'weights' and 'original_prompt' columns")
        w = np.asarray([list(v) for v in weights], dtype=float)
        if w.shape != (len(completions), len(self.rewards)):
            raise ValueError(f"weights of shape {w.shape}, expected ({len(completions)}, {len(self.rewards)})")
        return (w * self.scores(list(original_prompt), list(completions))).sum(axis=1).tolist()


class PMORLTrainer:
    """Build the conditioned prompt dataset, fit the normaliser, train one policy with GRPO on ``w^T r``."""

    method_name: ClassVar[str] = "p_morl"
    data_kind: ClassVar[str] = "prompts"
    #: train_method does not build a model for it: it loads its own base model(s)
    builds_own_models: ClassVar[bool] = True

    def __init__(self, model: Any = None, args: PMORLConfig | None = None, train_dataset: Any = None,
                 eval_dataset: Any = None, processing_class: Any = None, **kwargs: Any) -> None:
        if args is None or train_dataset is None or processing_class is None:
            raise ValueError(f"{type(self).__name__} needs args, train_dataset (prompts) and processing_class")
        del model  # TRL wraps a fresh base model with the LoRA adapter
        self.args = args
        self.tokenizer = processing_class
        self.rewards = resolve_rewards(require_rewards(args))
        self.objectives = [r.name for r in self.rewards]
        template = ConditioningTemplate(begin=args.conditioning_begin, end=args.conditioning_end,
                                        item=args.conditioning_item, decimals=args.weight_decimals)
        self.conditioning = ConditioningSpec(tuple(self.objectives), template, use_chat(args, processing_class))
        self.dataset = self.conditioned_dataset(getattr(train_dataset, "dataset", train_dataset))

    def conditioned_dataset(self, prompts: Any) -> Any:
        """Rows (prompt = x', original_prompt = x, weights = w), ``weights_per_prompt`` rows per prompt (seeded)."""
        from datasets import Dataset

        originals = [p for p in prompts["prompt"] for _ in range(self.args.weights_per_prompt)]
        alpha = self.args.dirichlet_alpha
        weights = sample_quantized_dirichlet(alpha if len(alpha) > 1 else alpha[0], len(originals),
                                             seed=self.args.seed, num_objectives=len(self.objectives),
                                             decimals=self.args.weight_decimals)
        rows = [{"prompt": self.conditioning.render(x, w), "original_prompt": x, "weights": w}
                for x, w in zip(originals, weights.tolist())]
        return Dataset.from_list(rows)

    def fit_normalizer(self) -> RewardNormalizer | None:
        """Min-max statistics of the initial policy's samples on the first conditioned prompts (or None).

        ``num_generations`` samples per prompt, as GRPO draws them, generated in batches of prompts (one prompt at
        a time made this a sizeable share of a short run's time).
        """
        if self.args.reward_normalization == "none":
            return None
        from moalign.eval.generate import GenerationSettings, generate_completions
        from moalign.eval.policies import Policy
        from moalign.models.loading import load_base_model

        model = load_base_model(self.args.model_name_or_path).eval()
        rows = self.dataset.select(range(min(self.args.normalization_prompts, len(self.dataset))))
        repeat = self.args.num_generations
        prompts = [row["prompt"] for row in rows for _ in range(repeat)]
        originals = [row["original_prompt"] for row in rows for _ in range(repeat)]
        settings = GenerationSettings(max_new_tokens=self.args.max_completion_length, do_sample=True,
                                      temperature=self.args.temperature, top_p=self.args.top_p, seed=self.args.seed,
                                      batch_size=64, use_chat_template=self.conditioning.as_chat, progress=False,
                                      precision=self.args.compute_precision)
        completions = generate_completions(model, self.tokenizer, prompts, Policy.as_is("initial policy"), settings)
        scores = WeightedSumReward(self.rewards).scores(originals, completions)
        # MO-ODPO's rule: an objective constant on these first samples gets range 1 (core.normalization)
        return RewardNormalizer("minmax", self.objectives).fit(scores, zero_spread="unit")

    def train(self, resume_from_checkpoint: Any = None) -> None:
        """Fit (or reload) the normaliser, save the conditioning, train with GRPO into ``output_dir``."""
        path = Path(self.args.output_dir) / conditioning_file("p_morl")
        if path.is_file():  # a resumed run keeps its frozen statistics
            saved = json.loads(path.read_text())["normalizer"]
            normalizer = RewardNormalizer.from_dict(saved, str(path)) if saved is not None else None
        else:
            normalizer = self.fit_normalizer()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({**self.conditioning.to_dict(),
                                        "normalizer": normalizer.to_dict() if normalizer is not None else None},
                                       indent=2) + "\n")
        self.reward = WeightedSumReward(self.rewards, normalizer)
        train_grpo(self.args, [self.reward], self.dataset, self.args.output_dir, self.tokenizer)

    def save_model(self, output_dir: str | None = None) -> None:
        self.tokenizer.save_pretrained(output_dir or self.args.output_dir)
