"""Fair tuning for ``moalign compare --task demo --tune``: the same number of trials for every method.

**Protocol.** Every method gets ``tune_trials`` trials (default 4) over its own main settings -- its learning
rate and its KL-type coefficient (β, τ or the GRPO KL β), the grid registered with the method
(:attr:`moalign.methods.registry.TrainingMethod.tuning_grid`; every built-in grid has 4 points, so the default
covers each grid once; a larger grid is sampled, seeded, without replacement; a smaller one is refused, since
the method would get fewer trials). A trial trains the method from scratch on the comparison's train data with
``tune_fraction`` of the token budget (default 0.5), then evaluates every policy of the method greedily on the
**validation** prompts (:meth:`~moalign.experiments.compare_prompts.DemoPromptSource.validation`) with the
comparison's scorers. Its score is the hypervolume of the method's policy means there, against one reference
point per method (the per-objective minimum over that method's trials and the base model's validation means,
minus ``reference_margin`` x range); the chosen setting is the trial with the largest score (the first on a tie).
The test prompts are never read: they are used once, by the comparison after tuning.

**Settings file.** ``out/tuned_settings.json`` records the protocol, every trial and each method's chosen
settings; ``moalign compare`` reads it (``--tuned_settings`` names another file; without either, a packaged
``moalign/experiments/data/tuned_settings_<task>.json`` is used when it exists and names the same objectives)
and trains each method with its chosen settings on top of the shared ones. The report names them.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

TUNED_FILE = "tuned_settings.json"
#: ``--tuned_settings none``: read no tuning file, not even the packaged one
NO_TUNING = "none"
PACKAGED_DIR = Path(__file__).resolve().parent / "data"


def trial_settings(method: str, trials: int, seed: int = 0) -> list[dict[str, float]]:
    """The ``trials`` settings a method is tuned over: its registered grid's points (a seeded sample if larger)."""
    from moalign.methods.registry import get_method

    grid = get_method(method).tuning_grid
    if not grid:
        raise ValueError(f"method {method!r} registers no tuning_grid; compare --tune needs one")
    names = [name for name, _ in grid]
    points = [dict(zip(names, values)) for values in itertools.product(*(v for _, v in grid))]
    if len(points) < trials:
        raise ValueError(f"{method}'s tuning grid has {len(points)} points, fewer than the {trials} trials every "
                         "method gets; lower --tune_trials or widen the grid")
    if len(points) == trials:
        return points
    keep = np.random.default_rng(seed).choice(len(points), size=trials, replace=False)
    return [points[i] for i in sorted(keep)]


def settings_path(config: Any) -> Path | None:
    """The tuning file ``compare`` reads: ``--tuned_settings``, else ``out/tuned_settings.json``, else the packaged
    copy for the task (None: none exists, or ``--tuned_settings none``: every method keeps the shared settings)."""
    if config.tuned_settings and config.tuned_settings.lower() == NO_TUNING:
        return None
    if config.tuned_settings:
        return Path(config.tuned_settings)
    for path in (Path(config.out) / TUNED_FILE, PACKAGED_DIR / f"tuned_settings_{config.task}.json"):
        if path.is_file():
            return path
    return None


def tuned_overrides(config: Any) -> dict[str, dict[str, float]]:
    """Per-method chosen settings of the tuning file (empty without one). A file made for other objectives is
    refused when named explicitly and ignored otherwise (a packaged file serves its own objectives only)."""
    from moalign.rewards.registry import reward_spec_names

    path = settings_path(config)
    if path is None:
        return {}
    data = json.loads(path.read_text())
    objectives = reward_spec_names(list(config.reward_functions))
    if data.get("task") != config.task or data.get("objectives") != objectives:
        if config.tuned_settings:
            raise ValueError(f"{path} was tuned for task {data.get('task')!r}, objectives {data.get('objectives')}; "
                             f"this comparison is {config.task!r} with {objectives}")
        return {}
    return {m: dict(v["settings"]) for m, v in data["methods"].items()}


def _trial(method: str, index: int, overrides: dict[str, float], cfg: Any, paths: dict[str, Any], tdir: Path,
           budget: int, evaluate: Any, k: int) -> np.ndarray:
    """Train one trial (or reuse a finished one made with the same settings) and its validation scores."""
    from moalign.experiments import compare_demo

    key = {"settings": overrides, "budget": budget, "steering_steps": cfg.steering_steps,
           "eval_max_new_tokens": cfg.eval_max_new_tokens}
    done = tdir / "trial.json"
    if done.is_file() and json.loads(done.read_text())["key"] == key:
        return np.load(tdir / "validation_scores.npy")
    import torch

    torch.manual_seed(cfg.seed)
    record = compare_demo.train_method_on_budget(method, cfg, paths, tdir, budget, overrides=overrides)
    start = time.time()
    _, scores = evaluate(compare_demo.method_policies(method, cfg, record, k))
    np.save(tdir / "validation_scores.npy", scores)
    done.write_text(json.dumps({"key": key, "tokens": record["budget"]["tokens"],
                                "train_seconds": record["train_seconds"], "eval_seconds": time.time() - start}))
    return scores


def trial_seconds(tdir: Path) -> dict[str, float | None]:
    """A finished trial's training and validation seconds, as it recorded them (None: not recorded)."""
    made = json.loads((tdir / "trial.json").read_text())
    return {"train": made.get("train_seconds"), "eval": made.get("eval_seconds")}


