"""``moalign compare --task demo``: every method on the demo task, same data, budget and evaluation.

Data (``out/data/``, made once): the seeded train / validation / test split of ``moalign demo``
(:func:`moalign.experiments.demo.split_prompts`), ``responses_per_prompt`` base-model samples per train
prompt (:func:`~moalign.experiments.demo.sample_responses`, budget-cut samples flagged truncated), scored by
the same scorers; offline methods train on them -- pairwise rows with scores (MOPO, MODPO) or the scored
responses (HaM, SCA, RiC) -- and online methods draw their prompts from the same train prompts
(``prompts.jsonl``) and score their own samples with the same scorers.

Training: :func:`moalign.trainers.run.train_method` for every method, with one shared set of settings
(LoRA rank, learning rate, batch, lengths, seed) and the token budget of
:mod:`moalign.experiments.compare_budget`; the data file follows the trainer's data kind and the rest is the
method's registration (:class:`~moalign.methods.spec.CompareFacts`: its own arguments, its training jobs -- MODPO:
one model per ``modpo_weights`` entry --, one run per objective for the soups' specialists; each run gets
``budget / runs`` tokens).

Evaluation, identical for every method: greedy responses to the held-out test prompts from each of the
policies the method offers (its ``CompareFacts.policies``: MOPO's steering grid, HaM's heads, SCA's weight heads,
RiC's preference prompts, the conditioned prompts of MO-ODPO and P-MORL, the soups' interpolated adapters,
MODPO's per-weight models), scored on the *unconditioned* prompt; the base model once.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from moalign.experiments.compare import CompareConfig, CompareState, log
from moalign.experiments.compare_budget import PeakMemory, metered
from moalign.experiments.compare_report import (
    hypervolume_ci,
    mean_ci,
    plot_fronts,
    policy_summaries,
    relation_lines,
    render_demo_table,
    render_policy_table,
    steerability,
    summarise_fronts,
    write_json,
)

TRAIN_RECORD = "train_record.json"
#: the shared data file each kind of trainer reads (``prepare_data``'s paths)
DATA_FILES = {"pairwise": "pairs", "pointwise": "points", "prompts": "prompts"}


def compared_methods(config: CompareConfig) -> list[str]:
    """The methods to compare: ``config.methods``, else every registered method with compare facts (in registry
    order); a named method without them is refused."""
    from moalign.methods.registry import methods_in_order

    offered = [name for name, spec in methods_in_order().items() if spec.compare is not None]
    methods = config.methods or offered
    unknown = [m for m in methods if m not in offered]
    if unknown:
        raise ValueError(f"compare --task demo knows {', '.join(offered)}; unknown: {', '.join(unknown)}")
    return list(methods)


def compare_facts(method: str) -> Any:
    """The :class:`~moalign.methods.spec.CompareFacts` of a registered method."""
    from moalign.methods.registry import get_method

    facts = get_method(method).compare
    if facts is None:
        raise ValueError(f"method {method!r} declares no compare facts (TrainingMethod.compare)")
    return facts


def demo_config(config: CompareConfig) -> Any:
    """The :class:`DemoConfig` whose split and sampling the comparison shares."""
    from moalign.experiments.demo import DemoConfig

    return DemoConfig(out=config.out, num_train_prompts=config.num_train_prompts,
                      num_validation_prompts=config.num_validation_prompts, num_test_prompts=config.num_test_prompts,
                      responses_per_prompt=config.responses_per_prompt,
                      sample_max_new_tokens=config.sample_max_new_tokens, sample_temperature=config.sample_temperature,
                      eval_max_new_tokens=config.eval_max_new_tokens,
                      generation_batch_size=config.generation_batch_size, seed=config.seed,
                      precision=config.precision)


def quick_overrides(config: CompareConfig) -> CompareConfig:
    """``--quick``: the small tier (sizes of ``moalign demo --quick``; 3-point weight grids; 2 MODPO weights)."""
    if not config.quick:
        return config
    from dataclasses import replace

    return replace(config, num_train_prompts=24, responses_per_prompt=2, num_test_prompts=12,
                   sample_max_new_tokens=24, eval_max_new_tokens=24, steering_steps=2, bootstrap_samples=200,
                   modpo_weights=[0.8, 0.2], quick=False)


def load_base(config: CompareConfig) -> tuple[Any, Any]:
    """A fresh base model and its tokenizer (a new copy each call: PEFT wraps models in place)."""
    from moalign.models import load_base_model, load_tokenizer

    return load_base_model(config.model_name_or_path), load_tokenizer(config.model_name_or_path)


def prepare_data(config: CompareConfig, out: Path, reward_fns: list, objectives: list[str],
                 source: Any = None) -> dict[str, Any]:
    """Sample, score and write the shared data once (``out/data``) from the train prompts of ``source`` (a
    :class:`~moalign.experiments.compare_prompts.DemoPromptSource`, default: the config's split); returns paths
    and the data's description. Reads no other split."""
    from moalign.experiments.compare_prompts import DemoPromptSource
    from moalign.data import from_rows
    from moalign.data.io import to_jsonl
    from moalign.experiments.demo import (
        read_jsonl,
        write_jsonl,
        build_pairs,
        objective_correlations,
        sample_responses,
        training_samples,
    )
    from moalign.rewards.labelling import score_completions

    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    demo = demo_config(config)
    train_prompts = (source or DemoPromptSource(config)).train()
    paths = {"pairs": data / "pairs.jsonl", "points": data / "points.jsonl", "prompts": data / "prompts.jsonl"}
    if not (data / "done.json").exists():
        base, tokenizer = load_base(config)
        if not (data / "samples.jsonl").exists():
            write_jsonl(data / "samples.jsonl", sample_responses(base, tokenizer, train_prompts, demo))
        samples = training_samples(read_jsonl(data / "samples.jsonl"), "truncated")
        scores = np.asarray(score_completions([s["prompt"] for s in samples], [s["completion"] for s in samples],
                                              reward_fns), float)
        pairs, _ = build_pairs(samples, scores, objectives)
        to_jsonl(pairs, paths["pairs"])
        points = from_rows([{**s, "scores": [float(v) for v in sc]} for s, sc in zip(samples, scores)],
                           objectives=objectives, kind="pointwise", source="samples")
        to_jsonl(points, paths["points"])
        write_jsonl(paths["prompts"], [{"prompt": p} for p in train_prompts])
        info = {"num_samples": len(samples), "num_pairs": len(pairs),
                "objective_correlation_on_samples": objective_correlations(scores, objectives),
                "num_train_prompts": len(train_prompts), "num_test_prompts": config.num_test_prompts,
                "reward_functions": list(config.reward_functions)}
        (data / "done.json").write_text(json.dumps(info, indent=1))
    info = json.loads((data / "done.json").read_text())
    _check_data_objectives(data, info, objectives, list(config.reward_functions))
    return {**{k: str(v) for k, v in paths.items()}, "info": info}


def _check_data_objectives(data: Path, info: dict[str, Any], objectives: list[str], specs: list[str]) -> None:
    """Refuse data labelled for other objectives: a tuning or comparison resumed in the same folder with other
    ``--reward_functions`` would otherwise train on the old labels. Data written before the specs were recorded
    is checked by its objective names (the pairs' sidecar)."""
    from moalign.data.io import sidecar_path

    recorded = info.get("reward_functions")
    if recorded is None:
        sidecar = sidecar_path(data / "pairs.jsonl")
        recorded_names = json.loads(sidecar.read_text())["moalign_multi_objective"]["objectives"] \
            if sidecar.exists() else None
        if recorded_names is None or recorded_names == objectives:
            return
        recorded = recorded_names
    elif recorded == specs:
        return
    raise ValueError(f"{data}: the data there was scored with {recorded}, this run asks for {specs}; use another "
                     "--out (or delete its data/ folder to sample and score again)")


def method_args(method: str, config: CompareConfig, paths: dict[str, Any], output_dir: Path,
                weights: list[float] | None = None, overrides: dict[str, Any] | None = None) -> Any:
    """The method's config: shared settings + the data file of its kind + what the method itself needs (its
    ``CompareFacts.args``) + ``overrides`` (its tuned settings, :mod:`moalign.experiments.compare_tuning`), which
    win."""
    from moalign.methods.registry import get_method

    spec = get_method(method)
    common = dict(model_name_or_path=config.model_name_or_path, output_dir=str(output_dir),
                  max_steps=config.max_steps_cap, per_device_train_batch_size=config.batch_size,
                  learning_rate=config.learning_rate, lr_scheduler_type="constant", use_cpu=True, report_to=[],
                  seed=config.seed, save_strategy="no", save_only_model=True, logging_steps=10, disable_tqdm=True,
                  lora_r=config.lora_r, lora_alpha=2 * config.lora_r,
                  max_completion_length=config.sample_max_new_tokens + 1,
                  use_chat_template=config.use_chat_template, precision=config.precision)
    extra: dict[str, Any] = {"dataset_path": paths[DATA_FILES[spec.data_kind]]}
    if spec.data_kind == "prompts":  # online methods score their own samples with the comparison's scorers
        extra["reward_functions"] = list(config.reward_functions)
    extra.update(compare_facts(method).training_args(config, weights))
    return spec.config_class(**{**common, **extra, **(overrides or {})})


def train_method_on_budget(method: str, config: CompareConfig, paths: dict[str, Any], mdir: Path,
                           budget: int, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train ``method`` from scratch into ``mdir/model`` under the token budget (with ``overrides`` of its
    settings); its spend, time, memory."""
    from moalign.trainers.run import train_method

    if mdir.exists():
        shutil.rmtree(mdir)  # an interrupted method restarts: its budget is counted from zero
    mdir.mkdir(parents=True)
    facts = compare_facts(method)
    jobs = [(mdir / name, weights) for name, weights in facts.training_jobs(config)]
    runs = len(jobs) * (len(config.reward_functions) if facts.runs_per_objective else 1)
    start = time.time()
    with PeakMemory() as memory, metered(run_budget=-(-budget // runs),
                                         checkpoint_fractions=tuple(config.curve_fractions)) as meter:
        for directory, weights in jobs:
            train_method(method, method_args(method, config, paths, directory, weights, overrides))
    spend = meter.tokens
    ratio = spend / budget
    record = {"budget": {"tokens": spend, "budget": budget, "ratio": ratio, "runs": len(meter.runs),
                       "planned_runs": runs, "within_tolerance": abs(ratio - 1) <= config.budget_tolerance,
                       "per_run": [vars(r) for r in meter.runs]},
            "train_seconds": time.time() - start, "memory": memory.to_dict(),
            "settings": dict(overrides or {}), "models": [str(d) for d, _ in jobs], "job_weights": [w for _, w in jobs]}
    write_json(mdir / TRAIN_RECORD, record)  # an interrupted evaluation resumes without retraining
    return record


def finished_training(mdir: Path) -> dict[str, Any] | None:
    """The training record of a method trained to completion in ``mdir`` (None: train it)."""
    path = mdir / TRAIN_RECORD
    return json.loads(path.read_text()) if path.exists() else None


def _grid(config: CompareConfig, k: int) -> list[tuple[float, ...]]:
    from moalign.eval.policies import steering_grid

    return steering_grid(k, config.steering_steps)


def method_policies(method: str, config: CompareConfig, record: dict[str, Any], k: int) -> list[tuple[Any, list]]:
    """``[(load_model, [(Policy, prompt_transform or None, weights or None), ...]), ...]`` of a trained method: its
    ``CompareFacts.policies`` on the record's folders and the steering grid."""
    from moalign.methods.spec import PolicyContext, resolve

    models = [Path(m) for m in record["models"]]
    weights = record.get("job_weights") or record.get("modpo_weights") or [None] * len(models)  # older records
    ctx = PolicyContext(models=models, job_weights=list(weights), grid=_grid(config, k),
                        model_name_or_path=config.model_name_or_path)
    return resolve(compare_facts(method).policies)(ctx)


def evaluate_method(groups: list[tuple[Any, list]], tokenizer: Any, prompts: list[str], reward_fns: list,
                    settings: Any) -> tuple[list[dict], np.ndarray]:
    """Greedy responses of every policy on ``prompts``, scored on the plain prompts: (policy rows, scores)."""
    from moalign.eval.generate import generate_completions
    from moalign.eval.prompt_cache import SharedPromptCache
    from moalign.rewards.labelling import score_completions

    rows, scores = [], []
    for load, entries in groups:
        model = load()
        model.eval()
        prompt_cache = SharedPromptCache()  # one model's heads and steering weights read each prompt batch once
        for policy, transform, weights in entries:
            asked = [transform(p) for p in prompts] if transform else prompts
            texts = generate_completions(model, tokenizer, asked, policy, settings, prompt_cache=prompt_cache)
            scores.append(score_completions(prompts, texts, reward_fns, context=f"policy '{policy.name}'"))
            rows.append({**policy.to_dict(), "weights": weights, "completions": texts})
        del model
    return rows, np.stack(scores)


def eval_generation_settings(cfg: CompareConfig) -> Any:
    """The greedy generation settings of every evaluation (test prompts, tuning's validation prompts)."""
    from moalign.eval.generate import GenerationSettings

    return GenerationSettings(max_new_tokens=cfg.eval_max_new_tokens, batch_size=cfg.generation_batch_size,
                              do_sample=False, seed=cfg.seed, progress=False, precision=cfg.precision,
                              use_chat_template=cfg.use_chat_template is not False)


def base_answers(cfg: CompareConfig, prompts: list[str], reward_fns: list, settings: Any) -> tuple[list[str], np.ndarray]:
    """The base model's greedy answers to ``prompts`` and their scores ``(n, K)``: the point every evaluation
    (test prompts, tuning's and studies' validation prompts) compares the trained policies with."""
    from moalign.eval.generate import generate_completions
    from moalign.eval.policies import Policy
    from moalign.rewards.labelling import score_completions

    base, tokenizer = load_base(cfg)
    texts = generate_completions(base, tokenizer, prompts, Policy.as_is("base"), settings)
    return texts, np.asarray(score_completions(prompts, texts, reward_fns, context="base model"), float)


def check_weight_grid(method: str, steering_steps: int, decimals: int | None = None) -> None:
    """Refuse a steering grid the method cannot write: a method writing its weights with d decimals (its
    ``CompareFacts.weight_decimals``, or ``decimals`` when its settings change them) needs steps dividing 10^d."""
    decimals = compare_facts(method).weight_decimals if decimals is None else decimals
    if decimals is not None and 10 ** decimals % steering_steps:
        raise ValueError(f"{method} writes the weights with {decimals} decimal(s): --steering_steps must divide "
                         f"{10 ** decimals}, got {steering_steps}")


def run_demo_compare(config: CompareConfig, state: CompareState, out: Path) -> dict[str, Any]:
    """Data once, then every method (resumable), then one report."""
    from moalign.rewards.registry import resolve_rewards, reward_spec_names
    import torch

    cfg = quick_overrides(config)
    budget = config.resolved_budget()
    methods = compared_methods(cfg)
    for method in methods:
        check_weight_grid(method, cfg.steering_steps)
    reward_fns = resolve_rewards(list(cfg.reward_functions))
    objectives = reward_spec_names(list(cfg.reward_functions))
    torch.manual_seed(cfg.seed)
    log(cfg, "data: split, sample, score ...")
    paths = prepare_data(cfg, out, reward_fns, objectives)
    from moalign.experiments.compare_prompts import DemoPromptSource

    prompts = DemoPromptSource(cfg).test()  # the test prompts: read once, after any tuning
    tuned = state.data["settings"].get("tuned") or {}  # per-method settings of the tuning file (compare_tuning)
    settings = eval_generation_settings(cfg)
    base_path = out / "base_eval.json"
    base_eval = json.loads(base_path.read_text()) if base_path.exists() else {}
    if base_eval.get("eval_max_new_tokens") != cfg.eval_max_new_tokens:  # missing, or made with other settings
        texts, scores = base_answers(cfg, prompts, reward_fns, settings)
        base_eval = {"scores": scores.tolist(), "completions": texts, "eval_max_new_tokens": cfg.eval_max_new_tokens}
        base_path.write_text(json.dumps(base_eval))
    base_scores = np.asarray(base_eval["scores"], float)
    from moalign.models import load_tokenizer

    tokenizer = load_tokenizer(cfg.model_name_or_path)
    for i, method in enumerate(methods, 1):
        if state.done(method):
            log(cfg, f"{i}/{len(methods)} {method}: done before, reused")
            continue
        mdir = out / "methods" / method
        record = state.trained(method) or finished_training(mdir)
        if record is None:
            log(cfg, f"{i}/{len(methods)} {method}: training (budget {budget} tokens) ...")
            torch.manual_seed(cfg.seed)
            record = train_method_on_budget(method, cfg, paths, mdir, budget, overrides=tuned.get(method))
            done_how = "in"
        else:
            done_how = "trained before, reused; training took"
        log(cfg, f"{i}/{len(methods)} {method}: {record['budget']['tokens']} tokens "
                 f"({record['budget']['ratio']:.2f} x budget) {done_how} {record['train_seconds']:.0f} s; "
                 "evaluating ...")
        t = time.time()
        rows, scores = evaluate_method(method_policies(method, cfg, record, len(objectives)), tokenizer, prompts,
                                       reward_fns, settings)
        np.save(mdir / "scores.npy", scores)
        record["policies"] = rows
        record["eval_seconds"] = time.time() - t
        state.finish(method, {**record, "scores": str(mdir / "scores.npy")})
        log(cfg, f"{i}/{len(methods)} {method}: done")
    from moalign.precision import resolve_precision

    result = demo_result(cfg, state, methods, objectives, base_scores, paths["info"], budget, prompts,
                         base_completions=base_eval["completions"])
    from moalign.experiments.compare_curves import learning_curves, render_curves

    curves = learning_curves(cfg, state, methods, objectives, base_scores,
                             lambda groups: evaluate_method(groups, tokenizer, prompts, reward_fns, settings))
    if curves is not None:  # checkpoints at fractions of the budget: see compare_curves
        result["learning_curves"] = curves
        result["_report_md"] += "\n".join(["", *render_curves(curves, objectives), ""])
    from moalign.experiments.compare_tuning import render_settings, settings_path

    result["tuned_settings_file"] = str(settings_path(cfg)) if tuned else None
    result["_report_md"] += "\n".join(["", *render_settings(result, settings_path(cfg) if tuned else None), ""])
    result["precision"] = resolve_precision(cfg.precision, "cpu")
    return result


def demo_result(cfg: CompareConfig, state: CompareState, methods: list[str], objectives: list[str],
                base_scores: np.ndarray, data_info: dict, budget: int, prompts: list[str],
                base_completions: list[str] | None = None) -> dict[str, Any]:
    """Per-policy means with CIs, shared reference, HV with CIs, steerability, relations, degenerate answers and
    the objectives' conflict (:mod:`~moalign.experiments.compare_diagnostics`), table, plot."""
    from moalign.experiments.compare_diagnostics import diagnostics, render_diagnostics

    boot = dict(num_samples=cfg.bootstrap_samples, seed=cfg.seed)
    base = mean_ci(base_scores, **boot)
    per_method: dict[str, Any] = {}
    for method in methods:
        rec = state.done(method)
        scores = np.load(rec["scores"])
        pols = policy_summaries(rec["policies"], scores, base_scores, objectives, **boot)
        per_method[method] = {**{k: v for k, v in rec.items() if k not in ("policies", "scores")},
                              "policies": pols, "points": [p["mean"] for p in pols], "_scores": scores}
    fronts = summarise_fronts(per_method, np.asarray(base["mean"]), margin=cfg.reference_margin)
    ref = np.asarray(fronts["reference_point"])
    for method, m in per_method.items():
        m["hv"] = hypervolume_ci(m.pop("_scores"), ref, num_samples=cfg.bootstrap_samples, seed=cfg.seed)
        m["steerability"] = steerability([p["weights"] for p in m["policies"]], m["points"], objectives)
    result = {"task": "demo", "objectives": objectives, "data": data_info,
              "budget": {"rule": "training tokens processed forward+backward (token positions entering the policy's "
                                 "embedding in grad-enabled training-mode forwards; generation and reference passes "
                                 "not counted)", "tokens": budget, "tolerance": cfg.budget_tolerance},
              "reference_point": fronts["reference_point"], "reference_rule": fronts["reference_rule"],
              "hypervolume_base": fronts["hypervolume_base"], "relations": fronts["relations"],
              "base": base, "methods": per_method, "test_prompts": list(prompts),
              "config": {k: v for k, v in vars(cfg).items()},
              **diagnostics(per_method, base_completions, data_info, list(prompts))}
    out = Path(cfg.out)
    plot_fronts(per_method, objectives, out / "fronts.png", base=base["mean"],
                title=f"demo task: every method, {len(base_scores)} test prompts")
    result["_report_md"] = "\n".join([
        "# moalign compare --task demo", "",
        f"Objectives {', '.join(objectives)}; {data_info['num_samples']} sampled responses, {data_info['num_pairs']} "
        f"pairs from {data_info['num_train_prompts']} train prompts; evaluation: greedy, {len(base_scores)} held-out "
        f"test prompts.", "",
        f"Budget: {result['budget']['rule']} = {budget} tokens per method, tolerance ±{cfg.budget_tolerance:.0%}. "
        f"HV reference point (shared): {[round(v, 4) for v in fronts['reference_point']]} "
        f"({fronts['reference_rule']}); base model HV {fronts['hypervolume_base']:.4g}.", "",
        render_demo_table(result), "", "Domination between fronts (HaM relation):", *relation_lines(fronts["relations"]),
        "", *render_diagnostics(result),
        "", "## Every policy", "", render_policy_table(result), "", "![fronts](fronts.png)", ""])
    return result
