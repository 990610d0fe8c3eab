"""The weighted-likelihood toy family (HaM, SCA, RiC in ``moalign synthetic toy``): shared statistics and report.

HaM, SCA and RiC train on the same pointwise rows of each seed (``np.random.default_rng(seed)``, the same
``(x, y)`` as the seed's pairwise rows): :func:`seed_statistics` builds the tabular statistics and fixes z (eq. 4)
once per seed for whichever of them run (their toy versions: ``moalign.methods.<name>.toy``), and
:func:`weighted_likelihood_run` registers the report. :meth:`WeightedLikelihoodRun.report` then adds, for
**every** method in the result (MOPO and DPO included), the hypervolume of the normalised weighted
log-likelihoods ``F_bar`` (eq. 4/9; what HaM maximises; reference 0, the seed's z), the best-K-points bound on
the true front (``toy_best_k``) and the ceiling of the weighted-likelihood family (the closed-form SCA optima
for 201 weights). docs/toy.md, "HaM, SCA and RiC", has the results.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from moalign.core.pareto import hypervolume, non_dominated_mask
from moalign.experiments.toy_best_k import best_k_points, front_sample, greedy_k_points
from moalign.experiments.toy_pointwise import (
    PointwiseData,
    PointwiseTables,
    TabularSettings,
    default_z,
    normalised,
    pointwise_tables,
    sample_pointwise_data,
    weighted_likelihood_optimum,
    weighted_ll_of_probs,
)
from moalign.experiments.toy_problem import expected_rewards, hypervolume_ratio
from moalign.experiments.toy_run import ToyRun

QUICK_STEPS = 200


def sweep(count: int) -> np.ndarray:
    """``count`` weight vectors ``(w, 1 - w)``, ``w`` evenly in [0, 1]."""
    w = np.linspace(0.0, 1.0, count)
    return np.stack([w, 1.0 - w], axis=1)


@dataclass
class WeightedLikelihoodRun:
    """What the report needs after training: each seed's statistics and z, and the K values run."""

    reward_set: str = "A"
    tables: dict[int, PointwiseTables] = field(default_factory=dict)
    z: dict[int, float] = field(default_factory=dict)
    ks: list[int] = field(default_factory=list)
    smooth_temperature: float | None = None
    settings: dict = field(default_factory=dict)
    tabular: TabularSettings = field(default_factory=TabularSettings)

    def report(self, policies: list[dict], front, methods: dict) -> dict:
        """Weighted-likelihood HV per method and seed, best-K bounds and the family ceiling (JSON-ready)."""
        seeds = sorted(self.tables)
        out: dict = {"z_per_seed": {str(s): self.z[s] for s in seeds}, "settings": self.settings, "methods": {}}
        uniform = next((np.array(p["expected_rewards"]) for p in policies if p["method"] == "uniform reference"), None)
        out["uniform_reference_point"] = None if uniform is None else uniform.tolist()
        for name in methods:
            rows = [p for p in policies if p["method"] == name]
            per_seed = []
            for s in seeds:
                mine = [p for p in rows if p["params"].get("seed", s) == s]
                if not mine:
                    continue
                f_bar = np.array([p["params"]["F_bar"] if "F_bar" in p["params"] else
                                  normalised(weighted_ll_of_probs(self.tables[s], _rows(p["probs"])), self.z[s],
                                             self.smooth_temperature) for p in mine])
                per_seed.append(hypervolume(f_bar, np.zeros(2)))
            entry = {"wll_hv_per_seed": per_seed, "wll_hv_mean": float(np.mean(per_seed)),
                     "wll_hv_std": float(np.std(per_seed)), "hv_ratio_mean": methods[name]["hv_ratio_mean"],
                     "hv_ratio_std": methods[name]["hv_ratio_std"],
                     "hv_ratio_per_seed": methods[name]["hv_ratio_per_seed"]}
            heads = [p for p in rows if "F_bar" in p["params"] and p["params"].get("K")]
            if heads:  # HaM: how many heads end non-dominated (in F_bar) per seed
                entry["non_dominated_heads_per_seed"] = [
                    int(non_dominated_mask(np.array([p["params"]["F_bar"] for p in heads
                                                     if p["params"]["seed"] == s])).sum()) for s in seeds]
            if uniform is not None:  # Set A's reference point lies above every weighted-likelihood policy
                entry["hv_ratio_uniform_ref_per_seed"] = [
                    hypervolume(np.array([p["expected_rewards"] for p in rows if p["params"].get("seed", s) == s]),
                                uniform) / hypervolume(front.dense, uniform) for s in seeds]
            out["methods"][name] = entry
        sample = front_sample(front.dense)
        out["best_k"] = {}
        for k in sorted(set(self.ks) | {5, 11}):
            pts, value = best_k_points(sample, front.reference, k)
            _, greedy = greedy_k_points(sample, front.reference, k) if k <= 11 else (None, float("nan"))
            out["best_k"][str(k)] = {"hv": value, "hv_ratio": value / front.hypervolume,
                                     "moocore_hv_of_chosen": hypervolume(pts, front.reference),
                                     "greedy_hv_ratio": greedy / front.hypervolume, "points": pts.tolist(),
                                     "front_points_searched": int(len(sample))}
        fam_ratio, fam_wll = [], []
        for s in seeds:
            probs = weighted_likelihood_optimum(self.tables[s], sweep(201))
            fam_ratio.append(hypervolume_ratio(expected_rewards(self.reward_set, probs), front))
            fam_wll.append(hypervolume(normalised(weighted_ll_of_probs(self.tables[s], probs), self.z[s]),
                                       np.zeros(2)))
            ends = expected_rewards(self.reward_set, probs[[0, -1]])  # w = 0 and w = 1
        out["family_ceiling"] = {"what": "closed-form SCA optima pi_w ∝ w S_1 + (1-w) S_2 for 201 weights w",
                                 "hv_ratio_per_seed": fam_ratio, "wll_hv_per_seed": fam_wll,
                                 "expected_rewards_w0_w1_last_seed": ends.tolist()}
        return out


