"""Configuration of ODPO Soups (MO-ODPO paper §4.2): MO-ODPO's fields plus the soup's interpolation."""

from __future__ import annotations

from dataclasses import dataclass, field

from moalign.models.soups import INTERPOLATIONS
from moalign.methods.mo_odpo.config import MOODPOConfig
from moalign.methods.rewarded_soups.config import INTERPOLATION_HELP


@dataclass
class ODPOSoupsConfig(MOODPOConfig):
    """ODPO Soups: one MO-ODPO specialist per objective (one-hot fixed weights, no conditioning), then the soup.

    ``fixed_weights`` and ``condition_prompt`` are set per specialist by the trainer and must be left unset.
    """

    interpolation: str = field(default="linear", metadata={"help": INTERPOLATION_HELP})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}")
        if self.fixed_weights is not None:
            raise ValueError("odpo_soups sets fixed_weights itself (one-hot per specialist); leave it unset")
