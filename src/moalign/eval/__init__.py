"""Evaluation of multi-objective policies: generation per policy, reward scoring, Pareto fronts, reports.

Layer ``eval`` (docs/design.md, "Layers"): uses ``core`` (Pareto utilities), ``models``
(multi-head generation) and ``rewards`` (scoring is :func:`moalign.rewards.score_completions`, the
MiniLM prompt encoder :func:`moalign.rewards.load_minilm`); never imports ``trainers``.
"""

from moalign.eval.clustering import PromptClusters, cluster_embeddings, cluster_prompts, embed_prompts
from moalign.eval.evaluate import (
    EvalConfig,
    EvalResult,
    default_policies,
    evaluate_policies,
    load_generations,
    rescore_generations,
    save_generations,
)
from moalign.eval.generate import GenerationSettings, generate_completions, policy_context
from moalign.eval.judge import CausalLMJudge, Judge, JudgeConfig, pairwise_win_rate
from moalign.eval.plots import plot_report
from moalign.eval.policies import (
    Policy,
    ensure_base_policy,
    head_policies,
    steering_grid,
    steering_policies,
    validate_policies_for_model,
)
from moalign.eval.report import (
    BootstrapCI,
    auto_reference_point,
    bootstrap_mean_ci,
    compare_methods,
    paired_difference_ci,
    render_markdown,
    steering_spearman,
    summarize_scores,
    write_report,
)
from moalign.models.steering import validate_steering_weights

__all__ = [
    "BootstrapCI", "CausalLMJudge", "EvalConfig", "EvalResult", "GenerationSettings", "Judge", "JudgeConfig",
    "Policy", "PromptClusters", "auto_reference_point",
    "bootstrap_mean_ci", "cluster_embeddings", "cluster_prompts", "compare_methods", "default_policies", "embed_prompts",
    "ensure_base_policy", "evaluate_policies", "generate_completions", "head_policies", "load_generations",
    "pairwise_win_rate", "paired_difference_ci", "plot_report", "policy_context", "render_markdown",
    "rescore_generations", "save_generations", "steering_grid", "steering_policies",
    "steering_spearman", "summarize_scores", "validate_policies_for_model", "validate_steering_weights",
    "write_report",
]
