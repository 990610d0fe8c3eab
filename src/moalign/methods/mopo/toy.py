"""MOPO on the continuous toy problem (mopo-paper §2 / App. A.1): its tabular version and toy entry point.

* :func:`train_mopo` -- Algorithm 1 (fixed thresholds b, lagged reference) for
  a sweep of b, each primary objective, all seeds, as one batch of networks,
  trained only on the pairwise rows ``(x, y, y', I1, I2)``. Lines 5-7 are
  :meth:`moalign.core.mopo.MOPODual.step`, with this problem's closed-form
  ratio (:class:`_ClosedFormRatio`, normalised per context) passed in as its
  ``weight_fn``.

Rows are grouped by (context node, first action[, labels]) after the symmetric
augmentation of §3.1; every MOPO quantity is a sum over rows, so the grouped
computation is the per-row computation, only cheaper.

:func:`run_toy` is MOPO's entry in ``moalign synthetic toy`` (its registration's ``ToyEntry``): a sweep of fixed
thresholds per primary objective (:func:`mopo_thresholds`), every policy added to the toy's list, the dual's
trajectory (:mod:`moalign.methods.mopo.toy_dual`) in the result as ``mopo_dual``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from moalign.core.cloning import behaviour_cloning_loss
from moalign.core.mopo import (
    MOPODual,
    closed_form_log_ratio,
    lagged_reference_log_weight,
    policy_estimate_weights,
    self_normalised_weights,
    symmetric_augmentation,
)
from moalign.experiments.toy_policy import BatchedPolicy
from moalign.experiments.toy_problem import (
    NUM_CONTEXTS,
    ToyPreferenceData,
    cell_widths,
    context_grid,
    nearest_node,
    true_win_rates,
)
from moalign.experiments.toy_run import ToyRun
from moalign.methods.mopo.toy_dual import TOY_CONSTRAINT_ESTIMATORS, DualTracker, mopo_dual_report

LABEL_COMBOS = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)  # (I1, I2)


# --------------------------------------------------------------------------- MOPO data tables
BANDWIDTHS_X = (0.0, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)  # candidates of the held-out bandwidth selection, in x
BANDWIDTHS_Y = (0.0, 0.02, 0.05, 0.1)  # and in y (0.02 = one action cell)


@dataclass
class PreferenceTables:
    """Augmented rows grouped per seed by context node ``g``, first action ``a`` and labels ``c``.

    ``label_mass (S, G, A, 4)``: fraction of augmented rows with (g, a) and
    label pair ``LABEL_COMBOS[c]``; ``mass (S, G, A)``: its sum over ``c``;
    ``win_rates (S, G, A, 2)``: the win rate of action a at context x_g on each
    objective -- the mean label of the rows whose first response is a (eq. 11),
    pooling the rows of nearby contexts and actions with a Gaussian product
    kernel of bandwidths ``bandwidths[s, k] = (h_x, h_y)`` (0: no pooling on that axis).
    """

    label_mass: torch.Tensor
    mass: torch.Tensor
    win_rates: torch.Tensor
    bandwidths: np.ndarray


def _label_counts(d: ToyPreferenceData, rows: np.ndarray | slice, num_contexts: int, num_actions: int
                  ) -> torch.Tensor:
    """Counts ``(G, A, 4)`` of the symmetrically augmented rows (§3.1) by (context node, first action, labels)."""
    node = torch.as_tensor(nearest_node(d.x[rows], num_contexts))
    first, _, labels = symmetric_augmentation(torch.as_tensor(nearest_node(d.y[rows], num_actions)),
                                              torch.as_tensor(nearest_node(d.y_other[rows], num_actions)),
                                              torch.as_tensor(d.labels[rows]))
    code = (2 * labels[:, 0] + labels[:, 1]).long()
    flat = (torch.cat([node, node]) * num_actions + first) * 4 + code
    return torch.bincount(flat, minlength=num_contexts * num_actions * 4).double().reshape(
        num_contexts, num_actions, 4)


def _wins(counts: torch.Tensor) -> torch.Tensor:
    """Rows won on each objective and rows in total: ``(..., G, A, 3)``."""
    return torch.stack([counts[..., 2:].sum(-1), counts[..., 1::2].sum(-1), counts.sum(-1)], dim=-1)


def _kernel(num_nodes: int, bandwidth: float) -> torch.Tensor:
    """Gaussian kernel matrix on ``linspace(0, 1, num_nodes)`` (identity for bandwidth 0)."""
    if bandwidth <= 0:
        return torch.eye(num_nodes, dtype=torch.float64)
    z = torch.as_tensor(context_grid(num_nodes))
    return torch.exp(-0.5 * ((z[:, None] - z[None, :]) / bandwidth) ** 2)


def _smooth(wins: torch.Tensor, bandwidth_x: float, bandwidth_y: float) -> torch.Tensor:
    """Kernel-pool ``(G, A, .)`` tables over nearby context nodes and actions."""
    return torch.einsum("gh,hbc,ab->gac", _kernel(wins.shape[0], bandwidth_x), wins,
                        _kernel(wins.shape[1], bandwidth_y))


def _rates(wins: torch.Tensor, bandwidth_x: float, bandwidth_y: float) -> torch.Tensor:
    pooled = _smooth(wins, bandwidth_x, bandwidth_y)
    return pooled[..., :2] / pooled[..., 2:].clamp_min(1e-300)


def select_bandwidths(d: ToyPreferenceData, num_contexts: int, num_actions: int,
                      candidates_x: tuple[float, ...] = BANDWIDTHS_X, candidates_y: tuple[float, ...] = BANDWIDTHS_Y
                      ) -> list[tuple[float, float]]:
    """Per objective, the (h_x, h_y) whose win rates best predict held-out labels (2-fold Bernoulli likelihood).

    Rows are split by index parity; the win rates of one half score the
    labels of the other half's rows in the same (context node, action) cell.
    A data-only choice: it pools where the labels do not change.
    """
    halves = [_wins(_label_counts(d, slice(i, None, 2), num_contexts, num_actions)) for i in (0, 1)]
    grid = [(hx, hy) for hx in candidates_x for hy in candidates_y]
    scores = np.zeros((len(grid), 2))
    for ci, (hx, hy) in enumerate(grid):
        for fit, held in ((halves[0], halves[1]), (halves[1], halves[0])):
            rate = _rates(fit, hx, hy).clamp(1e-4, 1 - 1e-4)
            won, total = held[..., :2], held[..., 2:]
            scores[ci] += (won * rate.log() + (total - won) * (1 - rate).log()).sum((0, 1)).numpy()
    return [grid[int(np.argmax(scores[:, k]))] for k in range(2)]


def preference_tables(datasets: list[ToyPreferenceData], num_actions: int, num_contexts: int = 201,
                      bandwidth_x: float | None = None, bandwidth_y: float | None = None) -> PreferenceTables:
    """Group every seed's rows into :class:`PreferenceTables`.

    A bandwidth left as None is chosen by :func:`select_bandwidths` (per seed
    and objective; the other axis fixed if given).
    """
    counts, rates, chosen = [], [], []
    for d in datasets:
        c = _label_counts(d, slice(None), num_contexts, num_actions)
        cand_x = BANDWIDTHS_X if bandwidth_x is None else (bandwidth_x,)
        cand_y = BANDWIDTHS_Y if bandwidth_y is None else (bandwidth_y,)
        hs = select_bandwidths(d, num_contexts, num_actions, cand_x, cand_y) if len(cand_x) * len(cand_y) > 1 \
            else [(cand_x[0], cand_y[0])] * 2
        wins = _wins(c)
        rates.append(torch.stack([_rates(wins, *hs[k])[..., k] for k in range(2)], dim=-1))
        counts.append(c / c.sum())
        chosen.append(hs)
    lm = torch.stack(counts)
    return PreferenceTables(lm, lm.sum(-1), torch.stack(rates), np.array(chosen))


# --------------------------------------------------------------------------- MOPO
@dataclass
class MOPOSettings:
    ratio_form: str  # "winrate" | "sample" | "sample_row"
    tau: float
    lag_steps: int
    steps: int
    learning_rate: float
    lambda_learning_rate: float
    lag_clip: float
    lower_bound_eps: float
    hidden: int
    normalise: str = "context"  # "context" | "batch"
    threshold_rule: str = "fixed"  # toy_dual.TOY_THRESHOLD_RULES: fixed b, or b^(0) adapted every lag_steps
    threshold_beta: float = 0.9995  # beta of the adaptive rules (paper Table 2)
    constraint_estimator: str = "row"  # "row": the ratio's own weights (eq. 10); "policy": clip(pi_theta / mu)
    threshold_warmup_steps: int = 0  # adaptive rules: b held at b^(0) for these steps, then adapted
    lambda_max: float | None = None  # projection of the dual step onto [0, lambda_max] (None: [0, inf), as printed)


def threshold_range(tables: PreferenceTables, primary: int) -> torch.Tensor:
    """Per seed, the secondary win rate of the primary-greedy policy and the largest one: ``(S, 2)``.

    Both from the data: per context, the action with the best primary win rate
    and its secondary win rate, and the best secondary win rate, averaged over
    contexts. Thresholds between them trade the objectives off.
    """
    p, q = tables.win_rates[..., primary], tables.win_rates[..., 1 - primary]
    greedy = q.gather(-1, p.argmax(-1, keepdim=True)).squeeze(-1).mean(-1)
    best = q.max(-1).values.mean(-1)
    return torch.stack([greedy, best], dim=-1)


class _ClosedFormRatio:
    """The closed-form log ratio per data unit for every (seed, primary, b), and the units' secondary values.

    Units are (g, a) cells, or (g, a, labels) groups of rows for "sample_row".
    ``log_ratio(lam (S, P, K, 1))`` returns ``(S, P, K, n)``; ``secondary
    (S, P, 1, n)`` is what G_hat averages (win rates of the cells, or the
    rows' own labels for "sample_row"); ``mass (S, 1, 1, n)`` the data
    distribution over units. Everything is float32.
    """

    def __init__(self, tables: PreferenceTables, settings: MOPOSettings, primaries: list[int]):
        f32 = torch.float32
        s = tables.mass.shape[0]
        self.form, self.tau = settings.ratio_form, settings.tau
        primary = torch.as_tensor(primaries)
        secondary = 1 - primary
        combos = LABEL_COMBOS.to(f32)
        mass = tables.mass.to(f32).reshape(s, 1, 1, -1)
        if self.form == "winrate":  # eq. (11): win rates of (x_g, a)
            rates = tables.win_rates.to(f32).reshape(s, -1, 2)
            self.p_val = rates[..., primary].permute(0, 2, 1)[:, :, None, :]  # (S, P, 1, n)
            self.secondary = rates[..., secondary].permute(0, 2, 1)[:, :, None, :]
            self.mass = mass
        else:  # per-sample labels, as four label groups per cell
            self.c_p = combos[:, primary].T[None, :, None, :]  # (1, P, 1, 4)
            self.c_q = combos[:, secondary].T[None, :, None, :]
            lm = tables.label_mass.to(f32).reshape(s, 1, 1, -1, 4)
            if self.form == "sample_row":
                n = lm.shape[-2]
                self.secondary = self.c_q[:, :, :, None, :].expand(s, -1, 1, n, 4).reshape(s, -1, 1, n * 4)
                self.mass = lm.reshape(s, 1, 1, -1)
            else:
                self.log_lm = torch.log(lm)
                self.log_mass = torch.log(mass)
                rates = (lm * self.c_q[:, :, :, None, :]).sum(-1) / mass
                self.secondary, self.mass = rates.nan_to_num(0.0), mass

    def log_ratio(self, lam: torch.Tensor) -> torch.Tensor:
        lam = lam.to(torch.float32)[..., None, :]  # (S, P, K, 1, 1)
        if self.form == "winrate":
            return closed_form_log_ratio(self.p_val, self.secondary[..., None], lam, self.tau)
        log_rho_c = closed_form_log_ratio(self.c_p, self.c_q[..., None], lam, self.tau)  # (S, P, K, 4)
        if self.form == "sample_row":  # the row's own labels
            n = self.mass.shape[-1] // 4
            return log_rho_c[:, :, :, None, :].expand(-1, -1, -1, n, -1).reshape(*log_rho_c.shape[:3], -1)
        # "sample": each row's ratio from its own labels, averaged over the rows of the (g, a) cell
        log_rho = torch.logsumexp(self.log_lm + log_rho_c[:, :, :, None, :], dim=-1) - self.log_mass
        return log_rho.nan_to_num(0.0)  # cells without rows (mass 0) carry no weight whatever their ratio


def train_mopo(tables: PreferenceTables, thresholds: torch.Tensor, primaries: list[int], settings: MOPOSettings,
               seed: int, num_contexts: int = 201, progress: bool = True, true_rates: np.ndarray | None = None
               ) -> dict:
    """Algorithm 1 with a lagged reference, for every (seed, primary, b) at once.

    ``thresholds (S, P, K)``. Each step is :meth:`MOPODual.step` (lines 5-7)
    with the toy's estimator injected as ``weight_fn``: weights from the
    closed-form ratio (:class:`_ClosedFormRatio`, times the clipped
    lagged-reference ratio ``pi_lag / mu``), self-normalised over the data
    (per context or over the batch); G_hat and LB (= G_hat when
    ``lower_bound_eps = 0``) of the units' secondary values under the data
    distribution; lambda's projected step on ``LB - b``; the new weights.
    Then one Adam step of weighted behaviour cloning (line 8); every
    ``lag_steps`` steps ``pi_lag <- pi`` (line 11). The (S, P, K) runs are
    MOPODual's leading dimensions, with one secondary objective.
    Training uses ``num_contexts`` context nodes (the tables' grid); returns
    probabilities ``(S, P, K, 201, A)`` on the evaluation grid, final lambdas and estimates, and
    ``dual``: :meth:`DualTracker.report` (lambda max, per-phase lambda / b / G_hat / LB, estimate - truth).

    Threshold rules (docs/design.md, MOPO 7; toy_dual.py): ``settings.threshold_rule`` keeps b fixed
    (``'fixed'``) or adapts it from b^(0) = ``thresholds`` every ``lag_steps`` (``'attained'``,
    ``'paper'``, ``'lower_bound'``; after ``threshold_warmup_steps`` with b = b^(0)); ``settings.constraint_estimator='policy'`` passes the label-free
    weights ``clip(pi_theta / mu)`` (normalised like the ratio's) to line 5 as ``estimate_weights``.
    ``true_rates (2, num_contexts, A)`` (:func:`toy_problem.true_win_rates`) enables the truth tracking.
    """
    if settings.ratio_form not in ("winrate", "sample", "sample_row"):
        raise ValueError(f"ratio_form must be 'winrate', 'sample' or 'sample_row', got {settings.ratio_form!r}")
    if settings.normalise not in ("context", "batch"):
        raise ValueError(f"normalise must be 'context' or 'batch', got {settings.normalise!r}")
    if settings.constraint_estimator not in TOY_CONSTRAINT_ESTIMATORS:
        raise ValueError(f"constraint_estimator must be one of {TOY_CONSTRAINT_ESTIMATORS}, "
                         f"got {settings.constraint_estimator!r}")
    s, p, k = thresholds.shape
    a_n = tables.mass.shape[-1]
    x_nodes = torch.as_tensor(context_grid(num_contexts))
    log_mu = torch.as_tensor(np.log(cell_widths(a_n)), dtype=torch.float32)
    gen = torch.Generator().manual_seed(int(seed) * 104729 + 3)
    policy = BatchedPolicy(s * p * k, a_n, settings.hidden, generator=gen)
    opt = torch.optim.Adam(policy.parameters(), lr=settings.learning_rate)
    # lambda, chi and b in float64 (the dual arithmetic), the weights in float32
    dual = MOPODual(lam=torch.zeros(s, p, k, 1, dtype=torch.float64), threshold=thresholds.to(torch.float64)[..., None],
                    tau=settings.tau, eps=settings.lower_bound_eps, lr_lambda=settings.lambda_learning_rate,
                    chi_solver="exact", lam_max=settings.lambda_max)
    ratio = _ClosedFormRatio(tables, settings, primaries)
    mass = ratio.mass
    secondary = ratio.secondary[..., None]  # (S, P, 1, n, K-1 = 1): what G_hat and LB average
    repeat = mass.shape[-1] // (num_contexts * a_n)  # units per (g, a) cell: 4 for "sample_row", else 1
    per_context = mass.reshape(s, 1, 1, num_contexts, -1)
    per_context = per_context / per_context.sum(-1, keepdim=True).clamp_min(1e-30)

    def lagged_weight() -> torch.Tensor:
        log_pi = policy.log_probs(x_nodes).reshape(s, p, k, num_contexts, a_n)
        extra = lagged_reference_log_weight(log_pi, log_mu, settings.lag_clip)
        return extra.reshape(s, p, k, -1).repeat_interleave(repeat, dim=-1)

    def weights(lam_: torch.Tensor, extra_: torch.Tensor) -> torch.Tensor:
        log_w = ratio.log_ratio(lam_) + extra_
        if settings.normalise == "batch":  # E_data[w] = 1 over all rows (docs/design.md, MOPO 2)
            return self_normalised_weights(log_w, mass)
        # per context: E_data[w | x] = 1, i.e. pi_next(. | x) = pi_ref(. | x) w sums to 1 at every x
        return self_normalised_weights(log_w.reshape(s, p, k, num_contexts, -1), per_context).reshape(log_w.shape)

    def own_weights(log_pi_: torch.Tensor) -> torch.Tensor:  # label-free clip(pi / mu), normalised like `weights`
        log_pi_units = log_pi_.repeat_interleave(repeat, dim=-1)  # (S, P, K, G, A * repeat)
        log_mu_units = log_mu.repeat_interleave(repeat)
        if settings.normalise == "batch":
            return policy_estimate_weights(log_pi_units.reshape(s, p, k, -1), log_mu_units.repeat(num_contexts),
                                           settings.lag_clip, mass)
        return policy_estimate_weights(log_pi_units, log_mu_units, settings.lag_clip, per_context).reshape(
            s, p, k, -1)

    truth = None if true_rates is None else torch.as_tensor(true_rates)[[1 - q for q in primaries]]  # (P, G, A)
    tracker = DualTracker(dual, secondary, mass, truth, settings.threshold_rule, settings.threshold_beta,
                          (s, p, k, num_contexts, a_n), repeat)
    with torch.no_grad():
        weight_fn = _LastWeights(weights, lagged_weight())
    estimate = torch.zeros_like(dual.lam)
    for step in tqdm(range(settings.steps), desc="MOPO", disable=not progress, leave=False):
        log_pi = policy.log_probs(x_nodes).reshape(s, p, k, num_contexts, a_n)
        with torch.no_grad():
            own = own_weights(log_pi.detach())
            start = weight_fn(dual.lam)  # the ratio's weights at the step's lambda (cached, used by the step)
        est = own if settings.constraint_estimator == "policy" else None
        out = dual.step(None, secondary, probs=mass, weight_fn=weight_fn, estimate_weights=est)  # lines 5-7
        estimate = out.estimate  # G_hat of the step's starting weights (S, P, K, 1)
        tracker.step(out, start, own, log_pi.detach())
        target = (out.weights * mass).reshape(s, p, k, num_contexts, a_n, repeat).sum(-1)
        loss = behaviour_cloning_loss(log_pi, target)  # line 8: weighted behaviour cloning, eq. (13)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (step + 1) % settings.lag_steps == 0:  # lines 9-11: b by the rule, pi_lag <- pi
            with torch.no_grad():
                log_pi = policy.log_probs(x_nodes).reshape(s, p, k, num_contexts, a_n)
                tracker.end_phase(log_pi, own_weights(log_pi), adapt=step + 1 > settings.threshold_warmup_steps)
                weight_fn = _LastWeights(weights, lagged_weight())
    probs = policy.probabilities(context_grid(NUM_CONTEXTS)).reshape(s, p, k, NUM_CONTEXTS, a_n)
    return {"probs": probs, "lambda": dual.lam[..., 0].numpy(), "estimate": estimate[..., 0].numpy(),
            "dual": tracker.report()}


class _LastWeights:
    """``lambda -> w`` for MOPODual.step with a fixed lagged reference, remembering its last answer.

    A step ends with the weights of the new lambda and the next step starts
    from the same lambda (the same tensor), so they are computed once.
    """

    def __init__(self, weights: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], extra: torch.Tensor):
        self.weights, self.extra = weights, extra
        self.lam: torch.Tensor | None = None
        self.value = torch.empty(0)

    def __call__(self, lam: torch.Tensor) -> torch.Tensor:
        if lam is not self.lam:
            self.lam, self.value = lam, self.weights(lam, self.extra)
        return self.value


# --------------------------------------------------------------------------- the toy's entry point
PRIMARIES = {"r1": [0], "r2": [1], "both": [0, 1]}


def mopo_thresholds(tables: PreferenceTables, primaries: list[int], count: int, margin: float) -> torch.Tensor:
    """Fixed thresholds ``(S, P, K)``: evenly over the data range of each secondary win rate, widened by margin."""
    out = []
    for primary in primaries:
        ends = threshold_range(tables, primary)  # (S, 2)
        frac = torch.linspace(-margin, 1.0 + margin, count, dtype=torch.float64)
        out.append(ends[:, :1] + frac[None] * (ends[:, 1:] - ends[:, :1]))
    return torch.stack(out, dim=1)


def run_toy(run: ToyRun) -> None:
    """MOPO for every (seed, primary, b) in one batch of networks, from the pairwise rows only."""
    cfg, seeds = run.cfg, run.seeds
    t = time.time()
    primaries = PRIMARIES[cfg.mopo_primaries]
    tables = preference_tables(run.datasets, cfg.num_actions, cfg.train_contexts, cfg.mopo_winrate_bandwidth_x,
                               cfg.mopo_winrate_bandwidth_y)
    thresholds = mopo_thresholds(tables, primaries, cfg.mopo_thresholds, cfg.mopo_threshold_margin)
    mopo = MOPOSettings(cfg.mopo_ratio_form, cfg.mopo_tau, cfg.mopo_lag_steps, cfg.mopo_steps,
                        cfg.mopo_learning_rate, cfg.mopo_lambda_learning_rate, cfg.mopo_lag_clip,
                        cfg.mopo_lower_bound_eps, cfg.hidden, cfg.mopo_normalise, cfg.mopo_threshold_rule,
                        cfg.mopo_threshold_beta, cfg.mopo_constraint_estimator, cfg.mopo_threshold_warmup_steps,
                        cfg.mopo_lambda_max)
    true_rates = true_win_rates(cfg.set, cfg.train_contexts, cfg.num_actions)  # estimate vs truth
    out = train_mopo(tables, thresholds, primaries, mopo, seeds[0], cfg.train_contexts, run.progress, true_rates)
    run.timings["mopo"] = time.time() - t
    dual = out["dual"]
    for si, seed in enumerate(seeds):
        for pi, primary in enumerate(primaries):
            for ki in range(thresholds.shape[-1]):
                run.add("MOPO", {"primary": f"r{primary + 1}", "secondary": f"r{2 - primary}",
                                 "b": float(thresholds[si, pi, ki]), "tau": cfg.mopo_tau,
                                 "ratio_form": cfg.mopo_ratio_form, "seed": seed,
                                 "final_lambda": float(out["lambda"][si, pi, ki]),
                                 "final_G_hat": float(out["estimate"][si, pi, ki]),
                                 "winrate_bandwidths": tables.bandwidths[si].tolist(),
                                 "threshold_rule": cfg.mopo_threshold_rule,
                                 "constraint_estimator": cfg.mopo_constraint_estimator,
                                 "max_lambda": float(dual["lambda_max"][si, pi, ki]),
                                 "final_threshold": float(dual["threshold_final"][si, pi, ki])},
                        out["probs"][si, pi, ki])
    # lambda, b, G_hat, LB per phase; estimate vs truth (toy_dual.py)
    run.results["mopo_dual"] = mopo_dual_report(dual, thresholds, primaries, seeds, cfg.mopo_lag_steps, {
        "threshold_rule": cfg.mopo_threshold_rule, "threshold_beta": cfg.mopo_threshold_beta,
        "constraint_estimator": cfg.mopo_constraint_estimator, "ratio_form": cfg.mopo_ratio_form,
        "threshold_warmup_steps": cfg.mopo_threshold_warmup_steps, "lambda_max": cfg.mopo_lambda_max})
