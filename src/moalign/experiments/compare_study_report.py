"""The result and report of a study (:mod:`moalign.experiments.compare_study`): every variant summarised as the
comparison summarises a method, on the validation prompts.

Per variant: every policy's means with bootstrap CIs and paired CIs against the base model
(:func:`~moalign.experiments.compare_report.policy_summaries`; a policy is *above base* when its paired
interval lies above 0 on at least one objective), the hypervolume with a bootstrap CI against ONE reference
point shared by every variant and the base model (:func:`~moalign.experiments.compare_report.summarise_fronts`),
the steering Spearman per objective (:func:`~moalign.experiments.compare_report.steerability`), the share of
degenerate answers over all its policies' answers (:mod:`moalign.eval.degeneracy`), spend and seconds. The
learning curves are the comparison's (:mod:`moalign.experiments.compare_curves`), one row per variant and
fraction, with their own reference shared by every fraction of every variant.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from moalign.experiments.compare_report import (
    hypervolume_ci,
    mean_ci,
    policy_summaries,
    render_policy_table,
    steerability,
    summarise_fronts,
)


def _settings_text(variant: Any, recipe_fields: Sequence[str]) -> str:
    """The variant's settings other than its data recipe, as ``k = v`` items."""
    items = [f"{k} = {v}" for k, v in variant.compare.items() if k not in recipe_fields]
    items += [f"{k} = {v}" for k, v in variant.method_settings.items()]
    if variant.budget_factor != 1:
        items.append(f"budget x {variant.budget_factor:g}")
    return ", ".join(items) or "defaults"


def study_result(cfg: Any, variants: Sequence[Any], configs: dict[str, Any], records: dict[str, dict[str, Any]],
                 objectives: list[str], base_scores: np.ndarray, base_texts: list[str], prompts: list[str],
                 evaluate: Callable[[list], tuple]) -> dict[str, Any]:
    """``study.json``: base model, shared reference, every variant's summary and the learning curves."""
    from moalign.eval.degeneracy import DEGENERACY_RULE, degeneracy_summary
    from moalign.experiments.compare_curves import curve_points, curve_summary, plot_learning_curves
    from moalign.experiments.compare_diagnostics import add_policy_degeneracy
    from moalign.experiments.compare_study import RECIPE_FIELDS
    from moalign.precision import resolve_precision

    out = Path(cfg.out)
    boot = dict(num_samples=cfg.bootstrap_samples, seed=cfg.seed)
    base = {**mean_ci(base_scores, **boot), "degeneracy": degeneracy_summary(base_texts, prompts)}
    rows: dict[str, dict[str, Any]] = {}
    all_scores: dict[str, np.ndarray] = {}
    for v in variants:
        rec, vcfg = records[v.name], configs[v.name]
        scores = np.load(out / "variants" / v.name / "scores.npy")
        all_scores[v.name] = scores
        pols = policy_summaries(rec["policies"], scores, base_scores, objectives, **boot)
        rows[v.name] = {"method": v.method, "note": v.note, "recipe": rec["recipe"],
                        "data_recipe": {f: getattr(vcfg, f) for f in
                                        ("num_train_prompts", "responses_per_prompt", "sample_temperature")},
                        "compare": v.compare, "method_settings": v.method_settings, "budget_factor": v.budget_factor,
                        "settings": _settings_text(v, RECIPE_FIELDS), "budget": rec["budget"],
                        "train_seconds": rec["train_seconds"], "eval_seconds": rec.get("eval_seconds"),
                        "memory": rec.get("memory"), "data": rec["data"], "policies": pols,
                        "points": [p["mean"] for p in pols]}
    add_policy_degeneracy(rows, prompts)
    fronts = summarise_fronts(rows, np.asarray(base["mean"]), margin=cfg.reference_margin)
    ref = np.asarray(fronts["reference_point"])
    for name, r in rows.items():
        r["hv"] = hypervolume_ci(all_scores[name], ref, num_samples=cfg.bootstrap_samples, seed=cfg.seed)
        r["steerability"] = steerability([p["weights"] for p in r["policies"]], r["points"], objectives)
        r["policies_above_base"] = sum(bool(p["beats_base_on"]) for p in r["policies"])
        degenerate = [p["degeneracy"] for p in r["policies"]]
        r["degenerate_share"] = sum(d["num_degenerate"] for d in degenerate) / sum(d["num_answers"] for d in degenerate)
        r["max_policy_degenerate_share"] = max(d["degenerate_share"] for d in degenerate)
    result: dict[str, Any] = {
        "objectives": objectives, "validation_prompts": list(prompts), "evaluation": "greedy answers to the "
        "validation prompts (the test prompts are not read), scored by the comparison's scorers",
        "budget_tokens": cfg.budget, "reference_point": fronts["reference_point"],
        "reference_rule": fronts["reference_rule"].replace("method", "variant"),
        "hypervolume_base": fronts["hypervolume_base"], "relations": fronts["relations"], "base": base,
        "degeneracy_rule": DEGENERACY_RULE, "variants": rows, "config": vars(cfg),
        "precision": resolve_precision(cfg.precision, "cpu")}
    if any(configs[v.name].curve_fractions for v in variants):
        points = {v.name: curve_points(v.method, configs[v.name], records[v.name], all_scores[v.name],
                                       len(objectives), out / "variants" / v.name / "run", evaluate)
                  for v in variants}
        result["learning_curves"] = curve_summary(points, base_scores, objectives, cfg)
        plot_learning_curves(result["learning_curves"], out / "learning_curves.png")
    return result


