"""Aggregate per-prompt rewards into a multi-objective evaluation report.

Protocol (MOPO paper §4.2 and App. A.6, after HaM/RiC): every
policy's mean reward per objective, overall and per prompt cluster; a point in
reward space is a (policy, cluster) mean; methods whose fronts lie *outside*
others' are better. On top of the paper's protocol the report gives

* percentile-bootstrap confidence intervals of every mean (prompts resampled
  with replacement, objectives jointly, seeded);
* paired differences to the untrained base model on the same prompts, with
  bootstrap intervals (a difference is "significant" when its interval
  excludes 0);
* the non-dominated set and the hypervolume (``moalign.core.pareto``, i.e.
  moocore) against a reference point that is always written down;
* the Spearman rank correlation between steering weight ``w_k`` and the mean
  reward of objective ``k`` along the steering grid (does steering steer?).

Everything is maximised (rewards).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from moalign.core.pareto import front_dominance, hypervolume, non_dominated_mask
from moalign.eval.policies import WEIGHT_INDEXED_KINDS, Policy

_MAX_BOOTSTRAP_ELEMENTS = 4_000_000  # resampled values held in memory at once


@dataclass(frozen=True)
class BootstrapCI:
    """Sample mean and its percentile-bootstrap interval (arrays of shape ``(K,)``, or floats for 1-D input)."""

    mean: Any
    low: Any
    high: Any


def bootstrap_mean_ci(values: Any, num_samples: int = 1000, confidence: float = 0.95, seed: int = 0) -> BootstrapCI:
    """Percentile bootstrap interval of the mean (Efron & Tibshirani 1993, §13.3).

    ``values`` is ``(n,)`` or ``(n, K)``; rows (prompts) are resampled with
    replacement ``num_samples`` times, jointly over the K columns; the interval
    is the ``(1-confidence)/2`` and ``(1+confidence)/2`` quantiles of the
    resampled means (``numpy.quantile``, linear interpolation). The point
    estimate is the plain sample mean.
    """
    arr = np.asarray(values, dtype=float)
    squeeze = arr.ndim == 1
    if squeeze:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"values must be 1-D or 2-D (n, K), got shape {arr.shape}")
    n = arr.shape[0]
    if n == 0:
        raise ValueError("cannot bootstrap the mean of an empty sample")
    if not np.all(np.isfinite(arr)):
        row = int(np.argwhere(~np.isfinite(arr))[0, 0])
        raise ValueError(f"values have a non-finite entry in row {row}")
    if not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    chunk = max(1, _MAX_BOOTSTRAP_ELEMENTS // (n * arr.shape[1]))
    means = np.empty((num_samples, arr.shape[1]))
    for start in range(0, num_samples, chunk):
        stop = min(num_samples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = arr[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha], axis=0)
    mean = arr.mean(axis=0)
    if squeeze:
        return BootstrapCI(float(mean[0]), float(low[0]), float(high[0]))
    return BootstrapCI(mean, low, high)


def paired_difference_ci(values: Any, baseline: Any, num_samples: int = 1000, confidence: float = 0.95, seed: int = 0) -> BootstrapCI:
    """Bootstrap interval of ``mean(values - baseline)`` where row i of both is the same prompt."""
    a, b = np.asarray(values, dtype=float), np.asarray(baseline, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples must have the same shape, got {a.shape} and {b.shape}")
    return bootstrap_mean_ci(a - b, num_samples=num_samples, confidence=confidence, seed=seed)


def auto_reference_point(points: Any, margin: float = 0.1) -> np.ndarray:
    """Per-objective minimum of ``points`` minus ``margin`` times the per-objective range.

    Where an objective has zero range the offset is ``margin * max(|min|, 1)``,
    so every point strictly dominates the reference and contributes volume.
    """
    arr = np.asarray(points, dtype=float)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"points must be a non-empty 2-D array, got shape {arr.shape}")
    if not margin > 0:
        raise ValueError(f"reference margin must be > 0, got {margin}")
    lo, hi = arr.min(axis=0), arr.max(axis=0)
    span = np.where(hi > lo, hi - lo, np.maximum(np.abs(lo), 1.0))
    return lo - margin * span


def steering_spearman(policies: Sequence[Policy], means: Any, objectives: Sequence[str]) -> list[dict[str, Any]]:
    """Spearman correlation of steering weight ``w_k`` with objective ``k``'s mean reward over steered policies.

    Head ``k`` is paired with reward function ``k`` (the caller's order). A
    rho near +1 means moving weight to objective k raises its reward
    monotonically. Entries are ``None`` (with a reason) when fewer than 3
    steered policies exist or an input is constant. "Steered" covers every policy indexed by a weight
    vector: ``steer`` (heads), ``conditioned`` (weights in the prompt) and ``weighted`` (e.g. a soup).
    """
    idx = [i for i, p in enumerate(policies) if p.kind in WEIGHT_INDEXED_KINDS]
    means = np.asarray(means, dtype=float)
    out: list[dict[str, Any]] = []
    for k, name in enumerate(objectives):
        entry: dict[str, Any] = {"objective": name, "weight_index": k, "n": len(idx), "rho": None, "pvalue": None, "reason": None}
        if len(idx) < 3:
            entry["reason"] = f"needs at least 3 steered policies, got {len(idx)}"
        elif any(len(policies[i].weights) <= k for i in idx):
            entry["reason"] = f"steering weights have no entry for objective {k}"
        else:
            w = np.array([policies[i].weights[k] for i in idx])
            r = means[idx, k]
            if np.ptp(w) == 0 or np.ptp(r) == 0:
                entry["reason"] = "constant " + ("weights" if np.ptp(w) == 0 else "mean rewards") + " along the grid"
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", stats.ConstantInputWarning)
                    res = stats.spearmanr(w, r)
                entry["rho"], entry["pvalue"] = float(res.statistic), float(res.pvalue)
        out.append(entry)
    return out


def _front_block(points: np.ndarray, labels: list[Any], reference: np.ndarray, base_rows: list[int]) -> dict[str, Any]:
    mask = non_dominated_mask(points)
    return {
        "non_dominated": [labels[i] for i in np.flatnonzero(mask)],
        "hypervolume": hypervolume(points, reference),
        "hypervolume_base": hypervolume(points[base_rows], reference) if base_rows else None,
        "points_not_beating_reference": int(np.sum(~np.all(points > reference, axis=1))),
    }


def _floats(x: Any) -> list[float]:
    return [float(v) for v in np.asarray(x, dtype=float).reshape(-1)]


def summarize_scores(
    scores: Any,
    policies: Sequence[Policy],
    objectives: Sequence[str],
    cluster_labels: Any,
    num_clusters: int | None = None,
    bootstrap_samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    reference_point: Sequence[float] | None = None,
    reference_margin: float = 0.1,
) -> dict[str, Any]:
    """Build the JSON-ready report from ``scores`` of shape ``(n_policies, n_prompts, K)``.

    The base policy (``kind == "base"``) must be among ``policies``. The
    reference point is ``reference_point`` when given, otherwise
    :func:`auto_reference_point` of all (policy, cluster) means; either way it
    is recorded under ``reference_point``. Hypervolumes computed with different
    reference points are not comparable: pass the same ``reference_point`` to
    compare runs, or use :func:`compare_methods`.
    """
    s = np.asarray(scores, dtype=float)
    objectives = list(objectives)
    if s.ndim != 3 or s.shape[0] != len(policies) or s.shape[2] != len(objectives):
        raise ValueError(f"scores must have shape (n_policies={len(policies)}, n_prompts, K={len(objectives)}), got {s.shape}")
    if not np.all(np.isfinite(s)):
        p, i, k = np.argwhere(~np.isfinite(s))[0]
        raise ValueError(f"score of policy '{policies[p].name}', prompt {i}, objective '{objectives[k]}' is not finite")
    labels = np.asarray(cluster_labels, dtype=int)
    n = s.shape[1]
    if labels.shape != (n,):
        raise ValueError(f"cluster_labels must have one entry per prompt ({n}), got shape {labels.shape}")
    num_clusters = int(num_clusters if num_clusters is not None else labels.max() + 1)
    if labels.min() < 0 or labels.max() >= num_clusters:
        raise ValueError(f"cluster labels must lie in 0..{num_clusters - 1}, got range {labels.min()}..{labels.max()}")
    sizes = np.bincount(labels, minlength=num_clusters)
    if np.any(sizes == 0):
        raise ValueError(f"clusters {np.flatnonzero(sizes == 0).tolist()} have no prompts")
    base_rows = [i for i, p in enumerate(policies) if p.kind == "base"]
    if len(base_rows) != 1:
        raise ValueError(f"exactly one base policy is required in a report, got {len(base_rows)}")
    b = base_rows[0]
    boot = {"num_samples": bootstrap_samples, "confidence": confidence, "seed": seed}

    overall = [bootstrap_mean_ci(s[p], **boot) for p in range(len(policies))]
    means = np.stack([ci.mean for ci in overall])  # (P, K)
    cluster_means = np.stack([[s[p, labels == c].mean(axis=0) for c in range(num_clusters)] for p in range(len(policies))])  # (P, C, K)

    if reference_point is None:
        reference = auto_reference_point(cluster_means.reshape(-1, len(objectives)), reference_margin)
        ref_info = {
            "value": _floats(reference),
            "source": "auto",
            "rule": f"per-objective minimum over all (policy, cluster) mean rewards minus {reference_margin} x their range",
        }
    else:
        reference = np.asarray(reference_point, dtype=float).reshape(-1)
        if reference.shape[0] != len(objectives):
            raise ValueError(f"reference_point has {reference.shape[0]} coordinates but there are {len(objectives)} objectives")
        ref_info = {"value": _floats(reference), "source": "user", "rule": "given by the user"}

    policy_rows = []
    for p, pol in enumerate(policies):
        ci = overall[p]
        row: dict[str, Any] = {
            **pol.to_dict(),
            "mean": _floats(ci.mean), "ci_low": _floats(ci.low), "ci_high": _floats(ci.high),
            "clusters": [],
            "diff_vs_base": None,
        }
        for c in range(num_clusters):
            cc = bootstrap_mean_ci(s[p, labels == c], **boot)
            row["clusters"].append({"cluster": c, "size": int(sizes[c]), "mean": _floats(cc.mean), "ci_low": _floats(cc.low), "ci_high": _floats(cc.high)})
        if p != b:
            d = paired_difference_ci(s[p], s[b], **boot)
            row["diff_vs_base"] = {
                "mean": _floats(d.mean), "ci_low": _floats(d.low), "ci_high": _floats(d.high),
                "significant": [bool(lo > 0 or hi < 0) for lo, hi in zip(np.atleast_1d(d.low), np.atleast_1d(d.high))],
            }
        policy_rows.append(row)

    names = [p.name for p in policies]
    overall_front = _front_block(means, names, reference, [b])
    pc_points = cluster_means.reshape(-1, len(objectives))
    pc_labels = [{"policy": names[p], "cluster": c} for p in range(len(policies)) for c in range(num_clusters)]
    pc_base_rows = [b * num_clusters + c for c in range(num_clusters)]
    per_cluster = []
    for c in range(num_clusters):
        block = _front_block(cluster_means[:, c], names, reference, [b])
        per_cluster.append({"cluster": c, **block})
    on_front = set(overall_front["non_dominated"])
    for row in policy_rows:
        row["on_front"] = row["name"] in on_front

    return {
        "objectives": objectives,
        "num_prompts": int(n),
        "num_clusters": num_clusters,
        "cluster_sizes": sizes.astype(int).tolist(),
        "base_policy": names[b],
        "bootstrap": {**boot, "method": "percentile", "resampling_unit": "prompt"},
        "reference_point": ref_info,
        "policies": policy_rows,
        "front": {
            "overall": overall_front,
            "policy_cluster": _front_block(pc_points, pc_labels, reference, pc_base_rows),
            "per_cluster": per_cluster,
        },
        "steering_spearman": steering_spearman(policies, means, objectives),
    }


def add_degeneracy(report: dict[str, Any], completions: Sequence[Sequence[str]],
                   prompts: Sequence[Any] | None = None) -> dict[str, Any]:
    """Add every policy's share of degenerate answers and distinct-2 (:mod:`moalign.eval.degeneracy`) to ``report``.

    ``completions[p]`` are policy p's answers (the order of ``report["policies"]``). Each policy row gains
    ``degeneracy``; ``report["degeneracy_rule"]`` states the rule, so a reader can tell a reward hack (a front
    made of one-word, looping or prompt-echoing answers) from a real trade-off. ``prompts`` (the prompts the
    answers reply to, in order; strings or chats, a chat's last user message being its question) make echoes of
    the prompt count as degenerate and add ``echo_share``.
    """
    from moalign.eval.degeneracy import DEGENERACY_RULE, degeneracy_summary
    from moalign.rewards.base import last_user_message

    if len(completions) != len(report["policies"]):
        raise ValueError(f"{len(completions)} completion lists for {len(report['policies'])} policies")
    questions = None if prompts is None else [last_user_message(p, what=f"prompt {i}") for i, p in enumerate(prompts)]
    for row, texts in zip(report["policies"], completions):
        row["degeneracy"] = degeneracy_summary(texts, questions)
    report["degeneracy_rule"] = DEGENERACY_RULE
    return report


def compare_methods(reports: Mapping[str, dict[str, Any]], reference_point: Sequence[float] | None = None, reference_margin: float = 0.1) -> dict[str, Any]:
    """Hypervolume of each method's overall policy means against one common reference, and pairwise dominance.

    ``reports`` maps a method name to a report from :func:`summarize_scores`
    (same objectives, in the same order). The common reference is
    ``reference_point`` or :func:`auto_reference_point` over every method's
    (policy, cluster) means. ``dominance[a][b]`` is
    :func:`moalign.core.pareto.front_dominance` of a's front against b's.
    """
    if not reports:
        raise ValueError("no reports to compare")
    objectives = {tuple(r["objectives"]) for r in reports.values()}
    if len(objectives) != 1:
        raise ValueError(f"reports have different objectives: {sorted(objectives)}")
    fronts = {m: np.array([p["mean"] for p in r["policies"]]) for m, r in reports.items()}
    if reference_point is None:
        allpts = np.concatenate([np.array([c["mean"] for p in r["policies"] for c in p["clusters"]]) for r in reports.values()])
        reference, source = auto_reference_point(allpts, reference_margin), "auto"
    else:
        reference, source = np.asarray(reference_point, dtype=float), "user"
    return {
        "objectives": list(next(iter(objectives))),
        "reference_point": {"value": _floats(reference), "source": source},
        "hypervolume": {m: hypervolume(f, reference) for m, f in fronts.items()},
        "dominance": {a: {b: front_dominance(fronts[a], fronts[b]) for b in fronts if b != a} for a in fronts},
    }


# ---------------------------------------------------------------------------- output
def _fmt(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


def render_markdown(report: dict[str, Any], plots: Sequence[str] = ()) -> str:
    """Human-readable Markdown version of a report from :func:`summarize_scores`."""
    obj = report["objectives"]
    conf = int(round(100 * report["bootstrap"]["confidence"]))
    ref = report["reference_point"]
    lines = [
        "# Multi-objective evaluation",
        "",
        f"- prompts: {report['num_prompts']}, clusters: {report['num_clusters']} (sizes {report['cluster_sizes']})",
        f"- objectives: {', '.join(obj)} (all maximised)",
        f"- base policy: `{report['base_policy']}`",
        f"- confidence intervals: {conf}% percentile bootstrap over prompts, "
        f"{report['bootstrap']['num_samples']} resamples, seed {report['bootstrap']['seed']}",
        f"- hypervolume reference point: ({', '.join(_fmt(v) for v in ref['value'])}) — {ref['source']}: {ref['rule']}",
        "",
        "## Mean reward per policy",
        "",
        "| policy | " + " | ".join(f"{o} [{conf}% CI]" for o in obj) + " | "
        + " | ".join(f"Δ{o} vs base [{conf}% CI]" for o in obj) + " | on front |",
        "|---" * (1 + 2 * len(obj) + 1) + "|",
    ]
    for p in report["policies"]:
        cells = [f"{_fmt(m)} [{_fmt(lo)}, {_fmt(hi)}]" for m, lo, hi in zip(p["mean"], p["ci_low"], p["ci_high"])]
        d = p["diff_vs_base"]
        if d is None:
            cells += ["—"] * len(obj)
        else:
            cells += [f"{_fmt(m)} [{_fmt(lo)}, {_fmt(hi)}]{' *' if sig else ''}"
                      for m, lo, hi, sig in zip(d["mean"], d["ci_low"], d["ci_high"], d["significant"])]
        lines.append(f"| `{p['name']}` | " + " | ".join(cells) + f" | {'yes' if p['on_front'] else ''} |")
    lines += ["", "`*`: the interval of the paired difference excludes 0.", "", "## Mean reward per cluster", "",
              "| policy | " + " | ".join(f"cluster {c} (n={n})" for c, n in enumerate(report["cluster_sizes"])) + " |",
              "|---" * (1 + report["num_clusters"]) + "|"]
    for p in report["policies"]:
        lines.append(f"| `{p['name']}` | " + " | ".join("(" + ", ".join(_fmt(v) for v in c["mean"]) + ")" for c in p["clusters"]) + " |")
    fr = report["front"]
    lines += ["", "## Pareto front and hypervolume", "",
              "| point set | non-dominated | hypervolume | hypervolume of base alone |", "|---|---|---|---|",
              f"| overall policy means | {', '.join(f'`{n}`' for n in fr['overall']['non_dominated'])} | "
              f"{_fmt(fr['overall']['hypervolume'])} | {_fmt(fr['overall']['hypervolume_base'])} |",
              f"| (policy, cluster) means | {len(fr['policy_cluster']['non_dominated'])} points | "
              f"{_fmt(fr['policy_cluster']['hypervolume'])} | {_fmt(fr['policy_cluster']['hypervolume_base'])} |"]
    for c in fr["per_cluster"]:
        lines.append(f"| cluster {c['cluster']} | {', '.join(f'`{n}`' for n in c['non_dominated'])} | "
                     f"{_fmt(c['hypervolume'])} | {_fmt(c['hypervolume_base'])} |")
    lines += ["", "## Steering: Spearman correlation of weight w_k with objective k", "",
              "| objective | rho | p-value | steered policies | note |", "|---|---|---|---|---|"]
    for e in report["steering_spearman"]:
        lines.append(f"| {e['objective']} | {_fmt(e['rho'])} | {_fmt(e['pvalue'])} | {e['n']} | {e['reason'] or ''} |")
    if all("degeneracy" in p for p in report["policies"]):
        echo = all("echo_share" in p["degeneracy"] for p in report["policies"])
        lines += ["", "## Degenerate answers and diversity", "", f"Rule: {report.get('degeneracy_rule', '')}.", "",
                  "| policy | degenerate answers | " + ("echoes of the prompt | " if echo else "") + "distinct-2 |",
                  "|---|---|" + ("---|" if echo else "") + "---|"]
        for p in report["policies"]:
            d = p["degeneracy"]
            lines.append(f"| `{p['name']}` | {d['num_degenerate']}/{d['num_answers']} ({d['degenerate_share']:.0%}) "
                         + (f"| {d['echo_share']:.0%} " if echo else "") + f"| {d['distinct_2']:.3f} |")
    if plots:
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], output_dir: str | Path, plots: Sequence[str] = ()) -> dict[str, Path]:
    """Write ``report.json`` and ``report.md`` into ``output_dir``; returns their paths."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "markdown": out / "report.md"}
    paths["json"].write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    paths["markdown"].write_text(render_markdown(report, plots))
    return paths
