"""A third scripted objective for the 3-objective compare tests (``py:tests.experiments.compare_rewards:<name>``).

Deterministic in the completion text and unlike ``CharSum`` / ``Length`` of :mod:`tests.trainers.mo_odpo_rewards`,
so three objectives rarely tie on distinct completions.
"""

from __future__ import annotations

from moalign.rewards.base import RewardFunction


class Vowels(RewardFunction):
    """Share of the completion's characters that are vowels (0 for an empty completion)."""

    def __init__(self, name: str = "vowels") -> None:
        super().__init__(name)

    def score(self, prompts, completions):
        return [sum(ch in "aeiouAEIOU" for ch in str(c)) / max(len(str(c)), 1) for c in completions]
