"""Configuration of :class:`~moalign.methods.ham.trainer.HaMTrainer` (and the fields SCA shares with it).

HaM paper (arXiv 2412.05469): K policies (heads) maximise the hypervolume of
their normalised weighted log-likelihoods (eqs. 4, 6, 9). The paper leaves z
(eq. 4) unstated; its defaults here carry their reasons in the help texts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from moalign.trainers.base_config import MultiObjectiveConfig

HV_ESTIMATORS = ("auto", "exact", "random")
REWARD_NORMALIZATIONS = ("minmax", "none")


@dataclass
class WeightedLikelihoodConfig(MultiObjectiveConfig):
    """Fields of the methods built on eq. 9 / eq. 4 (HaM, SCA): reward mapping and the normalisation z."""

    reward_normalization: str = field(
        default="minmax",
        metadata={"help": "How scores become rewards r_j in [0, 1] (eq. 3 needs [0, 1]): 'minmax' fits "
                  "moalign.rewards.RewardNormalizer(method='minmax') on the training scores, maps each objective "
                  "by (s - min) / (max - min) and clips to [0, 1] (only rows outside the training range, e.g. "
                  "evaluation rows, are clipped); the fitted statistics are saved as reward_normalizer.json with "
                  "the model and in every checkpoint. 'none': scores are used as they are and must lie in [0, 1]."},
    )
    z: float | None = field(
        default=None,
        metadata={"help": "z > 0 of eq. 4, F_bar = max((F + z) / z, 0). Unstated in the paper; its Theorem 1 asks "
                  "z >= L with log p >= -L. Default: set once, from the first training batch, to z_scale times the "
                  "largest |F_j| of the initial heads (so that they start near 1 - 1/z_scale, away from the clip); "
                  "then fixed and saved in checkpoints."},
    )
    z_scale: float = field(default=2.0, metadata={"help": "Multiplier of the automatic z (see z); > 1."})
    smooth_temperature: float | None = field(
        default=None,
        metadata={"help": "None: the clip of eq. 4 (zero gradient where F + z < 0: a head pushed below -z on "
                  "an objective stops learning from it). t > 0: the smooth variant t * softplus(((F + z)/z)/t), "
                  "within t*log(2) of the clip, gradient > 0 everywhere."},
    )

    def __post_init__(self) -> None:
        if self.reward_normalization not in REWARD_NORMALIZATIONS:
            raise ValueError(f"reward_normalization must be one of {REWARD_NORMALIZATIONS}, "
                             f"got {self.reward_normalization!r}")
        if self.z is not None and not self.z > 0:
            raise ValueError(f"z must be > 0 (eq. 4) or unset for the automatic value, got {self.z}")
        if not self.z_scale > 1:
            raise ValueError(f"z_scale must be > 1 (z below max |F| clips the initial heads), got {self.z_scale}")
        if self.smooth_temperature is not None and not self.smooth_temperature > 0:
            raise ValueError(f"smooth_temperature must be > 0 or unset, got {self.smooth_temperature}")
        if self.precompute_ref_log_probs:
            raise ValueError("precompute_ref_log_probs: this method uses no reference model; leave it false")
        super().__post_init__()


@dataclass
class HaMConfig(WeightedLikelihoodConfig):
    """HaM's own fields: the number of policies K and the hypervolume estimator (eq. 6 or eq. 10)."""

    num_policies: int = field(
        default=5,
        metadata={"help": "K: number of policy heads (policy_0 .. policy_{K-1}) on the shared backbone (paper "
                  "§4: K = 5)."},
    )
    hv_estimator: str = field(
        default="auto",
        metadata={"help": "'exact': inclusion-exclusion (eq. 6, O(J K 2^K)); 'random': random hypervolume "
                  "scalarisation (eq. 10, §3.6, O(J K N)); 'auto': exact up to exact_max_policies heads, random "
                  "beyond."},
    )
    exact_max_policies: int = field(
        default=10, metadata={"help": "Largest K for which 'auto' uses the exact hypervolume (2^10 subsets)."}
    )
    num_directions: int = field(
        default=1024,
        metadata={"help": "N random directions of eq. 10 per step (error O(1/sqrt(N))); redrawn every step from "
                  "seed + step, so runs and resumed runs draw the same ones."},
    )
    full_head_init_noise: float = field(
        default=0.01,
        metadata={"help": "head_type='full' heads start as identical copies of the output layer, and identical "
                  "heads get identical HV gradients forever (the min of eq. 6 shares a tie's gradient equally). "
                  "When all heads are equal at the start, each gets N(0, (noise * std(W))^2) added once, seeded. "
                  "0 disables. (Low-rank heads differ through their random A_k already.)"},
    )

    def __post_init__(self) -> None:
        if self.num_policies < 1:
            raise ValueError(f"num_policies must be >= 1, got {self.num_policies}")
        if self.hv_estimator not in HV_ESTIMATORS:
            raise ValueError(f"hv_estimator must be one of {HV_ESTIMATORS}, got {self.hv_estimator!r}")
        if self.hv_estimator == "exact" and self.num_policies > 20:
            raise ValueError(f"hv_estimator='exact' with {self.num_policies} policies needs 2^K subsets; use "
                             "'random' (eq. 10) beyond 20")
        if self.num_directions < 1:
            raise ValueError(f"num_directions must be >= 1, got {self.num_directions}")
        if self.full_head_init_noise < 0:
            raise ValueError(f"full_head_init_noise must be >= 0, got {self.full_head_init_noise}")
        super().__post_init__()

    @property
    def uses_exact_hypervolume(self) -> bool:
        """Whether the loss uses eq. 6 (else eq. 10)."""
        if self.hv_estimator == "auto":
            return self.num_policies <= self.exact_max_policies
        return self.hv_estimator == "exact"
