"""Hugging Face sequence-classification reward models as :class:`RewardFunction` s.

:class:`HFRewardModel` wraps ``AutoModelForSequenceClassification`` + its tokenizer.
The two things that differ between public reward models, and silently ruin scores
when wrong, are explicit arguments:

- the **input format** -- how a (prompt, completion) pair becomes the model's text
  (a single string or a ``(text, text_pair)`` pair for the tokenizer); see
  :data:`INPUT_FORMATS` and :func:`format_reward_input`, or pass ``format_fn``;
- **which output** is the reward -- the single logit of a regressor (``logit_index=None``)
  or one class of a classifier (``logit_index=1`` for "humor" / "faithful"), read as the raw
  logit, the log-odds, or the probability (``score_type``).

:data:`KNOWN_REWARD_MODELS` records the reward models of the MOPO paper (App. A.6, Table 2),
which come from the Rewards-in-Context (RiC) setup (Yang et al., 2024), with the hub ids and
input formats used by RiC's ``ric/multi_reward_models.py`` and the model cards. The hub is
not reachable on the reference machine: the registry is for machines that have it.

Batching pads on the right and sets the model's ``pad_token_id`` from the tokenizer when it is
missing, so that last-token pooling (GPT-2/Llama classifiers) picks the last *real* token and a
batched score equals the unbatched one.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Union

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from moalign.rewards.base import (
    RewardFunction,
    TextOrChat,
    completion_text,
    is_conversational,
    last_user_message,
)

logger = logging.getLogger(__name__)

FormattedInput = Union[str, tuple[str, str]]

__all__ = [
    "HFRewardModel",
    "INPUT_FORMATS",
    "KNOWN_REWARD_MODELS",
    "RewardModelSpec",
    "format_reward_input",
    "hh_query",
    "ric_summary_post",
]

HUMAN, ASSISTANT = "\n\nHuman:", "\n\nAssistant:"

INPUT_FORMATS: dict[str, str] = {
    "plain": "last_user_message + completion_text as one string (TRL GRPOTrainer's `p + c`; nothing inserted)",
    "pair": "tokenizer(text=last_user_message, text_pair=completion_text) (e.g. OpenAssistant reward models)",
    "hh": "Anthropic HH dialogue as a text pair: ('\\n\\nHuman: {prompt} \\n\\nAssistant:', '{completion}') "
    "(Ray2333 gpt2-large-*-reward_model cards: rm_tokenizer(q, a))",
    "hh_text": "Anthropic HH dialogue as one string: '\\n\\nHuman: {prompt} \\n\\nAssistant: {completion}'",
    "completion_only": "the completion text alone (RiC scores humor-no-humor on the response only)",
    "summary_bos": "'{summary} {bos_token} {post}' (RiC's input for Tristan/gpt2_reward_summarization)",
    "summary_post_pair": "tokenizer(text=summary, text_pair=post) -- summary first "
    "(CogComp/bart-faithful-summary-detector card)",
    "chat_template": "tokenizer.apply_chat_template(prompt messages + assistant completion), tokenised without "
    "extra special tokens (as TRL does for reward models)",
}


# --------------------------------------------------------------------------- formatting


def hh_query(prompt: TextOrChat) -> str:
    """The Anthropic-HH query for ``prompt``, ending in ``' \\n\\nAssistant:'``.

    - a chat is rendered turn by turn (``user`` -> ``\\n\\nHuman: ...``, ``assistant`` ->
      ``\\n\\nAssistant: ...``); other roles (system) have no HH equivalent and raise;
    - a string that already contains ``'\\n\\nHuman:'`` is taken as an HH transcript; a trailing
      ``'\\n\\nAssistant:'`` is removed before the final one is appended;
    - any other string is the single human turn.

    The space before the final ``\\n\\nAssistant:`` follows RiC's ``Instructions.get_input``
    (``prompt.rstrip() + ' ' + '\\n\\nAssistant:'``), which produced the queries these reward
    models were evaluated on (and the Ray2333 model-card example).
    """
    if is_conversational(prompt):
        parts = []
        for j, message in enumerate(prompt):
            role, content = message["role"], message["content"]
            if not isinstance(content, str):
                raise TypeError(f"prompt message {j}: 'content' must be a string, got {type(content).__name__}")
            if role == "user":
                parts.append(f"{HUMAN} {content.strip()}")
            elif role == "assistant":
                parts.append(f"{ASSISTANT} {content.strip()}")
            else:
                raise ValueError(
                    f"prompt message {j} has role {role!r}; the HH dialogue format has only 'user' (Human) and "
                    "'assistant' turns -- drop or merge that message first, or use input_format='chat_template'"
                )
        body = "".join(parts)
    elif isinstance(prompt, str):
        if HUMAN in prompt:
            body = prompt.rstrip()
            if body.endswith(ASSISTANT):
                body = body[: -len(ASSISTANT)]
        else:
            body = f"{HUMAN} {prompt.strip()}"
    else:
        raise TypeError(f"prompt must be a string or a chat message list, got {type(prompt).__name__}")
    return body.rstrip() + " " + ASSISTANT


def ric_summary_post(prompt: TextOrChat) -> str:
    """The Reddit post inside RiC's summary prompt ``'### Instruction: ... ### Input: {post} ### Response: '``.

    Pass as ``post_fn`` when prompts use that template; by default the whole prompt is the post.
    """
    text = last_user_message(prompt)
    if "### Input:" not in text:
        raise ValueError(f"prompt has no '### Input:' section (RiC summary template): {text[:80]!r}")
    post = text.split("### Input:", 1)[1]
    return post.split("### Response:", 1)[0].strip()


def _as_messages(item: TextOrChat, role: str) -> list[dict[str, Any]]:
    if isinstance(item, str):
        return [{"role": role, "content": item}]
    if is_conversational(item):
        return [dict(m) for m in item]
    raise TypeError(f"expected a string or a chat message list, got {type(item).__name__}")


def format_reward_input(
    input_format: str,
    prompt: TextOrChat,
    completion: TextOrChat,
    tokenizer: PreTrainedTokenizerBase | None = None,
    post_fn: Callable[[TextOrChat], str] | None = None,
) -> FormattedInput:
    """Turn one (prompt, completion) into the reward model's input: a string or a ``(text, text_pair)``.

    See :data:`INPUT_FORMATS`. Formats that follow RiC (``hh``, ``hh_text``, ``completion_only``,
    ``summary_*``) strip surrounding whitespace from the completion as RiC's ``get_response`` does;
    ``plain`` and ``pair`` use the texts verbatim. ``summary_*`` take the post from ``post_fn(prompt)``
    (default: the prompt text itself). ``summary_bos`` and ``chat_template`` need the tokenizer.
    """
    if input_format == "plain":
        if is_conversational(prompt):
            raise ValueError(
                "input_format='plain' got a chat prompt; use 'chat_template' (or 'hh') for conversational data"
            )
        return last_user_message(prompt) + completion_text(completion)
    if input_format == "pair":
        return last_user_message(prompt), completion_text(completion)
    if input_format == "hh":
        return hh_query(prompt), completion_text(completion).strip()
    if input_format == "hh_text":
        return hh_query(prompt) + " " + completion_text(completion).strip()
    if input_format == "completion_only":
        return completion_text(completion).strip()
    if input_format in ("summary_bos", "summary_post_pair"):
        post = post_fn(prompt) if post_fn is not None else last_user_message(prompt)
        summary = completion_text(completion).strip()
        if input_format == "summary_post_pair":
            return summary, post
        if tokenizer is None or tokenizer.bos_token is None:
            raise ValueError("input_format='summary_bos' needs a tokenizer with a bos_token")
        return f"{summary} {tokenizer.bos_token} {post}"
    if input_format == "chat_template":
        if tokenizer is None or getattr(tokenizer, "chat_template", None) is None:
            raise ValueError("input_format='chat_template' needs a tokenizer that has a chat_template")
        messages = _as_messages(prompt, "user") + _as_messages(completion, "assistant")
        return tokenizer.apply_chat_template(messages, tokenize=False)
    raise ValueError(f"unknown input_format {input_format!r}; known: {sorted(INPUT_FORMATS)} (or pass format_fn)")


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class RewardModelSpec:
    """How to use one public reward model: hub id, input format and which output is the reward."""

    hub_id: str = field(metadata={"help": "Hugging Face hub id (model and tokenizer)."})
    input_format: str = field(metadata={"help": f"One of {sorted(INPUT_FORMATS)}."})
    objective: str = field(metadata={"help": "What a higher score means."})
    logit_index: int | None = field(
        default=None, metadata={"help": "Output column used as the reward; None for single-logit regressors."}
    )
    num_labels: int = field(default=1, metadata={"help": "Number of outputs of the classification head."})
    source: str = field(default="", metadata={"help": "Where the input format and output column come from."})
    notes: str = field(default="", metadata={"help": "Caveats."})


_RIC = "RiC ric/multi_reward_models.py + ric/utils.py (YangRui2015/RiC)"
_FAITHFUL_DETECTOR = RewardModelSpec(
    hub_id="CogComp/bart-faithful-summary-detector",
    input_format="summary_post_pair",
    objective="faithful (summary supported by the post)",
    logit_index=1,
    num_labels=2,
    source=f"model card: tokenizer(text=summary, text_pair=article), label 1 = 'Faithful'; {_RIC}",
)

KNOWN_REWARD_MODELS: dict[str, RewardModelSpec] = {
    "gpt2-large-harmless-reward_model": RewardModelSpec(
        hub_id="Ray2333/gpt2-large-harmless-reward_model",
        input_format="hh",
        objective="harmless",
        source=f"model card (rm_tokenizer(q, a) with q = '\\n\\nHuman: ... \\n\\nAssistant:'); {_RIC}",
    ),
    "gpt2-large-helpful-reward_model": RewardModelSpec(
        hub_id="Ray2333/gpt2-large-helpful-reward_model",
        input_format="hh",
        objective="helpful",
        source=f"model card (same usage as the harmless model); {_RIC}",
    ),
    "humor-no-humor": RewardModelSpec(
        hub_id="mohameddhiab/humor-no-humor",
        input_format="completion_only",
        objective="humor",
        logit_index=1,
        num_labels=2,
        source=f"{_RIC}: response only, logits[0][1] (2-class DistilBERT classifier)",
    ),
    "gpt2_reward_summarization": RewardModelSpec(
        hub_id="Tristan/gpt2_reward_summarization",
        input_format="summary_bos",
        objective="pref1 (human preference for the summary)",
        source=f"{_RIC}: tokenizer(summary + ' ' + bos_token + ' ' + post)",
        notes="GPT-2 tokenizer without a pad token: the eos token is used for padding.",
    ),
    "bart-faithful-summary-detector": _FAITHFUL_DETECTOR,
    # the papers' name for the same model: its hub id, input format and output column are the faithful detector's
    "bart-summary-detector": replace(
        _FAITHFUL_DETECTOR,
        objective="less hallucination",
        source="MOPO Table 2 / HaM §4.3 name 'bart-summary-detector'; HaM Table 5 maps its hallucination "
        "reward to bart-faithful-summary-detector",
        notes="No hub model of this name was found; it resolves to the faithful detector (label 1 = 'Faithful', "
        "i.e. not hallucinated), so it scores exactly like 'bart-faithful-summary-detector'. RiC's third summary "
        "reward is 'reward-model-deberta-v3-large-v2'.",
    ),
    "reward-model-deberta-v3-large-v2": RewardModelSpec(
        hub_id="OpenAssistant/reward-model-deberta-v3-large-v2",
        input_format="pair",
        objective="preference (RiC's 'deberta' summary reward)",
        source=f"model card: tokenizer(question, answer); {_RIC}",
    ),
}


# --------------------------------------------------------------------------- model wrapper

SCORE_TYPES = ("logit", "log_odds", "probability")


class HFRewardModel(RewardFunction):
    """A sequence-classification reward model from transformers.

    Args:
        model_name_or_path: hub id / local directory, or an already loaded ``PreTrainedModel``.
        tokenizer: a tokenizer, or its name/path (default: same as the model's path).
        input_format: one of :data:`INPUT_FORMATS` (ignored when ``format_fn`` is given).
        format_fn: ``(prompt, completion) -> str | (text, text_pair)``; overrides ``input_format``.
        name: the reward's name (default: last part of the model path).
        logit_index: output column used as the reward; ``None`` requires a single-logit model.
        score_type: ``"logit"`` (raw output), ``"log_odds"`` (logit minus logsumexp of the other
            classes; the logit itself for single-logit models) or ``"probability"`` (softmax over
            the classes; sigmoid for single-logit models).
        batch_size: pairs per forward pass.
        device: torch device (default: CUDA when available, else CPU).
        max_length: truncation length in tokens (default: ``min(tokenizer.model_max_length,
            model positions, 1024)``, RiC's cap). Truncation is logged, never silent.
        dtype: dtype to load the model in (``from_pretrained(dtype=...)``); ignored for loaded models.
        add_special_tokens: passed to the tokenizer (forced ``False`` for ``chat_template``, whose
            rendered text already contains them).
        post_fn: extracts the post from a prompt for the ``summary_*`` formats.
        show_progress: tqdm bar over batches.
    """

    def __init__(
        self,
        model_name_or_path: str | PreTrainedModel,
        tokenizer: str | PreTrainedTokenizerBase | None = None,
        *,
        input_format: str = "plain",
        format_fn: Callable[[TextOrChat, TextOrChat], FormattedInput] | None = None,
        name: str | None = None,
        logit_index: int | None = None,
        score_type: str = "logit",
        batch_size: int = 8,
        device: str | torch.device | None = None,
        max_length: int | None = None,
        dtype: torch.dtype | str | None = None,
        add_special_tokens: bool = True,
        post_fn: Callable[[TextOrChat], str] | None = None,
        show_progress: bool = False,
    ) -> None:
        if format_fn is None and input_format not in INPUT_FORMATS:
            raise ValueError(f"unknown input_format {input_format!r}; known: {sorted(INPUT_FORMATS)}")
        if score_type not in SCORE_TYPES:
            raise ValueError(f"score_type must be one of {SCORE_TYPES}, got {score_type!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")

        if isinstance(model_name_or_path, str):
            kwargs = {"dtype": dtype} if dtype is not None else {}
            model = AutoModelForSequenceClassification.from_pretrained(model_name_or_path, **kwargs)
            model_id = model_name_or_path
        elif isinstance(model_name_or_path, PreTrainedModel):
            model = model_name_or_path
            model_id = getattr(model.config, "_name_or_path", "") or type(model).__name__
        else:
            raise TypeError(
                f"model_name_or_path must be a string or a PreTrainedModel, got {type(model_name_or_path).__name__}"
            )
        if tokenizer is None:
            if not isinstance(model_name_or_path, str):
                raise ValueError("a tokenizer is required when passing a loaded model")
            tokenizer = model_name_or_path
        if isinstance(tokenizer, str):
            tokenizer = AutoTokenizer.from_pretrained(tokenizer)

        super().__init__(name or str(model_id).rstrip("/").split("/")[-1])
        self.model = model
        self.tokenizer = tokenizer
        self.input_format = input_format if format_fn is None else "custom"
        self.format_fn = format_fn
        self.score_type = score_type
        self.batch_size = batch_size
        self.add_special_tokens = add_special_tokens and self.input_format != "chat_template"
        self.post_fn = post_fn
        self.show_progress = show_progress

        num_labels = int(self.model.config.num_labels)
        if logit_index is None:
            if num_labels != 1:
                raise ValueError(
                    f"reward model '{self.name}' has {num_labels} outputs; pass logit_index to say which class is "
                    "the reward (e.g. logit_index=1 for the positive class)"
                )
            logit_index = 0
        if not 0 <= logit_index < num_labels:
            raise ValueError(f"logit_index {logit_index} is out of range for {num_labels} output(s) of '{self.name}'")
        self.logit_index = logit_index

        self._setup_padding()
        forward_params = inspect.signature(self.model.forward).parameters
        self._accepts_any_kwarg = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in forward_params.values())
        self._forward_names = set(forward_params)
        self.max_length = self._default_max_length() if max_length is None else int(max_length)
        self.device = torch.device(device) if device is not None else torch.device(
            "cuda" if torch.cuda.is_available() else "cpu"
        )
        self.model.to(self.device)
        self.model.eval()

    @classmethod
    def from_known(cls, key: str, model_name_or_path: str | None = None, **overrides: Any) -> HFRewardModel:
        """Build one of :data:`KNOWN_REWARD_MODELS` with its registered input format and output column.

        ``model_name_or_path`` replaces the hub id (e.g. a local copy); ``overrides`` go to ``__init__``.
        """
        if key not in KNOWN_REWARD_MODELS:
            raise KeyError(f"unknown reward model {key!r}; known: {sorted(KNOWN_REWARD_MODELS)}")
        spec = KNOWN_REWARD_MODELS[key]
        if spec.notes:
            logger.info("reward model %s: %s", key, spec.notes)
        kwargs: dict[str, Any] = {"input_format": spec.input_format, "logit_index": spec.logit_index, "name": key}
        kwargs.update(overrides)
        return cls(model_name_or_path or spec.hub_id, **kwargs)

    # ------------------------------------------------------------------ setup helpers

    def _setup_padding(self) -> None:
        tok = self.tokenizer
        if tok.pad_token is None:
            if tok.eos_token is None:
                raise ValueError(
                    f"tokenizer of '{self.name}' has neither a pad nor an eos token; set tokenizer.pad_token"
                )
            tok.pad_token = tok.eos_token
            logger.info("reward model %s: tokenizer has no pad token, padding with eos %r", self.name, tok.eos_token)
        config = self.model.config
        if config.pad_token_id is None:
            config.pad_token_id = tok.pad_token_id
        elif config.pad_token_id != tok.pad_token_id:
            raise ValueError(
                f"reward model '{self.name}': model.config.pad_token_id={config.pad_token_id} differs from the "
                f"tokenizer's pad_token_id={tok.pad_token_id}; last-token pooling would pick the wrong token in "
                "padded batches. Make them agree before wrapping the model."
            )

    def _default_max_length(self) -> int:
        limits = [1024]
        if isinstance(self.tokenizer.model_max_length, int) and self.tokenizer.model_max_length < 10**6:
            limits.append(self.tokenizer.model_max_length)
        for attr in ("max_position_embeddings", "n_positions"):
            value = getattr(self.model.config, attr, None)
            if isinstance(value, int) and value > 0:
                limits.append(value)
        return min(limits)

    # ------------------------------------------------------------------ scoring

    def format_inputs(self, prompts: Sequence[TextOrChat], completions: Sequence[TextOrChat]) -> list[FormattedInput]:
        """The model inputs (strings or text pairs) for each pair, before tokenisation."""
        out: list[FormattedInput] = []
        for i, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
            try:
                if self.format_fn is not None:
                    item = self.format_fn(prompt, completion)
                else:
                    item = format_reward_input(self.input_format, prompt, completion, self.tokenizer, self.post_fn)
            except (TypeError, ValueError) as err:
                raise type(err)(f"reward model '{self.name}', item {i}: {err}") from err
            is_pair = isinstance(item, tuple) and len(item) == 2 and all(isinstance(t, str) for t in item)
            if not (isinstance(item, str) or is_pair):
                raise TypeError(
                    f"reward model '{self.name}', item {i}: format_fn must return a string or a (text, text_pair) "
                    f"tuple of strings, got {type(item).__name__}"
                )
            out.append(item)
        return out

    def _tokenize(self, items: list[FormattedInput], truncation: bool, padding: bool) -> dict[str, Any]:
        pairs = [isinstance(x, tuple) for x in items]
        kwargs: dict[str, Any] = {"add_special_tokens": self.add_special_tokens, "verbose": False}
        if truncation:
            kwargs.update(truncation=True, max_length=self.max_length)
        if padding:
            kwargs.update(padding=True, return_tensors="pt", padding_side="right")
        if all(pairs):
            return self.tokenizer([x[0] for x in items], [x[1] for x in items], **kwargs)
        if not any(pairs):
            return self.tokenizer(list(items), **kwargs)
        raise TypeError(f"reward model '{self.name}': format_fn mixed strings and text pairs in one call")

    def _reduce(self, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        i = self.logit_index
        if self.score_type == "logit":
            return logits[:, i]
        if logits.shape[1] == 1:
            return logits[:, 0] if self.score_type == "log_odds" else torch.sigmoid(logits[:, 0])
        if self.score_type == "probability":
            return torch.softmax(logits, dim=-1)[:, i]
        others = torch.cat([logits[:, :i], logits[:, i + 1 :]], dim=1)
        return logits[:, i] - torch.logsumexp(others, dim=1)

    @torch.no_grad()
    def score(self, prompts: list[TextOrChat], completions: list[TextOrChat]) -> list[float]:
        items = self.format_inputs(prompts, completions)
        lengths = [len(ids) for ids in self._tokenize(items, truncation=False, padding=False)["input_ids"]]
        n_truncated = sum(length > self.max_length for length in lengths)
        if n_truncated:
            logger.warning(
                "reward model %s: %d of %d inputs are longer than max_length=%d tokens and were truncated",
                self.name, n_truncated, len(items), self.max_length,
            )
        order = sorted(range(len(items)), key=lambda j: -lengths[j])  # similar lengths share a batch
        scores: list[float] = [0.0] * len(items)
        starts = range(0, len(order), self.batch_size)
        for start in tqdm(starts, desc=f"scoring {self.name}", disable=not self.show_progress):
            idx = order[start : start + self.batch_size]
            batch = self._tokenize([items[j] for j in idx], truncation=True, padding=True)
            batch = {
                k: v.to(self.device)
                for k, v in batch.items()
                if self._accepts_any_kwarg or k in self._forward_names  # e.g. token_type_ids for models without them
            }
            values = self._reduce(self.model(**batch).logits).cpu().tolist()
            for j, value in zip(idx, values, strict=True):
                scores[j] = value
        return scores

    def __repr__(self) -> str:
        return (
            f"HFRewardModel(name={self.name!r}, input_format={self.input_format!r}, logit_index={self.logit_index}, "
            f"score_type={self.score_type!r}, device={str(self.device)!r})"
        )
