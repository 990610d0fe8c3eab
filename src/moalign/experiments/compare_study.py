"""``python -m moalign.experiments.compare_study``: a resumable study of variants of ``moalign compare --task demo``.

A comparison trains every method once, with shared settings. A study asks what one setting does: each
*variant* is one method trained on the comparison's token budget with its own data recipe (train prompts,
samples per prompt, sampling temperature) and its own settings (the budget, any field of the method's config),
and every variant is evaluated exactly as the comparison evaluates a method -- every policy the method offers,
greedy, scored by the comparison's scorers -- but on the **validation** prompts only
(:meth:`~moalign.experiments.compare_prompts.DemoPromptSource.validation`; the test prompts are never read,
as in tuning). The validation prompts are the first ``num_validation_prompts`` of the seeded permutation, the
same for every data recipe, so every variant and the base model are scored on the same prompts.

**Spec** (a JSON file)::

    {"description": "what the study asks (optional)",
     "base": {CompareConfig fields shared by every variant, e.g. "quick": true},
     "variants": [{"name": "mopo-64x3", "method": "mopo",
                   "compare": {CompareConfig overrides: "num_train_prompts": 64, "sample_temperature": 1.0, ...},
                   "method_settings": {fields of the method's config: "dirichlet_alpha": [0.3, 0.3], ...},
                   "budget_factor": 2, "note": "free text (optional)"}]}

``budget_factor`` multiplies the variant's budget (``compare.budget``, else the base's). A variant may not change
what fixes the evaluation (:data:`SHARED_FIELDS`: base model, scorers, validation prompts, evaluation length,
steering grid, seed, precision).

**Per variant**: the data of its recipe (:func:`moalign.experiments.compare_demo.prepare_data` into
``out/recipes/<recipe>/``, one folder per recipe, shared by the variants with that recipe), the method trained on
the budget with the variant's settings (:func:`~moalign.experiments.compare_demo.train_method_on_budget`, with
checkpoints at ``curve_fractions``), its policies and its checkpoints' policies evaluated on the validation
prompts (:func:`~moalign.experiments.compare_curves.curve_points`).

**Result** (``study.json``, ``study.md``, ``learning_curves.png``): per variant the policy means with bootstrap
CIs and paired CIs against the base model, the number of policies above the base, the hypervolume against ONE
reference shared by every variant and the base model, the steering Spearman per objective, the share of
degenerate answers, training tokens and seconds; the learning-curve rows (one reference shared by every
fraction of every variant).

**Resume**: ``out/variants/<name>/done.json`` holds the variant's full settings and its record; a finished
variant with the same settings is reused without training. A variant whose settings changed restarts from
scratch; an interrupted one reuses a finished training (its training record) and redoes the rest, else restarts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from moalign.experiments import compare_demo
from moalign.experiments.compare import CompareConfig
from moalign.experiments.compare_report import write_json

STUDY_JSON = "study.json"
STUDY_MD = "study.md"
DONE_FILE = "done.json"
KEY_FILE = "key.json"
#: CompareConfig fields every variant shares with the base: they fix the validation prompts (seed and split
#: sizes), the scorers, the base model and its evaluation, and so the study's one reference point
SHARED_FIELDS = frozenset({"task", "model_name_or_path", "reward_functions", "num_validation_prompts",
                           "eval_max_new_tokens", "steering_steps", "curve_steering_steps", "seed", "precision",
                           "use_chat_template", "generation_batch_size", "bootstrap_samples", "reference_margin", "quick", "progress"})
#: CompareConfig fields a study does not take: the output folder is --out; the methods are the variants'; tuning
#: picks settings on the same validation prompts, so a study names its settings instead
NOT_IN_STUDY = frozenset({"out", "methods", "tune", "tune_trials", "tune_fraction", "tuned_settings"})
#: what makes the offline data: variants with equal values share one data folder
RECIPE_FIELDS = ("model_name_or_path", "reward_functions", "num_train_prompts", "num_validation_prompts",
                 "num_test_prompts", "responses_per_prompt", "sample_max_new_tokens", "sample_temperature",
                 "generation_batch_size", "seed", "precision")
#: settings that only shape the report (recomputed on every call): not part of a variant's key
_REPORT_ONLY = {"out", "progress", "bootstrap_samples", "reference_margin", "curve_steering_steps"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class Variant:
    """One variant of a study: a method, its data recipe and settings (CompareConfig overrides), its own config
    overrides and a budget multiplier."""

    name: str
    method: str
    compare: dict[str, Any] = field(default_factory=dict)
    method_settings: dict[str, Any] = field(default_factory=dict)
    budget_factor: float = 1.0
    note: str = ""


def load_spec(spec: dict[str, Any]) -> tuple[dict[str, Any], list[Variant]]:
    """The spec's base overrides and its variants, checked: every key known, names unique and usable as folder
    names, methods with compare facts, no variant changing a :data:`SHARED_FIELDS` field."""
    unknown = set(spec) - {"description", "base", "variants"}
    if unknown:
        raise ValueError(f"study spec: unknown key(s) {sorted(unknown)} (base, variants, description)")
    base = dict(spec.get("base") or {})
    compare_fields = {f.name for f in fields(CompareConfig)}
    bad = (set(base) - compare_fields) | (set(base) & NOT_IN_STUDY)
    if bad or base.get("task", "demo") != "demo":
        raise ValueError(f"study spec base: not CompareConfig fields of a study: {sorted(bad) or ['task']} "
                         f"(a study runs the demo task; --out names its folder; it takes no tuning)")
    variant_keys = {f.name for f in fields(Variant)}
    variants = []
    for raw in spec.get("variants") or []:
        extra = set(raw) - variant_keys
        if extra:
            raise ValueError(f"study variant {raw.get('name')!r}: unknown key(s) {sorted(extra)}")
        variants.append(Variant(**raw))
    if not variants:
        raise ValueError("study spec: no variants")
    names = [v.name for v in variants]
    if len(set(names)) != len(names) or not all(_NAME.match(n) for n in names):
        raise ValueError(f"study variants need unique names of letters, digits, '_', '-', '.': {names}")
    from moalign.methods.registry import get_method

    offered = compare_demo.compared_methods(CompareConfig(task="demo"))
    for v in variants:
        if v.method not in offered:
            raise ValueError(f"variant {v.name}: method {v.method!r} is not one of {', '.join(offered)}")
        fixed = (set(v.compare) - compare_fields) | (set(v.compare) & (SHARED_FIELDS | NOT_IN_STUDY))
        if fixed:
            raise ValueError(f"variant {v.name}: compare may not set {sorted(fixed)} (shared by the study: "
                             "set them in base)")
        own = {f.name for f in fields(get_method(v.method).config_class)}
        if set(v.method_settings) - own:
            raise ValueError(f"variant {v.name}: {sorted(set(v.method_settings) - own)} are not fields of "
                             f"{v.method}'s config")
        if not v.budget_factor > 0:
            raise ValueError(f"variant {v.name}: budget_factor must be > 0, got {v.budget_factor}")
    return base, variants


def base_config(base: dict[str, Any], out: Path) -> CompareConfig:
    """The study's shared CompareConfig: ``base`` on the defaults, ``quick`` applied, the budget resolved."""
    cfg = CompareConfig(**{**base, "task": "demo", "out": str(out)})
    budget = cfg.resolved_budget()  # before quick_overrides, which clears the flag the quick budget reads
    return replace(compare_demo.quick_overrides(cfg), budget=budget)


