"""Optional automated judge: pairwise win rates of two methods' responses at the same preference weight.

Besides reward-model fronts, the MO-ODPO paper ("Robust Multi-Objective Preference Alignment with Online
DPO", arXiv 2503.00295) evaluates with an LLM judge that compares two methods' responses to the same
prompt, per objective, and reports win rates. Here:

* the judge is any local causal LM, read *without generation*: it sees the prompt, one objective's
  description and two responses, and P(first is better) is the softmax over the next-token logits of
  the two answer labels (:class:`CausalLMJudge`); anything with ``prefer_first`` (:class:`Judge`) or a
  plain callable of the same signature also serves (tests use scripted judges);
* every pair is asked in both orders and, per prompt, ``win(x) = 1/2 (P(x first) + 1 - P(y first))``,
  which cancels a constant position bias; identical responses are exact ties (1/2), not asked;
* reported: the mean win rate with a bootstrap CI over prompts, the position bias (mean P(first) over
  all asked pairs; 1/2 = none) and the order consistency (fraction of asked prompts on which both
  orders prefer the same response).

:func:`moalign.experiments.judge_compare.judge_compare` applies this to the output of ``moalign compare
--task demo`` (``moalign judge``), matching the two methods' policies by weight vector.
"""

from __future__ import annotations

import json
import string
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from moalign.data.prompts import has_chat_template, render_prompt
from moalign.eval.report import bootstrap_mean_ci

DEFAULT_TEMPLATE = (
    "Compare two responses to the same user message on one criterion only.\n\n"
    "Criterion: {objective}\n\nUser message:\n{prompt}\n\nResponse {label_a}:\n{response_a}\n\n"
    "Response {label_b}:\n{response_b}\n\n"
    "Which response is better on this criterion? Answer with one letter, {label_a} or {label_b}."
)
DEFAULT_OBJECTIVES = {
    "positivity": "positivity. The response with the warmer, friendlier, more positive tone is better.",
    "conciseness": "conciseness. The shorter response, the one that uses fewer words, is better.",
}
_REQUIRED = ("prompt", "objective", "response_a", "response_b")
_ALLOWED = set(_REQUIRED) | {"label_a", "label_b"}


@dataclass
class JudgeConfig:
    """How a causal LM is asked to judge (the ``moalign judge`` options)."""

    judge_model: str = field(default="smollm2", metadata={
        "help": "Judge: a causal LM name or local folder ('smollm2' = the bundled SmolLM2-135M-Instruct)."})
    template: str = field(default=DEFAULT_TEMPLATE, metadata={
        "help": "Judge prompt with {prompt}, {objective}, {response_a}, {response_b} (optional {label_a}, "
                "{label_b}); the answer label is read as the next token after it."})
    objective_descriptions: dict[str, str] | str | None = field(default_factory=lambda: dict(DEFAULT_OBJECTIVES),
                                                                metadata={
        "help": "What each objective means to the judge: a mapping (YAML) or JSON string {name: description}; "
                "given entries replace the defaults (positivity, conciseness)."})
    label_a: str = field(default="A", metadata={"help": "Answer label of the first response (one token)."})
    label_b: str = field(default="B", metadata={"help": "Answer label of the second response (one token)."})
    judge_batch_size: int = field(default=8, metadata={"help": "Judge prompts per forward pass."})
    judge_chat_template: bool | None = field(default=None, metadata={
        "help": "Wrap the judge prompt as a user turn of the judge's chat template (None: when it has one)."})

    def __post_init__(self) -> None:
        if isinstance(self.objective_descriptions, str):
            try:
                self.objective_descriptions = json.loads(self.objective_descriptions)
            except json.JSONDecodeError as err:
                raise ValueError(f"objective_descriptions: not a JSON object ({err.msg})") from None
        given = self.objective_descriptions or {}
        if not isinstance(given, dict) or not all(isinstance(v, str) for v in given.values()):
            raise ValueError("objective_descriptions must map objective names to description strings")
        self.objective_descriptions = {**DEFAULT_OBJECTIVES, **given}
        names = {f[1] for f in string.Formatter().parse(self.template) if f[1] is not None}
        missing, unknown = set(_REQUIRED) - names, names - _ALLOWED
        if missing or unknown:
            raise ValueError(f"judge template: missing placeholder(s) {sorted(missing)}, unknown {sorted(unknown)}; "
                             f"it needs {{{'}, {'.join(_REQUIRED)}}}")
        if self.label_a == self.label_b or not self.label_a.strip() or not self.label_b.strip():
            raise ValueError(f"label_a, label_b must be two different labels, got {self.label_a!r}, {self.label_b!r}")
        if self.judge_batch_size < 1:
            raise ValueError(f"judge_batch_size must be >= 1, got {self.judge_batch_size}")

    def describe(self, objective: str) -> str:
        """The criterion text of ``objective``; an objective without a description is an error."""
        if objective not in self.objective_descriptions:
            raise ValueError(f"no judge description for objective {objective!r}; give one with "
                             "objective_descriptions (known: " + ", ".join(self.objective_descriptions) + ")")
        return self.objective_descriptions[objective]


@runtime_checkable
class Judge(Protocol):
    """A judge: P(the first response is the better one for ``objective``), one probability per pair."""

    def prefer_first(self, prompts: Sequence[str], firsts: Sequence[str], seconds: Sequence[str],
                     objective: str) -> np.ndarray: ...


