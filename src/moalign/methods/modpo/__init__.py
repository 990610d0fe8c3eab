"""MODPO (Zhou et al. 2023): DPO with margins, one model per weight vector: config, trainer, toy, policies."""

from __future__ import annotations

from typing import Any

from moalign.methods.registry import CompareFacts, ToyEntry, TrainingMethod, register_method


def weight_vector(w1: float, num_objectives: int) -> list[float]:
    """MODPO's weight vector of one ``modpo_weights`` entry of ``moalign compare``: ``w1`` on the first objective,
    the rest ``1 - w1`` split evenly over the other ``num_objectives - 1`` (two objectives: ``(w1, 1 - w1)``); the
    first objective is named MODPO's target (:func:`compare_args`)."""
    if not 0 < w1 <= 1 or num_objectives < 2:
        raise ValueError(f"modpo weight w1 must be in (0, 1] with >= 2 objectives, got {w1} for {num_objectives}")
    return [float(w1)] + [(1.0 - w1) / (num_objectives - 1)] * (num_objectives - 1)


def compare_jobs(config: Any) -> list[tuple[str, list[float]]]:
    """``moalign compare``: one model per ``modpo_weights`` entry (folder ``model_w<w1>``)."""
    k = len(config.reward_functions)
    return [(f"model_w{w:g}", weight_vector(w, k)) for w in config.modpo_weights]


def compare_args(config: Any, weights: list[float] | None) -> dict[str, Any]:
    """``moalign compare``: the job's weights; modpo_weights sweep the first objective's weight, the named target."""
    from moalign.rewards.registry import reward_spec_names

    return {"weights": weights, "target_objective": reward_spec_names(list(config.reward_functions))[0]}


METHOD = register_method(TrainingMethod(
    name="modpo",
    title="MODPO",
    description="MODPO (Zhou et al. 2023): DPO on one target objective's preferences with the other objectives' "
                "weighted score differences as margins; one model per weight vector, pairwise data with scores",
    config="moalign.methods.modpo.config:MODPOConfig",
    trainer="moalign.methods.modpo.trainer:MODPOTrainer",
    tuning_grid=(("learning_rate", (3e-4, 1e-3)), ("beta", (0.05, 0.2))),
    family="moalign.methods.modpo.family:PerWeightFamily",
    toy=ToyEntry(run="moalign.methods.modpo.toy:run_toy", default=False),
    compare=CompareFacts(policies="moalign.methods.modpo.family:compare_policies",
                         args="moalign.methods.modpo:compare_args", jobs="moalign.methods.modpo:compare_jobs"),
))
