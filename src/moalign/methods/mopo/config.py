"""Configuration of :class:`~moalign.methods.mopo.trainer.MOPOTrainer`.

Defaults follow the MOPO paper's App. A.6 Table 2 (tau = 0.08, eps = 0.15,
beta = 0.9995, t0 = 500, LoRA r = 16, alpha = 32, dropout = 0.05) where the
paper states them; everything it leaves unstated carries its reason in the
field's help text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from moalign.trainers.base_config import MultiObjectiveConfig


@dataclass
class MOPOConfig(MultiObjectiveConfig):
    """MOPO's own fields on top of :class:`MultiObjectiveConfig` (one policy head per primary objective)."""

    primary_objectives: list[str] | None = field(
        default=None,
        metadata={"help": "Objectives that get a policy head (each head maximises its objective and lower-bounds "
                  "the others). Default: every objective of the dataset."},
    )

    # ---------------------------------------------------------------- MOPO
    tau: float = field(default=0.08, metadata={"help": "KL regularisation tau of eq. (1) (paper Table 2: 0.08)."})
    lower_bound_eps: float = field(
        default=0.15,
        metadata={"help": "KL radius eps of the pessimistic lower bound, eq. (4) (paper Table 2: 0.15). 0 disables it."},
    )
    lower_bound_minibatches: int = field(
        default=1,
        metadata={"help": "M of eq. (12): the 2*batch weighted samples are split into M groups sharing chi. Must "
                  "divide 2 * per_device_train_batch_size."},
    )
    chi_solver: str = field(
        default="exact", metadata={"help": "'exact' (bisection on the concave dual) or 'gradient' (Alg. 1 line 5)."}
    )
    chi_learning_rate: float = field(default=0.01, metadata={"help": "Step size of the 'gradient' chi solver."})
    lambda_learning_rate: float = field(
        default=0.05,
        metadata={"help": "Dual step size of Alg. 1 line 6 (unstated in the paper; 0.05 moves lambda by at most "
                  "0.05 per step for a constraint gap in [-1, 1], slow against the policy's learning rate)."},
    )
    initial_lambda: float = field(
        default=0.0, metadata={"help": "Initial lambda (unstated in the paper; 0 = start unconstrained)."}
    )
    threshold_mode: str = field(
        default="adaptive",
        metadata={"help": "'adaptive': every lag_steps, b <- beta * G_hat of the lagged policy (§3.1); "
                  "'fixed': use `thresholds` throughout (the COP of eq. 1)."},
    )
    thresholds: list[float] | None = field(
        default=None,
        metadata={"help": "Initial (adaptive) or fixed (fixed mode) thresholds b in [0,1], one per secondary "
                  "objective, in dataset objective order. Default: beta times the reference policy's value on the "
                  "first batch (G_hat = 0.5 exactly under symmetric augmentation, or its lower bound)."},
    )
    threshold_rule: str = field(
        default="attained",
        metadata={"help": "Adaptive threshold rule (Alg. 1 line 10; docs/design.md, MOPO 7). 'attained' (default, "
                  "ours): b <- beta * the mean, over the lag phase just ended, of the lower bound the dual step "
                  "compared with b -- set from the estimator it is checked with, so lambda stays bounded "
                  "(docs/bandit.md, docs/toy.md). 'paper': b <- beta * G_hat of the lagged policy as printed; with "
                  "lower_bound_eps > 0 it asks the pessimistic bound for more than the policy attains and lambda "
                  "diverges (docs/bandit.md). 'lower_bound': b <- beta * LB of the lagged policy (earlier variant)."},
    )
    threshold_source: str | None = field(
        default=None,
        metadata={"help": "Deprecated alias of threshold_rule: 'estimate' = 'paper', 'lower_bound' = "
                  "'lower_bound'. None: use threshold_rule."},
    )
    constraint_estimator: str = field(
        default="policy",
        metadata={"help": "Weights of the constraint estimate G_hat = mean(w I_q) and its lower bound (Alg. 1 line 5; "
                  "docs/design.md, MOPO 7). 'policy' (default): the head's own ratio clip(pi_theta / pi_ref), which "
                  "does not depend on the row's label -- an honest estimate of the policy's secondary value. 'row': "
                  "the closed-form weight of the row's own labels (eq. 10/11 as printed), biased upward: "
                  "E[Cov(rho, I_q | y)] > 0, G_hat -> 1 as lambda grows whatever the policy does."},
    )
    threshold_beta: float = field(default=0.9995, metadata={"help": "Relaxation beta of b <- beta * G (Table 2: 0.9995)."})
    lag_steps: int = field(
        default=500,
        metadata={"help": "t0: every t0 optimizer steps the lagged reference becomes the current policy and b is "
                  "updated (Table 2: 500). 0 disables the lagged reference (fixed reference)."},
    )
    snapshot_time: str = field(
        default="current",
        metadata={"help": "Which policy becomes the lagged reference at a lag update at step t. 'current' "
                  "(default): the policy at t. 'lagged': the policy at t - t0, as Alg. 1 line 11 is printed (one "
                  "extra CPU copy of the adapter and heads; at the first update that policy is pi_ref, so the "
                  "lagged reference first moves at 2 t0). The threshold is set as the rule says from the values "
                  "measured over the phase just ended in either case (docs/design.md, MOPO 7)."},
    )
    lag_log_ratio_clip: float = field(
        default=5.0, metadata={"help": "Clip of log pi_lag/pi_ref per sequence before self-normalisation (docs/design.md, MOPO: lagged reference)."}
    )

    def __post_init__(self) -> None:
        if self.chi_solver not in ("exact", "gradient"):
            raise ValueError(f"chi_solver must be 'exact' or 'gradient', got {self.chi_solver!r}")
        if self.threshold_mode not in ("adaptive", "fixed"):
            raise ValueError(f"threshold_mode must be 'adaptive' or 'fixed', got {self.threshold_mode!r}")
        if self.threshold_source not in (None, "estimate", "lower_bound"):
            raise ValueError(f"threshold_source must be None, 'estimate' or 'lower_bound', got {self.threshold_source!r}")
        if self.threshold_source is not None:  # the old field: map it onto the rule
            self.threshold_rule = {"estimate": "paper", "lower_bound": "lower_bound"}[self.threshold_source]
            self.threshold_source = None
        if self.threshold_rule not in ("attained", "paper", "lower_bound"):
            raise ValueError(f"threshold_rule must be 'attained', 'paper' or 'lower_bound', got {self.threshold_rule!r}")
        if self.constraint_estimator not in ("policy", "row"):
            raise ValueError(f"constraint_estimator must be 'policy' or 'row', got {self.constraint_estimator!r}")
        if self.threshold_mode == "fixed" and self.thresholds is None:
            raise ValueError("threshold_mode='fixed' needs `thresholds`")
        if self.tau <= 0:
            raise ValueError(f"tau must be > 0, got {self.tau}")
        if self.lower_bound_eps < 0:
            raise ValueError(f"lower_bound_eps must be >= 0, got {self.lower_bound_eps}")
        if not 0 < self.threshold_beta <= 1:
            raise ValueError(f"threshold_beta must be in (0, 1], got {self.threshold_beta}")
        if self.snapshot_time not in ("current", "lagged"):
            raise ValueError(f"snapshot_time must be 'current' or 'lagged', got {self.snapshot_time!r}")
        if self.lag_steps < 0:
            raise ValueError(f"lag_steps must be >= 0, got {self.lag_steps}")
        super().__post_init__()
