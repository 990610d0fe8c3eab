"""Scripted reward functions for the MO-ODPO tests (importable as ``py:tests.trainers.mo_odpo_rewards:<name>``).

Deterministic functions of the completion text; two objectives that rarely tie on distinct completions.
"""

from __future__ import annotations

from moalign.rewards.base import RewardFunction


class CharSum(RewardFunction):
    """(sum of character codes mod 97) / 97."""

    def __init__(self, name: str = "charsum") -> None:
        super().__init__(name)

    def score(self, prompts, completions):
        return [sum(map(ord, str(c))) % 97 / 97 for c in completions]


class Length(RewardFunction):
    """Number of characters / 100."""

    def __init__(self, name: str = "length") -> None:
        super().__init__(name)

    def score(self, prompts, completions):
        return [len(str(c)) / 100 for c in completions]


class PromptEcho(RewardFunction):
    """1 when the prompt it is given holds the conditioning block, else 0 (checks rewards see x, not x')."""

    def __init__(self, name: str = "echo") -> None:
        super().__init__(name)

    def score(self, prompts, completions):
        return [float("System Instruction" in str(p)) for p in prompts]
