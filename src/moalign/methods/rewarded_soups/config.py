"""Configuration of Rewarded Soups (Rame et al., NeurIPS 2023; MO-ODPO paper §4.2) and ODPO Soups."""

from __future__ import annotations

from dataclasses import dataclass, field

from moalign.models.soups import INTERPOLATIONS
from moalign.trainers.rl_common import RLBaselineConfig

INTERPOLATION_HELP = ("How the specialists' LoRA adapters are mixed for a weight vector w: 'linear' (A and B each "
                      "interpolated, as the Rewarded Soups original; default) or 'cat' (the exact sum_k w_k B_k A_k, "
                      "PEFT add_weighted_adapter). Written to soup_config.json; evaluation may override it.")


@dataclass
class RewardedSoupsConfig(RLBaselineConfig):
    """Rewarded Soups: one GRPO specialist per objective (its own reward only), then the soup."""

    interpolation: str = field(default="linear", metadata={"help": INTERPOLATION_HELP})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}")
