"""ODPO Soups: one MO-ODPO specialist per objective, souped at any weight: config, trainer, toy, policies."""

from __future__ import annotations

from moalign.methods.registry import CompareFacts, ToyEntry, TrainingMethod, register_method

METHOD = register_method(TrainingMethod(
    name="odpo_soups",
    title="ODPO Soups",
    description="ODPO Soups: one MO-ODPO specialist per objective (one-hot fixed weights, no prompt "
                "conditioning), then the soup of their adapters and heads for any weight vector; resumable; prompts",
    config="moalign.methods.odpo_soups.config:ODPOSoupsConfig",
    trainer="moalign.methods.odpo_soups.trainer:ODPOSoupsTrainer",
    tuning_grid=(("learning_rate", (3e-4, 1e-3)), ("beta", (0.05, 0.2))),
    family="moalign.inference.families:SoupFamily",
    toy=ToyEntry(run="moalign.methods.odpo_soups.toy:run_toy", default=False),
    compare=CompareFacts(policies="moalign.methods.rewarded_soups.family:compare_policies",
                         runs_per_objective=True),
))
