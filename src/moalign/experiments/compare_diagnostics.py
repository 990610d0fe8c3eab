"""What the demo comparison reports besides the fronts: degenerate answers, diversity and the objectives' conflict.

* **Degenerate answers and distinct-2** (:mod:`moalign.eval.degeneracy`) of every policy and of the base
  model, from the greedy test answers the fronts are made of.
* **Degenerate winner**: the method whose front has the largest hypervolume is flagged when one of its
  policies gives at least :data:`DEGENERATE_FLAG_SHARE` degenerate answers -- its HV may be a reward hack
  (e.g. a conciseness specialist answering in one or two words), not a better trade-off.
* **Conflict**: the Spearman rank correlation of every two objectives over the base model's own sampled
  responses (the offline data, :func:`moalign.experiments.demo.objective_correlations`, computed when the
  data is made). Negative: the objectives conflict on what the base model produces; near 0 or positive:
  one policy can raise both, and the "front" says little about trade-offs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from moalign.eval.degeneracy import DEGENERACY_RULE, degeneracy_summary

#: a policy of the largest-HV front with at least this share of degenerate answers flags the comparison
DEGENERATE_FLAG_SHARE = 0.10

CONFLICT_RULE = ("Spearman rank correlation of every two objectives over the base model's sampled responses to the "
                 "train prompts (the offline methods' data); negative = the objectives conflict")


def add_policy_degeneracy(methods: Mapping[str, dict[str, Any]], prompts: Sequence[str] | None = None) -> None:
    """Give every policy of every method (``policies[i]["completions"]``) its ``degeneracy`` summary, in place;
    with ``prompts`` (the prompts the completions answer, in order) echoes of the prompt count as degenerate."""
    for m in methods.values():
        for p in m["policies"]:
            p["degeneracy"] = degeneracy_summary(p["completions"], prompts)


def degenerate_winner(methods: Mapping[str, dict[str, Any]], threshold: float = DEGENERATE_FLAG_SHARE
                      ) -> dict[str, Any] | None:
    """The largest-HV method and its policies with ``degenerate_share >= threshold`` (None: no methods).

    ``methods[name]`` needs ``hv`` (``{"hv": ...}``) and policies with ``degeneracy``; ``flagged`` is True when
    any such policy exists. Every policy of the method counts: a method's front is all its policies' points.
    """
    if not methods:
        return None
    name = max(methods, key=lambda m: methods[m]["hv"]["hv"])
    bad = [{"policy": p["name"], "degenerate_share": p["degeneracy"]["degenerate_share"]}
           for p in methods[name]["policies"] if p["degeneracy"]["degenerate_share"] >= threshold]
    return {"method": name, "hv": methods[name]["hv"]["hv"], "threshold": threshold, "flagged": bool(bad),
            "degenerate_policies": bad}


def conflict(data_info: Mapping[str, Any]) -> dict[str, Any]:
    """The objectives' rank correlation on the base model's samples, as the data step measured it."""
    return {"rule": CONFLICT_RULE, "spearman": dict(data_info.get("objective_correlation_on_samples") or {}),
            "num_samples": data_info.get("num_samples")}


def diagnostics(methods: Mapping[str, dict[str, Any]], base_completions: Sequence[str] | None,
                data_info: Mapping[str, Any], prompts: Sequence[str] | None = None) -> dict[str, Any]:
    """``compare.json``'s ``degeneracy`` (rule, base model, flag) and ``conflict`` blocks; policies gain
    ``degeneracy`` (:func:`add_policy_degeneracy`; ``prompts``: the test prompts, for the echo rule)."""
    add_policy_degeneracy(methods, prompts)
    return {"degeneracy": {"rule": DEGENERACY_RULE,
                           "base": degeneracy_summary(base_completions, prompts) if base_completions else None,
                           "largest_hv_front": degenerate_winner(methods)},
            "conflict": conflict(data_info)}


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:+.2f}"


def render_diagnostics(result: Mapping[str, Any]) -> list[str]:
    """Markdown: the conflict table, the degenerate-winner verdict and every policy's degeneracy."""
    c, d = result["conflict"], result["degeneracy"]
    lines = ["## Conflict between the objectives", "", f"{c['rule']} ({c['num_samples']} responses).", "",
             "| objectives | Spearman |", "|---|---|"]
    lines += [f"| {pair.replace('~', ' vs ')} | {_fmt(rho)} |" for pair, rho in c["spearman"].items()]
    win = d["largest_hv_front"]
    lines += ["", "## Degenerate answers and diversity", "", f"Rule: {d['rule']}.", ""]
    if win is not None and win["flagged"]:
        names = ", ".join(f"{p['policy']} ({p['degenerate_share']:.0%})" for p in win["degenerate_policies"])
        lines += [f"**FLAG: the front with the largest hypervolume ({win['method']}, HV {win['hv']:.4g}) contains "
                  f"policies with >= {win['threshold']:.0%} degenerate answers: {names}.** Its HV may be a reward "
                  "hack, not a better trade-off.", ""]
    elif win is not None:
        lines += [f"The front with the largest hypervolume ({win['method']}) has no policy with >= "
                  f"{win['threshold']:.0%} degenerate answers.", ""]
    lines += ["| method | policy | degenerate answers | distinct-2 |", "|---|---|---|---|"]
    if d["base"] is not None:
        lines.append(f"| base | base | {d['base']['num_degenerate']}/{d['base']['num_answers']} "
                     f"({d['base']['degenerate_share']:.0%}) | {d['base']['distinct_2']:.3f} |")
    for name, m in result["methods"].items():
        for p in m["policies"]:
            g = p["degeneracy"]
            lines.append(f"| {name} | {p['name']} | {g['num_degenerate']}/{g['num_answers']} "
                         f"({g['degenerate_share']:.0%}) | {g['distinct_2']:.3f} |")
    return lines
