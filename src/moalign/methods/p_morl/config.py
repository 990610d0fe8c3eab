"""Configuration of P-MORL, the MO-ODPO paper's prompt-conditioned RL baseline (§4.2; Jang et al. 2023)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from moalign.trainers.rl_common import RLBaselineConfig


@dataclass
class PMORLConfig(RLBaselineConfig):
    """P-MORL: the weights in the prompt exactly as MO-ODPO (§3.2, §3.3), GRPO on the reward w^T r."""

    dirichlet_alpha: list[float] = field(
        default_factory=lambda: [1.0],
        metadata={"help": "Dirichlet concentration of the per-prompt weights (MO-ODPO §3.2): one value or one per "
                  "objective."},
    )
    weight_decimals: int = field(default=1, metadata={"help": "Weights quantised to this many decimals (sum 1)."})
    weights_per_prompt: int = field(
        default=1, metadata={"help": "Independent weight vectors drawn per training prompt (each a dataset row)."})
    conditioning_begin: str = field(default="[Begin System Instruction]",
                                    metadata={"help": "First line of the conditioning block (MO-ODPO §3.3)."})
    conditioning_end: str = field(default="[End System Instruction]",
                                  metadata={"help": "Last line of the conditioning block (MO-ODPO §3.3)."})
    conditioning_item: str = field(default="{name}: {weight}",
                                   metadata={"help": "Format of one objective in the block ({name}, {weight})."})
    reward_normalization: str = field(
        default="minmax",
        metadata={"help": "'minmax': per objective, min-max statistics of the initial policy's samples on the "
                  "first `normalization_prompts` conditioned prompts, frozen and saved (rewards in about [0, 1] "
                  "before weighting, as MO-ODPO); 'none': rewards as they are."},
    )
    normalization_prompts: int = field(default=16, metadata={"help": "Prompts sampled to fit the min-max stats."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not all(math.isfinite(a) and a > 0 for a in self.dirichlet_alpha):
            raise ValueError(f"dirichlet_alpha must be > 0, got {self.dirichlet_alpha}")
        if self.reward_functions is not None and len(self.dirichlet_alpha) not in (1, len(self.reward_functions)):
            raise ValueError(f"dirichlet_alpha: give 1 or {len(self.reward_functions)} values, "
                             f"got {self.dirichlet_alpha}")
        if self.weights_per_prompt < 1 or self.normalization_prompts < 1:
            raise ValueError("weights_per_prompt and normalization_prompts must be >= 1")
        if self.reward_normalization not in ("minmax", "none"):
            raise ValueError(f"reward_normalization must be 'minmax' or 'none', got {self.reward_normalization!r}")
