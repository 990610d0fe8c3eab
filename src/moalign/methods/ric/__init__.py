"""Rewards-in-Context: SFT with the rewards written into the prompt: config, trainer, toy version, policies."""

from __future__ import annotations

from moalign.methods.ham import LR_ONLY_GRID
from moalign.methods.registry import CompareFacts, ToyEntry, TrainingMethod, register_method

METHOD = register_method(TrainingMethod(
    name="ric",
    title="RiC",
    description="Rewards-in-Context: SFT with the normalised rewards written into the prompt; at inference the "
                "preference is mapped to target rewards in the prompt; one head, pointwise data",
    config="moalign.methods.ric.config:RiCConfig",
    trainer="moalign.methods.ric.trainer:RiCTrainer",
    tuning_grid=LR_ONLY_GRID,
    family="moalign.inference.conditioned:RewardConditionedFamily",
    toy=ToyEntry(run="moalign.methods.ric.toy:run_toy"),
    compare=CompareFacts(policies="moalign.methods.ric.family:compare_policies"),
))
