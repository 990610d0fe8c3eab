"""Configuration of the policy heads of a :class:`~moalign.models.multihead.MultiHeadCausalLM`."""

from __future__ import annotations

from dataclasses import dataclass, field

from moalign.models.heads import HEAD_TYPES

__all__ = ["MultiHeadConfig"]


@dataclass
class MultiHeadConfig:
    """Configuration of the policy heads of a :class:`MultiHeadCausalLM`."""

    num_heads: int = field(default=2, metadata={"help": "Number of policy heads K (one per primary objective)."})
    head_names: list[str] | None = field(
        default=None, metadata={"help": "Names of the heads (default head_0 .. head_{K-1})."}
    )
    head_type: str = field(
        default="low_rank",
        metadata={
            "help": "'full': each head a full vocab x hidden output matrix initialised from the base lm_head "
            "(the papers' architecture); 'low_rank': shared frozen base output layer + per-head delta A_k B_k."
        },
    )
    head_rank: int = field(default=8, metadata={"help": "Rank r of the low-rank head deltas."})
    head_alpha: float | None = field(
        default=None, metadata={"help": "Scaling numerator of low-rank heads: delta = (alpha/r) A B (default alpha=r)."}
    )
    head_init_std: float = field(default=0.02, metadata={"help": "Std of the N(0, std^2) init of low-rank A_k."})
    seed: int = field(default=0, metadata={"help": "Seed of the low-rank head initialisation."})
    checkpoint_heads: bool = field(
        default=True,
        metadata={
            "help": "Full heads: in sequence_logps under autograd, recompute each head's logits in backward "
            "instead of storing them (activation checkpointing of the heads; keeps K heads' memory close to one). "
            "Low-rank heads always recompute their shared base projection in backward."
        },
    )
    base_model_name_or_path: str | None = field(
        default=None, metadata={"help": "Base model id/path; filled from the model's config when wrapping."}
    )

    def __post_init__(self) -> None:
        if self.num_heads < 1:
            raise ValueError(f"num_heads must be >= 1, got {self.num_heads}")
        if self.head_type not in HEAD_TYPES:
            raise ValueError(f"head_type must be one of {HEAD_TYPES}, got {self.head_type!r}")
        if self.head_rank < 1:
            raise ValueError(f"head_rank must be >= 1, got {self.head_rank}")
        if self.head_names is None:
            self.head_names = [f"head_{k}" for k in range(self.num_heads)]
        self.head_names = [str(name) for name in self.head_names]
        if len(self.head_names) != self.num_heads or len(set(self.head_names)) != self.num_heads:
            raise ValueError(f"head_names must be {self.num_heads} distinct names, got {self.head_names}")
