"""HaM, SCA and RiC inside ``moalign synthetic toy`` (``--methods ham,sca,ric``), and their report.

:func:`run_weighted_likelihood_methods` is called by :func:`moalign.experiments.toy.run_toy`: per
seed it draws the pointwise rows (``np.random.default_rng(seed)``, the same ``(x, y)`` as the
seed's pairwise rows), builds the tabular statistics, fixes z (eq. 4), trains the selected methods
(``toy_ham``, ``toy_ric``) and adds every policy to the toy's policy list (same JSON format:
each policy's probability vectors on the x-grid). :meth:`WeightedLikelihoodRun.report` then adds,
for **every** method in the result (MOPO and DPO included), the hypervolume of the normalised
weighted log-likelihoods ``F_bar`` (eq. 4/9; what HaM maximises; reference 0, the seed's z), the
best-K-points bound on the true front (``toy_best_k``) and the ceiling of the weighted-likelihood
family (the closed-form SCA optima for 201 weights). docs/toy.md, "HaM, SCA and RiC", has the results.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from moalign.core.pareto import hypervolume, non_dominated_mask
from moalign.experiments.toy_best_k import best_k_points, front_sample, greedy_k_points
from moalign.experiments.toy_ham import (
    PAPER_SCA_WEIGHTS,
    PointwiseTables,
    TabularSettings,
    default_z,
    normalised,
    pointwise_tables,
    sample_pointwise_data,
    train_ham,
    train_sca,
    weighted_likelihood_optimum,
    weighted_ll_of_probs,
)
from moalign.experiments.toy_problem import expected_rewards, hypervolume_ratio
from moalign.experiments.toy_ric import ric_policy, ric_tables, sft_optimum, train_ric

WL_METHODS = ("ham", "sca", "ric")
QUICK_STEPS = 200
AddPolicy = Callable[[str, dict, np.ndarray], None]


def _sweep(count: int) -> np.ndarray:
    w = np.linspace(0.0, 1.0, count)
    return np.stack([w, 1.0 - w], axis=1)


def sca_weight_sets() -> dict[str, np.ndarray]:
    """The paper's 5 weight vectors (HaM paper §4) and 11 evenly spaced ones."""
    return {"SCA (5 paper weights)": np.array(PAPER_SCA_WEIGHTS), "SCA (11 weights)": _sweep(11)}


@dataclass
class WeightedLikelihoodRun:
    """What the report needs after training: each seed's statistics and z, and the K values run."""

    reward_set: str = "A"
    tables: dict[int, PointwiseTables] = field(default_factory=dict)
    z: dict[int, float] = field(default_factory=dict)
    ks: list[int] = field(default_factory=list)
    smooth_temperature: float | None = None
    settings: dict = field(default_factory=dict)

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
            probs = weighted_likelihood_optimum(self.tables[s], _sweep(201))
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


def run_weighted_likelihood_methods(cfg, seeds: list[int], add: AddPolicy, timings: dict,
                                    progress: bool = False) -> WeightedLikelihoodRun:
    """Train the selected of HaM (each K), SCA (5 and 11 weights), RiC for every seed; add their policies."""
    selected = [m for m in cfg.methods if m in WL_METHODS]
    steps = min(cfg.ham_steps, QUICK_STEPS) if cfg.quick else cfg.ham_steps
    settings = TabularSettings(steps, cfg.ham_learning_rate, cfg.ham_init_noise, cfg.ham_smooth_temperature)
    run = WeightedLikelihoodRun(reward_set=cfg.set, ks=list(cfg.ham_ks), smooth_temperature=cfg.ham_smooth_temperature,
                                settings={"steps": steps, "learning_rate": cfg.ham_learning_rate,
                                          "init_noise": cfg.ham_init_noise, "z_scale": cfg.ham_z_scale,
                                          "smooth_temperature": cfg.ham_smooth_temperature,
                                          "ric_preferences": cfg.ric_preferences, "ric_decimals": 1,
                                          "reward_map": "min-max over the training rows to [0, 1]",
                                          "contexts": "201-node evaluation grid", "batch": "full (B = N)"})
    for seed in seeds:
        t = time.time()
        data = sample_pointwise_data(cfg.set, cfg.num_rows, np.random.default_rng(seed))
        tables = pointwise_tables(data, cfg.num_actions)
        z = default_z(tables, cfg.ham_z_scale)
        run.tables[seed], run.z[seed] = tables, z
        base = {"seed": seed, "z": z, "reward_set": cfg.set, "steps": steps, "learning_rate": cfg.ham_learning_rate}
        timings["wl_data"] = timings.get("wl_data", 0.0) + time.time() - t
        if "ham" in selected:
            t = time.time()
            for k in cfg.ham_ks:
                out = train_ham(tables, k, z, settings, seed)
                for head in range(k):
                    add(f"HaM (K={k})", {**base, "K": k, "head": head, "F": out["F"][head].tolist(),
                                         "F_bar": out["F_bar"][head].tolist(),
                                         "hv_first_last": [out["hv_trace"][0], out["hv_trace"][-1]]},
                        out["probs"][head])
            timings["ham"] = timings.get("ham", 0.0) + time.time() - t
        if "sca" in selected:
            t = time.time()
            for name, weights in sca_weight_sets().items():
                out = train_sca(tables, weights, z, settings, seed)
                for i, w in enumerate(weights):
                    add(name, {**base, "w": w.tolist(), "F": out["F"][i].tolist(), "F_bar": out["F_bar"][i].tolist(),
                               "tv_to_closed_form": float(out["tv_to_closed_form"][i])}, out["probs"][i])
            timings["sca"] = timings.get("sca", 0.0) + time.time() - t
        if "ric" in selected:
            t = time.time()
            ric = ric_tables(data, cfg.num_actions)
            key_probs = train_ric(ric, steps, cfg.ric_learning_rate)
            tv = float(0.5 * np.abs(key_probs - sft_optimum(ric)).sum(-1).max())
            for w in _sweep(cfg.ric_preferences):
                probs, targets = ric_policy(ric, key_probs, (float(w[0]), float(w[1])))
                f = weighted_ll_of_probs(tables, probs)
                add("RiC", {**base, "preference": w.tolist(), "targets": targets, "F": f.tolist(),
                            "F_bar": normalised(f, z, cfg.ham_smooth_temperature).tolist(),
                            "populated_bins": int(len(ric.context)), "tv_to_sft_optimum": tv}, probs)
            timings["ric"] = timings.get("ric", 0.0) + time.time() - t
        del data
    return run


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
