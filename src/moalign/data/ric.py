"""Rewards-in-Context prompts: rewards written into the prompt, and preferences mapped to target rewards.

Rewards-in-Context (RiC; Yang et al. 2024, arXiv 2402.10207, as summarised in the HaM paper §2.2)
fine-tunes on prompts ``x' = x + "<rm1_score> r_1 ... <rmJ_score> r_J"`` and, at inference, writes
target rewards ``f_j(w)`` derived from a preference ``w`` on the simplex into the prompt.

Format (the tags and one-decimal rounding follow RiC's release): each objective j gets the tag
``<rm{j}_score>`` followed by its value with ``decimals`` digits, separated by spaces and appended to
the prompt; a text prompt ending with the HH-RLHF turn marker ``"\\n\\nAssistant:"`` gets them before the
marker (as RiC does); a chat prompt gets them at the end of its last user message.
:func:`render_reward_prompt` writes, :func:`parse_reward_prompt` reads back:
``parse(render(x, r)) == (x, round(r, decimals))`` for prompts without trailing whitespace.

The values are **normalised** rewards (``moalign.rewards.RewardNormalizer``, z-score as RiC); the
mapping of a preference to targets is the HaM paper's §2.2 formula (RiC's ``linf`` mapping):
``f_j(w) = r_max_j`` if ``w_j >= 1/J`` else ``J w_j (r_max_j - r_min_j) + r_min_j``, with r_min/r_max
the range of objective j's normalised training rewards **as written into the training prompts**, i.e. rounded to
``decimals`` (:func:`target_bounds`): the range of the conditions the model was trained on; the targets are rounded
to the same grid. The text trainer and the toy (``methods/ric/toy.py``) both round with
:func:`round_conditions` and take the bounds from :func:`target_bounds`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["ASSISTANT_MARKER", "parse_reward_prompt", "preference_to_targets", "render_reward_prompt",
           "reward_tag", "round_conditions", "target_bounds"]

ASSISTANT_MARKER = "\n\nAssistant:"
_TAG = re.compile(r"<rm(\d+)_score>\s+(\S+)")


def reward_tag(index: int) -> str:
    """The tag of objective ``index`` (0-based): ``<rm1_score>`` for the first, as in RiC."""
    return f"<rm{index + 1}_score>"


def _check_targets(targets: Sequence[float], num_objectives: int | None,
                   bounds: Sequence[tuple[float, float]] | None) -> list[float]:
    values = [float(t) for t in targets]
    expected = num_objectives if num_objectives is not None else (len(bounds) if bounds is not None else None)
    if expected is not None and len(values) != expected:
        raise ValueError(f"RiC targets: got {len(values)} values {values}, expected one per objective ({expected})")
    if not values:
        raise ValueError("RiC targets: at least one value is needed")
    for j, value in enumerate(values):
        if not math.isfinite(value):
            raise ValueError(f"RiC targets: objective {j + 1} has a non-finite target {value}")
        if bounds is not None:
            low, high = bounds[j]
            if not low - 1e-9 <= value <= high + 1e-9:
                raise ValueError(f"RiC targets: objective {j + 1} target {value} is outside the range of the "
                                 f"training rewards [{low}, {high}]")
    return values


def _tags(values: Sequence[float], decimals: int) -> str:
    return " ".join(f"{reward_tag(j)} {round(v, decimals):.{decimals}f}" for j, v in enumerate(values))


def render_reward_prompt(prompt: str | list[dict[str, Any]], targets: Sequence[float], decimals: int = 1,
                         num_objectives: int | None = None,
                         bounds: Sequence[tuple[float, float]] | None = None) -> str | list[dict[str, Any]]:
    """``prompt`` with the (normalised) rewards ``targets`` written in (see the module docstring).

    ``targets`` are rounded to ``decimals`` digits. Wrong count (``num_objectives`` or ``len(bounds)``),
    a non-finite value, or a value outside ``bounds`` (per-objective ``(low, high)``) raises ``ValueError``.
    """
    values = _check_targets(targets, num_objectives, bounds)
    tags = _tags(values, decimals)
    if isinstance(prompt, str):
        if "_score>" in prompt and _TAG.search(prompt):
            raise ValueError("RiC prompt already holds reward tags; render the original prompt")
        if prompt.endswith(ASSISTANT_MARKER):
            return f"{prompt[: -len(ASSISTANT_MARKER)].rstrip()} {tags}{ASSISTANT_MARKER}"
        return f"{prompt.rstrip()} {tags}"
    messages = [dict(m) for m in prompt]
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    if not users:
        raise ValueError("RiC: a chat prompt needs a user message to carry the reward tags")
    last = users[-1]
    messages[last]["content"] = f"{str(messages[last]['content']).rstrip()} {tags}"
    return messages


def parse_reward_prompt(prompt: str | list[dict[str, Any]], num_objectives: int | None = None
                        ) -> tuple[str | list[dict[str, Any]], list[float]]:
    """``(original prompt, targets)`` from a prompt written by :func:`render_reward_prompt`.

    Raises ``ValueError`` when the tags are missing, out of order, or not ``num_objectives`` of them.
    """
    if isinstance(prompt, str):
        text, rebuild = prompt, None
    else:
        users = [i for i, m in enumerate(prompt) if m.get("role") == "user"]
        if not users:
            raise ValueError("RiC: chat prompt has no user message holding reward tags")
        text, rebuild = str(prompt[users[-1]]["content"]), users[-1]
    marker = text.endswith(ASSISTANT_MARKER)
    body = text[: -len(ASSISTANT_MARKER)] if marker else text
    matches = list(_TAG.finditer(body))
    if not matches:
        raise ValueError(f"RiC: no reward tags (<rm1_score> ...) in prompt {text[-80:]!r}")
    indices = [int(m.group(1)) for m in matches]
    if indices != list(range(1, len(matches) + 1)):
        raise ValueError(f"RiC: reward tags out of order: <rm{indices}_score>")
    if num_objectives is not None and len(matches) != num_objectives:
        raise ValueError(f"RiC: prompt holds {len(matches)} reward tags, expected {num_objectives}")
    try:
        values = [float(m.group(2)) for m in matches]
    except ValueError as err:
        raise ValueError(f"RiC: a reward tag is not followed by a number: {err}") from err
    original = body[: matches[0].start()].rstrip() + (ASSISTANT_MARKER if marker else "")
    if rebuild is None:
        return original, values
    messages = [dict(m) for m in prompt]
    messages[rebuild]["content"] = original
    return messages, values


def preference_to_targets(preference: Sequence[float], bounds: Sequence[tuple[float, float]],
                          decimals: int | None = 1) -> list[float]:
    """Target rewards for a preference ``w`` on the simplex (HaM paper §2.2; RiC's ``linf`` mapping).

    ``f_j(w) = high_j`` if ``w_j >= 1/J`` else ``J w_j (high_j - low_j) + low_j``; ``bounds`` are the
    per-objective ``(low, high)`` of the normalised training rewards. Rounded to ``decimals`` (None: not).
    """
    w = [float(x) for x in preference]
    num = len(bounds)
    if len(w) != num:
        raise ValueError(f"RiC preference: got {len(w)} weights {w}, expected one per objective ({num})")
    if not all(math.isfinite(x) and x >= 0 for x in w) or abs(sum(w) - 1) > 1e-6:
        raise ValueError(f"RiC preference: weights must be non-negative and sum to 1, got {w}")
    targets = []
    for wj, (low, high) in zip(w, bounds):
        value = high if wj >= 1 / num - 1e-12 else num * wj * (high - low) + low
        targets.append(round(value, decimals) if decimals is not None else value)
    return targets


def round_conditions(normalized: Any, decimals: int) -> np.ndarray:
    """The conditions written into training prompts: normalised rewards rounded to ``decimals`` (``np.round``,
    i.e. ``rint(v * 10**decimals) / 10**decimals``), same shape."""
    return np.round(np.asarray(normalized, dtype=float), decimals)


def target_bounds(normalized: Any, decimals: int) -> list[tuple[float, float]]:
    """``(r_min_j, r_max_j)`` of RiC's mapping: per objective, the range of the *rounded* normalised training
    rewards ``(n, J)`` -- the smallest and largest condition the model saw (module docstring)."""
    values = round_conditions(normalized, decimals)
    return [(float(lo), float(hi)) for lo, hi in zip(values.min(0), values.max(0))]
