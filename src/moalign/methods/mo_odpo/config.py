"""``MOODPOConfig``: arguments of Multi-Objective Online DPO (MO-ODPO paper, arXiv 2503.00295, Algorithm 1).

Adds to :class:`~moalign.trainers.base_config.MultiObjectiveConfig` the fields of the algorithm: the reward
functions (one objective each), the weight sampling (§3.2), the conditioning (§3.3), the on-policy sampling
(§3.4), the pair labelling and its ties (eq. 2), the reward normalisation and the DPO loss (eq. 3). ODPO Soups'
specialists are the same trainer with ``fixed_weights`` one-hot and ``condition_prompt: false``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from moalign.trainers.base_config import MultiObjectiveConfig


@dataclass
class MOODPOConfig(MultiObjectiveConfig):
    """Training arguments of MO-ODPO (see the module docstring and docs/mo_odpo.md)."""

    reward_functions: list[str] | None = field(
        default=None,
        metadata={"help": "One reward function per objective, in order (moalign.rewards.registry names: offline "
                  "scorers, KNOWN_REWARD_MODELS keys, 'hf:<path>'; or 'py:<module>:<callable>' for a Python "
                  "reward). 'name=spec' renames the objective. Required by the trainer (unless it is given reward_funcs)."},
    )
    dirichlet_alpha: list[float] = field(
        default_factory=lambda: [1.0],
        metadata={"help": "Dirichlet concentration of the per-prompt weights (§3.2): one value for all objectives "
                  "or one per objective. 1 = uniform on the simplex, < 1 corners, > 1 centre."},
    )
    weight_decimals: int = field(default=1, metadata={"help": "Weights are quantised to this many decimals (the "
                                                       "paper: 1), largest-remainder rounding, sum exactly 1."})
    fixed_weights: list[float] | None = field(
        default=None,
        metadata={"help": "Use these weights for every prompt instead of sampling (ODPO Soups' specialists: a "
                  "one-hot vector such as [1, 0])."},
    )
    condition_prompt: bool = field(
        default=True,
        metadata={"help": "Write the weights into the prompt (§3.3). False: the policy sees the plain prompt "
                  "(ODPO Soups' specialists)."},
    )
    conditioning_begin: str = field(default="[Begin System Instruction]",
                                    metadata={"help": "First line of the conditioning block (§3.3)."})
    conditioning_end: str = field(default="[End System Instruction]",
                                  metadata={"help": "Last line of the conditioning block (§3.3)."})
    conditioning_item: str = field(default="{name}: {weight}",
                                   metadata={"help": "Format of one objective in the block ({name}, {weight})."})
    conditioning_as_system_message: bool | None = field(
        default=None,
        metadata={"help": "Give the block as a system message of the chat template. Default: whenever the chat "
                  "template is used; otherwise it is prepended to the text prompt."},
    )
    anchor_prompt: str = field(
        default="conditioned",
        metadata={"help": "Prompt of the anchor's log-probs in eq. 3: 'conditioned' (x', the paper's equation) or "
                  "'unconditioned' (x; the paper reports no difference)."},
    )
    beta: float = field(default=0.1, metadata={"help": "KL coefficient beta of the DPO loss (eq. 3)."})
    tie_rule: str = field(
        default="skip",
        metadata={"help": "Pairs with |s_1 - s_2| <= tie_tolerance: 'skip' (left out of the loss, counted as "
                  "pairs/ties) or 'second' (eq. 2 literally: y_2 preferred)."},
    )
    tie_tolerance: float = field(default=0.0, metadata={"help": "Weighted scores closer than this are a tie."})
    reward_normalization: str = field(
        default="minmax",
        metadata={"help": "'minmax': per objective, min-max statistics of the raw scores of the first training "
                  "batch's samples (the initial policy's), frozen and saved, so rewards lie in about [0, 1] "
                  "(not clipped); 'none': the rewards are used as they are (already in [0, 1])."},
    )
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature of the two responses."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus mass of the sampling (1 = off)."})
    top_k: int = field(default=0, metadata={"help": "Top-k of the sampling (0 = off)."})
    generation_batch_size: int | None = field(
        default=None,
        metadata={"help": "Prompts per generate() call (each gives 2 samples); default: the whole batch."},
    )
    eval_seed: int = field(default=1234, metadata={"help": "Seed of the weights and samples of evaluation "
                                                    "(the training RNGs are not touched)."})

    def __post_init__(self) -> None:
        num = len(self.reward_functions) if self.reward_functions is not None else None
        if num is not None and num < 2:
            raise ValueError(f"MO-ODPO needs reward_functions with K >= 2 entries, got {self.reward_functions}")
        alpha = list(self.dirichlet_alpha)
        if num is not None and len(alpha) not in (1, num):
            raise ValueError(f"dirichlet_alpha: give 1 or {num} values, got {alpha}")
        if not all(math.isfinite(a) and a > 0 for a in alpha):
            raise ValueError(f"dirichlet_alpha must be > 0, got {alpha}")
        if self.fixed_weights is not None:
            w = [float(x) for x in self.fixed_weights]
            if (num is not None and len(w) != num) or any(x < 0 for x in w) or abs(sum(w) - 1) > 1e-6:
                raise ValueError(f"fixed_weights must hold one non-negative weight per reward function, summing "
                                 f"to 1, got {self.fixed_weights}")
        if self.anchor_prompt not in ("conditioned", "unconditioned"):
            raise ValueError(f"anchor_prompt must be 'conditioned' or 'unconditioned', got {self.anchor_prompt!r}")
        if self.tie_rule not in ("skip", "second"):
            raise ValueError(f"tie_rule must be 'skip' or 'second', got {self.tie_rule!r}")
        if self.reward_normalization not in ("minmax", "none"):
            raise ValueError(f"reward_normalization must be 'minmax' or 'none', got {self.reward_normalization!r}")
        if not self.beta > 0 or not self.temperature > 0 or not 0 < self.top_p <= 1 or self.top_k < 0:
            raise ValueError("need beta > 0, temperature > 0, 0 < top_p <= 1, top_k >= 0")
        if self.tie_tolerance < 0:
            raise ValueError(f"tie_tolerance must be >= 0, got {self.tie_tolerance}")
        if self.generation_batch_size is not None and self.generation_batch_size < 1:
            raise ValueError(f"generation_batch_size must be >= 1, got {self.generation_batch_size}")
        super().__post_init__()

    def alpha_vector(self, num_objectives: int) -> list[float]:
        """One Dirichlet concentration per objective."""
        alpha = [float(a) for a in self.dirichlet_alpha]
        if len(alpha) not in (1, num_objectives):
            raise ValueError(f"dirichlet_alpha: give 1 or {num_objectives} values, got {alpha}")
        return alpha * num_objectives if len(alpha) == 1 else alpha