class CausalLMJudge:
    """Any local causal LM as a judge: softmax over the next-token logits of the two labels (no generation)."""

    def __init__(self, model: Any, tokenizer: Any, config: JudgeConfig | None = None) -> None:
        self.model, self.tokenizer = model.eval(), tokenizer
        self.config = config or JudgeConfig()
        has_template = has_chat_template(tokenizer)
        if self.config.judge_chat_template and not has_template:
            raise ValueError("judge_chat_template=True but the judge's tokenizer has no chat template")
        self.chat = has_template if self.config.judge_chat_template is None else self.config.judge_chat_template
        self._label_cache: dict[bool, list[int]] = {}

    @classmethod
    def from_config(cls, config: JudgeConfig) -> CausalLMJudge:
        """Load ``config.judge_model`` (and its tokenizer) with :func:`moalign.models.load_base_model`."""
        from moalign.models import load_base_model, load_tokenizer

        return cls(load_base_model(config.judge_model), load_tokenizer(config.judge_model), config)

    def render(self, prompt: str, objective: str, first: str, second: str) -> str:
        """The text whose next token is read: the filled template, as a chat user turn when ``self.chat``."""
        c = self.config
        text = c.template.format(prompt=prompt, objective=c.describe(objective), response_a=first,
                                 response_b=second, label_a=c.label_a, label_b=c.label_b)
        return render_prompt(self.tokenizer, text, self.chat)

    def label_ids(self, after_space: bool) -> list[int]:
        """Token ids of the two labels as the next token: alone after whitespace, else with a leading space."""
        if after_space not in self._label_cache:
            ids = []
            for label in (self.config.label_a, self.config.label_b):
                enc = self.tokenizer(label if after_space else " " + label, add_special_tokens=False)["input_ids"]
                if len(enc) != 1 or enc[0] == self.tokenizer.unk_token_id:
                    raise ValueError(f"judge label {label!r} is not one known token of the judge's tokenizer "
                                     f"(ids {enc}); choose other label_a / label_b")
                ids.append(enc[0])
            if ids[0] == ids[1]:
                raise ValueError(f"judge labels {self.config.label_a!r} and {self.config.label_b!r} are one token")
            self._label_cache[after_space] = ids
        return self._label_cache[after_space]

    def prefer_first(self, prompts: Sequence[str], firsts: Sequence[str], seconds: Sequence[str],
                     objective: str) -> np.ndarray:
        """P(first better) per pair, batched, right-padded, read at each sequence's last real token."""
        import torch

        texts = [self.render(p, objective, a, b) for p, a, b in zip(prompts, firsts, seconds, strict=True)]
        device = next(self.model.parameters()).device
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        out = np.empty(len(texts))
        for start in range(0, len(texts), self.config.judge_batch_size):
            batch = texts[start:start + self.config.judge_batch_size]
            enc = [self.tokenizer(t, add_special_tokens=not self.chat)["input_ids"] for t in batch]
            lengths = torch.tensor([len(e) for e in enc])
            ids = torch.full((len(enc), int(lengths.max())), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, e in enumerate(enc):
                ids[i, :len(e)], mask[i, :len(e)] = torch.tensor(e), 1
            labels = torch.tensor([self.label_ids(t[-1:].isspace()) for t in batch])
            with torch.no_grad():
                logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            last = logits[torch.arange(len(enc), device=device), (lengths - 1).to(device)]
            pair = last.gather(1, labels.to(device)).float()
            out[start:start + len(batch)] = torch.softmax(pair, dim=-1)[:, 0].cpu().numpy()
        return out

    def info(self) -> dict[str, Any]:
        """What the JSON output records about the judge."""
        return {"kind": "causal_lm", "chat_template": self.chat, **asdict(self.config)}


def _ask(judge: Any, prompts: list[str], firsts: list[str], seconds: list[str], objective: str) -> np.ndarray:
    ask = judge.prefer_first if isinstance(judge, Judge) else judge
    p = np.asarray(ask(prompts, firsts, seconds, objective), dtype=float).reshape(-1)
    if p.shape != (len(prompts),) or not np.all((p >= 0) & (p <= 1)):
        raise ValueError(f"the judge must return {len(prompts)} probabilities in [0, 1], got {p}")
    return p


def pairwise_win_rate(judge: Any, prompts: Sequence[str], responses_x: Sequence[str], responses_y: Sequence[str],
                      objective: str, num_samples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Win rate of x over y on ``objective``, both orders asked (see the module docstring)."""
    n = len(prompts)
    if n == 0 or len(responses_x) != n or len(responses_y) != n:
        raise ValueError(f"need as many responses as prompts (> 0): {n} prompts, {len(responses_x)} x, "
                         f"{len(responses_y)} y")
    asked = [i for i in range(n) if responses_x[i] != responses_y[i]]
    win = np.full(n, 0.5)
    p_xy = p_yx = np.empty(0)
    if asked:
        ps, xs, ys = ([seq[i] for i in asked] for seq in (prompts, responses_x, responses_y))
        p_xy = _ask(judge, ps, xs, ys, objective)  # P(x better), x shown first
        p_yx = _ask(judge, ps, ys, xs, objective)  # P(y better), y shown first
        win[asked] = 0.5 * (p_xy + 1.0 - p_yx)
    ci = bootstrap_mean_ci(win, num_samples=num_samples, seed=seed)
    both = np.concatenate([p_xy, p_yx])
    return {"objective": objective, "win_rate": float(ci.mean), "ci_low": float(ci.low), "ci_high": float(ci.high),
            "wins": int((win > 0.5).sum()), "ties": int((win == 0.5).sum()), "losses": int((win < 0.5).sum()),
            "num_prompts": n, "num_identical": n - len(asked),
            "position_bias": float(both.mean()) if both.size else None,
            "order_consistency": float(np.mean(np.sign(p_xy - 0.5) == np.sign(0.5 - p_yx))) if asked else None,
            "per_prompt": win.tolist()}