def variant_config(base: CompareConfig, variant: Variant) -> CompareConfig:
    """The variant's CompareConfig: its overrides on the base, its budget = factor x (its own or the base's)."""
    cfg = replace(base, **variant.compare)
    return replace(cfg, budget=max(1, round(variant.budget_factor * cfg.resolved_budget())))


def recipe_of(cfg: CompareConfig) -> tuple[str, dict[str, Any]]:
    """The data recipe of a config and its folder name (``<prompts>x<responses>_T<temperature>_<hash>``)."""
    recipe = {f: getattr(cfg, f) for f in RECIPE_FIELDS}
    digest = hashlib.sha1(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:8]
    return (f"{cfg.num_train_prompts}x{cfg.responses_per_prompt}_T{cfg.sample_temperature:g}_{digest}",
            recipe)


def variant_key(variant: Variant, cfg: CompareConfig) -> dict[str, Any]:
    """Everything that decides a variant's training and evaluation (as JSON would read it back)."""
    key = {"method": variant.method, "method_settings": variant.method_settings,
           "compare": {k: v for k, v in asdict(cfg).items() if k not in _REPORT_ONLY}}
    return json.loads(json.dumps(key, sort_keys=True))


def _log(cfg: CompareConfig, message: str) -> None:
    if cfg.progress:
        print(f"[study] {message}", flush=True)


