"""Synthetic benchmark 2: the continuous toy problem of mopo-paper §2 / App. A.1 (Figures 1 and 7).

``run_toy(ToyConfig(set="A"))`` draws the preference data, runs the toy's own
baselines (the COP oracle, DPO on D1, D2, DJ and D_C(w): :mod:`moalign.experiments.toy_baselines`)
and the tabular version of every selected registered method (its registration's
``ToyEntry``, e.g. MOPO's Algorithm 1 with fixed thresholds and a lagged reference,
in registry order), evaluates every policy's expected rewards with the true reward
functions on the grid ``x = linspace(0, 1, 201)``, and compares each method's set
of policies with the true Pareto front by hypervolume. It writes ``toy_<set>.json`` (every
policy's parameters, probability vectors on the grid, expected rewards; the
true front; the reference point; the HV ratios) and ``toy_<set>.png``.
docs/toy.md documents every choice, the results and what did not work.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from moalign.experiments.toy_baselines import DPOSettings, cop_oracle, cop_threshold_range, train_dpo
from moalign.experiments.toy_plot import plot_toy
from moalign.experiments.toy_problem import (
    NUM_CONTEXTS,
    cell_widths,
    context_grid,
    expected_rewards,
    gap_to_front,
    hypervolume_ratio,
    mixture_hypervolume_ratio,
    sample_preference_data,
    true_front,
)
from moalign.experiments.toy_run import ToyRun
from moalign.methods.mopo.toy import PRIMARIES
from moalign.methods.mopo.toy_dual import TOY_CONSTRAINT_ESTIMATORS, TOY_THRESHOLD_RULES

QUICK = {"num_rows": 20_000, "seeds": 1, "dc_weights": 5, "cop_thresholds": 9, "mopo_thresholds": 5,
         "dpo_steps": 150, "mopo_steps": 300, "front_num_y": 401, "front_num_weights": 401}
#: the toy's own baselines (not registered methods): the COP oracle and DPO on single-label data
BASELINES = ("cop", "dpo")


def toy_entries() -> dict[str, Any]:
    """Every registered method with a toy version: name -> its ``ToyEntry`` (registry order)."""
    from moalign.methods.registry import methods_in_order

    return {name: m.toy for name, m in methods_in_order().items() if m.toy is not None}


def all_toy_methods() -> tuple[str, ...]:
    """What ``--methods`` accepts: the baselines, then every registered method with a toy version."""
    return BASELINES + tuple(toy_entries())


def default_toy_methods() -> list[str]:
    """The default selection: the baselines and the methods whose toy entry is a default (the others are opt-in,
    e.g. the online family's +1.6k policies in the JSON)."""
    return list(BASELINES) + [name for name, entry in toy_entries().items() if entry.default]


@dataclass
class ToyConfig:
    """Configuration of the toy benchmark. Paper-stated values are marked; the rest carry their reason."""

    set: str = field(default="A", metadata={"help": "Reward set of eq. (15): 'A' or 'B'."})
    out: str = field(default="runs/toy", metadata={"help": "Output directory for toy_<set>.json and toy_<set>.png."})
    seeds: int = field(default=3, metadata={"help": "Independent datasets + initialisations; HV ratios are "
                                                    "reported as mean +- std over seeds."})
    seed: int = field(default=0, metadata={"help": "First seed; runs use seed, seed+1, ..., seed+seeds-1."})
    methods: list[str] = field(default_factory=default_toy_methods, metadata={
        "help": "Which methods to run, space- or comma-separated: the baselines 'cop', 'dpo' and any registered "
                "method with a toy version (now: " + ", ".join(all_toy_methods()) + "; the default set is the "
                "baselines and the methods whose toy entry is a default; the uniform reference is always "
                "evaluated)."})
    quick: bool = field(default=False, metadata={"help": f"Fast tier for tests/CI smoke (well under a minute): "
                                                          f"overrides {sorted(QUICK)}."})
    num_rows: int = field(default=4_000_000, metadata={
        "help": "N, rows (x, y, y') ~ U[0,1]^3 per dataset (paper: 'arbitrary N'). Set A's r1 moves the BT win "
                "probability by at most ~0.06, so resolving the front needs many rows (docs/toy.md)."})
    num_actions: int = field(default=51, metadata={"help": "A, actions linspace(0, 1, A) of the categorical policies."})
    train_contexts: int = field(default=101, metadata={
        "help": "Context nodes linspace(0, 1, .) the networks are trained on (each row's x is rounded to the "
                "nearest); policies are always evaluated on the 201-node grid."})
    hidden: int = field(default=16, metadata={"help": "Width of the two tanh hidden layers of every policy MLP."})
    combined_weight: float = field(default=0.5, metadata={
        "help": "The single w of D_C = BT(w r1 + (1-w) r2) (not printed in the paper; 0.5 = equal weights)."})
    dc_weights: int = field(default=61, metadata={"help": "Number of w in linspace(0, 1, .) for the D_C sweep."})
    cop_thresholds: int = field(default=61, metadata={"help": "Number of b for each COP oracle sweep."})
    dpo_beta: float = field(default=0.01, metadata={"help": "DPO beta. The DPO optimum is pi ∝ exp(r / beta); small "
                                                            "beta makes it (near) the argmax of the label reward."})
    dpo_steps: int = field(default=1000, metadata={"help": "DPO Adam steps."})
    dpo_batch_size: int = field(default=2048, metadata={"help": "DPO rows per step (drawn with replacement)."})
    dpo_learning_rate: float = field(default=0.01, metadata={"help": "DPO Adam learning rate."})
    mopo_primaries: str = field(default="both", metadata={
        "help": "'r1' (primary r1, lower-bounded r2), 'r2', or 'both': one policy set per primary objective, as "
                "App. A.6 trains one head per primary; MOPO's reported set is their union."})
    mopo_thresholds: int = field(default=31, metadata={"help": "Number of fixed thresholds b per primary objective."})
    mopo_threshold_margin: float = field(default=0.1, metadata={
        "help": "The b sweep spans the data range [greedy, best] of the secondary win rate widened by this "
                "fraction on each side, so both ends of the front are reached."})
    mopo_ratio_form: str = field(default="winrate", metadata={
        "help": "'winrate': eq. (11) with the win rate of (x, action) (kernel-pooled over x); 'sample': each row's "
                "own labels (the per-sample form), constraint estimated per (x, action); 'sample_row': per-sample "
                "weights and the per-row estimate mean(w I_q) (biased, kept to document the failure)."})
    mopo_winrate_bandwidth_x: float | None = field(default=None, metadata={
        "help": "Bandwidth in x of the Gaussian kernel pooling rows of nearby contexts into each win rate (0: rows "
                "of the same context node only). None: chosen per seed and objective by 2-fold held-out label "
                "likelihood over (0, 0.02, 0.05, 0.1, 0.2, 0.5, 1)."})
    mopo_winrate_bandwidth_y: float | None = field(default=None, metadata={
        "help": "The same in y, pooling nearby actions (0: the action's own cell). None: chosen jointly with x "
                "over (0, 0.02, 0.05, 0.1)."})
    mopo_tau: float = field(default=0.02, metadata={"help": "KL coefficient tau of eq. (1)."})
    mopo_lag_steps: int = field(default=10, metadata={"help": "t0: steps between lagged-reference updates (§3.1)."})
    mopo_steps: int = field(default=1000, metadata={"help": "MOPO steps T of Algorithm 1."})
    mopo_learning_rate: float = field(default=0.02, metadata={"help": "Adam learning rate of the policies."})
    mopo_lambda_learning_rate: float = field(default=2.0, metadata={
        "help": "Dual step size of Alg. 1 line 6 (win-rate gaps are ~1e-2, so lambda moves ~0.02 per step)."})
    mopo_lag_clip: float = field(default=10.0, metadata={
        "help": "Clip of log(pi_lag / pi_ref). Bounds the importance weights; also the floor e^-clip below "
                "which a lagged policy's action weight is not reduced (10: floor ~5e-5)."})
    mopo_normalise: str = field(default="context", metadata={
        "help": "Self-normalisation of the weights: 'context' (over the rows of each context node, so the next "
                "policy is a distribution at every x, as the per-x closed form requires) or 'batch' (over all rows, "
                "docs/design.md, MOPO 2; tilts the context distribution by exp(./tau), docs/toy.md)."})
    mopo_lower_bound_eps: float = field(default=0.0, metadata={
        "help": "KL radius of the pessimistic lower bound (eq. 4); 0 constrains G_hat itself."})
    mopo_threshold_rule: str = field(default="fixed", metadata={
        "help": "Threshold rule (docs/design.md, MOPO 7; docs/toy.md): 'fixed' (each b of the sweep held throughout: "
                "how the toy traces a front), or the sweep values as b^(0) adapted every mopo_lag_steps by "
                "'attained' (b <- beta * phase mean of the checked bound, the trainer's rule), 'paper' "
                "(b <- beta * G_hat of the lagged policy, Alg. 1 line 10) or 'lower_bound'."})
    mopo_threshold_beta: float = field(default=0.9995, metadata={"help": "beta of the adaptive rules (Table 2)."})
    mopo_threshold_warmup_steps: int = field(default=0, metadata={
        "help": "Adaptive rules: steps with b held at its sweep value b^(0) before the rule takes over (0: adapt "
                "from the first lag phase; docs/toy.md)."})
    mopo_lambda_max: float | None = field(default=10.0, metadata={
        "help": "Project lambda's step onto [0, lambda_max] (core.mopo.dual_step; not in the paper): bounds lambda "
                "for the sweep's thresholds that no policy can meet (their lambda otherwise grows with the steps). "
                "Default 10, above every feasible threshold's lambda measured (A <= 6.8, B <= 3.9); None: "
                "[0, inf) as printed (on the command line: --mopo_lambda_max inf; docs/toy.md)."})
    mopo_constraint_estimator: str = field(default="row", metadata={
        "help": "Weights of G_hat and LB (Alg. 1 line 5): 'row' the ratio's own (eq. 10; per-row labels in "
                "'sample_row', biased), 'policy' the label-free clip(pi_theta / mu) (MOPOTrainer's default)."})
    ham_ks: list[int] = field(default_factory=lambda: [2, 5, 10], metadata={
        "help": "HaM: number of policies K, one HaM run per value (exact HV of eq. 6; methods/ham/toy.py)."})
    ham_steps: int = field(default=1000, metadata={"help": "Adam steps (full batch) of HaM, SCA and RiC's SFT."})
    ham_learning_rate: float = field(default=0.05, metadata={"help": "Adam learning rate of HaM's and SCA's logits."})
    ham_init_noise: float = field(default=0.1, metadata={
        "help": "Std of the seeded N(0, .) added to the uniform initial logits (identical heads never separate)."})
    ham_z_scale: float = field(default=2.0, metadata={
        "help": "z of eq. 4 = ham_z_scale * max_j |F_j(uniform policy)| of the seed's data (the text trainer's rule)."})
    ham_smooth_temperature: float | None = field(default=None, metadata={
        "help": "None: the clip of eq. 4; t > 0: the softplus variant t*softplus(u/t)."})
    ric_preferences: int = field(default=11, metadata={"help": "RiC: preferences (w, 1-w), w evenly in [0, 1]."})
    ric_learning_rate: float = field(default=0.1, metadata={"help": "RiC: Adam learning rate of the SFT."})
    odpo_steps: int = field(default=1500, metadata={
        "help": "Adam steps of the online methods (MO-ODPO, P-MORL, the soups' specialists; toy_online.py). MODPO "
                "uses dpo_steps, dpo_batch_size, dpo_learning_rate."})
    odpo_beta: float = field(default=0.1, metadata={"help": "DPO beta of MO-ODPO and the ODPO specialists."})
    odpo_alpha: float = field(default=0.5, metadata={
        "help": "Dirichlet alpha of MO-ODPO's and P-MORL's weights (paper: 1.0 / 0.7; 0.5 reaches the front's ends)."})
    odpo_learning_rate: float = field(default=0.01, metadata={"help": "Adam lr of MO-ODPO and the ODPO specialists."})
    front_num_y: int = field(default=2001, metadata={"help": "Fine y grid of the true-front computation."})
    front_num_weights: int = field(default=2001, metadata={"help": "Weights w in [0, 1] of the true-front sweep."})
    reference_margin: float = field(default=0.1, metadata={
        "help": "HV reference point = true front's nadir - margin * (ideal - nadir)."})

    def resolved(self) -> ToyConfig:
        """The configuration actually run (quick tier applied), validated."""
        if self.set not in ("A", "B"):
            raise ValueError(f"ToyConfig.set must be 'A' or 'B', got {self.set!r}")
        if self.mopo_primaries not in PRIMARIES:
            raise ValueError(f"ToyConfig.mopo_primaries must be one of {sorted(PRIMARIES)}, "
                             f"got {self.mopo_primaries!r}")
        if self.seeds < 1:
            raise ValueError(f"ToyConfig.seeds must be >= 1, got {self.seeds}")
        if self.mopo_threshold_rule not in TOY_THRESHOLD_RULES:
            raise ValueError(f"ToyConfig.mopo_threshold_rule must be one of {TOY_THRESHOLD_RULES}, "
                             f"got {self.mopo_threshold_rule!r}")
        if self.mopo_constraint_estimator not in TOY_CONSTRAINT_ESTIMATORS:
            raise ValueError(f"ToyConfig.mopo_constraint_estimator must be one of {TOY_CONSTRAINT_ESTIMATORS}, "
                             f"got {self.mopo_constraint_estimator!r}")
        if self.mopo_lambda_max is not None and not self.mopo_lambda_max > 0:
            raise ValueError(f"ToyConfig.mopo_lambda_max must be > 0 or None, got {self.mopo_lambda_max}")
        methods = [m.strip() for item in self.methods for m in str(item).split(",") if m.strip()]
        offered = all_toy_methods()
        unknown = set(methods) - set(offered)
        if unknown:
            raise ValueError(f"ToyConfig.methods has unknown entries {sorted(unknown)}; use {', '.join(offered)}")
        cfg = replace(self, methods=methods)
        return replace(cfg, **QUICK) if cfg.quick else cfg


def _round_probs(probs: np.ndarray) -> np.ndarray:
    """Probability vectors as stored in the JSON: rounded to 6 decimals (rows sum to 1 within 3e-5)."""
    return np.round(np.asarray(probs, float), 6)


def _normalised(stored: np.ndarray) -> np.ndarray:
    """A stored (rounded) probability array, each row renormalised: what every policy is evaluated as."""
    return stored / stored.sum(-1, keepdims=True)


def _json_rows(stored: np.ndarray) -> list:
    """Rows of a stored probability array for JSON, exact zeros written as ``0`` to keep the file small."""
    return [[v if v else 0 for v in row] for row in stored.tolist()]


def run_toy(config: ToyConfig, progress: bool = True) -> dict:
    """Run the benchmark for one reward set; write ``toy_<set>.json`` and ``toy_<set>.png`` into ``config.out``."""
    cfg = config.resolved()
    torch.set_num_threads(1)
    start = time.time()
    timings: dict[str, float] = {}
    seeds = [cfg.seed + i for i in range(cfg.seeds)]
    a_n = cfg.num_actions

    t = time.time()
    front = true_front(cfg.set, NUM_CONTEXTS, cfg.front_num_y, cfg.front_num_weights, cfg.reference_margin)
    timings["true_front"] = time.time() - t

    dc_w = np.unique(np.append(np.linspace(0.0, 1.0, cfg.dc_weights), cfg.combined_weight))
    entries = {name: entry for name, entry in toy_entries().items() if name in cfg.methods}
    t = time.time()
    datasets = [sample_preference_data(cfg.set, cfg.num_rows, dc_w, np.random.default_rng(s)) for s in seeds
                if "dpo" in cfg.methods or any(e.pairwise_rows for e in entries.values())]  # only where used
    timings["data"] = time.time() - t

    policies: list[dict] = []

    def add(method: str, params: dict, probs: np.ndarray) -> None:
        stored = _round_probs(probs)
        policies.append({"method": method, "params": params, "probs": stored})

    # uniform reference policy (the DPO reference and MOPO's pi_ref)
    add("uniform reference", {}, np.broadcast_to(cell_widths(a_n), (NUM_CONTEXTS, a_n)))

    # COP oracle (true rewards), absolute and relative thresholds
    for relative, name in ((False, "COP"), (True, "COP (relative b)")) if "cop" in cfg.methods else ():
        lo, hi = cop_threshold_range(cfg.set, a_n, NUM_CONTEXTS, relative)
        bs = np.linspace(lo, hi, cfg.cop_thresholds)
        for b, probs in zip(bs, cop_oracle(cfg.set, bs, a_n, NUM_CONTEXTS, relative)):
            add(name, {"b": float(b), "relative": relative}, probs)

    # DPO baselines
    if "dpo" in cfg.methods:
        _run_dpo(cfg, datasets, seeds, dc_w, add, timings, progress)
    run = ToyRun(cfg=cfg, seeds=seeds, datasets=datasets, add=add, timings=timings, progress=progress)
    for entry in entries.values():  # every selected method's tabular version, in registry order
        entry.runner(run)

    # evaluation with the true rewards
    for p in policies:
        p["expected_rewards"] = expected_rewards(cfg.set, _normalised(p["probs"])).tolist()
        p["gap_to_front"] = float(gap_to_front(np.array(p["expected_rewards"]), front)[0])
    methods = _summarise(policies, front, seeds)
    result = {
        "config": asdict(cfg),
        "format": "policies[i].probs[c][a] = probability of action grids.y[a] at context grids.x[c], rounded to 6 "
                  "decimals (normalise each row before use); expected_rewards = mean over c of "
                  "sum_a probs[c][a] * r_k(x[c], y[a]) with rows normalised; hypervolumes use reference_point "
                  "(maximisation); hv_ratio = HV(a method's policies of one seed) / HV(true front).",
        "grids": {"x": context_grid(NUM_CONTEXTS).tolist(), "y": np.linspace(0, 1, a_n).tolist()},
        "true_front": {"vertices": front.vertices.tolist(), "hypervolume": front.hypervolume,
                       "ideal": front.ideal.tolist(), "nadir": front.nadir.tolist()},
        "reference_point": front.reference.tolist(),
        "methods": methods,
        "policies": [{**p, "probs": _json_rows(p["probs"])} for p in policies],
        "timings_s": {**timings, "total": time.time() - start},
    }
    for report in run.reports:  # e.g. the weighted-likelihood report over every method (toy_weighted_likelihood)
        report(policies, front, methods)
    result.update(run.results)  # what the methods report beyond their policies (e.g. mopo_dual, odpo_settings)
    out_dir = Path(cfg.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / f"toy_{cfg.set}.json", "w") as fh:
        json.dump(result, fh, separators=(",", ":"))
    plot_toy(result, out_dir / f"toy_{cfg.set}.png")
    result["timings_s"]["total"] = time.time() - start
    return result


AddPolicy = Callable[[str, dict, np.ndarray], None]


def _run_dpo(cfg: ToyConfig, datasets: list, seeds: list[int], dc_w: np.ndarray, add: AddPolicy,
             timings: dict, progress: bool) -> None:
    """DPO on D1, D2, DJ and every D_C(w), all seeds in one batch of networks."""
    t = time.time()
    dpo = DPOSettings(cfg.dpo_beta, cfg.dpo_steps, cfg.dpo_batch_size, cfg.dpo_learning_rate, cfg.hidden)
    names, dpo_probs = train_dpo(datasets, cfg.num_actions, dpo, seeds, cfg.train_contexts, progress)
    timings["dpo"] = time.time() - t
    for si, seed in enumerate(seeds):
        for di, name in enumerate(names):
            params = {"dataset": name, "beta": cfg.dpo_beta, "seed": seed}
            if name.startswith("DC"):
                w = float(dc_w[di - 3])
                params["w"] = w
                add("DPO-DC sweep", params, dpo_probs[si, di])
                if np.isclose(w, cfg.combined_weight):
                    add("DPO-DC", params, dpo_probs[si, di])
            else:
                add(f"DPO-{name}", params, dpo_probs[si, di])


def _summarise(policies: list[dict], front, seeds: list[int]) -> dict:
    """HV ratio (staircase over the policies, and with mixtures) per method: per seed, mean and std."""
    summary = {}
    for method in dict.fromkeys(p["method"] for p in policies):
        rows = [p for p in policies if p["method"] == method]
        seeded = [s for s in seeds if any(p["params"].get("seed") == s for p in rows)] or [None]
        ratios, mixtures = [], []
        for s in seeded:
            pts = np.array([p["expected_rewards"] for p in rows if p["params"].get("seed") == s])
            ratios.append(hypervolume_ratio(pts, front))
            mixtures.append(mixture_hypervolume_ratio(pts, front))
        gaps = [p["gap_to_front"] for p in rows]
        summary[method] = {
            "policies_per_seed": len(rows) // len(seeded), "hv_ratio_per_seed": ratios,
            "hv_ratio_mean": float(np.mean(ratios)), "hv_ratio_std": float(np.std(ratios)),
            "hv_ratio_mixtures_mean": float(np.mean(mixtures)),
            "gap_to_front_median": float(np.median(gaps)), "gap_to_front_max": float(np.max(gaps)),
        }
    return summary


def format_table(result: dict) -> str:
    """The HV-ratio table of a result as Markdown."""
    lines = ["| method | policies/seed | HV ratio (mean ± std over seeds) | HV ratio with mixtures | "
             "median gap to front |", "|---|---|---|---|---|"]
    for name, m in result["methods"].items():
        lines.append(f"| {name} | {m['policies_per_seed']} | {m['hv_ratio_mean']:.3f} ± {m['hv_ratio_std']:.3f} | "
                     f"{m['hv_ratio_mixtures_mean']:.3f} | {m['gap_to_front_median']:.3f} |")
    return "\n".join(lines)
