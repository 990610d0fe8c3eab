"""MOPO: maximise one objective, lower-bound the others (MOPO paper): config, trainer, toy version, policies."""

from __future__ import annotations

from typing import Any

from moalign.methods.registry import CompareFacts, ToyEntry, TrainingMethod, register_method


def compare_args(config: Any, weights: list[float] | None) -> dict[str, Any]:
    """``moalign compare``: the demo's MOPO settings, as ``moalign demo`` trains it."""
    from moalign.experiments.demo import DemoConfig

    d = DemoConfig()
    return dict(tau=d.tau, lower_bound_eps=d.lower_bound_eps, threshold_rule=d.threshold_rule,
                constraint_estimator=d.constraint_estimator, lag_steps=d.lag_steps, head_type=d.head_type)


METHOD = register_method(TrainingMethod(
    name="mopo",
    title="MOPO",
    description="MOPO: maximise one objective, lower-bound the others (closed-form dual, weighted behaviour "
                "cloning, lagged reference); one policy head per primary objective",
    config="moalign.methods.mopo.config:MOPOConfig",
    trainer="moalign.methods.mopo.trainer:MOPOTrainer",
    tuning_grid=(("learning_rate", (3e-4, 1e-3)), ("tau", (0.04, 0.08))),
    family="moalign.inference.families:HeadsFamily",
    toy=ToyEntry(run="moalign.methods.mopo.toy:run_toy", pairwise_rows=True,
                 unsteerable_reason="fixed: indexed by (primary, threshold b), not by a weight"),
    compare=CompareFacts(policies="moalign.methods.mopo.family:compare_policies",
                         args="moalign.methods.mopo:compare_args"),
))