def _base_evaluation(cfg: CompareConfig, out: Path, prompts: list[str], reward_fns: list,
                     settings: Any) -> tuple[list[str], np.ndarray]:
    """The base model's validation answers and scores, cached in ``out/base_eval.json`` with what made them."""
    made_by = ("model_name_or_path", "reward_functions", "eval_max_new_tokens", "seed", "precision",
               "use_chat_template", "generation_batch_size")
    key = json.loads(json.dumps({"prompts": prompts, **{f: getattr(cfg, f) for f in made_by}}))
    path = out / "base_eval.json"
    cached = json.loads(path.read_text()) if path.is_file() else {}
    if cached.get("key") != key:
        texts, scores = compare_demo.base_answers(cfg, prompts, reward_fns, settings)
        cached = {"key": key, "completions": texts, "scores": scores.tolist()}
        write_json(path, cached)
    return cached["completions"], np.asarray(cached["scores"], float)


def run_variant(variant: Variant, cfg: CompareConfig, out: Path, reward_fns: list, objectives: list[str],
                make_source: Callable[[CompareConfig], Any], evaluate: Callable[[list], tuple]) -> dict[str, Any]:
    """Train (or reuse) and evaluate one variant; its record, also written to ``variants/<name>/done.json``."""
    from moalign.experiments.compare_curves import curve_points

    vdir = out / "variants" / variant.name
    key = variant_key(variant, cfg)
    done = vdir / DONE_FILE
    if done.is_file() and json.loads(done.read_text())["key"] == key:
        _log(cfg, f"{variant.name}: done before, reused")
        return json.loads(done.read_text())["record"]
    if not (vdir / KEY_FILE).is_file() or json.loads((vdir / KEY_FILE).read_text()) != key:
        shutil.rmtree(vdir, ignore_errors=True)  # made with other settings (or never started): from scratch
        vdir.mkdir(parents=True)
        (vdir / KEY_FILE).write_text(json.dumps(key, sort_keys=True))
    recipe_name, recipe = recipe_of(cfg)
    rdir = out / "recipes" / recipe_name
    _log(cfg, f"{variant.name}: data {recipe_name} ...")
    paths = compare_demo.prepare_data(cfg, rdir, reward_fns, objectives, source=make_source(cfg))
    write_json(rdir / "recipe.json", recipe)
    mdir = vdir / "run"
    record = compare_demo.finished_training(mdir)
    if record is None:
        import torch

        _log(cfg, f"{variant.name}: training {variant.method} ({cfg.budget} tokens) ...")
        torch.manual_seed(cfg.seed)
        record = compare_demo.train_method_on_budget(variant.method, cfg, paths, mdir, cfg.budget,
                                                     overrides=variant.method_settings)
    _log(cfg, f"{variant.name}: {record['budget']['tokens']} tokens in {record['train_seconds']:.0f} s; "
              "evaluating on the validation prompts ...")
    start = time.time()
    rows, scores = evaluate(compare_demo.method_policies(variant.method, cfg, record, len(objectives)))
    np.save(vdir / "scores.npy", scores)
    record = {**record, "policies": rows, "recipe": recipe_name, "data": paths["info"]}
    curve_points(variant.method, cfg, record, scores, len(objectives), mdir, evaluate)  # checkpoints, cached
    record["eval_seconds"] = time.time() - start
    write_json(done, {"key": key, "record": record})
    _log(cfg, f"{variant.name}: done")
    return record


