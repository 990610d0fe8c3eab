"""Configuration of :class:`~moalign.methods.modpo.trainer.MODPOTrainer` (Zhou et al. 2023, arXiv 2310.03708)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from moalign.trainers.base_config import MultiObjectiveConfig

MARGIN_NORMALIZATIONS = ("none", "minmax", "zscore")


def check_simplex_weights(weights: list[float] | None, what: str) -> list[float]:
    """``weights`` as floats: non-empty, finite, non-negative, summing to 1 (else a ValueError naming ``what``)."""
    if not weights:
        raise ValueError(f"{what}: give one weight per objective, e.g. `{what}: [0.5, 0.5]`")
    values = [float(w) for w in weights]
    if not all(math.isfinite(w) and w >= 0 for w in values) or abs(sum(values) - 1) > 1e-6:
        raise ValueError(f"{what}: {values} must be non-negative and sum to 1 (a point of the simplex)")
    return values


@dataclass
class MODPOConfig(MultiObjectiveConfig):
    """MODPO's fields: the weight vector of the one model this run trains, the target objective, beta."""

    weights: list[float] | None = field(
        default=None,
        metadata={"help": "The weight vector w (one entry per objective, on the simplex) of the model this run "
                  "trains; MODPO trains one model per w, as the original. Required by the trainer."},
    )
    target_objective: str | None = field(
        default=None,
        metadata={"help": "Objective k whose `preference` labels are fitted (the DPO part); the other objectives "
                  "enter as margins from `scores_a`/`scores_b`. Default: the objective with the largest weight "
                  "(ties: the first; moalign.core.losses.modpo_target). Needs w_k > 0."},
    )
    beta: float = field(default=0.1, metadata={"help": "KL strength beta of the MODPO loss (as DPO's beta)."})
    margin_normalization: str = field(
        default="none",
        metadata={"help": "Scale of the margin rewards r_{-k}: 'none' (the scores as they are, as the paper's "
                  "reward models), 'minmax' ([0, 1] on the training data) or 'zscore'; fitted on the training "
                  "rows' scores of the other objectives and saved with the method state."},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.weights is not None:  # required by the trainer; a config without it still parses
            self.weights = check_simplex_weights(self.weights, "weights")
        if not self.beta > 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")
        if self.margin_normalization not in MARGIN_NORMALIZATIONS:
            raise ValueError(f"margin_normalization must be one of {MARGIN_NORMALIZATIONS}, "
                             f"got {self.margin_normalization!r}")
