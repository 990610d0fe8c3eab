"""Evaluate the policies of a trained model: generate → score → aggregate → report.

docs/design.md, "Evaluation": for a set of test prompts, generate with each
policy, score with each reward function, average overall and per prompt
cluster (``j = 6`` clusters in the MOPO paper §4.2), keep the
non-dominated points and report hypervolume against a stated reference point,
plots and JSON. The untrained base model is always evaluated too.

Artefacts written to ``config.output_dir``:

* ``generations.jsonl`` -- one line per (policy, prompt): policy spec, prompt,
  cluster, completion and every objective's score; :func:`load_generations`
  reads it back and :func:`rescore_generations` redoes scoring without a model;
* ``report.json`` / ``report.md`` -- see :func:`moalign.eval.report.summarize_scores`;
* ``front.png`` -- see :func:`moalign.eval.plots.plot_report`;
* ``eval_config.json`` -- the configuration used.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from moalign.eval.clustering import cluster_prompts
from moalign.eval.generate import GenerationSettings, Prompt, model_device, generate_completions, validate_prompts
from moalign.eval.plots import plot_report
from moalign.eval.prompt_cache import SharedPromptCache
from moalign.eval.policies import Policy, ensure_base_policy, steering_policies, validate_policies_for_model
from moalign.eval.report import add_degeneracy, summarize_scores, write_report
from moalign.precision import resolve_precision
from moalign.rewards.labelling import RewardFns, objective_names, score_completions


@dataclass
class EvalConfig(GenerationSettings):
    """Settings of :func:`evaluate_policies` (generation settings are inherited from ``GenerationSettings``)."""

    num_clusters: int = field(default=6, metadata={"help": "k-means clusters of the prompts (MOPO paper §4.2 uses 6); 1 disables clustering."})
    bootstrap_samples: int = field(default=1000, metadata={"help": "Bootstrap resamples for the confidence intervals."})
    confidence: float = field(default=0.95, metadata={"help": "Confidence level of the percentile-bootstrap intervals."})
    reference_point: list[float] | None = field(default=None, metadata={"help": "Hypervolume reference point, one value per objective; default: minimum (policy, cluster) mean minus reference_margin x range."})
    reference_margin: float = field(default=0.1, metadata={"help": "Fraction of each objective's range subtracted from the minimum for the automatic reference point."})
    steering_steps: int | None = field(default=None, metadata={"help": "Resolution of the default steering grid used when no policies are given for a multi-head model (None: 10 for two heads, i.e. the 11-point sweep; 4 for three or more)."})
    output_dir: str | None = field(default=None, metadata={"help": "Directory for generations.jsonl, report.json, report.md and front.png; None writes nothing."})
    plots: bool = field(default=True, metadata={"help": "Write PNG plots (needs output_dir)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_clusters < 1:
            raise ValueError(f"num_clusters must be >= 1, got {self.num_clusters}")
        if self.bootstrap_samples < 1:
            raise ValueError(f"bootstrap_samples must be >= 1, got {self.bootstrap_samples}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")

    def generation_settings(self) -> GenerationSettings:
        names = {f.name for f in dataclasses.fields(GenerationSettings)}
        return GenerationSettings(**{k: v for k, v in dataclasses.asdict(self).items() if k in names})


@dataclass
class EvalResult:
    """Everything an evaluation produced: completions, scores ``(n_policies, n_prompts, K)``, clusters, report."""

    objectives: list[str]
    policies: list[Policy]
    prompts: list[Prompt]
    completions: list[list[str]]
    scores: np.ndarray
    cluster_labels: np.ndarray
    report: dict[str, Any]
    paths: dict[str, Path] = field(default_factory=dict)

    def policy(self, name: str) -> Policy:
        for p in self.policies:
            if p.name == name:
                return p
        raise KeyError(f"no policy named {name!r}; have {[p.name for p in self.policies]}")

    def completions_of(self, name: str) -> list[str]:
        return self.completions[self.policies.index(self.policy(name))]


def _model_num_heads(model: Any) -> int | None:
    if hasattr(model, "head_names"):
        return int(model.num_heads) if hasattr(model, "num_heads") else len(model.head_names)
    return None


def default_policies(model: Any, steering_steps: int | None = None, divergence: str = "reverse_kl") -> list[Policy]:
    """Policies evaluated when none are given.

    A multi-head model (one with ``head_names``) is swept over the steering
    grid (:func:`~moalign.eval.policies.steering_grid`; with reverse KL the
    corner ``w = e_k`` is head ``k`` exactly, so heads are not listed twice); a
    single-head model gets its one head; any other model is evaluated as it is.
    The base policy is added by :func:`evaluate_policies` in every case.
    """
    k = _model_num_heads(model)
    if k is None:
        return [Policy.as_is()]
    if k == 1:
        return [Policy.from_head(0)]
    steps = steering_steps if steering_steps is not None else (10 if k == 2 else 4)
    return steering_policies(k, steps=steps, divergence=divergence)


def _summarize_and_write(
    objectives: list[str], policies: list[Policy], prompts: list[Prompt], completions: list[list[str]],
    scores: np.ndarray, labels: np.ndarray, num_clusters: int, config: EvalConfig, model_info: dict | None = None,
) -> EvalResult:
    report = summarize_scores(
        scores, policies, objectives, labels, num_clusters=num_clusters,
        bootstrap_samples=config.bootstrap_samples, confidence=config.confidence, seed=config.seed,
        reference_point=config.reference_point, reference_margin=config.reference_margin,
    )
    report["config"] = dataclasses.asdict(config)
    report["model"] = model_info
    add_degeneracy(report, completions, prompts)
    result = EvalResult(objectives, policies, prompts, completions, scores, labels, report)
    if config.output_dir is not None:
        out = Path(config.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        result.paths["generations"] = save_generations(result, out / "generations.jsonl")
        plots = plot_report(report, out) if config.plots else []
        report["plots"] = [p.name for p in plots]
        result.paths.update(write_report(report, out, plots=[str(p) for p in plots]))
        (out / "eval_config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
        result.paths["config"] = out / "eval_config.json"
        if plots:
            result.paths["plot"] = plots[0]
    return result


def evaluate_policies(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Prompt],
    reward_fns: RewardFns,
    policies: Sequence[Policy] | None = None,
    config: EvalConfig | None = None,
    *,
    reference_model: Any | None = None,
    cluster_labels: Sequence[int] | None = None,
    prompt_embeddings: np.ndarray | None = None,
    encoder: Any | None = None,
) -> EvalResult:
    """Generate with every policy, score, aggregate per objective overall and per cluster, report.

    ``policies`` defaults to :func:`default_policies`; the base policy is added when
    missing (it is generated via ``reference_model``, ``model.reference_context()``
    or PEFT's ``disable_adapter()``). Clusters come from ``cluster_labels`` if
    given, else k-means on ``prompt_embeddings`` if given, else MiniLM
    embeddings (``encoder`` overrides the encoder). Objective k is reward
    function k; steering weight k is paired with objective k in the Spearman
    check.
    """
    config = config or EvalConfig()
    prompts = validate_prompts(prompts)
    objectives = objective_names(reward_fns)
    policies = ensure_base_policy(policies if policies is not None else default_policies(model, config.steering_steps))
    validate_policies_for_model(policies, _model_num_heads(model))
    if reference_model is None and not (hasattr(model, "reference_context") or hasattr(model, "disable_adapter")):
        raise ValueError(
            f"cannot evaluate the base model: {type(model).__name__} has neither reference_context() nor "
            "disable_adapter(); pass the untrained model as reference_model"
        )
    if cluster_labels is not None:
        labels = np.asarray(cluster_labels, dtype=int)
        if labels.shape != (len(prompts),):
            raise ValueError(f"cluster_labels must have one entry per prompt ({len(prompts)}), got shape {labels.shape}")
        num_clusters = int(labels.max()) + 1
    else:
        clusters = cluster_prompts(prompts, config.num_clusters, seed=config.seed, embeddings=prompt_embeddings, encoder=encoder)
        labels, num_clusters = clusters.labels, clusters.num_clusters

    settings = config.generation_settings()
    completions: list[list[str]] = []
    scores = np.empty((len(policies), len(prompts), len(objectives)))
    prompt_cache = SharedPromptCache()  # the heads and steering weights of one model read each prompt batch once
    for p, policy in enumerate(tqdm(policies, desc="policies", disable=not config.progress)):
        texts = generate_completions(model, tokenizer, prompts, policy, settings, reference_model=reference_model,
                                     prompt_cache=prompt_cache)
        completions.append(texts)
        scores[p] = score_completions(prompts, texts, reward_fns, context=f"policy '{policy.name}'")
    model_info = {"class": type(model).__name__, "head_names": list(getattr(model, "head_names", None) or []) or None,
                  "reference_model": type(reference_model).__name__ if reference_model is not None else None,
                  "precision": resolve_precision(settings.precision, model_device(model))}
    return _summarize_and_write(objectives, policies, prompts, completions, scores, labels, num_clusters, config, model_info)


# ---------------------------------------------------------------------------- artefacts
def save_generations(result: EvalResult, path: str | Path) -> Path:
    """Write one JSON line per (policy, prompt) with completion, cluster and scores."""
    path = Path(path)
    with path.open("w") as f:
        for p, policy in enumerate(result.policies):
            for i, prompt in enumerate(result.prompts):
                row = {
                    "policy": policy.to_dict(),
                    "prompt_index": i,
                    "prompt": prompt,
                    "cluster": int(result.cluster_labels[i]),
                    "completion": result.completions[p][i],
                    "scores": {o: float(result.scores[p, i, k]) for k, o in enumerate(result.objectives)},
                }
                f.write(json.dumps(row, allow_nan=False) + "\n")
    return path


def load_generations(path: str | Path) -> EvalResult:
    """Read ``generations.jsonl`` (a file or the directory holding it) back into an :class:`EvalResult` without a report."""
    path = Path(path)
    if path.is_dir():
        path = path / "generations.jsonl"
    rows = []
    with path.open() as f:
        for line_no, line in enumerate(f, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}, line {line_no}: not valid JSON ({exc})") from exc
    if not rows:
        raise ValueError(f"{path} holds no generations")
    required = {"policy", "prompt_index", "prompt", "cluster", "completion", "scores"}
    policies: list[Policy] = []
    by_policy: dict[str, dict[int, dict]] = {}
    for line_no, row in enumerate(rows, start=1):
        missing = required - set(row)
        if missing:
            raise ValueError(f"{path}, row {line_no}: missing keys {sorted(missing)}")
        pol = Policy.from_dict(row["policy"])
        if pol.name not in by_policy:
            policies.append(pol)
            by_policy[pol.name] = {}
        if row["prompt_index"] in by_policy[pol.name]:
            raise ValueError(f"{path}, row {line_no}: prompt {row['prompt_index']} of policy '{pol.name}' appears twice")
        by_policy[pol.name][row["prompt_index"]] = row
    objectives = list(rows[0]["scores"])
    first = by_policy[policies[0].name]
    n = len(first)
    if sorted(first) != list(range(n)):
        raise ValueError(f"{path}: prompt indices of policy '{policies[0].name}' are not 0..{n - 1}")
    prompts = [first[i]["prompt"] for i in range(n)]
    labels = np.array([first[i]["cluster"] for i in range(n)], dtype=int)
    scores = np.empty((len(policies), n, len(objectives)))
    completions = []
    for p, pol in enumerate(policies):
        got = by_policy[pol.name]
        if sorted(got) != list(range(n)):
            raise ValueError(f"{path}: policy '{pol.name}' has prompts {sorted(got)[:5]}..., expected 0..{n - 1}")
        for i in range(n):
            if got[i]["prompt"] != prompts[i] or got[i]["cluster"] != labels[i]:
                raise ValueError(f"{path}: prompt {i} of policy '{pol.name}' differs from policy '{policies[0].name}'")
            if list(got[i]["scores"]) != objectives:
                raise ValueError(f"{path}: prompt {i} of policy '{pol.name}' has objectives {list(got[i]['scores'])}, expected {objectives}")
            scores[p, i] = [got[i]["scores"][o] for o in objectives]
        completions.append([got[i]["completion"] for i in range(n)])
    return EvalResult(objectives, policies, prompts, completions, scores, labels, report={})


def rescore_generations(source: str | Path | EvalResult, reward_fns: RewardFns, config: EvalConfig | None = None) -> EvalResult:
    """Score saved completions with (new) reward functions and rebuild the report; no model needed.

    ``source`` is an :class:`EvalResult` or a ``generations.jsonl`` path. The
    clusters stored with the generations are kept.
    """
    config = config or EvalConfig()
    saved = source if isinstance(source, EvalResult) else load_generations(source)
    objectives = objective_names(reward_fns)
    if not any(p.kind == "base" for p in saved.policies):
        raise ValueError("the saved generations have no base policy; they cannot be reported against the base model")
    scores = np.stack([score_completions(saved.prompts, texts, reward_fns, context=f"policy '{pol.name}'")
                       for pol, texts in zip(saved.policies, saved.completions)])
    num_clusters = int(saved.cluster_labels.max()) + 1
    return _summarize_and_write(objectives, saved.policies, saved.prompts, saved.completions, scores, saved.cluster_labels, num_clusters, config)
