"""Prompts as model input: the one place where a prompt (text or chat) becomes the text a model continues.

Training (:class:`moalign.trainers.collator.PairwiseCollator`) and generation
(:func:`moalign.eval.generate.render_prompts`) both render prompts here, so the
text a policy was trained to continue is the text it is asked to continue at
evaluation. It lives in the data layer, below both ``trainers`` and ``eval``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["has_chat_template", "render_prompt"]


def has_chat_template(tokenizer: Any) -> bool:
    """Whether ``tokenizer`` carries a (non-empty) chat template."""
    return bool(getattr(tokenizer, "chat_template", None))


def render_prompt(tokenizer: Any, prompt: str | list[Mapping[str, Any]], use_chat_template: bool) -> str:
    """The text the completion continues.

    A chat (a TRL-style list of ``{"role", "content"}`` messages) is always rendered with the
    tokenizer's chat template and its generation prompt: a conversation has no other text form.
    A plain-text prompt becomes one user turn under the template when ``use_chat_template``,
    and is used as it is otherwise. Needing a template the tokenizer lacks is an error (rather
    than silently feeding the model text in a format it was not asked for).
    """
    if isinstance(prompt, str) and not use_chat_template:
        return prompt
    if not has_chat_template(tokenizer):
        what = "a chat message prompt" if not isinstance(prompt, str) else "use_chat_template=True"
        raise ValueError(f"{what} needs a tokenizer with a chat template; {type(tokenizer).__name__} has none")
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
