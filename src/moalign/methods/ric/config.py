"""Configuration of :class:`~moalign.methods.ric.trainer.RiCTrainer` (Rewards-in-Context, arXiv 2402.10207)."""

from __future__ import annotations

from dataclasses import dataclass, field

from moalign.trainers.base_config import MultiObjectiveConfig


@dataclass
class RiCConfig(MultiObjectiveConfig):
    """RiC's own fields: how the rewards written into the prompt are normalised and rounded."""

    ric_normalization: str = field(
        default="zscore",
        metadata={"help": "Normalisation of each objective's scores before they are written into the prompt "
                  "(moalign.rewards.RewardNormalizer fitted on the training scores): 'zscore' (RiC's recipe) or "
                  "'minmax'. Saved with the model (ric_conditioning.json) and in checkpoints."},
    )
    ric_decimals: int = field(
        default=1, metadata={"help": "Digits of the rewards in the prompt (RiC rounds to 1 decimal)."}
    )

    def __post_init__(self) -> None:
        if self.ric_normalization not in ("zscore", "minmax"):
            raise ValueError(f"ric_normalization must be 'zscore' or 'minmax', got {self.ric_normalization!r}")
        if not 0 <= self.ric_decimals <= 6:
            raise ValueError(f"ric_decimals must be in 0..6, got {self.ric_decimals}")
        if self.precompute_ref_log_probs:
            raise ValueError("precompute_ref_log_probs: RiC uses no reference model; leave it false")
        super().__post_init__()
