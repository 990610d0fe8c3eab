"""Pure torch/numpy math of moalign: no transformers import here (docs/design.md, "Layers")."""

from moalign.core.losses import dpo_loss
from moalign.core.mopo import (
    CONSTRAINT_ESTIMATORS,
    THRESHOLD_RULES,
    THRESHOLD_SOURCES,
    MOPODual,
    WeightFn,
    adaptive_threshold,
    closed_form_log_ratio,
    constraint_estimate,
    constraint_value,
    dual_step,
    lagged_reference_log_weight,
    lower_bound,
    lower_bound_dual,
    lower_bound_gradient_step,
    policy_estimate_weights,
    self_normalised_weights,
    symmetric_augmentation,
    tabular_win_rates,
)
from moalign.core.pareto import dominates, front_dominance, hypervolume, non_dominated, non_dominated_mask

__all__ = [
    "CONSTRAINT_ESTIMATORS", "THRESHOLD_RULES", "policy_estimate_weights",
    "THRESHOLD_SOURCES", "MOPODual", "WeightFn", "adaptive_threshold", "closed_form_log_ratio", "constraint_estimate",
    "constraint_value", "dominates", "dpo_loss", "dual_step", "front_dominance", "hypervolume",
    "lagged_reference_log_weight", "lower_bound", "lower_bound_dual", "lower_bound_gradient_step", "non_dominated",
    "non_dominated_mask", "self_normalised_weights", "symmetric_augmentation", "tabular_win_rates",
]
