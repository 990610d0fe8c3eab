"""Synthetic benchmark 1: MOPO on the context-free 3-armed bandit (mopo-paper §4.1, Figure 4).

Two objectives, actions ``y1, y2, y3`` (indices 0, 1, 2), a uniform reference
policy, and the five preference datasets D1-D5 printed in §4.1. The policy is
``softmax(psi)``, ``psi in R^3``, trained by Algorithm 1 with Adam (lr 0.015),
mini-batches of 12 rows drawn with replacement from the symmetrically
augmented dataset, for 20k steps, for tau in {0.1, 0.5, 1} and 5 seeds.

The tabular form of Algorithm 1 implemented here (docs/bandit.md has the
derivation and every unstated hyperparameter with its reason):

* line 4: draw 12 rows; per action, the mini-batch win rate on each objective
  (:func:`moalign.core.mopo.tabular_win_rates`; an action never first in the
  batch gets 0 -- the paper's eq. 11 sum -- which is also what down-weights
  the never-observed ``y3`` of D5);
* lines 5-7: :class:`moalign.core.mopo.MOPODual` -- chi of the pessimistic
  lower bound (eq. 12, corrected sign; 'gradient' = the paper's projected step,
  'exact' = bisection), the projected dual step on lambda, and the closed-form
  ratio ``w ∝ exp((r_p + lambda r_q)/tau)`` self-normalised under the lagged
  reference ``pi_lag``;
* line 8: weighted behaviour cloning over the action set,
  ``loss = -sum_y pi_lag(y) w(y) log softmax(psi)_y`` (tabular eqs. 7/13: the
  expectation under ``pi_ref`` of ``rho log pi``, with ``pi_ref`` replaced by
  ``pi_lag`` -- the tabular form of re-weighting by ``pi_lag/pi_ref``). Its
  gradient ``softmax(psi) - pi_lag * w`` is written into ``psi.grad`` (no
  autograd graph for 3 logits) and applied by ``torch.optim.Adam``, whose
  update is elementwise, so one optimiser serves all runs' ``(R, 3)`` logits;
* lines 9-11: every ``t0`` steps the threshold (``threshold_rule``): ``'attained'`` (default,
  ours) ``b <- beta * mean LB`` over the phase just ended, the bound the dual step compared with b;
  ``'paper'`` ``b <- beta * G_hat(pi_psi)`` (G_hat on the full augmented dataset, eq. 10, as
  printed; diverges for eps > 0); ``'lower_bound'`` ``b <- beta * LB(pi_psi)`` (full data, w = 1);
  ``'primary_winrate'`` (a hypothesis about Figure 4, not in the paper) ``b <- beta * F_hat(pi_psi)``
  -- :func:`moalign.core.thresholds.next_threshold`, the trainer's function -- and ``pi_lag <- pi_psi``
  (``snapshot_time='lagged'``: ``pi_psi^(t - t0)`` as printed).

All (dataset, tau, seed) runs advance together as one tensor program: leading
dimension R = datasets x taus x seeds. Randomness is drawn per seed (one
generator per seed, shared by every dataset and tau: common random numbers),
so a run's trajectory does not depend on which other runs share the program.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from moalign.core.mopo import MOPODual, constraint_value, symmetric_augmentation, tabular_win_rates
from moalign.core.thresholds import ALL_THRESHOLD_RULES, ReferenceValue, next_threshold
from moalign.experiments.bandit_cop import solve_cop, solve_phase  # noqa: F401  (re-exported)
from moalign.experiments.bandit_steps import behaviour_cloning_step, single_torch_thread  # noqa: F401

ACTIONS = ("y1", "y2", "y3")
NUM_ACTIONS = 3
NUM_OBJECTIVES = 2
QUICK_STEPS = 2000
BANDIT_THRESHOLD_RULES = ALL_THRESHOLD_RULES  # the trainer's rules and the primary_winrate hypothesis

# §4.1, exactly as printed: (first action, second action, (I_1, I_2)); y_i is index i-1.
DATASETS: dict[str, tuple[tuple[int, int, tuple[float, float]], ...]] = {
    "D1": ((0, 1, (1.0, 1.0)), (1, 2, (1.0, 1.0)), (0, 2, (1.0, 1.0))),  # total order
    "D2": ((0, 1, (1.0, 1.0)), (0, 2, (1.0, 0.0)), (1, 2, (0.0, 0.0))),  # partial order
    "D3": ((0, 1, (1.0, 1.0)), (0, 2, (1.0, 0.0)), (1, 2, (1.0, 0.0))),  # antichain
    "D4": ((0, 1, (1.0, 0.0)), (0, 2, (0.0, 1.0)), (1, 2, (0.0, 0.0))),  # pairwise incomparable
    "D5": ((0, 1, (1.0, 1.0)), (1, 0, (0.0, 1.0))),  # unobserved preferences (y3 never appears)
}


@dataclass
class BanditConfig:
    """Configuration of the §4.1 bandit sweep. Paper-stated values are marked; the rest carry their reason."""

    out: str = field(default="runs/bandit", metadata={"help": "Output directory for bandit.json and bandit.png."})
    datasets: list[str] = field(
        default_factory=lambda: list(DATASETS), metadata={"help": "Datasets to run, a subset of D1..D5 (§4.1)."}
    )
    taus: list[float] = field(
        default_factory=lambda: [0.1, 0.5, 1.0], metadata={"help": "KL coefficients tau (§4.1: {0.1, 0.5, 1})."}
    )
    seeds: int = field(default=5, metadata={"help": "Independent runs per (dataset, tau) (§4.1 / Fig. 4: 5)."})
    seed: int = field(default=0, metadata={"help": "First seed; runs use seeds seed, seed+1, ..., seed+seeds-1."})
    steps: int = field(default=20000, metadata={"help": "Training steps (§4.1: 20k)."})
    quick: bool = field(
        default=False,
        metadata={"help": f"Fast tier for CI smoke tests: run min(steps, {QUICK_STEPS}) steps."},
    )
    batch_size: int = field(default=12, metadata={"help": "Rows per mini-batch, drawn with replacement (§4.1: 12)."})
    sampling: str = field(
        default="minibatch",
        metadata={"help": "'minibatch' (§4.1: rows drawn with replacement from the augmented data) or 'full' "
                  "(every step sees the whole augmented dataset once: deterministic, used as the correctness "
                  "anchor against the exact COP solution)."},
    )
    lr: float = field(default=0.015, metadata={"help": "Adam learning rate of the policy logits psi (§4.1: 0.015)."})
    adam_beta1: float = field(default=0.9, metadata={"help": "Adam beta1 (unstated; PyTorch default)."})
    adam_beta2: float = field(default=0.999, metadata={"help": "Adam beta2 (unstated; PyTorch default)."})
    adam_eps: float = field(default=1e-8, metadata={"help": "Adam epsilon (unstated; PyTorch default)."})
    primary_objective: int = field(
        default=1,
        metadata={"help": "0-based index of the primary (maximised) objective. The paper's notation makes the LAST "
                  "objective primary (p_K, §2), so the default 1 = objective 2; objective 1 is lower-bounded."},
    )
    lower_bound_eps: float = field(
        default=0.15,
        metadata={"help": "KL radius eps of the pessimistic lower bound, eq. (4). Unstated for the bandit; 0.15 is "
                  "the paper's only stated value (Table 2, text tasks). 0 disables pessimism (LB = G_hat)."},
    )
    chi_solver: str = field(
        default="gradient",
        metadata={"help": "'gradient': the paper's projected step on chi (Alg. 1 line 5); 'exact': bisection on the "
                  "concave dual each step (exact but ~15x slower here: 60 bisection iterations per step)."},
    )
    chi_learning_rate: float = field(
        default=0.015,
        metadata={"help": "Step size of the 'gradient' chi solver (unstated; Alg. 1 uses one learning rate eta for "
                  "chi, lambda and psi, so we use the policy's 0.015)."},
    )
    initial_chi: float = field(
        default=1.0, metadata={"help": "chi^(0) (unstated; 1 = the scale of the win rates, MOPODual's default)."}
    )
    lambda_learning_rate: float = field(
        default=0.015,
        metadata={"help": "Dual step size of Alg. 1 line 6 (unstated; Alg. 1 uses one eta for all updates, so the "
                  "policy's 0.015: lambda moves at most 0.015 per step for a gap in [-1, 1])."},
    )
    initial_lambda: float = field(
        default=0.0,
        metadata={"help": "lambda^(0) (unstated; 0 = start from the unconstrained KL-regularised problem)."},
    )
    threshold_mode: str = field(
        default="adaptive",
        metadata={"help": "'adaptive': every lag_steps, b <- threshold_beta * G_hat(pi_psi) (§3.1, Alg. 1 line 10; "
                  "per threshold_rule); 'fixed': b = initial_threshold throughout (the COP of eq. 1)."},
    )
    initial_threshold: float | None = field(
        default=None,
        metadata={"help": "b^(0) in [0, 1] (unstated). None: the adaptive rule applied to the initial iterate "
                  "pi_ref on the full augmented data: threshold_beta * G_hat(pi_ref) (0.5 * beta on D1-D4, beta / 3 "
                  "on D5) with threshold_rule 'paper', threshold_beta * LB(pi_ref) with 'lower_bound' and 'attained', "
                  "threshold_beta * F_hat(pi_ref) with 'primary_winrate'."},
    )
    threshold_beta: float = field(
        default=0.9995,
        metadata={"help": "Relaxation beta of b <- beta * G_hat (unstated for the bandit; Table 2's 0.9995)."},
    )
    threshold_rule: str = field(
        default="attained",
        metadata={"help": "Adaptive threshold rule of Alg. 1 line 10 (also b^(0) when initial_threshold is None). "
                  "'attained' (default; ours, not in the paper): b <- beta * the mean, over the lag phase just "
                  "ended, of the lower bound the dual step compared with b -- the constraint is set from the very "
                  "estimator it is checked with, so lambda stays bounded (docs/bandit.md). 'paper': b <- beta * "
                  "G_hat(pi_psi), the printed rule; with lower_bound_eps > 0 it asks the pessimistic bound for more "
                  "than any policy attains and lambda diverges (documented with its trajectory). 'lower_bound': "
                  "b <- beta * LB(pi_psi) on the full data at w = 1 (an earlier variant; mini-batch noise still "
                  "ratchets D1, D2, D4). 'primary_winrate': HYPOTHESIS, not in the paper -- b <- beta * F_hat(pi_psi), "
                  "the previous policy's PRIMARY win rate (use with lower_bound_eps 0); a guess at how Figure 4 was "
                  "produced (it lands on the equal-win-rate points)."},
    )
    threshold_source: str | None = field(
        default=None,
        metadata={"help": "Deprecated alias of threshold_rule kept for old commands: 'estimate' = threshold_rule "
                  "'paper', 'lower_bound' = 'lower_bound'. None: use threshold_rule."},
    )
    lambda_max: float | None = field(
        default=None,
        metadata={"help": "Project lambda onto [0, lambda_max] in the dual step (not in the paper; None = [0, inf) as "
                  "printed). A candidate fix compared in docs/bandit.md; it bounds lambda but not the violation."},
    )
    snapshot_time: str = field(
        default="current",
        metadata={"help": "Which iterate becomes the lagged reference (and, for 'paper'/'lower_bound'/"
                  "'primary_winrate', the threshold's source) at t mod t0 = 0: 'current' = pi_psi at step t (ours), "
                  "'lagged' = pi_psi^(t - t0) as printed in Alg. 1 lines 10-11 (the iterate of the previous update; "
                  "pi_ref at the first)."},
    )
    lag_steps: int | None = field(
        default=500,
        metadata={"help": "t0: every t0 steps pi_lag <- pi_psi and (adaptive mode) b is updated (unstated for the "
                  "bandit; Table 2's 500). 0 or None: never (fixed uniform reference, b stays at b^(0))."},
    )
    log_every: int = field(default=100, metadata={"help": "Record curves and traces every this many steps."})
    dtype: str = field(default="float64", metadata={"help": "'float64' or 'float32' for all tensors."})

    def __post_init__(self) -> None:
        self.datasets = list(self.datasets)
        self.taus = [float(t) for t in self.taus]
        unknown = [d for d in self.datasets if d not in DATASETS]
        _check(not unknown and self.datasets and len(set(self.datasets)) == len(self.datasets), "datasets",
               self.datasets, f"a non-empty list of distinct names from {list(DATASETS)}")
        _check(self.taus and all(math.isfinite(t) and t > 0 for t in self.taus), "taus", self.taus,
               "a non-empty list of finite values > 0")
        _check(len({tau_key(t) for t in self.taus}) == len(self.taus), "taus", self.taus,
               "distinct values (as written in the JSON keys, f'{tau:g}')")
        for name in ("seeds", "steps", "batch_size", "log_every"):
            _check(isinstance(getattr(self, name), int) and getattr(self, name) >= 1, name, getattr(self, name),
                   "an integer >= 1")
        _check(self.sampling in ("minibatch", "full"), "sampling", self.sampling, "'minibatch' or 'full'")
        for name in ("lr", "adam_eps", "chi_learning_rate", "lambda_learning_rate", "initial_chi"):
            _check(math.isfinite(getattr(self, name)) and getattr(self, name) > 0, name, getattr(self, name), "> 0")
        for name in ("adam_beta1", "adam_beta2"):
            _check(0 <= getattr(self, name) < 1, name, getattr(self, name), "a value in [0, 1)")
        _check(self.primary_objective in range(NUM_OBJECTIVES), "primary_objective", self.primary_objective,
               f"an objective index in 0..{NUM_OBJECTIVES - 1}")
        _check(math.isfinite(self.lower_bound_eps) and self.lower_bound_eps >= 0, "lower_bound_eps",
               self.lower_bound_eps, ">= 0")
        _check(self.chi_solver in ("exact", "gradient"), "chi_solver", self.chi_solver, "'exact' or 'gradient'")
        _check(self.initial_lambda >= 0, "initial_lambda", self.initial_lambda, ">= 0")
        _check(self.threshold_mode in ("adaptive", "fixed"), "threshold_mode", self.threshold_mode,
               "'adaptive' or 'fixed'")
        _check(self.initial_threshold is None or 0 <= self.initial_threshold <= 1, "initial_threshold",
               self.initial_threshold, "None or a value in [0, 1]")
        _check(0 < self.threshold_beta <= 1, "threshold_beta", self.threshold_beta, "a value in (0, 1]")
        _check(self.threshold_source in (None, "estimate", "lower_bound"), "threshold_source",
               self.threshold_source, "None, 'estimate' or 'lower_bound'")
        if self.threshold_source is not None:  # the old field name: map it onto the rule
            self.threshold_rule = {"estimate": "paper", "lower_bound": "lower_bound"}[self.threshold_source]
            self.threshold_source = None
        _check(self.threshold_rule in BANDIT_THRESHOLD_RULES, "threshold_rule", self.threshold_rule,
               f"one of {BANDIT_THRESHOLD_RULES}")
        _check(self.lambda_max is None or self.lambda_max > 0, "lambda_max", self.lambda_max, "None or > 0")
        _check(self.snapshot_time in ("current", "lagged"), "snapshot_time", self.snapshot_time,
               "'current' or 'lagged'")
        _check(self.lag_steps is None or (isinstance(self.lag_steps, int) and self.lag_steps >= 0), "lag_steps",
               self.lag_steps, "None or an integer >= 0")
        _check(self.dtype in ("float64", "float32"), "dtype", self.dtype, "'float64' or 'float32'")

    @property
    def total_steps(self) -> int:
        """Steps actually run: ``min(steps, QUICK_STEPS)`` in the quick tier, else ``steps``."""
        return min(self.steps, QUICK_STEPS) if self.quick else self.steps


def _check(ok: object, name: str, value: object, expected: str) -> None:
    if not ok:
        raise ValueError(f"BanditConfig.{name}: got {value!r}, expected {expected}")


def tau_key(tau: float) -> str:
    """The JSON key of a tau value: ``0.1 -> '0.1'``, ``1.0 -> '1'``."""
    return f"{tau:g}"


# --------------------------------------------------------------------------- data
def augmented_dataset(name: str, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows of dataset ``name`` followed by their swapped copies (labels ``1 - I``), §3.1.

    Returns ``(first (2N,), second (2N,), labels (2N, 2))``.
    """
    rows = DATASETS[name]
    first = torch.tensor([r[0] for r in rows])
    second = torch.tensor([r[1] for r in rows])
    labels = torch.tensor([r[2] for r in rows], dtype=dtype)
    return symmetric_augmentation(first, second, labels)


