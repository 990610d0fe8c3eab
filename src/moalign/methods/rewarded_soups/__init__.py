"""Rewarded Soups: one GRPO specialist per objective, souped at any weight: config, trainer, toy, policies."""

from __future__ import annotations

from typing import Any

from moalign.methods.registry import CompareFacts, ToyEntry, TrainingMethod, register_method


def compare_args(config: Any, weights: list[float] | None) -> dict[str, Any]:
    """``moalign compare``: the comparison's GRPO group size."""
    return {"num_generations": config.num_generations}


METHOD = register_method(TrainingMethod(
    name="rewarded_soups",
    title="Rewarded Soups",
    description="Rewarded Soups: one GRPO-trained LoRA specialist per objective (TRL), then the soup of their "
                "adapters for any weight vector; resumable; prompts",
    config="moalign.methods.rewarded_soups.config:RewardedSoupsConfig",
    trainer="moalign.methods.rewarded_soups.trainer:RewardedSoupsTrainer",
    tuning_grid=(("learning_rate", (3e-4, 1e-3)), ("kl_beta", (0.01, 0.05))),
    family="moalign.inference.families:SoupFamily",
    toy=ToyEntry(run="moalign.methods.rewarded_soups.toy:run_toy", default=False),
    compare=CompareFacts(policies="moalign.methods.rewarded_soups.family:compare_policies",
                         args="moalign.methods.rewarded_soups:compare_args", runs_per_objective=True),
))
