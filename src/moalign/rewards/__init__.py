"""Reward functions for multi-objective alignment.

One interface (:class:`RewardFunction`: ``(prompts, completions) -> list[float]``, TRL
``reward_funcs``-compatible) with three kinds of implementations -- Hugging Face reward
models (:mod:`moalign.rewards.hf`), offline text scorers (:mod:`moalign.rewards.offline`)
and wrapped Python callables (:class:`CallableReward`) -- plus per-objective normalisation
(:class:`RewardNormalizer`) and labelling of pairwise data from K rewards
(:mod:`moalign.rewards.labelling`).
"""

from moalign.rewards.base import (
    CallableReward,
    InvalidScoreError,
    NonNumericScoreError,
    RewardFunction,
    RewardNormalizer,
    completion_text,
    is_conversational,
    joined_prompt_text,
    last_user_message,
    validate_scores,
)
from moalign.rewards.labelling import (
    RewardFns,
    label_pairwise,
    objective_names,
    pair_preference,
    preference_matrix,
    score_completions,
    score_pointwise,
)
from moalign.rewards.offline import (
    CleanlinessReward,
    ConcisenessReward,
    PositivityReward,
    RelevanceReward,
    SimplicityReward,
    find_minilm_path,
    load_minilm,
    offline_reward_functions,
)

# moalign.rewards.hf imports torch + transformers (seconds): load it on first use of its names.
_HF_NAMES = (
    "INPUT_FORMATS", "KNOWN_REWARD_MODELS", "HFRewardModel", "RewardModelSpec", "format_reward_input", "hh_query",
    "ric_summary_post",
)


def __getattr__(name: str):
    if name in _HF_NAMES:
        from moalign.rewards import hf

        return getattr(hf, name)
    raise AttributeError(f"module 'moalign.rewards' has no attribute {name!r}")


__all__ = [
    "INPUT_FORMATS", "KNOWN_REWARD_MODELS", "CallableReward", "CleanlinessReward", "ConcisenessReward",
    "HFRewardModel", "InvalidScoreError", "NonNumericScoreError", "PositivityReward", "RelevanceReward",
    "RewardFns", "RewardFunction", "RewardModelSpec", "RewardNormalizer", "SimplicityReward", "completion_text",
    "find_minilm_path", "format_reward_input", "hh_query", "is_conversational", "joined_prompt_text",
    "label_pairwise", "last_user_message", "load_minilm", "objective_names", "offline_reward_functions",
    "pair_preference", "preference_matrix", "ric_summary_post", "score_completions", "score_pointwise",
    "validate_scores",
]