def full_data_win_rates(name: str, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Win rate of each action on each objective over the whole augmented dataset, ``(3, 2)``.

    The tabular ``p_k(y > mu)`` that eq. (11) estimates; an action never first (D5's y3) gets 0.
    """
    first, _, labels = augmented_dataset(name, dtype)
    return tabular_win_rates(first, labels, NUM_ACTIONS)[0]


# --------------------------------------------------------------------------- simulation
@dataclass
class _Sweep:
    """Padded per-dataset data and the run layout R = datasets x taus x seeds (in that order)."""

    first: torch.Tensor  # (D, rows_max) first action of each augmented row (padding: 0, never sampled)
    labels: torch.Tensor  # (D, rows_max, 2)
    num_rows: torch.Tensor  # (D,)
    full_rates: torch.Tensor  # (D, 3, 2)
    run_dataset: torch.Tensor  # (R,)
    run_tau: torch.Tensor  # (R,)
    run_seed: torch.Tensor  # (R,) index into the seed list


def _build_sweep(config: BanditConfig, dtype: torch.dtype) -> _Sweep:
    data = [augmented_dataset(name, dtype) for name in config.datasets]
    rows_max = max(len(f) for f, _, _ in data)
    first = torch.zeros(len(data), rows_max, dtype=torch.long)
    labels = torch.zeros(len(data), rows_max, NUM_OBJECTIVES, dtype=dtype)
    for d, (f, _, lab) in enumerate(data):
        first[d, : len(f)] = f
        labels[d, : len(f)] = lab
    num_d, num_t, num_s = len(config.datasets), len(config.taus), config.seeds
    grid = torch.cartesian_prod(torch.arange(num_d), torch.arange(num_t), torch.arange(num_s))
    return _Sweep(
        first=first,
        labels=labels,
        num_rows=torch.tensor([len(f) for f, _, _ in data]),
        full_rates=torch.stack([full_data_win_rates(name, dtype) for name in config.datasets]),
        run_dataset=grid[:, 0],
        run_tau=torch.tensor(config.taus, dtype=dtype)[grid[:, 1]],
        run_seed=grid[:, 2],
    )


def _chunk_win_rates(sweep: _Sweep, generators: list[torch.Generator], steps: int, batch_size: int,
                     sampling: str) -> torch.Tensor:
    """Win rates ``(steps, R, 3, 2)`` of ``steps`` future mini-batches (they do not depend on the policy)."""
    num_runs = sweep.run_dataset.numel()
    if sampling == "full":
        return sweep.full_rates[sweep.run_dataset].unsqueeze(0).expand(steps, num_runs, NUM_ACTIONS, NUM_OBJECTIVES)
    uniform = torch.stack(
        [torch.rand(steps, batch_size, generator=g, dtype=sweep.labels.dtype) for g in generators], dim=1
    )[:, sweep.run_seed]  # (steps, R, B): one stream per seed, shared by all datasets and taus
    rows = sweep.num_rows[sweep.run_dataset].unsqueeze(-1)  # (R, 1)
    index = (uniform * rows).long().minimum(rows - 1)  # uniform row in [0, num_rows) of the run's dataset
    actions = sweep.first[sweep.run_dataset].expand(steps, -1, -1).gather(-1, index)
    run_labels = sweep.labels[sweep.run_dataset].expand(steps, -1, -1, -1)
    labels = run_labels.gather(-2, index.unsqueeze(-1).expand(-1, -1, -1, NUM_OBJECTIVES))
    return tabular_win_rates(actions, labels, NUM_ACTIONS)[0]


def adaptive_threshold_value(policy: torch.Tensor, secondary_rates: torch.Tensor, beta: float, rule: str,
                             eps: float, primary_rates: torch.Tensor | None = None) -> torch.Tensor:
    """The adaptive threshold of Alg. 1 line 10 computed from a tabular policy, ``(..., K-1)``: the core rule.

    ``policy`` ``(..., 3)``, ``secondary_rates`` ``(..., 3, K-1)`` (full-data win rates).
    ``beta * constraint_value(...)`` (:func:`moalign.core.thresholds.next_threshold` of
    :func:`moalign.core.mopo.constraint_value` with ``probs = policy``): ``rule='paper'`` (or the old
    name ``'estimate'``) scales ``G_hat = sum_y pi(y) r_q(y)`` (eq. 10, the printed rule); ``'lower_bound'`` and
    ``'attained'`` the exact pessimistic lower bound (eq. 4, radius ``eps``) of ``E_pi[r_q]`` over
    ``KL(pi_k || pi) <= eps`` (``'attained'`` uses it for b^(0) only; later thresholds come from the phase's
    own bounds, see :func:`simulate`); ``'primary_winrate'`` (hypothesis, not in the paper) scales the
    policy's PRIMARY win rate ``F_hat = sum_y pi(y) r_p(y)`` (``primary_rates`` ``(..., 3)``).
    """
    rule = "paper" if rule == "estimate" else rule
    return next_threshold(rule, beta, None, reference_value(policy, secondary_rates, eps, primary_rates))


def reference_value(policy: torch.Tensor, secondary_rates: torch.Tensor, eps: float,
                    primary_rates: torch.Tensor | None = None) -> ReferenceValue:
    """``source -> value`` of the tabular ``policy`` on the full-data win rates, for core's ``next_threshold``:
    G_hat (``'estimate'``), the exact lower bound of radius ``eps`` (``'lower_bound'``) or the primary F_hat
    (``'primary_estimate'``, expanded to the K-1 secondary columns), each ``(..., K-1)``."""

    def value(source: str) -> torch.Tensor:
        if source == "primary_estimate":
            primary = constraint_value(primary_rates.unsqueeze(-1), "estimate", 0.0, probs=policy)
            return primary.expand(secondary_rates.shape[:-2] + secondary_rates.shape[-1:])
        return constraint_value(secondary_rates, source, eps, probs=policy)

    return value


TRACE_NAMES = ("lambda", "threshold", "G_policy", "G_batch", "lower_bound", "chi")
PHASE_NAMES = ("lambda", "threshold", "G_policy", "lower_bound", "G_batch")
"""Per lag phase (recorded at its end, t mod t0 = 0): lambda at the end, the threshold b that was in force,
the full-data G_hat of pi_psi at the end, and the means over the phase of the lower bound and the mini-batch
G_hat that the dual step computed (the quantities b was checked against)."""


def simulate(config: BanditConfig, progress: bool = True) -> dict[str, torch.Tensor]:
    """Run every (dataset, tau, seed) of ``config`` as one vectorised Algorithm 1.

    Returns tensors with leading dims ``(D, T, S)``: ``probs`` ``(D, T, S, L, 3)``
    (policy at each logged step), each of :data:`TRACE_NAMES` ``(D, T, S, L)``,
    ``final_probs`` ``(D, T, S, 3)`` and ``logged_steps`` ``(L,)``. Runs under
    ``torch.inference_mode`` (no autograd bookkeeping: ~15% less per-op overhead
    than ``no_grad`` here), so the returned tensors are inference tensors, and
    with one torch thread (:func:`single_torch_thread`; the caller's setting is restored).
    """
    with single_torch_thread(), torch.inference_mode():
        return _simulate(config, progress)


def _simulate(config: BanditConfig, progress: bool) -> dict[str, torch.Tensor]:
    dtype = getattr(torch, config.dtype)
    sweep = _build_sweep(config, dtype)
    num_runs = sweep.run_dataset.numel()
    generators = [torch.Generator().manual_seed(config.seed + s) for s in range(config.seeds)]
    p_idx = config.primary_objective
    q_idx = [k for k in range(NUM_OBJECTIVES) if k != p_idx]
    full_secondary = sweep.full_rates[sweep.run_dataset][..., q_idx]  # (R, 3, K-1)

    reference = torch.full((num_runs, NUM_ACTIONS), 1.0 / NUM_ACTIONS, dtype=dtype)
    psi = torch.zeros(num_runs, NUM_ACTIONS, dtype=dtype)  # softmax(0) = the uniform reference
    # Elementwise, so one Adam over the (R, 3) logits is R independent Adams (Alg. 1 line 8).
    optimiser = torch.optim.Adam([psi], lr=config.lr, betas=(config.adam_beta1, config.adam_beta2),
                                 eps=config.adam_eps)
    full_primary = sweep.full_rates[sweep.run_dataset][..., p_idx]  # (R, 3)
    if config.initial_threshold is None:  # the adaptive rule applied to the initial iterate pi_ref
        threshold = adaptive_threshold_value(reference, full_secondary, config.threshold_beta,
                                             config.threshold_rule, config.lower_bound_eps, full_primary)
    else:
        threshold = torch.full((num_runs, len(q_idx)), config.initial_threshold, dtype=dtype)
    dual = MOPODual(
        lam=torch.full((num_runs, len(q_idx)), config.initial_lambda, dtype=dtype),
        threshold=threshold,
        chi=torch.full((num_runs, len(q_idx)), config.initial_chi, dtype=dtype),
        tau=sweep.run_tau,
        eps=config.lower_bound_eps,
        lr_lambda=config.lambda_learning_rate,
        chi_solver=config.chi_solver,
        lr_chi=config.chi_learning_rate,
        lam_max=config.lambda_max,
    )
    lag = config.lag_steps or 0
    pi_lag = reference.clone()
    previous_snapshot = reference.clone()  # pi_psi^(t - t0) for snapshot_time='lagged' (pi_ref at the first update)
    phase_sum = {name: torch.zeros(num_runs, dtype=dtype) for name in ("lower_bound", "G_batch")}
    phase_count = 0
    phases: dict[str, list[torch.Tensor]] = {name: [] for name in PHASE_NAMES}
    lam_max_seen = dual.lam[..., 0].clone()
    last_reference = pi_lag

    total = config.total_steps
    logged = [0] + list(range(config.log_every, total + 1, config.log_every))
    if logged[-1] != total:
        logged.append(total)
    records: dict[str, list[torch.Tensor]] = {name: [] for name in ("probs", *TRACE_NAMES)}

    def record(g_batch: torch.Tensor, lower: torch.Tensor) -> None:
        pi = torch.softmax(psi, dim=-1)
        records["probs"].append(pi.clone())
        records["lambda"].append(dual.lam[..., 0].clone())
        records["threshold"].append(dual.threshold[..., 0].clone())
        records["G_policy"].append((pi.unsqueeze(-1) * full_secondary).sum(dim=-2)[..., 0])
        records["G_batch"].append(g_batch[..., 0].clone())
        records["lower_bound"].append(lower[..., 0].clone())
        records["chi"].append(dual.chi[..., 0].clone())

    nan = torch.full((num_runs, len(q_idx)), float("nan"), dtype=dtype)
    record(nan, nan)
    bar = tqdm(total=total, desc="bandit", unit="step", disable=not progress, mininterval=0.5)
    for start, stop in zip(logged[:-1], logged[1:]):
        rates = _chunk_win_rates(sweep, generators, stop - start, config.batch_size, config.sampling)
        primary, secondary = rates[..., p_idx], rates[..., q_idx]
        for i, t in enumerate(range(start + 1, stop + 1)):
            out = dual.step(primary[i], secondary[i], probs=pi_lag)  # Alg. 1 lines 5-7
            target = pi_lag * out.weights  # the closed-form policy pi* ∝ pi_lag rho_lambda
            behaviour_cloning_step(psi, optimiser, target)  # line 8
            lam_max_seen = torch.maximum(lam_max_seen, dual.lam[..., 0])
            phase_sum["lower_bound"] += out.lower_bound[..., 0]
            phase_sum["G_batch"] += out.estimate[..., 0]
            phase_count += 1
            if lag and t % lag == 0:  # Alg. 1 lines 9-11
                current = torch.softmax(psi, dim=-1)
                source = previous_snapshot if config.snapshot_time == "lagged" else current
                mean_lb = phase_sum["lower_bound"] / phase_count
                for name, value in (("lambda", dual.lam[..., 0]), ("threshold", dual.threshold[..., 0]),
                                    ("G_policy", (current.unsqueeze(-1) * full_secondary).sum(dim=-2)[..., 0]),
                                    ("lower_bound", mean_lb), ("G_batch", phase_sum["G_batch"] / phase_count)):
                    phases[name].append(value.clone())
                if config.threshold_mode == "adaptive":  # the trainer's rule (core.thresholds.next_threshold)
                    dual.threshold = next_threshold(
                        config.threshold_rule, config.threshold_beta, mean_lb.unsqueeze(-1),
                        reference_value(source, full_secondary, config.lower_bound_eps, full_primary))
                last_reference = pi_lag
                pi_lag = source
                previous_snapshot = current
                phase_count = 0
                for value in phase_sum.values():
                    value.zero_()
        record(out.estimate, out.lower_bound)
        bar.update(stop - start)
    bar.close()

    shape = (len(config.datasets), len(config.taus), config.seeds)
    result = {name: torch.stack(values, dim=1).reshape(*shape, len(logged), *values[0].shape[1:])
              for name, values in records.items()}
    result["final_probs"] = result["probs"][..., -1, :]
    result["logged_steps"] = torch.tensor(logged)
    result["lambda_max"] = lam_max_seen.reshape(shape)
    result["final_threshold"] = dual.threshold[..., 0].reshape(shape)
    result["last_phase_reference"] = last_reference.reshape(*shape, NUM_ACTIONS)  # pi_lag of the last phase
    num_phases = len(phases["lambda"])
    for name, values in phases.items():
        result[f"phase_{name}"] = (torch.stack(values, dim=1).reshape(*shape, num_phases) if values
                                   else torch.zeros(*shape, 0, dtype=dtype))
    result["phase_steps"] = torch.arange(1, num_phases + 1) * max(lag, 1)
    return result
