"""Batched generation with one :class:`~moalign.eval.policies.Policy`.

Prompts are plain strings or TRL-style chat message lists. When the tokenizer
has a chat template, a plain prompt becomes one user turn and the template's
generation prompt is appended; a message list requires a chat template.
Batches are left-padded (decoder-only models continue from the last token),
sorted by prompt length to waste little padding, and returned in input order.
Greedy decoding is deterministic; sampling re-seeds torch with ``seed`` at the
start of every policy, so all policies see the same random stream (common
random numbers make the paired comparisons against the base model tighter).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from moalign.data.prompts import has_chat_template, render_prompt
from moalign.eval.policies import Policy
from moalign.eval.prompt_cache import SharedPromptCache
from moalign.precision import generation_autocast, validate_precision

Prompt = str | list[dict[str, Any]]


@dataclass
class GenerationSettings:
    """Decoding settings shared by every policy of an evaluation."""

    max_new_tokens: int = field(default=64, metadata={"help": "Tokens generated per completion (the MOPO paper uses 64 for Helpful Assistant, 32 for Reddit Summary)."})
    batch_size: int = field(default=32, metadata={"help": "Prompts per generate() call (32: CPU generation runs 2.4-2.7x as many tokens per second at 32 as at 8; docs/precision.md)."})
    do_sample: bool = field(default=False, metadata={"help": "Sample (True) or decode greedily (False)."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature (only with do_sample)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass (only with do_sample). Top-k filtering is always off, so sampling draws from the policy itself."})
    seed: int = field(default=0, metadata={"help": "Torch seed set before each policy's generation when sampling (evaluate_policies also seeds k-means and the bootstrap with it)."})
    use_chat_template: bool = field(default=True, metadata={"help": "Wrap plain prompts as a user turn when the tokenizer has a chat template."})
    sort_by_length: bool = field(default=True, metadata={"help": "Batch prompts of similar length together (output order is unchanged)."})
    progress: bool = field(default=True, metadata={"help": "Show tqdm progress bars."})
    precision: str = field(default="auto", metadata={"help": "Compute precision of generation: 'auto' (bf16 where the device computes it natively), 'bf16' or 'fp32' (moalign.precision)."})

    def __post_init__(self) -> None:
        validate_precision(self.precision)
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.do_sample and not self.temperature > 0:
            raise ValueError(f"temperature must be > 0 when sampling, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


def validate_prompts(prompts: Sequence[Prompt]) -> list[Prompt]:
    """Return ``prompts`` as a list after checking each is a non-empty string or a chat message list."""
    if isinstance(prompts, str):
        raise TypeError("prompts must be a sequence of prompts, not a single string")
    prompts = list(prompts)
    if not prompts:
        raise ValueError("the prompt list is empty: nothing to evaluate")
    for i, p in enumerate(prompts):
        if isinstance(p, str):
            if not p.strip():
                raise ValueError(f"prompt {i} is an empty string")
        elif isinstance(p, list):
            if not p or not all(isinstance(m, dict) and "role" in m and "content" in m for m in p):
                raise ValueError(f"prompt {i} is a list but not a chat message list [{{'role': ..., 'content': ...}}, ...]: {p!r}")
        else:
            raise TypeError(f"prompt {i} must be a string or a chat message list, got {type(p).__name__}")
    return prompts


def render_prompts(tokenizer: Any, prompts: Sequence[Prompt], use_chat_template: bool = True) -> tuple[list[str], bool]:
    """Render prompts to model input strings; returns ``(texts, templated)``.

    The chat template is used when the tokenizer has one and ``use_chat_template``; otherwise plain
    prompts are used as they are and chat prompts are an error. Each prompt is rendered by
    :func:`moalign.data.prompts.render_prompt` (as in training). ``templated`` says whether the chat
    template was applied (its output already contains any special tokens, so the caller must not add
    them again).
    """
    templated = has_chat_template(tokenizer) and use_chat_template
    if any(isinstance(p, list) for p in prompts) and not templated:
        raise ValueError(
            "chat message prompts need a tokenizer with a chat template and use_chat_template=True "
            f"(tokenizer has a chat template: {has_chat_template(tokenizer)}, use_chat_template={use_chat_template})"
        )
    return [render_prompt(tokenizer, p, templated) for p in prompts], templated


def policy_prompts(prompts: Sequence[Prompt], policy: Policy) -> list[Prompt]:
    """The prompts ``policy`` generates from: for ``conditioned`` the weights written in by
    :meth:`~moalign.data.conditioning.ConditioningSpec.render` (as in training), otherwise unchanged."""
    if policy.kind != "conditioned":
        return list(prompts)
    return [policy.conditioning.render(p, policy.weights) for p in prompts]


def _head_context(model: Any, policy: Policy) -> contextlib.AbstractContextManager:
    """``model.head(k)`` (MultiHeadCausalLM's context manager), else ``model.use_head(k)`` if it is one."""
    head_cm = getattr(model, "head", None)
    if inspect.ismethod(head_cm):
        return head_cm(policy.head)
    use_head = getattr(model, "use_head", None)
    if use_head is None:
        raise ValueError(f"policy '{policy.name}' selects a head but {type(model).__name__} has neither head() nor use_head()")
    cm = use_head(policy.head)
    if not hasattr(cm, "__enter__"):
        raise TypeError(
            f"{type(model).__name__}.use_head() is not a context manager and the model has no head() context; "
            "cannot select a head for one policy and restore the model afterwards"
        )
    return cm


@contextlib.contextmanager
def policy_context(model: Any, policy: Policy, reference_model: Any | None = None) -> Iterator[Any]:
    """Context in which ``model.generate`` produces ``policy``'s completions; yields the model to call.

    * ``base``: ``reference_model`` if given, else ``model.reference_context()``
      (multi-head models), else PEFT's ``model.disable_adapter()``;
    * ``head``: ``model.head(k)`` (or ``model.use_head(k)`` where that is a context manager);
    * ``steer``: ``model.steer(weights, divergence=...)``;
    * ``model``: the model as it is;
    * ``conditioned``: the model as it is (its prompts carry the weights: :func:`policy_prompts`);
    * ``weighted``: ``model.weighted_policy(weights)``, a context manager the model provides (it may yield
      the model to call, or nothing: then ``model`` itself).
    """
    if policy.kind in ("model", "conditioned"):
        yield model
    elif policy.kind == "weighted":
        if not hasattr(model, "weighted_policy"):
            raise ValueError(f"policy '{policy.name}' needs {type(model).__name__}.weighted_policy(weights), "
                             "a context manager selecting the policy of a weight vector (e.g. a soup model)")
        with model.weighted_policy(list(policy.weights)) as selected:
            yield model if selected is None else selected
    elif policy.kind == "base":
        if reference_model is not None:
            yield reference_model
        elif hasattr(model, "reference_context"):
            with model.reference_context():
                yield model
        elif hasattr(model, "disable_adapter"):
            with model.disable_adapter():
                yield model
        else:
            raise ValueError(
                f"cannot generate with the base policy '{policy.name}': the model has neither reference_context() "
                "nor disable_adapter(); pass the untrained model as reference_model"
            )
    elif policy.kind == "head":
        with _head_context(model, policy):
            yield model
    elif policy.kind == "steer":
        if not hasattr(model, "steer"):
            raise ValueError(f"policy '{policy.name}' steers heads but {type(model).__name__} has no steer()")
        with model.steer(list(policy.weights), divergence=policy.divergence):
            yield model
    else:  # pragma: no cover - Policy validates kind
        raise ValueError(f"unknown policy kind {policy.kind!r}")


def model_device(model: Any) -> torch.device:
    """The device a model computes on: its ``device`` attribute, else its first parameter's, else the CPU."""
    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        return device
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


@contextlib.contextmanager
def _left_padding(tokenizer: Any) -> Iterator[int]:
    """Temporarily pad on the left; use EOS as pad token if the tokenizer has none. Yields the pad id."""
    old_side, old_pad = tokenizer.padding_side, tokenizer.pad_token
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError("the tokenizer has neither a pad token nor an EOS token to pad with")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    try:
        yield tokenizer.pad_token_id
    finally:
        tokenizer.padding_side = old_side
        if old_pad is None:
            tokenizer.pad_token = None


def generate_completions(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Prompt],
    policy: Policy,
    settings: GenerationSettings | None = None,
    reference_model: Any | None = None,
    return_finished: bool = False,
    prompt_cache: SharedPromptCache | None = None,
) -> list[str] | tuple[list[str], list[bool]]:
    """Completions (decoded new tokens, special tokens removed) of ``policy`` for every prompt, in input order.

    With ``return_finished`` also returns, per prompt, whether generation ended with an end-of-sequence token
    (False: it was cut at ``max_new_tokens``). ``prompt_cache``: one :class:`~moalign.eval.prompt_cache.
    SharedPromptCache` passed to every policy of one model, so that its head and steering policies read each
    prompt batch once.
    """
    settings = settings or GenerationSettings()
    prompts = policy_prompts(validate_prompts(prompts), policy)
    texts, templated = render_prompts(tokenizer, prompts, settings.use_chat_template)
    add_special = not templated
    order = list(range(len(texts)))
    if settings.sort_by_length:
        lengths = [len(tokenizer(t, add_special_tokens=add_special)["input_ids"]) for t in texts]
        order.sort(key=lambda i: lengths[i])
    batches = [order[i : i + settings.batch_size] for i in range(0, len(order), settings.batch_size)]
    completions: list[str | None] = [None] * len(texts)
    finished: list[bool] = [False] * len(texts)

    gen_kwargs: dict[str, Any] = {"max_new_tokens": settings.max_new_tokens, "do_sample": settings.do_sample}
    if settings.do_sample:
        gen_kwargs.update(temperature=settings.temperature, top_p=settings.top_p, top_k=0)
    with _left_padding(tokenizer) as pad_id, policy_context(model, policy, reference_model) as gen_model:
        gen_kwargs["pad_token_id"] = pad_id
        was_training = getattr(gen_model, "training", False)
        if hasattr(gen_model, "eval"):
            gen_model.eval()
        if settings.do_sample:
            torch.manual_seed(settings.seed)
        device = model_device(gen_model)
        stop_ids = stop_token_ids(gen_model, tokenizer).to(device)
        bar = tqdm(batches, desc=f"generate {policy.name}", leave=False, disable=not settings.progress)
        try:
            with torch.no_grad(), generation_autocast(settings.precision, gen_model, device):
                for batch in bar:
                    enc = tokenizer([texts[i] for i in batch], return_tensors="pt", padding=True, add_special_tokens=add_special)
                    enc = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
                    out = prompt_cache.generate(gen_model, policy, enc, **gen_kwargs) if prompt_cache is not None \
                        else gen_model.generate(**enc, **gen_kwargs)
                    new_tokens = out[:, enc["input_ids"].shape[1] :]
                    ended = torch.isin(new_tokens, stop_ids).any(dim=1).tolist()
                    for i, text, end in zip(batch, tokenizer.batch_decode(new_tokens, skip_special_tokens=True), ended,
                                            strict=True):
                        completions[i] = text
                        finished[i] = bool(end)
        finally:
            if was_training and hasattr(gen_model, "train"):
                gen_model.train()
    missing = [i for i, c in enumerate(completions) if c is None]
    assert not missing, f"internal error: no completion for prompts {missing}"
    if return_finished:
        return completions, finished  # type: ignore[return-value]
    return completions  # type: ignore[return-value]


def stop_token_ids(model: Any, tokenizer: Any) -> torch.Tensor:
    """Token ids that end generation: the generation config's ``eos_token_id`` (an id or a list) and the tokenizer's."""
    ids: set[int] = set()
    config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (config_eos, tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return torch.tensor(sorted(ids), dtype=torch.long)
