"""Reward functions by name, for configs and the command line.

A spec is one of: an offline scorer name (``relevance``, ``answer_relevance``,
``conciseness``, ``positivity``, ``simplicity``, ``brevity``, ``answer_brevity``, ``cleanliness``); a key of
``KNOWN_REWARD_MODELS`` (the papers' hub reward models); or ``hf:<path or
hub id>`` for any sequence-classification reward model (plain text format).
Any spec may be prefixed ``name=`` to rename the objective, e.g.
``helpful=gpt2-large-helpful-reward_model``. :func:`resolve_rewards` (what configs' ``reward_functions`` and
``label_rewards`` go through) also takes ``py:<module>:<callable>``; :func:`reward_spec_names` gives the objective
names of specs without building anything.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from moalign.rewards.base import CallableReward, RewardFunction
from moalign.rewards.offline import offline_reward_functions

OFFLINE_NAMES = ("positivity", "simplicity", "conciseness", "brevity", "answer_brevity", "cleanliness", "relevance",
                 "answer_relevance")


def resolve_reward_functions(specs: Sequence[str]) -> list[RewardFunction]:
    """Build one reward function per spec, in order (see the module docstring)."""
    from moalign.rewards import hf

    functions: list[RewardFunction] = []
    for full_spec in specs:
        name, _, spec = full_spec.rpartition("=") if "=" in full_spec else ("", "", full_spec)
        count = len(functions)
        if spec in OFFLINE_NAMES:
            functions += offline_reward_functions([spec])
        elif spec in hf.KNOWN_REWARD_MODELS:
            functions.append(hf.HFRewardModel.from_known(spec))
        elif spec.startswith("hf:"):
            functions.append(hf.HFRewardModel(spec[3:], name=spec[3:].rstrip("/").split("/")[-1]))
        else:
            raise ValueError(f"unknown reward {spec!r}: use one of {list(OFFLINE_NAMES)}, "
                             f"{sorted(hf.KNOWN_REWARD_MODELS)} or 'hf:<path or hub id>'")
        if name:
            functions[count].name = name
    return functions


def _split_spec(full: str) -> tuple[str, str]:
    name, sep, spec = full.partition("=")
    return (name, spec) if sep and name.replace("-", "_").isidentifier() else ("", full)


def reward_spec_names(specs: list[str]) -> list[str]:
    """The objective names of reward specs, without building them (``name=`` prefix, else the spec's own name)."""
    names = []
    for full in specs:
        name, spec = _split_spec(full)
        if not name:
            name = spec.rstrip("/").split("/")[-1] if spec.startswith("hf:") else spec.rsplit(":", 1)[-1]
        names.append(name)
    return names


def resolve_rewards(specs: list[str]) -> list[RewardFunction]:
    """Reward functions of specs: the names of :func:`resolve_reward_functions`, or ``py:<module>:<callable>``.

    A ``py:`` callable is either a factory returning a :class:`RewardFunction` when called without arguments
    (a class or function) or a reward callable ``f(prompts, completions) -> scores`` itself.
    """
    functions: list[RewardFunction] = []
    for full, name in zip(specs, reward_spec_names(specs)):
        _, spec = _split_spec(full)
        if spec.startswith("py:"):
            module, _, attribute = spec[3:].partition(":")
            try:
                target = getattr(importlib.import_module(module), attribute)
            except (ImportError, AttributeError) as err:
                raise ValueError(f"reward {full!r}: cannot import {spec[3:]!r} ({err})") from err
            made = target() if isinstance(target, type) else target
            function = made if isinstance(made, RewardFunction) else CallableReward(made, name=name)
        else:
            function = resolve_reward_functions([spec])[0]
        function.name = name
        functions.append(function)
    return functions