def run_study(spec: dict[str, Any], out: Path,
              source: Callable[[CompareConfig], Any] | None = None) -> dict[str, Any]:
    """Run (or resume) every variant of ``spec``; write and return ``out/study.json`` (and ``study.md``).

    ``source(config)`` gives a variant's prompts (default
    :class:`~moalign.experiments.compare_prompts.DemoPromptSource`); only its ``train()`` (the recipe's data) and
    ``validation()`` (every evaluation) are read.
    """
    from moalign.experiments.compare_prompts import DemoPromptSource
    from moalign.experiments.compare_study_report import render_study, study_result
    from moalign.models import load_tokenizer
    from moalign.rewards.registry import resolve_rewards, reward_spec_names

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    base, variants = load_spec(spec)
    cfg = base_config(base, out)
    configs = {v.name: variant_config(cfg, v) for v in variants}
    for v in variants:  # a grid the method cannot write, or a bad setting, fails here, not after other trainings
        compare_demo.check_weight_grid(v.method, cfg.steering_steps, v.method_settings.get("weight_decimals"))
        weights = compare_demo.compare_facts(v.method).training_jobs(configs[v.name])[0][1]
        compare_demo.method_args(v.method, configs[v.name], dict.fromkeys(compare_demo.DATA_FILES.values(), ""),
                                 out / "variants" / v.name, weights, v.method_settings)  # builds the config only
    write_json(out / "spec.json", {"description": spec.get("description", ""), "base": base,
                                   "variants": [asdict(v) for v in variants]})
    make_source = source or DemoPromptSource
    reward_fns = resolve_rewards(list(cfg.reward_functions))
    objectives = reward_spec_names(list(cfg.reward_functions))
    prompts = make_source(cfg).validation()
    settings = compare_demo.eval_generation_settings(cfg)
    base_texts, base_scores = _base_evaluation(cfg, out, prompts, reward_fns, settings)
    tokenizer = load_tokenizer(cfg.model_name_or_path)

    def evaluate(groups: list) -> tuple[list[dict], np.ndarray]:
        return compare_demo.evaluate_method(groups, tokenizer, prompts, reward_fns, settings)

    records = {}
    for i, v in enumerate(variants, 1):
        _log(cfg, f"variant {i}/{len(variants)}: {v.name}")
        records[v.name] = run_variant(v, configs[v.name], out, reward_fns, objectives, make_source, evaluate)
    result = study_result(cfg, variants, configs, records, objectives, base_scores, base_texts, prompts, evaluate)
    result["description"] = spec.get("description", "")
    result["seconds_this_call"] = time.time() - start
    write_json(out / STUDY_JSON, result)
    (out / STUDY_MD).write_text(render_study(result))
    _log(cfg, f"wrote {out / STUDY_JSON} and {out / STUDY_MD}")
    return result


def command_line_base(argv: list[str]) -> dict[str, Any]:
    """CompareConfig fields given on the command line (``--field value``): they win over the spec's base."""
    if not argv:
        return {}
    from moalign.cli.main import parse_config

    parsed = parse_config(CompareConfig, list(argv), "python -m moalign.experiments.compare_study")
    named = {a[2:].split("=", 1)[0] for a in argv if a.startswith("--")}
    return {name: getattr(parsed, name) for name in named}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``python -m moalign.experiments.compare_study --spec STUDY.json --out DIR [--CompareConfig-field value ...]``."""
    parser = argparse.ArgumentParser(prog="python -m moalign.experiments.compare_study",
                                     description="A resumable study of variants of moalign compare --task demo, "
                                                 "evaluated on the validation prompts (docs/text_comparison.md).",
                                     epilog="Any other option is a field of moalign compare (e.g. --quick true, "
                                            "--budget 4000, --model_name_or_path DIR): it overrides the spec's "
                                            "base for every variant.")
    parser.add_argument("--spec", required=True, help="The study's JSON file (base, variants).")
    parser.add_argument("--out", required=True, help="Output folder; finished variants there are reused.")
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    spec = json.loads(Path(args.spec).read_text())
    spec["base"] = {**(spec.get("base") or {}), **command_line_base(rest)}
    result = run_study(spec, Path(args.out))
    print(f"wrote {args.out}/{STUDY_JSON} and {STUDY_MD} ({len(result['variants'])} variants)")
    return result


if __name__ == "__main__":
    main()
