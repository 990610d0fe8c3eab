"""Score a finished comparison's answers with other scorers: the fronts a task definition would draw, no retraining.

Every policy's greedy test answers are stored in ``compare.json`` (the base model's in ``base_eval.json``), so
another set of scorers can be applied to them in seconds. This answers "would the same answers win under a
stricter definition of the objectives?" -- for example whether the largest-hypervolume front is still the one
made of degenerate answers when a degenerate answer counts as no answer (``answer_brevity``). It does **not**
answer what the methods would learn if trained on those scorers: the policies were trained on the run's own
objectives; say so wherever the numbers are used.

    moalign rescore --compare runs/compare/demo --reward_functions answer_relevance answer_brevity \\
        [--out FILE.json]   (default out: COMPARE/rescored_<objectives>.json, the fronts beside it as .png)

Reports per method the HV against one shared reference (the rule of the comparison:
:func:`moalign.experiments.compare_report.summarise_fronts`), the steering Spearman, the degenerate shares, and
the degenerate-winner flag of the largest-HV front (:mod:`moalign.experiments.compare_diagnostics`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from moalign.experiments.compare_diagnostics import add_policy_degeneracy, degenerate_winner
from moalign.experiments.compare_report import plot_fronts, steerability, summarise_fronts
from moalign.experiments.judge_compare import demo_test_prompts, read_compare, read_json

__all__ = ["RescoreConfig", "rescore_comparison", "render_rescored", "run_rescore", "main"]


def rescore_comparison(run: str | Path, reward_functions: Sequence[Any]) -> dict[str, Any]:
    """Score every stored answer of the comparison in ``run`` with ``reward_functions`` (RewardFunction objects);
    returns the methods' points, HVs, steering and degenerate shares under those scorers."""
    from moalign.rewards.labelling import score_completions

    run = Path(run)
    result = read_compare(run)
    prompts = demo_test_prompts(result)
    base_answers = read_json(run / "base_eval.json", "the base model's answers of `moalign compare`")["completions"]
    if len(base_answers) != len(prompts):
        raise ValueError(f"{run / 'base_eval.json'}: {len(base_answers)} answers for {len(prompts)} test prompts")

    def mean_scores(answers: list[str], where: str) -> list[float]:
        if len(answers) != len(prompts):
            raise ValueError(f"{run / 'compare.json'}: {where} has {len(answers)} answers for {len(prompts)} prompts")
        return np.asarray(score_completions(prompts, answers, reward_functions), float).mean(axis=0).tolist()

    names = [fn.name for fn in reward_functions]
    methods: dict[str, dict[str, Any]] = {}
    for method, entry in result["methods"].items():
        policies = [{"name": p["name"], "weights": p.get("weights"), "completions": p["completions"],
                     "mean": mean_scores(p["completions"], f"{method}/{p['name']}")} for p in entry["policies"]]
        methods[method] = {"policies": policies, "points": [p["mean"] for p in policies],
                           "steerability": steerability([p["weights"] for p in policies],
                                                        np.asarray([p["mean"] for p in policies]), names)}
    base = mean_scores(base_answers, "the base model")
    fronts = summarise_fronts(methods, np.asarray(base))
    for method, entry in methods.items():
        entry["hv"] = {"hv": fronts["hypervolume"][method]}
    add_policy_degeneracy(methods, prompts)
    for entry in methods.values():
        for p in entry["policies"]:
            del p["completions"]
    return {"run": str(run), "objectives": names, "trained_on": result.get("objectives"), "base": base,
            "reference_point": fronts["reference_point"], "hypervolume_base": fronts["hypervolume_base"],
            "methods": methods, "largest_hv_front": degenerate_winner(methods)}


def render_rescored(rescored: dict[str, Any]) -> str:
    """A Markdown table of the rescored comparison, methods by HV."""
    names = rescored["objectives"]
    lines = [f"Answers of `{rescored['run']}` (trained on {' / '.join(rescored['trained_on'] or [])}) scored with "
             f"{' / '.join(names)}; base HV {rescored['hypervolume_base']:.3g}.", "",
             f"| method | HV | steering Spearman ({' / '.join(names)}) | degenerate: mean (worst policy) |",
             "| --- | ---: | --- | ---: |"]
    methods = rescored["methods"]
    for method in sorted(methods, key=lambda m: -methods[m]["hv"]["hv"]):
        entry = methods[method]
        steer = entry["steerability"]
        rho = " / ".join("–" if steer["spearman"][n] is None else f"{steer['spearman'][n]:+.2f}" for n in names) \
            if steer["steerable"] else "(not indexed by weight)"
        shares = [p["degeneracy"]["degenerate_share"] for p in entry["policies"]]
        lines.append(f"| {method} | {entry['hv']['hv']:.3g} | {rho} | {np.mean(shares):.0%} ({max(shares):.0%}) |")
    win = rescored["largest_hv_front"]
    lines += ["", f"Largest-HV front: {win['method']} — " + (
        f"FLAG: {len(win['degenerate_policies'])} policies with ≥ {win['threshold']:.0%} degenerate answers"
        if win["flagged"] else f"no policy with ≥ {win['threshold']:.0%} degenerate answers")]
    return "\n".join(lines)


@dataclass
class RescoreConfig:
    """Settings of ``moalign rescore``."""

    compare: str = field(default="", metadata={"help": "Folder of a finished `moalign compare --task demo` "
                                                       "(compare.json, base_eval.json)."})
    reward_functions: list[str] = field(default_factory=list, metadata={
        "help": "Scorer specs to apply to the stored answers, as `moalign compare --reward_functions` takes them."})
    out: str = field(default="", metadata={"help": "Output JSON file (default: COMPARE/rescored_<objectives>.json)."})

    def __post_init__(self) -> None:
        if not self.compare:
            raise ValueError("moalign rescore needs --compare DIR (a `moalign compare --task demo` output folder)")
        if not self.reward_functions:
            raise ValueError("moalign rescore needs --reward_functions (at least one scorer spec)")


def run_rescore(config: RescoreConfig) -> dict[str, Any]:
    """Rescore, write the JSON, print the table; returns the result."""
    from moalign.rewards.registry import resolve_reward_functions

    rescored = rescore_comparison(config.compare, resolve_reward_functions(config.reward_functions))
    out = Path(config.out) if config.out else \
        Path(config.compare) / f"rescored_{'_'.join(rescored['objectives'])}.json"
    out.write_text(json.dumps(rescored, indent=2))
    plot = plot_fronts(rescored["methods"], rescored["objectives"], out.with_suffix(".png"), base=rescored["base"],
                       title=f"{config.compare}, rescored")
    print(render_rescored(rescored))
    print(f"written: {out}, {plot}")
    return rescored


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from moalign.cli.main import parse_config

    return run_rescore(parse_config(RescoreConfig, list(sys.argv[1:] if argv is None else argv), "moalign rescore"))


if __name__ == "__main__":
    main()
