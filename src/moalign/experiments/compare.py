"""``moalign compare``: every method on the same task, budget and evaluation, the fronts side by side.

Tasks:

* ``toy-A`` / ``toy-B`` -- the MOPO paper's continuous toy problem (:mod:`moalign.experiments.toy`), driven
  through :func:`run_toy` one method at a time (a finished method is never rerun). The budget is the number
  of Adam steps of every policy network (each ``*_steps`` field of :class:`ToyConfig` except the lag),
  with the same rows, seeds and grids for every method; the HV ratio to the true front is the score.
* ``demo`` -- the demo task (:mod:`moalign.experiments.compare_demo`): the demo's prompts, split, sampled
  responses and scorers, every registered method trained under one token budget
  (:mod:`moalign.experiments.compare_budget`) and evaluated identically on the held-out prompts.

Writes ``compare.json``, ``report.md`` and ``fronts.png`` into ``out``; ``state.json`` records finished
methods so that an interrupted comparison resumes without retraining them.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from moalign.experiments.compare_report import (
    front_relation,
    plot_fronts,
    relation_lines,
    steerability,
    write_json,
)

TASKS = ("toy-A", "toy-B", "demo")
TOY_QUICK_BUDGET = 300
TOY_BUDGET = 1000


@dataclass
class CompareConfig:
    """Settings of ``moalign compare`` (demo sizes: see ``--quick``; toy: the toy's own settings)."""

    task: str = field(default="demo", metadata={"help": "'toy-A', 'toy-B' or 'demo'."})
    out: str = field(default="runs/compare", metadata={"help": "Output folder; finished methods there are reused."})
    methods: list[str] | None = field(default=None, metadata={
        "help": "Methods to compare (space- or comma-separated). Default: every method the task has (toy: the "
                "toy's baselines and every registered method with a toy version; demo: every registered method "
                "with compare facts; `moalign train` lists them)."})
    budget: int | None = field(default=None, metadata={
        "help": "Equal budget per method. demo: training tokens processed forward+backward (default: the demo "
                "MOPO run's size, 60 steps x 8 sequences x ~60 tokens; quick: 4000). toy: Adam steps of every "
                f"policy network (default {TOY_BUDGET}; quick {TOY_QUICK_BUDGET})."})
    budget_tolerance: float = field(default=0.25, metadata={
        "help": "A method's spend must lie within budget x (1 +- tolerance); runs stop at the first optimizer step "
                "that reaches their share, so the overshoot is under one step per run."})
    quick: bool = field(default=False, metadata={"help": "Small tier (demo: minutes on the 2-core CPU; toy: the "
                                                         "toy's quick data sizes)."})
    seeds: int | None = field(default=None, metadata={"help": "Toy seeds (default 3, quick 1)."})
    model_name_or_path: str = field(default="smollm2", metadata={
        "help": "Base model of the demo task ('smollm2' or a saved model folder, e.g. a tiny test model)."})
    reward_functions: list[str] = field(default_factory=lambda: ["answer_relevance", "brevity"], metadata={
        "help": "The demo's scorers, one per objective (moalign.rewards.registry names or py:module:callable). "
                "Default: answer_relevance (MiniLM relevance, copying the prompt penalised) against brevity (length "
                "with a 10-word floor) -- they conflict on SmolLM2's samples and neither is won by an empty, "
                "one-word, repeating or prompt-echoing answer (python -m moalign.experiments.task_conflict; "
                "docs/text_comparison.md). Three objectives: positivity answer_relevance brevity."})
    num_train_prompts: int = field(default=128, metadata={"help": "Demo: training prompts (the split of "
                                                          "`moalign demo`, seeded; 128 x 3 samples is the data "
                                                          "the demo's MOPO run moved the base model with)."})
    num_validation_prompts: int = field(default=40, metadata={"help": "Demo: validation prompts (kept apart)."})
    num_test_prompts: int = field(default=48, metadata={"help": "Demo: held-out prompts of the evaluation."})
    responses_per_prompt: int = field(default=3, metadata={"help": "Demo: base-model samples per train prompt "
                                                           "(offline methods' data)."})
    sample_max_new_tokens: int = field(default=32, metadata={"help": "Demo: tokens of sampled / generated "
                                                             "training responses (offline and online)."})
    sample_temperature: float = field(default=1.0, metadata={
        "help": "Demo: sampling temperature of the base-model samples the offline methods train on. 1.0 was chosen "
                "on the validation prompts by the data study (examples/studies/offline_data.json): at the same "
                "cost (128 x 3 samples) MOPO's HV 0.30 and steering Spearman +0.98 / +0.93 against 0.14 and "
                "+0.95 / +0.15 at the demo's 0.7 (docs/text_comparison.md, 'Data for the offline methods')."})
    eval_max_new_tokens: int = field(default=32, metadata={"help": "Demo: tokens of evaluation responses (greedy)."})
    steering_steps: int = field(default=10, metadata={
        "help": "Demo: weight grid resolution for steerable methods (10 -> the 11 weights (0,1), (0.1,0.9), ..., "
                "(1,0)). MO-ODPO and P-MORL write weights with one decimal, so with them it must divide 10. "
                "Changing it (or eval_max_new_tokens) on an existing --out re-evaluates the finished methods from "
                "their saved models without retraining."})
    modpo_weights: list[float] = field(default_factory=lambda: [0.8, 0.5, 0.2], metadata={
        "help": "MODPO trains one model per weight vector: w1 on the first objective, 1-w1 split evenly "
                "over the others ((w1, 1-w1) with two objectives); under the budget only these few, each with "
                "budget / len(weights) tokens."})
    curve_fractions: list[float] = field(default_factory=lambda: [0.25, 0.5], metadata={
        "help": "Demo: fractions of the budget (< 1) at which every training run saves a checkpoint; the learning "
                "curves evaluate them and the final model (fraction 1) on the test prompts (empty: no curves)."})
    curve_steering_steps: int | None = field(default=None, metadata={
        "help": "Demo: weight grid of the learning curves; must divide steering_steps, so its weights are among the "
                "final evaluation's, whose policies of the same weights give the curve's fraction 1. Default: half "
                "of steering_steps when it is even and >= 4 (10 -> 5: the 6 weights (0,1), (0.2,0.8), ..., (1,0)), "
                "else steering_steps. Methods with a fixed set of policies (HaM, SCA, MODPO) keep them all. Half "
                "the grid halves the checkpoints' evaluation, the largest cost after training."})
    tune: bool = field(default=False, metadata={
        "help": "Demo: first tune every method (tune_trials trials over its registered grid, each scored by HV on the "
                "validation prompts at tune_fraction of the budget; moalign.experiments.compare_tuning), write "
                "out/tuned_settings.json, then run the comparison with the chosen settings."})
    tune_trials: int = field(default=4, metadata={"help": "Demo: tuning trials per method (the same for every method)."})
    tune_fraction: float = field(default=0.5, metadata={"help": "Demo: fraction of the budget a tuning trial trains."})
    tuned_settings: str | None = field(default=None, metadata={
        "help": "Demo: the tuning file to read (default: out/tuned_settings.json, else the packaged one of the task "
                "when it exists and names the same objectives); 'none': no tuning file, every method keeps the "
                "shared settings (learning_rate and each method's defaults)."})
    batch_size: int = field(default=4, metadata={"help": "Demo: rows (pairs, points or prompts) per step."})
    num_generations: int = field(default=2, metadata={"help": "Demo: GRPO group size (Rewarded Soups, P-MORL)."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Demo: learning rate of every method (constant)."})
    lora_r: int = field(default=16, metadata={"help": "Demo: LoRA rank of every method (alpha = 2 x rank)."})
    generation_batch_size: int = field(default=64, metadata={"help": "Demo: prompts per generate() call."})
    bootstrap_samples: int = field(default=1000, metadata={"help": "Bootstrap resamples of every CI."})
    reference_margin: float = field(default=0.1, metadata={"help": "Demo: shared reference = minimum of every "
                                                           "policy mean minus margin x range."})
    max_steps_cap: int = field(default=2000, metadata={"help": "Safety cap on a run's optimizer steps (the "
                                                       "token budget normally stops it far earlier)."})
    use_chat_template: bool | None = field(default=None, metadata={"help": "Demo: chat template for training and "
                                                                  "evaluation (None: when the tokenizer has one)."})
    seed: int = field(default=0, metadata={"help": "Seed of the split, sampling, training and bootstrap."})
    progress: bool = field(default=True, metadata={"help": "Print progress per method."})
    precision: str = field(default="auto", metadata={"help": "Demo: compute precision of sampling, every "
                           "method's training and the evaluation: 'auto' (bf16 where the CPU computes it "
                           "natively), 'bf16' or 'fp32' (moalign.precision); the resolved value is in compare.json."})

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.methods is not None:
            self.methods = [m.strip() for item in self.methods for m in str(item).split(",") if m.strip()]
        if not 0 < self.budget_tolerance < 1:
            raise ValueError(f"budget_tolerance must be in (0, 1), got {self.budget_tolerance}")
        if self.budget is not None and self.budget < 1:
            raise ValueError(f"budget must be >= 1, got {self.budget}")
        if self.curve_steering_steps is not None and (
                self.curve_steering_steps < 1 or self.steering_steps % self.curve_steering_steps):
            raise ValueError(f"curve_steering_steps must divide steering_steps ({self.steering_steps}) so that the "
                             f"curves' weights are among the final evaluation's, got {self.curve_steering_steps}")
        if self.tune_trials < 1 or not 0 < self.tune_fraction <= 1:
            raise ValueError(f"need tune_trials >= 1 and 0 < tune_fraction <= 1, got {self.tune_trials}, "
                             f"{self.tune_fraction}")

    def resolved_curve_steering_steps(self) -> int:
        """The learning curves' weight grid: ``curve_steering_steps``, else half an even grid of >= 4 steps."""
        if self.curve_steering_steps is not None:
            return self.curve_steering_steps
        return self.steering_steps // 2 if self.steering_steps >= 4 and self.steering_steps % 2 == 0 \
            else self.steering_steps

    def resolved_budget(self) -> int:
        if self.budget is not None:
            return self.budget
        if self.task.startswith("toy"):
            return TOY_QUICK_BUDGET if self.quick else TOY_BUDGET
        return 4000 if self.quick else 28800


def log(config: CompareConfig, message: str) -> None:
    if config.progress:
        print(f"[compare {config.task}] {message}", flush=True)


class CompareState:
    """``out/state.json``: the settings and every finished method's record (resume = skip those)."""

    def __init__(self, out: Path, settings: dict[str, Any]) -> None:
        self.path = out / "state.json"
        self.data: dict[str, Any] = {"settings": settings, "methods": {}}
        if self.path.exists():
            before = json.loads(self.path.read_text())
            changed = [k for k in settings if before["settings"].get(k, UNRECORDED.get(k)) != settings[k]]
            if changed and settings.get("task") == "demo" and set(changed) <= REEVALUATE:
                for record in before["methods"].values():  # trained models stay; their evaluation is redone
                    record["needs_evaluation"] = True
                before["settings"] = settings
            elif changed:
                raise ValueError(f"{out} holds a comparison made with other settings ({', '.join(changed)}); "
                                 "use another --out or delete it")
            self.data = before

    def done(self, method: str) -> dict[str, Any] | None:
        """The finished method's record (None: not finished, or its evaluation must be redone)."""
        record = self.data["methods"].get(method)
        return None if record is None or record.get("needs_evaluation") else record

    def trained(self, method: str) -> dict[str, Any] | None:
        """The training part of a method whose evaluation must be redone (None otherwise)."""
        record = self.data["methods"].get(method)
        if record is None or not record.get("needs_evaluation"):
            return None
        return {k: v for k, v in record.items() if k not in ("policies", "scores", "eval_seconds", "needs_evaluation")}

    def finish(self, method: str, record: dict[str, Any]) -> None:
        self.data["methods"][method] = record
        write_json(self.path, self.data)


#: settings that do not change what a method's training or evaluation produces (bootstrap and reference: the
#: report only, recomputed on every run; curve_fractions: checkpoints saved on the way, the training is the same;
#: the tuning options: what they decide is recorded as the resolved per-method settings, "tuned")
_NOT_DECISIVE = {"out", "methods", "progress", "bootstrap_samples", "reference_margin", "curve_fractions",
                 "curve_steering_steps", "tune", "tune_trials", "tune_fraction", "tuned_settings"}
#: demo settings that change only the evaluation: finished methods are re-evaluated, not retrained
REEVALUATE = {"steering_steps", "eval_max_new_tokens"}
#: what a comparison made before a setting existed did (runs before the precision setting ran in float32; the
#: sampling temperature was the demo's 0.7)
UNRECORDED = {"precision": "fp32", "tuned": {}, "sample_temperature": 0.7}


def run_compare(config: CompareConfig) -> dict[str, Any]:
    """Run (or resume) the comparison; returns what ``compare.json`` holds.

    The demo task's base model is ``config.model_name_or_path`` (tests pass a tiny saved model and scripted
    ``py:`` reward functions).
    """
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in asdict(config).items() if k not in _NOT_DECISIVE}
    if config.task != "demo":
        settings.pop("precision")  # the toy problems run no language model
    settings["budget"] = config.resolved_budget()
    if config.task == "demo":
        from moalign.experiments.compare_tuning import run_tuning, tuned_overrides

        if config.tune:
            run_tuning(config, out)
        settings["tuned"] = tuned_overrides(config)  # each method's chosen settings: they change its training
    state = CompareState(out, settings)
    if config.task == "demo":
        from moalign.experiments.compare_demo import run_demo_compare

        result = run_demo_compare(config, state, out)
    else:
        result = run_toy_compare(config, state, out)
    write_json(out / "compare.json", result)
    (out / "report.md").write_text(result.pop("_report_md"))
    return result


# ---------------------------------------------------------------------------- toy
def toy_methods() -> tuple[str, ...]:
    """The methods the toy benchmark offers (read at call time: methods register themselves)."""
    from moalign.experiments.toy import all_toy_methods

    return all_toy_methods()


def toy_config(config: CompareConfig, method: str, out: Path) -> Any:
    """The :class:`ToyConfig` of one method: the task's set, seeds and sizes, every ``*_steps`` = the budget."""
    from moalign.experiments.toy import QUICK, ToyConfig

    budget = config.resolved_budget()
    names = {f.name for f in dataclasses.fields(ToyConfig)}
    steps = {n: budget for n in names if n.endswith("_steps") and "lag" not in n}
    sizes = {k: v for k, v in QUICK.items() if k not in steps and k != "seeds"} if config.quick else {}
    seeds = config.seeds if config.seeds is not None else (1 if config.quick else 3)
    return ToyConfig(set=config.task[-1], out=str(out), seeds=seeds, seed=config.seed, methods=[method],
                     **{**sizes, **steps})


def run_toy_compare(config: CompareConfig, state: CompareState, out: Path) -> dict[str, Any]:
    """Each selected toy method in its own :func:`run_toy` call (resumable), then one table and one plot."""
    from moalign.experiments.toy import run_toy

    offered = toy_methods()
    methods = config.methods or list(offered)
    unknown = sorted(set(methods) - set(offered))
    if unknown:
        raise ValueError(f"the toy offers {', '.join(offered)}; unknown: {', '.join(unknown)}")
    for i, method in enumerate(methods, 1):
        if state.done(method):
            log(config, f"{i}/{len(methods)} {method}: done before, reused")
            continue
        log(config, f"{i}/{len(methods)} {method}: training ...")
        start = time.time()
        method_dir = out / "toy" / method
        run_toy(toy_config(config, method, method_dir), progress=False)
        state.finish(method, {"dir": str(method_dir), "seconds": time.time() - start})
        log(config, f"{i}/{len(methods)} {method}: finished in {time.time() - start:.0f} s")
    return toy_result(config, state, methods)


def _toy_weights(params: dict[str, Any]) -> list[float] | None:
    w = params.get("preference", params.get("w"))
    if w is None:
        return None
    return [float(w), 1.0 - float(w)] if np.isscalar(w) else [float(v) for v in w]


def toy_result(config: CompareConfig, state: CompareState, methods: list[str]) -> dict[str, Any]:
    """Rows (the toy's method entries), HV ratios, relation, steerability, plot and table from the JSONs."""
    from moalign.methods.registry import methods_in_order

    registered = methods_in_order()
    rows: dict[str, Any] = {}
    reference = true_front = None
    for method in methods:
        record = state.done(method)
        res = json.loads((Path(record["dir"]) / f"toy_{config.task[-1]}.json").read_text())
        ref = res["reference_point"]
        if reference is not None and not np.allclose(ref, reference):
            raise RuntimeError(f"toy runs disagree on the reference point ({ref} vs {reference})")
        reference, true_front = ref, res["true_front"]
        steps = {k: v for k, v in res["config"].items() if k.endswith("_steps") and "lag" not in k}
        for name, summary in res["methods"].items():
            if name == "uniform reference":
                continue
            pols = [p for p in res["policies"] if p["method"] == name]
            seed0 = pols[0]["params"].get("seed")
            first = [p for p in pols if p["params"].get("seed") == seed0]
            points = np.array([p["expected_rewards"] for p in first])
            weights = [_toy_weights(p["params"]) for p in first]
            steer = steerability(weights, points, ["r1", "r2"])
            spec = registered.get(method)
            reason = spec.toy.unsteerable_reason if spec is not None and spec.toy is not None else None
            if not steer["steerable"] and reason:
                steer["reason"] = reason
            rows[name] = {"method": method, "points": points.tolist(), "hv_ratio_mean": summary["hv_ratio_mean"],
                          "hv_ratio_std": summary["hv_ratio_std"], "hv_ratio_per_seed": summary["hv_ratio_per_seed"],
                          "policies_per_seed": summary["policies_per_seed"], "steerability": steer,
                          "budget_steps": steps, "seconds": record["seconds"],
                          "policies": [{"params": p["params"], "expected_rewards": p["expected_rewards"],
                                        "probs": p["probs"]} for p in pols]}
        uniform = next(p["expected_rewards"] for p in res["policies"] if p["method"] == "uniform reference")
    from moalign.core.pareto import hypervolume

    ref = np.asarray(reference)
    for r in rows.values():  # recomputed on the written points with moocore: must equal the toy's own ratio
        r["hv_seed0_recomputed"] = hypervolume(np.asarray(r["points"]), ref) / true_front["hypervolume"]
    relations = {a: {b: front_relation(ra["points"], rb["points"]) for b, rb in rows.items() if b != a}
                 for a, ra in rows.items()}
    out = Path(config.out)
    plot_fronts(rows, ["E[r1]", "E[r2]"], out / "fronts.png", base=uniform, true_front=true_front["vertices"],
                title=f"toy set {config.task[-1]}: every method (seed {config.seed}), true front")
    result = {"task": config.task, "budget": {"rule": "Adam steps of every policy network (all *_steps fields but "
                                              "the lag); same rows, seeds and grids", "steps": config.resolved_budget(),
                                              "tolerance": 0.0},
              "reference_point": reference, "true_front": true_front, "base": {"name": "uniform reference",
                                                                              "expected_rewards": uniform},
              "rows": rows, "relations": relations, "config": asdict(config)}
    result["_report_md"] = render_toy_report(result)
    return result


def render_toy_report(result: dict[str, Any]) -> str:
    rows = sorted(result["rows"].items(), key=lambda kv: -kv[1]["hv_ratio_mean"])
    lines = [f"# moalign compare --task {result['task']}", "",
             f"Budget: {result['budget']['rule']} = {result['budget']['steps']}. HV ratio = HV(policies of one "
             f"seed) / HV(true front), reference point {result['reference_point']} (shared).", "",
             "| method | toy run | policies/seed | HV ratio (mean ± std over seeds) | steerability (Spearman r1 / r2) | "
             "steps (spend) | s |", "|---|---|---|---|---|---|---|"]
    for name, r in rows:
        st = r["steerability"]
        steer = ("steerable: " + " / ".join("–" if v is None else f"{v:+.2f}" for v in st["spearman"].values())
                 if st["steerable"] else st["reason"].split(":")[0])
        steps = "0 (oracle, no training)" if r["method"] == "cop" else str(result["budget"]["steps"])
        lines.append(f"| {name} | {r['method']} | {r['policies_per_seed']} | {r['hv_ratio_mean']:.3f} ± "
                     f"{r['hv_ratio_std']:.3f} | {steer} | {steps} | {r['seconds']:.0f} |")
    lines += ["", "Domination between fronts (seed 0; HaM relation, compare_report.front_relation):"]
    lines += relation_lines(result["relations"])
    lines += ["", "![fronts](fronts.png)", ""]
    return "\n".join(lines)
