"""Learning curves of ``moalign compare --task demo``: every method at fractions of its budget, from checkpoints.

Every training run of a method saves a checkpoint when its tokens reach each ``curve_fractions`` share of its
budget (:func:`moalign.experiments.compare_budget.metered`); the final model is fraction 1. Nothing is
retrained: the method's model *at fraction f* is assembled from its runs' checkpoints at f
(:func:`snapshot_folder`) and evaluated exactly as the final model (same test prompts, greedy settings, scorers:
:func:`moalign.experiments.compare_demo.evaluate_method`), on the curves' weight grid (``curve_steering_steps``,
by default every other weight of the final grid: the checkpoints' evaluation is the largest cost after training).
Fraction 1 is the final evaluation's policies of the same weights, so every point of a curve has the same
policies.

At each fraction the curve reports the hypervolume of the method's policy means, the number of policies whose
paired bootstrap interval of the difference to the base model lies above 0 on at least one objective, and the
steering Spearman per objective (:func:`moalign.experiments.compare_report.steerability`). All fractions of
all methods share ONE reference point (:func:`~moalign.experiments.compare_report.shared_reference` over every
curve point and the base model), so a curve's HV at 25 % and at 100 % are comparable; it is not the reference
of the main table (which sees only final policies), so the two HVs differ.

A method trained before learning curves existed has no checkpoints; its curve holds only fraction 1.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from moalign.experiments.compare_report import shared_reference, steerability

CURVE_DIR = "curve"
#: checkpoint files not needed to evaluate a checkpoint (resuming state)
_RESUME_ONLY = ("optimizer", "scheduler", "rng_state", "trainer_state", "scaler")
#: files of a final folder never copied into a snapshot: weights come from the checkpoint only
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def snapshot_folder(final: Path, runs: Sequence[dict[str, Any]], fraction: float, dest: Path) -> Path | None:
    """A model folder like ``final`` but with the weights of ``runs``' checkpoints at ``fraction`` (None: missing).

    * a soup folder (``soup_config.json``): each specialist is snapshotted, and the soup config names the snapshots;
    * any other folder: the one run writing inside it gives its checkpoint; files of ``final`` the checkpoint lacks
      (written outside the trainer's save, e.g. P-MORL's conditioning, the tokenizer) are copied from ``final``,
      weight files never are.
    """
    from moalign.models.soups import SOUP_CONFIG_FILE, is_soup_folder, save_soup_config

    final = Path(final).resolve()
    if is_soup_folder(final):
        payload = json.loads((final / SOUP_CONFIG_FILE).read_text())
        specialists = [(final / p).resolve() for p in payload["specialists"]]
        snaps = [snapshot_folder(s, runs, fraction, dest / "specialists" / s.name) for s in specialists]
        if any(s is None for s in snaps):
            return None
        _copy_side_files(final, dest, skip=(SOUP_CONFIG_FILE,))
        save_soup_config(dest, snaps, payload["objectives"], payload.get("base_model_name_or_path"),
                         payload.get("interpolation", "linear"), method=payload.get("method", "rewarded_soups"))
        return dest
    mine = [r for r in runs if _inside(Path(r["output_dir"]).resolve(), final)]
    if len(mine) != 1:
        raise RuntimeError(f"{final}: expected the one training run writing inside it, found {len(mine)}")
    checkpoint = mine[0].get("checkpoints", {}).get(str(fraction))
    if checkpoint is None:
        return None
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for item in Path(checkpoint["path"]).iterdir():
        if item.name.startswith(_RESUME_ONLY):
            continue
        (shutil.copytree if item.is_dir() else shutil.copy2)(item, dest / item.name)
    _copy_side_files(final, dest)
    return dest


def _copy_side_files(final: Path, dest: Path, skip: Sequence[str] = ()) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for item in final.iterdir():
        if item.is_file() and item.name not in skip and not (dest / item.name).exists() \
                and not item.name.endswith(_WEIGHT_SUFFIXES):
            shutil.copy2(item, dest / item.name)


def snapshot_record(record: dict[str, Any], fraction: float, root: Path) -> dict[str, Any] | None:
    """``record`` (a method's training record) with ``models`` replaced by their snapshots at ``fraction``."""
    runs = record["budget"]["per_run"]
    models = []
    for i, model in enumerate(record["models"]):
        snap = snapshot_folder(Path(model), runs, fraction, root / f"model_{i}")
        if snap is None:
            return None
        models.append(str(snap))
    return {**record, "models": models}


def fraction_tokens(record: dict[str, Any], fraction: float) -> int | None:
    """Training tokens the method had spent at its checkpoints of ``fraction`` (sum over its runs)."""
    marks = [r.get("checkpoints", {}).get(str(fraction)) for r in record["budget"]["per_run"]]
    return None if any(m is None for m in marks) else int(sum(m["tokens"] for m in marks))


def curve_config(cfg: Any) -> Any:
    """``cfg`` with the learning curves' weight grid (``curve_steering_steps``) as its steering grid."""
    from dataclasses import replace

    steps = cfg.resolved_curve_steering_steps()
    return cfg if steps == cfg.steering_steps else replace(cfg, steering_steps=steps)


def curve_policy_names(method: str, cfg: Any, record: dict[str, Any], num_objectives: int) -> list[str]:
    """Names of the method's policies on the curves' grid, in evaluation order (no model is loaded)."""
    from moalign.experiments.compare_demo import method_policies

    groups = method_policies(method, curve_config(cfg), record, num_objectives)
    return [policy.name for _, entries in groups for policy, _, _ in entries]


def select_policies(rows: list[dict], scores: np.ndarray, names: Sequence[str]) -> tuple[list[dict], np.ndarray]:
    """The rows (and score rows) of the policies ``names``, in that order: a finer grid's evaluation read on a
    coarser grid. Every name must be there (the coarse grid divides the fine one)."""
    index = {row["name"]: i for i, row in enumerate(rows)}
    missing = [n for n in names if n not in index]
    if missing:
        raise ValueError(f"the evaluation has no policies {missing}: curve_steering_steps must divide steering_steps")
    picked = [index[n] for n in names]
    return [rows[i] for i in picked], np.asarray(scores)[picked]


def checkpoint_scores(method: str, cfg: Any, record: dict[str, Any], fraction: float, num_objectives: int,
                      mdir: Path, evaluate: Any) -> tuple[list[dict], np.ndarray] | None:
    """The method's policies on the curves' grid at ``fraction``, evaluated by ``evaluate(groups)`` (cached in
    ``mdir/curve``).

    The cache holds the evaluation settings: an evaluation on a grid the curves' grid divides is read on the
    curves' grid; another grid or evaluation length redoes it.
    """
    from moalign.experiments.compare_demo import method_policies

    curve_cfg = curve_config(cfg)
    folder = mdir / CURVE_DIR / f"f{fraction:g}"
    key = {"steering_steps": curve_cfg.steering_steps, "eval_max_new_tokens": cfg.eval_max_new_tokens}
    cached = folder / "policies.json"
    if cached.exists():
        made = json.loads(cached.read_text())
        if made["settings"]["eval_max_new_tokens"] == key["eval_max_new_tokens"] \
                and made["settings"]["steering_steps"] % key["steering_steps"] == 0:
            return select_policies(made["policies"], np.load(folder / "scores.npy"),
                                   curve_policy_names(method, cfg, record, num_objectives))
    snap = snapshot_record(record, fraction, folder / "models")
    if snap is None:
        return None
    rows, scores = evaluate(method_policies(method, curve_cfg, snap, num_objectives))
    np.save(folder / "scores.npy", scores)
    cached.write_text(json.dumps({"settings": key, "policies": rows}))
    return rows, scores


def curve_points(method: str, cfg: Any, record: dict[str, Any], final_scores: np.ndarray, num_objectives: int,
                 mdir: Path, evaluate: Any) -> dict[float, dict[str, Any]]:
    """One trained method's curve: fraction -> ``{"scores", "policies", "tokens"}``, on the curves' grid
    (``curve_steering_steps``): the final model's evaluated policies of that grid (``record``'s ``policies`` and
    ``final_scores``) as 1 and every ``cfg.curve_fractions`` checkpoint evaluated by :func:`checkpoint_scores`
    (cached in ``mdir/curve``); a fraction without checkpoints is left out."""
    names = curve_policy_names(method, cfg, record, num_objectives)
    final_rows, final = select_policies(record["policies"], final_scores, names)
    points = {1.0: {"scores": final, "policies": final_rows, "tokens": record["budget"]["tokens"]}}
    for fraction in cfg.curve_fractions:
        got = checkpoint_scores(method, cfg, record, fraction, num_objectives, mdir, evaluate)
        if got is not None:
            points[fraction] = {"scores": got[1], "policies": got[0], "tokens": fraction_tokens(record, fraction)}
    return points


def curve_summary(points: dict[str, dict[float, dict[str, Any]]], base_scores: np.ndarray, objectives: list[str],
                  cfg: Any) -> dict[str, Any]:
    """HV (one reference for all), policies above base and steering Spearman of every (method, fraction)."""
    from moalign.core.pareto import hypervolume
    from moalign.eval.report import paired_difference_ci

    boot = dict(num_samples=cfg.bootstrap_samples, seed=cfg.seed)
    base_mean = base_scores.mean(0)
    ref = shared_reference([e["scores"].mean(1) for f in points.values() for e in f.values()] + [base_mean[None]],
                           margin=cfg.reference_margin)
    out: dict[str, Any] = {}
    for method, fractions in points.items():
        rows = []
        for fraction in sorted(fractions):
            e = fractions[fraction]
            means = e["scores"].mean(1)
            above = sum(bool(np.any(np.atleast_1d(paired_difference_ci(s, base_scores, **boot).low) > 0))
                        for s in e["scores"])
            rows.append({"fraction": fraction, "tokens": e["tokens"], "hv": hypervolume(means, ref),
                         "policies_above_base": int(above), "policies": len(means), "points": means.tolist(),
                         "steerability": steerability([p["weights"] for p in e["policies"]], means, objectives)})
        out[method] = rows
    return {"reference_point": ref.tolist(), "reference_rule": "per-objective minimum over every method's policy "
            f"means at every fraction and the base model, minus {cfg.reference_margin} x range", "methods": out}


def min_spearman(steer: dict[str, Any]) -> float | None:
    """The smallest steering Spearman over the objectives (None: not steerable or undefined)."""
    if not steer.get("steerable"):
        return None
    values = [v for v in steer["spearman"].values() if v is not None]
    return min(values) if values else None


def plot_learning_curves(curves: dict[str, Any], path: Path) -> Path:
    """One figure, three panels against the budget fraction: HV, share of policies above base, min Spearman."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    cmap = plt.get_cmap("tab10")
    for i, (method, rows) in enumerate(curves["methods"].items()):
        x = [r["fraction"] for r in rows]
        style = dict(color=cmap(i % 10), marker="o", label=method)
        axes[0].plot(x, [r["hv"] for r in rows], **style)
        axes[1].plot(x, [r["policies_above_base"] / r["policies"] for r in rows], **style)
        steer = [min_spearman(r["steerability"]) for r in rows]
        if any(s is not None for s in steer):
            axes[2].plot(x, [np.nan if s is None else s for s in steer], **style)
    titles = ["hypervolume (shared curve reference)", "share of policies above base (paired CI)",
              "steering Spearman (min over objectives)"]
    for ax, title in zip(axes, titles):
        ax.set_xlabel("fraction of the token budget")
        ax.set_title(title, fontsize=10)
    axes[0].legend(fontsize=8, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def render_curves(curves: dict[str, Any], objectives: Sequence[str]) -> list[str]:
    """Markdown: one row per (method, fraction)."""
    lines = ["## Learning curves", "",
             f"Checkpoints at fractions of each method's budget, evaluated like the final model. HV reference "
             f"(shared by every fraction): {[round(v, 4) for v in curves['reference_point']]} "
             f"({curves['reference_rule']}).", "",
             "| method | fraction | tokens | HV | policies above base | steering Spearman (" + " / ".join(objectives)
             + ") |", "|---|---|---|---|---|---|"]
    for method, rows in curves["methods"].items():
        for r in rows:
            st = r["steerability"]
            steer = (" / ".join("–" if st["spearman"][o] is None else f"{st['spearman'][o]:+.2f}" for o in objectives)
                     if st["steerable"] else st["reason"].split(":")[0])
            lines.append(f"| {method} | {r['fraction']:g} | {r['tokens'] if r['tokens'] is not None else '–'} | "
                         f"{r['hv']:.4g} | {r['policies_above_base']}/{r['policies']} | {steer} |")
    lines += ["", "![learning curves](learning_curves.png)"]
    return lines


def learning_curves(cfg: Any, state: Any, methods: list[str], objectives: list[str], base_scores: np.ndarray,
                    evaluate: Any) -> dict[str, Any] | None:
    """Evaluate every method's checkpoints (cached), summarise with the final models, plot ``learning_curves.png``.

    ``evaluate(groups) -> (rows, scores)`` evaluates policy groups on the test prompts (the main evaluation's).
    None when ``cfg.curve_fractions`` is empty.
    """
    if not cfg.curve_fractions:
        return None
    from moalign.experiments.compare import log

    out = Path(cfg.out)
    points: dict[str, dict[float, dict[str, Any]]] = {}
    for i, method in enumerate(methods, 1):
        log(cfg, f"learning curves {i}/{len(methods)} {method}: checkpoints at {list(cfg.curve_fractions)} of the "
                 f"budget, weight grid of {cfg.resolved_curve_steering_steps()} steps ...")
        rec = state.done(method)
        points[method] = curve_points(method, cfg, rec, np.load(rec["scores"]), len(objectives),
                                      out / "methods" / method, evaluate)
    curves = curve_summary(points, base_scores, objectives, cfg)
    plot_learning_curves(curves, out / "learning_curves.png")
    return curves
