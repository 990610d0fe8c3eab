"""Scripted reward functions for the baseline tests (``py:tests.baselines.scripted_rewards:<name>`` specs)."""

from __future__ import annotations

from moalign.rewards.base import completion_text


def count_good(prompts, completions, **kwargs) -> list[float]:
    """How often the word 'good' occurs in the completion."""
    return [float(completion_text(c).split().count("good")) for c in completions]


def brevity(prompts, completions, **kwargs) -> list[float]:
    """Minus the number of words of the completion."""
    return [-float(len(completion_text(c).split())) for c in completions]
