"""HaM: K policy heads maximising a hypervolume (HaM paper): config, trainer, toy version, policies."""

from __future__ import annotations

from moalign.methods.registry import CompareFacts, ToyEntry, TrainingMethod, register_method

#: learning rates of the methods tuned on the learning rate alone (no KL-type coefficient)
LR_ONLY_GRID = (("learning_rate", (1e-4, 3e-4, 1e-3, 3e-3)),)

METHOD = register_method(TrainingMethod(
    name="ham",
    title="HaM",
    description="HaM: K policy heads maximise the hypervolume of their normalised reward-weighted "
                "log-likelihoods (exact inclusion-exclusion or random scalarisation); pointwise data",
    config="moalign.methods.ham.config:HaMConfig",
    trainer="moalign.methods.ham.trainer:HaMTrainer",
    tuning_grid=LR_ONLY_GRID,
    family="moalign.inference.families:HeadsFamily",
    toy=ToyEntry(run="moalign.methods.ham.toy:run_toy"),
    compare=CompareFacts(policies="moalign.methods.ham.family:compare_policies"),
))