def _rows(stored: np.ndarray) -> np.ndarray:
    stored = np.asarray(stored, float)
    return stored / stored.sum(-1, keepdims=True)


def weighted_likelihood_run(run: ToyRun) -> WeightedLikelihoodRun:
    """The run's shared :class:`WeightedLikelihoodRun`: made by the first of HaM, SCA, RiC to run, which also
    reserves the result's ``weighted_likelihood`` entry and registers its report (computed after the evaluation,
    over every method of the result)."""
    if "weighted_likelihood" in run.shared:
        return run.shared["weighted_likelihood"]
    cfg = run.cfg
    steps = min(cfg.ham_steps, QUICK_STEPS) if cfg.quick else cfg.ham_steps
    wl = WeightedLikelihoodRun(reward_set=cfg.set, ks=list(cfg.ham_ks), smooth_temperature=cfg.ham_smooth_temperature,
                               settings={"steps": steps, "learning_rate": cfg.ham_learning_rate,
                                         "init_noise": cfg.ham_init_noise, "z_scale": cfg.ham_z_scale,
                                         "smooth_temperature": cfg.ham_smooth_temperature,
                                         "ric_preferences": cfg.ric_preferences, "ric_decimals": 1,
                                         "reward_map": "min-max over the training rows to [0, 1]",
                                         "contexts": "201-node evaluation grid", "batch": "full (B = N)"})
    wl.tabular = TabularSettings(steps, cfg.ham_learning_rate, cfg.ham_init_noise, cfg.ham_smooth_temperature)
    run.shared["weighted_likelihood"] = wl
    run.results["weighted_likelihood"] = None  # filled by the report, in this place of the result

    def report(policies: list[dict], front, methods: dict) -> None:
        run.results["weighted_likelihood"] = wl.report(policies, front, methods)

    run.reports.append(report)
    return wl


def seed_data(run: ToyRun, seed: int) -> PointwiseData:
    """The seed's pointwise rows (``np.random.default_rng(seed)``: the same ``(x, y)`` as its pairwise rows)."""
    t = time.time()
    data = sample_pointwise_data(run.cfg.set, run.cfg.num_rows, np.random.default_rng(seed))
    run.add_time("wl_data", time.time() - t)
    return data


def seed_statistics(run: ToyRun, seed: int) -> tuple[PointwiseTables, float, dict]:
    """The seed's statistics, its z (eq. 4) and the parameters every policy of the seed records; computed once
    per seed for the methods of the run that share them."""
    wl = weighted_likelihood_run(run)
    if seed not in wl.tables:
        data = seed_data(run, seed)
        t = time.time()
        tables = pointwise_tables(data, run.cfg.num_actions)
        wl.tables[seed], wl.z[seed] = tables, default_z(tables, run.cfg.ham_z_scale)
        run.add_time("wl_data", time.time() - t)
    z = wl.z[seed]
    base = {"seed": seed, "z": z, "reward_set": run.cfg.set, "steps": wl.tabular.steps,
            "learning_rate": run.cfg.ham_learning_rate}
    return wl.tables[seed], z, base


def _mean_str(values: list | None) -> str:
    return "" if not values else f"{np.mean(values):.3f}"


def format_weighted_likelihood_table(result: dict) -> str:
    """Markdown: HV ratio (expected rewards), weighted-likelihood HV and the best-K bound per method."""
    wl = result.get("weighted_likelihood")
    if not wl:
        return ""
    lines = ["| method | policies/seed | HV ratio (expected rewards), mean ± std | per seed | "
             "HV of F̄ (weighted log-lik.), mean ± std | best-K bound (HV ratio) | HV ratio, uniform policy as ref. |",
             "|---|---|---|---|---|---|---|"]
    for name, m in wl["methods"].items():
        k = result["methods"][name]["policies_per_seed"]
        bound = wl["best_k"].get(str(k), {}).get("hv_ratio")
        seeds = ", ".join(f"{v:.3f}" for v in m["hv_ratio_per_seed"])
        lines.append(f"| {name} | {k} | {m['hv_ratio_mean']:.3f} ± {m['hv_ratio_std']:.3f} | {seeds} | "
                     f"{m['wll_hv_mean']:.4f} ± {m['wll_hv_std']:.4f} | "
                     f"{'' if bound is None else f'{bound:.3f}'} | "
                     f"{_mean_str(m.get('hv_ratio_uniform_ref_per_seed'))} |")
    fam = wl["family_ceiling"]
    lines.append(f"| weighted-likelihood family (closed form, 201 w) | 201 | {np.mean(fam['hv_ratio_per_seed']):.3f} | "
                 f"{', '.join(f'{v:.3f}' for v in fam['hv_ratio_per_seed'])} | {np.mean(fam['wll_hv_per_seed']):.4f} | | |")
    return "\n".join(lines)