def _fmt(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:+.{digits}f}"


def render_study(result: dict[str, Any]) -> str:
    """``study.md``: the variants table, the data recipes, the learning curves and every policy."""
    from moalign.experiments.compare_curves import render_curves

    objs = result["objectives"]
    base = result["base"]
    lines = ["# Study: variants of moalign compare --task demo", ""]
    if result.get("description"):
        lines += [result["description"], ""]
    lines += [f"Evaluation: {result['evaluation']}; {len(result['validation_prompts'])} prompts. Objectives "
              f"{', '.join(objs)}. Base budget {result['budget_tokens']} training tokens. HV reference (shared by "
              f"every variant and the base model): {[round(v, 4) for v in result['reference_point']]} "
              f"({result['reference_rule']}); base model HV {result['hypervolume_base']:.4g}, means "
              + ", ".join(f"{o} {m:.4f}" for o, m in zip(objs, base["mean"]))
              + f", degenerate answers {base['degeneracy']['degenerate_share']:.0%}.", "",
              "| variant | method | data recipe | settings | tokens (x budget) | HV [95% CI] | policies above base* | "
              "Spearman (" + " / ".join(objs) + ") | degenerate share (max policy) | train s |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in result["variants"].items():
        d, st, b = r["data_recipe"], r["steerability"], r["budget"]
        steer = (" / ".join(_fmt(st["spearman"][o]) for o in objs) if st["steerable"]
                 else st["reason"].split(":")[0])
        lines.append(f"| {name} | {r['method']} | {d['num_train_prompts']}x{d['responses_per_prompt']} T "
                     f"{d['sample_temperature']:g} | {r['settings']} | {b['tokens']} ({b['tokens'] / result['budget_tokens']:.2f}) "
                     f"| {r['hv']['hv']:.4g} [{r['hv']['ci_low']:.4g}, {r['hv']['ci_high']:.4g}] | "
                     f"{r['policies_above_base']}/{len(r['policies'])} | {steer} | {r['degenerate_share']:.0%} "
                     f"({r['max_policy_degenerate_share']:.0%}) | {r['train_seconds']:.0f} |")
    lines += ["", "`policies above base*`: policies whose paired bootstrap interval of the difference to the base "
                  "model (same validation prompts) lies above 0 on at least one objective. `tokens (x budget)`: "
                  "the spend and its ratio to the base budget.", ""]
    notes = [(n, r["note"]) for n, r in result["variants"].items() if r.get("note")]
    if notes:
        lines += ["Variants:", ""] + [f"* **{n}**: {t}" for n, t in notes] + [""]
    lines += ["## Data recipes", "", "| recipe | samples | pairs | objective Spearman on the samples | variants |",
              "|---|---|---|---|---|"]
    recipes: dict[str, list[str]] = {}
    for name, r in result["variants"].items():
        recipes.setdefault(r["recipe"], []).append(name)
    for recipe, names in recipes.items():
        info = result["variants"][names[0]]["data"]
        rho = ", ".join(f"{k.replace('~', ' vs ')} {_fmt(v)}"
                        for k, v in (info.get("objective_correlation_on_samples") or {}).items())
        lines.append(f"| {recipe} | {info['num_samples']} | {info['num_pairs']} | {rho or '–'} | {', '.join(names)} |")
    if "learning_curves" in result:
        lines += ["", *render_curves(result["learning_curves"], objs)]
    lines += ["", "## Every policy", "",
              render_policy_table({"objectives": objs, "base": base, "methods": result["variants"]}), ""]
    return "\n".join(lines)
