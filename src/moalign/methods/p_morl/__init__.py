"""P-MORL (MO-ODPO paper baseline): prompt conditioning + GRPO on w^T r: config, trainer, toy version, policies."""

from __future__ import annotations

from typing import Any

from moalign.methods.registry import CompareFacts, ToyEntry, TrainingMethod, register_method


def compare_args(config: Any, weights: list[float] | None) -> dict[str, Any]:
    """``moalign compare``: the comparison's GRPO group size."""
    return {"num_generations": config.num_generations}


METHOD = register_method(TrainingMethod(
    name="p_morl",
    title="P-MORL",
    description="P-MORL (MO-ODPO paper baseline): MO-ODPO's prompt conditioning on Dirichlet weights, RL "
                "fine-tuning with TRL GRPO on the weighted normalised reward w^T r; prompts",
    config="moalign.methods.p_morl.config:PMORLConfig",
    trainer="moalign.methods.p_morl.trainer:PMORLTrainer",
    tuning_grid=(("learning_rate", (3e-4, 1e-3)), ("kl_beta", (0.01, 0.05))),
    family="moalign.inference.conditioned:PromptConditionedFamily",
    family_options={"conditioning_method": "p_morl"},
    toy=ToyEntry(run="moalign.methods.p_morl.toy:run_toy", default=False),
    compare=CompareFacts(policies="moalign.methods.p_morl.family:compare_policies",
                         args="moalign.methods.p_morl:compare_args", weight_decimals=1),
))
