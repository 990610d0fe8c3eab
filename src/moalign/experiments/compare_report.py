"""The report of ``moalign compare``: one shared reference point, HV (with a bootstrap CI over prompts),
the HaM paper's domination relation between fronts, steerability, the table, the plot and the JSON.

Every method's *front* is the set of its policies' mean reward vectors (maximised). Hypervolumes use
ONE reference point for all methods (:func:`shared_reference`), computed by moocore through
:func:`moalign.core.pareto.hypervolume`, so they are comparable across methods.

**Domination between fronts** (:func:`front_relation`): the HaM paper (arXiv 2412.05469, §5) says one
method's front dominates another's when it lies on or outside it everywhere. We make that exact: A
*dominates* B when every point of B is weakly dominated by some point of A and B does not also cover A
(the fronts are not equal). Otherwise the fronts are *equal* (each covers the other) or *incomparable*.
The C-metric fractions (Zitzler) are reported next to the verdict, so a near-domination is visible.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from moalign.core.pareto import front_dominance, hypervolume, non_dominated_mask


def shared_reference(point_sets: Sequence[Any], margin: float = 0.1) -> np.ndarray:
    """ONE reference point for every front: per-objective minimum over all points minus ``margin`` x range.

    ``point_sets`` are ``(P_i, K)`` arrays (every method's policies and the base model). An objective with
    zero range is offset by ``margin * max(|min|, 1)``, so every point strictly beats the reference.
    """
    pts = np.concatenate([np.asarray(p, float).reshape(-1, np.asarray(p).shape[-1]) for p in point_sets])
    if pts.size == 0:
        raise ValueError("no points to place a reference point under")
    if not margin > 0:
        raise ValueError(f"reference margin must be > 0, got {margin}")
    lo, hi = pts.min(0), pts.max(0)
    span = np.where(hi > lo, hi - lo, np.maximum(np.abs(lo), 1.0))
    return lo - margin * span


def front_relation(front_a: Any, front_b: Any) -> dict[str, Any]:
    """The HaM paper's domination relation of front A to front B, with the C-metric in both directions.

    ``relation`` is 'dominates' (A covers B and B does not cover A), 'dominated' (the reverse), 'equal'
    (each covers the other) or 'incomparable'.
    """
    d = front_dominance(np.asarray(front_a, float), np.asarray(front_b, float))
    if d["a_covers_b"] and d["b_covers_a"]:
        relation = "equal"
    elif d["a_covers_b"]:
        relation = "dominates"
    elif d["b_covers_a"]:
        relation = "dominated"
    else:
        relation = "incomparable"
    return {"relation": relation, **d}


def relation_matrix(fronts: Mapping[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """``out[a][b]`` = :func:`front_relation` of a's front to b's, for every ordered pair of methods."""
    return {a: {b: front_relation(fa, fb) for b, fb in fronts.items() if b != a} for a, fa in fronts.items()}


def hypervolume_ci(scores: np.ndarray, reference: np.ndarray, num_samples: int = 1000, confidence: float = 0.95,
                   seed: int = 0) -> dict[str, float]:
    """HV of the policies' mean rewards and its percentile-bootstrap CI over prompts.

    ``scores``: ``(P, n, K)`` per-policy, per-prompt rewards. Prompts are resampled with replacement (the same
    indices for every policy of the method; with the same ``seed`` also for every method, so the resamples
    are paired across methods), the means recomputed and the HV taken against the fixed ``reference``.
    """
    s = np.asarray(scores, float)
    if s.ndim != 3:
        raise ValueError(f"scores must be (policies, prompts, objectives), got shape {s.shape}")
    point = hypervolume(s.mean(axis=1), reference)
    rng = np.random.default_rng(seed)
    n = s.shape[1]
    values = np.empty(num_samples)
    for i in range(num_samples):
        idx = rng.integers(0, n, size=n)
        values[i] = hypervolume(s[:, idx].mean(axis=1), reference)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return {"hv": float(point), "ci_low": float(low), "ci_high": float(high)}


def mean_ci(scores: Any, num_samples: int = 1000, seed: int = 0) -> dict[str, list[float]]:
    """Per-objective mean of ``(n, K)`` scores with its percentile-bootstrap 95% CI over prompts (lists of K)."""
    from moalign.eval.report import bootstrap_mean_ci

    ci = bootstrap_mean_ci(scores, num_samples=num_samples, seed=seed)
    return {"mean": np.atleast_1d(ci.mean).tolist(), "ci_low": np.atleast_1d(ci.low).tolist(),
            "ci_high": np.atleast_1d(ci.high).tolist()}


def policy_summaries(rows: Sequence[dict[str, Any]], scores: Any, base_scores: Any, objectives: Sequence[str],
                     num_samples: int = 1000, seed: int = 0) -> list[dict[str, Any]]:
    """Every policy's row with its mean rewards and CIs (:func:`mean_ci`), its paired difference to the base model
    on the same prompts (``minus_base``) and ``beats_base_on``: the objectives whose paired interval lies above 0
    (a policy is "above base" when that list is not empty).

    ``rows[i]`` is the evaluation's row of policy i (with its ``completions``), ``scores`` is ``(P, n, K)``.
    """
    from moalign.eval.report import paired_difference_ci

    out = []
    for row, s in zip(rows, np.asarray(scores, float)):
        d = paired_difference_ci(s, base_scores, num_samples=num_samples, seed=seed)
        low, high = np.atleast_1d(d.low), np.atleast_1d(d.high)
        out.append({k: v for k, v in row.items() if k != "completions"} | mean_ci(s, num_samples, seed) |
                   {"minus_base": {"mean": np.atleast_1d(d.mean).tolist(), "ci_low": low.tolist(),
                                   "ci_high": high.tolist()},
                    "beats_base_on": [objectives[k] for k in range(len(objectives)) if low[k] > 0],
                    "completions": row["completions"]})
    return out


def steerability(weights: Sequence[Sequence[float] | None], means: Any, objectives: Sequence[str]) -> dict[str, Any]:
    """Spearman of weight ``w_k`` with objective k's mean reward over the method's weight-indexed policies.

    Returns ``{"steerable": False, "reason": ...}`` for a method whose policies carry no weights (a fixed set,
    e.g. HaM's heads), else ``{"steerable": True, "spearman": {objective: rho or None}, "spacing_cv": cv}``;
    ``spacing_cv`` is the coefficient of variation of the distances between consecutive policies along the
    weight grid (0 = evenly spaced; the MO-ODPO paper's "evenly spaced" claim).
    """
    from scipy import stats

    idx = [i for i, w in enumerate(weights) if w is not None]
    if len(idx) < 3:
        return {"steerable": False, "reason": "fixed: policies are not indexed by a preference weight"
                if not idx else f"only {len(idx)} weight-indexed policies (< 3)"}
    m = np.asarray(means, float)
    out: dict[str, float | None] = {}
    for k, name in enumerate(objectives):
        w = np.array([weights[i][k] for i in idx], float)
        r = m[idx, k]
        out[name] = None if np.ptp(w) == 0 or np.ptp(r) == 0 else float(stats.spearmanr(w, r).statistic)
    order = sorted(idx, key=lambda i: tuple(weights[i]))
    gaps = np.linalg.norm(np.diff(m[order], axis=0), axis=1)
    spacing = float(np.std(gaps) / np.mean(gaps)) if gaps.size and np.mean(gaps) > 0 else None
    return {"steerable": True, "spearman": out, "n": len(idx), "spacing_cv": spacing}


def summarise_fronts(methods: Mapping[str, dict[str, Any]], base: np.ndarray | None, margin: float = 0.1,
                     reference: Sequence[float] | None = None) -> dict[str, Any]:
    """Shared reference, HV, non-dominated points and the relation matrix of ``methods[name]['points']``."""
    fronts = {m: np.asarray(v["points"], float) for m, v in methods.items()}
    sets = list(fronts.values()) + ([np.asarray(base, float)[None]] if base is not None else [])
    ref = np.asarray(reference, float) if reference is not None else shared_reference(sets, margin)
    return {
        "reference_point": ref.tolist(),
        "reference_rule": "given" if reference is not None else
        f"per-objective minimum over every method's policy means and the base model, minus {margin} x range",
        "hypervolume": {m: hypervolume(f, ref) for m, f in fronts.items()},
        "hypervolume_base": hypervolume(np.asarray(base, float)[None], ref) if base is not None else None,
        "non_dominated": {m: non_dominated_mask(f).tolist() for m, f in fronts.items()},
        "relations": relation_matrix(fronts),
    }


def _fmt(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


_SYMBOL = {"dominates": "≻", "dominated": "≺", "equal": "=", "incomparable": "‖"}


def relation_lines(relations: Mapping[str, Mapping[str, dict]]) -> list[str]:
    """The relation as a Markdown matrix: row ≻ column (row dominates), ≺, = or ‖ (incomparable) with the
    C-metric fraction of the column's points the row dominates."""
    names = list(relations)
    lines = ["| row vs column | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for a in names:
        cells = []
        for b in names:
            if a == b:
                cells.append("·")
            else:
                r = relations[a][b]
                cells.append(f"{_SYMBOL[r['relation']]} {r['a_dominates_fraction_of_b']:.2f}")
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    lines += ["", "≻: the row's front dominates the column's (every column point weakly dominated by a row point, "
              "not conversely); ≺: the reverse; =: equal; ‖: neither. Number: fraction of the column's points "
              "the row's points dominate (C-metric)."]
    return lines


def plot_fronts(methods: Mapping[str, dict[str, Any]], objectives: Sequence[str], path: Path,
                base: Sequence[float] | None = None, true_front: Any = None, title: str = "") -> Path:
    """All methods' policy means (one colour per method, its non-dominated staircase), base marked.

    Two objectives: one plot. K > 2: one panel per pair of objectives, each the 2-D projection of the points
    (the staircase is the projection's own non-dominated set), since a K-D front has no faithful flat picture.
    """
    import itertools

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = list(itertools.combinations(range(len(objectives)), 2))
    fig, axes = plt.subplots(1, len(pairs), figsize=(7 if len(pairs) == 1 else 5 * len(pairs), 5.5), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for ax, (a, b) in zip(axes[0], pairs):
        if true_front is not None:
            tf = np.asarray(true_front, float)
            ax.plot(tf[:, a], tf[:, b], color="black", lw=1, alpha=0.6, label="true front")
        for i, (name, m) in enumerate(methods.items()):
            pts = np.asarray(m["points"], float)[:, [a, b]]
            colour = cmap(i % 10)
            ax.scatter(pts[:, 0], pts[:, 1], s=18, color=colour, alpha=0.8, label=name)
            nd = pts[non_dominated_mask(pts)]
            nd = nd[np.argsort(nd[:, 0])]
            ax.plot(nd[:, 0], nd[:, 1], color=colour, lw=1.2, drawstyle="steps-post")
        if base is not None:
            ax.scatter([base[a]], [base[b]], marker="*", s=220, color="black", zorder=5, label="base model")
        ax.set_xlabel(objectives[a])
        ax.set_ylabel(objectives[b])
    axes[0][0].legend(fontsize=8, loc="best")
    fig.suptitle(title + ("" if len(pairs) == 1 else " (pairwise projections)"))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _finite(value: Any) -> Any:
    """``value`` with every NaN / inf float replaced by None (strict JSON), numpy scalars as Python numbers."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def write_json(path: Path, data: dict[str, Any]) -> Path:
    """Write ``data`` atomically (a temporary file, then a rename); non-finite floats become null."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(_finite(data), indent=1, allow_nan=False))
    tmp.replace(path)
    return path


def render_demo_table(result: dict[str, Any]) -> str:
    """The demo comparison as one Markdown table, methods sorted by HV (shared reference)."""
    objs = result["objectives"]
    head = ["method", "policies", "HV [95% CI]", "policies above base*", "steerability (Spearman " + " / ".join(objs) + ")",
            "budget spend (tokens, ratio)", "train s", "peak RSS MB (+increase)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows = sorted(result["methods"].items(), key=lambda kv: -kv[1]["hv"]["hv"])
    for name, m in rows:
        st = m["steerability"]
        steer = ("steerable: " + " / ".join(_fmt(st["spearman"][o], 2) for o in objs)
                 + f"; spacing CV {_fmt(st.get('spacing_cv'), 2)}") if st["steerable"] else st["reason"].split(":")[0]
        b = m["budget"]
        above = sum(bool(p["beats_base_on"]) for p in m["policies"])
        lines.append(f"| {name} | {len(m['policies'])} | {m['hv']['hv']:.4g} [{m['hv']['ci_low']:.4g}, "
                     f"{m['hv']['ci_high']:.4g}] | {above}/{len(m['policies'])} | {steer} | {b['tokens']} ({b['ratio']:.2f}"
                     f"{'' if b['within_tolerance'] else ', OUTSIDE tolerance'}) | {m['train_seconds']:.0f} | "
                     f"{m['memory']['peak_rss_mb']:.0f} (+{m['memory']['peak_increase_mb']:.0f}) |")
    lines += ["", "`policies above base*`: policies whose paired bootstrap interval of the difference to the base "
                  "model (same test prompts) lies above 0 on at least one objective."]
    return "\n".join(lines)


def render_policy_table(result: dict[str, Any]) -> str:
    """Every policy's mean rewards with 95% CIs, and its paired difference to the base model (base first).

    ``*`` marks a difference whose paired bootstrap interval (over the same test prompts) excludes 0.
    """
    objs = result["objectives"]
    lines = ["| method | policy | " + " | ".join(f"{o} mean [95% CI]" for o in objs) + " | "
             + " | ".join(f"{o} - base [95% CI]" for o in objs) + " |",
             "|---|---|" + "---|" * (2 * len(objs))]
    base = result["base"]
    lines.append("| base | base | " + " | ".join(f"{base['mean'][k]:.4f} [{base['ci_low'][k]:.4f}, "
                                                 f"{base['ci_high'][k]:.4f}]" for k in range(len(objs)))
                 + " |" + " - |" * len(objs))
    for name, m in result["methods"].items():
        for p in m["policies"]:
            diff = p["minus_base"]
            cells = [f"{p['mean'][k]:.4f} [{p['ci_low'][k]:.4f}, {p['ci_high'][k]:.4f}]" for k in range(len(objs))]
            for k in range(len(objs)):
                lo, hi = diff["ci_low"][k], diff["ci_high"][k]
                star = "*" if lo > 0 or hi < 0 else ""
                cells.append(f"{diff['mean'][k]:+.4f}{star} [{lo:+.4f}, {hi:+.4f}]")
            lines.append(f"| {name} | {p['name']} | " + " | ".join(cells) + " |")
    lines += ["", "`*`: the paired bootstrap interval of the difference to the base model excludes 0."]
    return "\n".join(lines)
