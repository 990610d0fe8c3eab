"""MO-ODPO: one prompt-conditioned policy trained by online DPO (MO-ODPO paper): config, trainer, toy, policies."""

from __future__ import annotations

from moalign.methods.registry import CompareFacts, ToyEntry, TrainingMethod, register_method

METHOD = register_method(TrainingMethod(
    name="mo_odpo",
    title="MO-ODPO",
    description="MO-ODPO: one prompt-conditioned policy; per prompt Dirichlet weights in a system instruction, "
                "two on-policy samples labelled by the weighted rewards, DPO against the initial policy; prompts",
    config="moalign.methods.mo_odpo.config:MOODPOConfig",
    trainer="moalign.methods.mo_odpo.trainer:MOODPOTrainer",
    tuning_grid=(("learning_rate", (3e-4, 1e-3)), ("beta", (0.05, 0.2))),
    family="moalign.inference.conditioned:PromptConditionedFamily",
    family_options={"conditioning_method": "mo_odpo"},
    toy=ToyEntry(run="moalign.methods.mo_odpo.toy:run_toy", default=False),
    compare=CompareFacts(policies="moalign.methods.mo_odpo.family:compare_policies", weight_decimals=1),
))