def run_tuning(config: Any, out: Path, source: Any = None) -> dict[str, Any]:
    """Run (or resume) the tuning trials of every selected method; write and return ``out/tuned_settings.json``.

    ``source`` gives the prompts (default :class:`~moalign.experiments.compare_prompts.DemoPromptSource`); only its
    ``train()`` (data) and ``validation()`` (scoring) are read.
    """
    from moalign.core.pareto import hypervolume
    from moalign.experiments import compare_demo
    from moalign.experiments.compare import log
    from moalign.experiments.compare_prompts import DemoPromptSource
    from moalign.experiments.compare_report import shared_reference, write_json
    from moalign.models import load_tokenizer
    from moalign.rewards.registry import resolve_rewards, reward_spec_names
    from moalign.methods.registry import get_method

    start = time.time()
    cfg = replace(compare_demo.quick_overrides(config), curve_fractions=[])  # trials keep no checkpoints
    methods = compare_demo.compared_methods(cfg)
    reward_fns = resolve_rewards(list(cfg.reward_functions))
    objectives = reward_spec_names(list(cfg.reward_functions))
    source = source or DemoPromptSource(cfg)
    paths = compare_demo.prepare_data(cfg, out, reward_fns, objectives, source=source)
    prompts = source.validation()
    settings = compare_demo.eval_generation_settings(cfg)
    tokenizer = load_tokenizer(cfg.model_name_or_path)
    base_mean = compare_demo.base_answers(cfg, prompts, reward_fns, settings)[1].mean(0)
    budget = max(1, round(cfg.tune_fraction * config.resolved_budget()))

    def evaluate(groups: list) -> tuple[list[dict], np.ndarray]:
        return compare_demo.evaluate_method(groups, tokenizer, prompts, reward_fns, settings)

    chosen: dict[str, Any] = {}
    for method in methods:
        trials = trial_settings(method, cfg.tune_trials, cfg.seed)
        scores = []
        for i, overrides in enumerate(trials):
            log(cfg, f"tune {method}: trial {i + 1}/{len(trials)} {overrides} ({budget} tokens) ...")
            scores.append(_trial(method, i, overrides, cfg, paths, out / "tuning" / method / f"trial{i}", budget,
                                 evaluate, len(objectives)))
        means = [s.mean(1) for s in scores]
        ref = shared_reference(means + [base_mean[None]], margin=cfg.reference_margin)
        hvs = [hypervolume(m, ref) for m in means]
        best = int(np.argmax(hvs))  # the first of equal maxima
        times = [trial_seconds(out / "tuning" / method / f"trial{i}") for i in range(len(trials))]
        chosen[method] = {"settings": trials[best], "validation_hv": hvs[best], "reference_point": ref.tolist(),
                          "trials": [{"settings": t, "validation_hv": h, "points": m.tolist(), "seconds": sec}
                                     for t, h, m, sec in zip(trials, hvs, means, times)]}
        log(cfg, f"tune {method}: chose {trials[best]} (validation HV {hvs[best]:.4g}; trials "
                 f"{', '.join(f'{h:.4g}' for h in hvs)})")
    result = {"task": cfg.task, "objectives": objectives, "reward_functions": list(cfg.reward_functions),
              "protocol": {"trials_per_method": cfg.tune_trials, "budget_fraction": cfg.tune_fraction,
                           "trial_budget_tokens": budget, "budget_tokens": config.resolved_budget(),
                           "validation_prompts": len(prompts),
                           "score": "hypervolume of the method's policy means on the validation prompts, reference "
                                    "per method: minimum over its trials and the base model minus "
                                    f"{cfg.reference_margin} x range; chosen: the largest (first on a tie)",
                           "grids": {m: [[n, list(v)] for n, v in get_method(m).tuning_grid] for m in methods}},
              "methods": chosen, "seconds": time.time() - start,
              "trial_seconds": sum_trial_seconds(chosen)}
    write_json(out / TUNED_FILE, result)
    log(cfg, f"tuning finished: {result['trial_seconds']['total']:.0f} s of trials (training and validation, "
             f"summed over every invocation), this invocation {result['seconds']:.0f} s: {out / TUNED_FILE}")
    return result


def sum_trial_seconds(chosen: dict[str, Any]) -> dict[str, Any]:
    """Training and validation seconds summed over every trial of every method, whichever invocation ran them
    (``seconds`` of the result is the last invocation's wall time only: a resumed tuning reuses finished trials).
    ``eval_unrecorded_trials``: trials that did not record their validation time (made before it was recorded),
    left out of ``eval`` and ``total``."""
    train = evaluation = 0.0
    unrecorded = 0
    for m in chosen.values():
        for trial in m["trials"]:
            train += trial["seconds"]["train"] or 0.0
            if trial["seconds"]["eval"] is None:
                unrecorded += 1
            else:
                evaluation += trial["seconds"]["eval"]
    return {"train": train, "eval": evaluation, "total": train + evaluation, "eval_unrecorded_trials": unrecorded}


def render_settings(result: dict[str, Any], path: Path | None) -> list[str]:
    """Markdown: each method's settings on top of the shared ones, and where they come from."""
    lines = ["## Settings per method", "",
             (f"Tuned settings from `{path}` (validation prompts only; compare_tuning)." if path else
              "No tuning file: every method ran with the shared settings."), "",
             "| method | settings on top of the shared ones |", "|---|---|"]
    for name, m in result["methods"].items():
        s = m.get("settings") or {}
        lines.append(f"| {name} | {', '.join(f'{k} = {v:g}' for k, v in s.items()) or 'shared only'} |")
    return lines
