"""Preference weights in the prompt: quantised Dirichlet sampling and the system-instruction block.

MO-ODPO (Gupta et al., *Robust Multi-Objective Preference Alignment with Online DPO*, arXiv 2503.00295)
conditions one policy on objective weights ``w`` written into its input:

* §3.2: per prompt, ``w ~ Dirichlet(alpha)``, "quantised to one decimal place";
  :func:`sample_quantized_dirichlet` draws them, :func:`quantize_weights` rounds.
* §3.3: the weights become the prefix ::

      [Begin System Instruction]
      Helpfulness: 0.3, Harmlessness: 0.7
      [End System Instruction]

  prepended to the prompt ``x`` to give ``x'``. :func:`render_conditioned_prompt` writes it,
  :func:`parse_conditioned_prompt` reads it back; ``parse(render(x, w)) == (x, w)``.

**Rounding rule (sum exactly 1).** Quantising to ``decimals`` digits works on integer counts: with
``n = 10**decimals``, each ``w_k n`` is floored and the ``n - sum(floor)`` missing units go to the
coordinates with the largest remainders (largest-remainder / Hamilton rounding; equal remainders go to
the lower index). The counts sum to exactly ``n``; the returned floats are ``count / n`` (the nearest
double to the decimal, so ``float(f"{w:.1f}") == w``). Every coordinate moves by less than ``1/n``.

**Where the block goes.** A text prompt: ``block + separator + prompt`` (the paper's ``x' = p + x``). A chat
prompt (a list of messages), or a text prompt with ``as_chat=True`` (a chat-template tokenizer): the block is
a ``system`` message put first; when the conversation already opens with a system message, the block is
prepended to that message's content (``block + separator + content``).

The same :func:`render_conditioned_prompt` is called by the MO-ODPO trainer
(:mod:`moalign.methods.mo_odpo.trainer`), by evaluation (``Policy.conditioned`` in
:mod:`moalign.eval.policies`) and by P-MORL, so the text a policy is trained on is the text it is asked
with. The function names of this module are a stable interface.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ConditioningSpec",
    "ConditioningTemplate",
    "DEFAULT_TEMPLATE",
    "format_weight_line",
    "parse_conditioned_prompt",
    "quantize_weights",
    "render_conditioned_prompt",
    "sample_quantized_dirichlet",
]

Prompt = str | list[dict[str, Any]]


@dataclass(frozen=True)
class ConditioningTemplate:
    """Wording of the conditioning block (MO-ODPO §3.3); the defaults are the paper's.

    The block is ``begin + "\\n" + line + "\\n" + end`` with ``line`` the objectives as
    ``item.format(name=..., weight=...)`` joined by ``item_separator``; weights are written with
    ``decimals`` digits. ``separator`` joins the block and the prompt (or a system message's content).
    """

    begin: str = "[Begin System Instruction]"
    end: str = "[End System Instruction]"
    item: str = "{name}: {weight}"
    item_separator: str = ", "
    separator: str = "\n"
    decimals: int = 1

    def __post_init__(self) -> None:
        if not self.begin.strip() or not self.end.strip():
            raise ValueError("conditioning template: begin and end markers must be non-empty")
        if "\n" in self.begin or "\n" in self.end:
            raise ValueError("conditioning template: begin and end markers must be single lines")
        if "{name}" not in self.item or "{weight}" not in self.item:
            raise ValueError(f"conditioning template: item must contain {{name}} and {{weight}}, got {self.item!r}")
        if not self.item_separator:
            raise ValueError("conditioning template: item_separator must be non-empty")
        if not isinstance(self.decimals, int) or not 0 <= self.decimals <= 6:
            raise ValueError(f"conditioning template: decimals must be an int in 0..6, got {self.decimals!r}")

    def item_pattern(self) -> re.Pattern[str]:
        """Regex of one item, groups ``name`` and ``weight``."""
        before, _, rest = self.item.partition("{name}")
        middle, _, after = rest.partition("{weight}")
        return re.compile(re.escape(before) + r"(?P<name>.+?)" + re.escape(middle) + r"(?P<weight>[0-9.]+)"
                          + re.escape(after) + r"$")

    def to_dict(self) -> dict[str, Any]:
        return {"begin": self.begin, "end": self.end, "item": self.item, "item_separator": self.item_separator,
                "separator": self.separator, "decimals": self.decimals}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> ConditioningTemplate:
        return cls(**dict(data or {}))


DEFAULT_TEMPLATE = ConditioningTemplate()


# ---------------------------------------------------------------------------------------------- weights
def quantize_weights(weights: Sequence[float] | np.ndarray, decimals: int = 1) -> np.ndarray:
    """Round simplex weights to ``decimals`` digits keeping the sum exactly 1 (largest remainder; see module doc).

    ``weights``: shape ``(K,)`` or ``(n, K)``, non-negative, each row summing to 1 (within 1e-6).
    Returns float64 of the same shape with entries ``count / 10**decimals``.
    """
    arr = np.asarray(weights, dtype=float)
    one = arr.ndim == 1
    rows = arr[None, :] if one else arr
    if rows.ndim != 2 or rows.shape[1] < 2:
        raise ValueError(f"weights must have shape (K,) or (n, K) with K >= 2, got {arr.shape}")
    if not np.all(np.isfinite(rows)) or np.any(rows < 0) or np.any(np.abs(rows.sum(axis=1) - 1) > 1e-6):
        raise ValueError(f"weights must be finite, non-negative and sum to 1 per row, got {arr.tolist()}")
    counts = _largest_remainder_counts(rows, 10 ** decimals)
    out = counts / float(10 ** decimals)
    return out[0] if one else out


def _largest_remainder_counts(rows: np.ndarray, units: int) -> np.ndarray:
    """Integer counts (n, K) summing to ``units`` per row: floors plus one unit for the largest remainders."""
    scaled = rows * units
    counts = np.floor(scaled + 1e-12).astype(np.int64)  # 1e-12: 0.3*10 = 2.9999999999999996 counts as 3
    remainders = scaled - counts
    missing = units - counts.sum(axis=1)
    for i in range(rows.shape[0]):
        if missing[i] > 0:
            order = np.argsort(-remainders[i], kind="stable")  # largest remainder first, ties: lower index
            counts[i, order[: missing[i]]] += 1
        elif missing[i] < 0:  # only through the 1e-12 guard on a row already at the grid; take back the smallest
            order = np.argsort(remainders[i], kind="stable")
            counts[i, order[: -missing[i]]] -= 1
    assert np.all(counts.sum(axis=1) == units) and np.all(counts >= 0)
    return counts


def sample_quantized_dirichlet(alpha: float | Sequence[float], num: int,
                               generator: np.random.Generator | None = None, seed: int | None = None,
                               num_objectives: int | None = None, decimals: int = 1) -> np.ndarray:
    """``num`` weight vectors ``w ~ Dirichlet(alpha)`` quantised to ``decimals`` digits (MO-ODPO §3.2); ``(num, K)``.

    ``alpha``: one concentration per objective (K >= 2 of them), or one number with ``num_objectives``.
    ``alpha = 1`` is uniform on the simplex, ``< 1`` favours the corners, ``> 1`` the centre (§3.2).
    Randomness: ``generator`` (a ``numpy.random.Generator``, advanced in place; its state can be saved)
    or else ``seed``. Each row's counts sum to exactly ``10**decimals`` (largest remainder, module doc).
    """
    if isinstance(alpha, (int, float)) and not isinstance(alpha, bool):
        if num_objectives is None:
            raise ValueError("a scalar alpha needs num_objectives (or give one alpha per objective)")
        concentration = np.full(int(num_objectives), float(alpha))
    else:
        concentration = np.asarray(list(alpha), dtype=float)
        if num_objectives is not None and len(concentration) != num_objectives:
            raise ValueError(f"got {len(concentration)} alphas for {num_objectives} objectives")
    if concentration.ndim != 1 or len(concentration) < 2:
        raise ValueError(f"Dirichlet alpha needs K >= 2 entries, got {concentration.tolist()}")
    if not np.all(np.isfinite(concentration)) or np.any(concentration <= 0):
        raise ValueError(f"Dirichlet alpha must be finite and > 0, got {concentration.tolist()}")
    if not isinstance(num, (int, np.integer)) or num < 0:
        raise ValueError(f"num must be a non-negative int, got {num!r}")
    rng = generator if generator is not None else np.random.default_rng(seed)
    return quantize_weights(rng.dirichlet(concentration, size=int(num)).reshape(int(num), -1), decimals)


# ---------------------------------------------------------------------------------------------- prompts
def _checked_weights(weights: Sequence[float], objectives: Sequence[str], template: ConditioningTemplate
                     ) -> list[float]:
    values = [float(w) for w in weights]
    if len(objectives) < 2:
        raise ValueError(f"conditioning needs K >= 2 objectives, got {list(objectives)}")
    if len(values) != len(objectives):
        raise ValueError(f"got {len(values)} weights {values} for {len(objectives)} objectives {list(objectives)}")
    if not all(math.isfinite(w) and w >= 0 for w in values) or abs(math.fsum(values) - 1) > 1e-6:
        raise ValueError(f"conditioning weights must be non-negative and sum to 1, got {values}")
    units = 10 ** template.decimals
    off = [w for w in values if abs(w * units - round(w * units)) > 1e-6]
    if off:
        raise ValueError(f"conditioning weights {values} are not on the {1 / units:g} grid (template decimals="
                         f"{template.decimals}); quantise them first (quantize_weights)")
    for name in objectives:
        if not name or "\n" in name or template.item_separator.strip() and template.item_separator.strip() in name:
            raise ValueError(f"objective name {name!r} cannot be written into the conditioning block")
    return values


def format_weight_line(weights: Sequence[float], objectives: Sequence[str],
                       template: ConditioningTemplate = DEFAULT_TEMPLATE) -> str:
    """The conditioning block: ``begin``, one line ``name: w, ...``, ``end`` (MO-ODPO §3.3)."""
    values = _checked_weights(weights, objectives, template)
    line = template.item_separator.join(
        template.item.format(name=name, weight=f"{w:.{template.decimals}f}") for name, w in zip(objectives, values))
    return f"{template.begin}\n{line}\n{template.end}"


def render_conditioned_prompt(prompt: Prompt, weights: Sequence[float], objectives: Sequence[str],
                              template: ConditioningTemplate | None = None, as_chat: bool = False) -> Prompt:
    """``x'``: ``prompt`` conditioned on ``weights`` over ``objectives`` (MO-ODPO §3.3; placement in module doc).

    A text prompt stays text unless ``as_chat`` (then it becomes ``[system block, user prompt]``, for a
    chat-template tokenizer); a chat prompt gets the block as (the start of) its system message.
    Weights must be on the template's grid (``decimals``) and sum to 1; names must not contain newlines.
    """
    template = template or DEFAULT_TEMPLATE
    block = format_weight_line(weights, objectives, template)
    if isinstance(prompt, str):
        if template.begin in prompt:
            raise ValueError("prompt already holds a conditioning block; render the original prompt")
        if not as_chat:
            return block + template.separator + prompt
        return [{"role": "system", "content": block}, {"role": "user", "content": prompt}]
    messages = [dict(m) for m in prompt]
    if not messages or not all("role" in m and "content" in m for m in messages):
        raise ValueError(f"a chat prompt must be a non-empty list of role/content messages, got {prompt!r}")
    if any(template.begin in str(m["content"]) for m in messages):
        raise ValueError("prompt already holds a conditioning block; render the original prompt")
    if messages[0]["role"] == "system":
        messages[0]["content"] = block + template.separator + str(messages[0]["content"])
        return messages
    return [{"role": "system", "content": block}, *messages]


def _parse_block(text: str, template: ConditioningTemplate) -> tuple[list[str], list[float], str]:
    """``(objectives, weights, rest)`` of a text starting with the block; ``rest`` follows block + separator."""
    head = template.begin + "\n"
    if not text.startswith(head):
        raise ValueError(f"no conditioning block ({template.begin!r}) at the start of {text[:80]!r}")
    close = text.find("\n" + template.end, len(head))
    if close < 0:
        raise ValueError(f"conditioning block has no end marker {template.end!r}: {text[:120]!r}")
    line = text[len(head):close]
    rest = text[close + 1 + len(template.end):]
    pattern = template.item_pattern()
    names, values = [], []
    for item in line.split(template.item_separator):
        match = pattern.match(item)
        if match is None:
            raise ValueError(f"conditioning block: cannot read {item!r} as {template.item!r}")
        names.append(match.group("name"))
        values.append(float(match.group("weight")))
    return names, values, rest


def parse_conditioned_prompt(text: Prompt, template: ConditioningTemplate | None = None,
                             return_objectives: bool = False) -> tuple[Any, ...]:
    """``(prompt, weights)`` from a prompt written by :func:`render_conditioned_prompt` (inverse of it).

    ``weights`` is a tuple of floats; with ``return_objectives`` the objective names follow as a third item.
    A text prompt rendered with ``as_chat=True`` parses back to its chat form ``[{"role": "user", ...}]``
    (the chat and the text form of one user turn cannot be told apart once rendered).
    """
    template = template or DEFAULT_TEMPLATE
    if isinstance(text, str):
        names, values, rest = _parse_block(text, template)
        if rest and not rest.startswith(template.separator):
            raise ValueError(f"conditioning block not followed by {template.separator!r}: {rest[:40]!r}")
        original: Prompt = rest[len(template.separator):]
    else:
        messages = [dict(m) for m in text]
        if not messages or messages[0].get("role") != "system":
            raise ValueError("conditioned chat prompt: no leading system message holding the conditioning block")
        content = str(messages[0]["content"])
        names, values, rest = _parse_block(content, template)
        if rest:
            if not rest.startswith(template.separator):
                raise ValueError(f"conditioning block not followed by {template.separator!r}: {rest[:40]!r}")
            messages[0]["content"] = rest[len(template.separator):]
            original = messages
        else:
            original = messages[1:]
    weights = tuple(values)
    return (original, weights, tuple(names)) if return_objectives else (original, weights)


@dataclass(frozen=True)
class ConditioningSpec:
    """Everything that fixes how weights are written into prompts: objectives, wording, placement.

    Saved by the MO-ODPO trainer (``mo_odpo_conditioning.json``) and carried by evaluation's
    ``Policy.conditioned``, so that both call :func:`render_conditioned_prompt` with the same arguments.
    """

    objectives: tuple[str, ...]
    template: ConditioningTemplate = DEFAULT_TEMPLATE
    as_chat: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "objectives", tuple(str(o) for o in self.objectives))
        if len(self.objectives) < 2:
            raise ValueError(f"conditioning needs K >= 2 objectives, got {list(self.objectives)}")

    def render(self, prompt: Prompt, weights: Sequence[float]) -> Prompt:
        """:func:`render_conditioned_prompt` with this spec."""
        return render_conditioned_prompt(prompt, weights, self.objectives, self.template, self.as_chat)

    def to_dict(self) -> dict[str, Any]:
        return {"objectives": list(self.objectives), "template": self.template.to_dict(), "as_chat": self.as_chat}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConditioningSpec:
        unknown = set(data) - {"objectives", "template", "as_chat"}
        if unknown:
            raise ValueError(f"conditioning spec has unknown keys {sorted(unknown)}")
        return cls(tuple(data["objectives"]), ConditioningTemplate.from_dict(data.get("template")),
                   bool(data.get("as_chat", False)))

    @classmethod
    def from_saved(cls, payload: Mapping[str, Any]) -> ConditioningSpec:
        """The spec of a saved conditioning file: its spec keys; the trainer's other keys (normaliser, ...) ignored."""
        return cls.from_dict({k: payload[k] for k in ("objectives", "template", "as_chat")})


CONDITIONING_FILES = {"mo_odpo": "mo_odpo_conditioning.json", "p_morl": "p_morl_conditioning.json",
                      "ric": "ric_conditioning.json"}
"""The file a prompt-conditioned method writes next to its trained model: how prompts are conditioned. MO-ODPO and
P-MORL: a :class:`ConditioningSpec` (plus their reward normaliser); RiC: its ``RewardConditioner`` (reward
targets, :mod:`moalign.data.ric`)."""


def conditioning_file(method: str) -> str:
    """The conditioning file name of ``method`` (:data:`CONDITIONING_FILES`)."""
    if method not in CONDITIONING_FILES:
        raise ValueError(f"{method!r} writes no conditioning file; methods that do: {sorted(CONDITIONING_FILES)}")
    return CONDITIONING_FILES[method]


def load_conditioning(directory: str | os.PathLike, method: str) -> ConditioningSpec:
    """The :class:`ConditioningSpec` a saved MO-ODPO or P-MORL model was trained with (for ``Policy.conditioned``)."""
    if method == "ric":
        raise ValueError("RiC conditions on reward targets, not weights: load moalign.methods.ric.trainer."
                         "RewardConditioner from its folder")
    path = Path(directory) / conditioning_file(method)
    return ConditioningSpec.from_saved(json.loads(path.read_text(encoding="utf-8")))
