"""SCA (HaM paper eq. 5): one head per weight vector: config, trainer, toy version, policies."""

from __future__ import annotations

from moalign.methods.ham import LR_ONLY_GRID
from moalign.methods.registry import CompareFacts, ToyEntry, TrainingMethod, register_method

METHOD = register_method(TrainingMethod(
    name="sca",
    title="SCA",
    description="SCA (HaM paper eq. 5): one head per weight vector, each maximising the weighted sum of the "
                "normalised reward-weighted log-likelihoods; pointwise data",
    config="moalign.methods.sca.config:SCAConfig",
    trainer="moalign.methods.sca.trainer:SCATrainer",
    tuning_grid=LR_ONLY_GRID,
    family="moalign.methods.sca.family:WeightHeadsFamily",
    toy=ToyEntry(run="moalign.methods.sca.toy:run_toy"),
    compare=CompareFacts(policies="moalign.methods.sca.family:compare_policies"),
))
