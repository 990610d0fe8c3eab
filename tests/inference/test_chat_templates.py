"""The exported chat templates rewrite a conversation exactly as moalign conditions a prompt.

Checked against :func:`moalign.data.prompts.render_prompt` of moalign's own conditioned prompt, for the tiny
tokenizer's template and, when the SmolLM2 conversion is cached on this machine, SmolLM2-Instruct's real template
(which adds a default system message when there is none -- the conditioning block must replace it, as it does in
training).
"""

from __future__ import annotations

import pytest

from moalign.data.conditioning import ConditioningSpec, format_weight_line
from moalign.data.prompts import render_prompt
from moalign.data.ric import render_reward_prompt
from moalign.inference.conditioned import prefix_template, reward_tags_template
from moalign.models.testing import make_tiny_tokenizer

WEIGHTS = [0.7, 0.3]
CONVERSATIONS = [
    [{"role": "user", "content": "hello you"}],
    [{"role": "system", "content": "be kind ."}, {"role": "user", "content": "tell a story"}],
    [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "yes"}, {"role": "user", "content": "why"}],
]


def _tokenizers() -> list:
    tokenizers = [make_tiny_tokenizer()]
    from moalign.models.loading import smollm2_cache_dir

    if (smollm2_cache_dir() / "tokenizer_config.json").is_file():
        from moalign.models import load_tokenizer

        tokenizers.append(load_tokenizer(str(smollm2_cache_dir())))
    return tokenizers


def _render_with(tokenizer, template: str, conversation: list[dict]) -> str:
    original = tokenizer.chat_template
    tokenizer.chat_template = template
    try:
        return tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    finally:
        tokenizer.chat_template = original


@pytest.mark.parametrize("tokenizer", _tokenizers(), ids=lambda t: type(t).__name__ + str(len(t)))
@pytest.mark.parametrize("conversation", CONVERSATIONS, ids=["user", "system", "multi-turn"])
def test_system_block_template_matches_moalign(tokenizer, conversation):
    spec = ConditioningSpec(("helpful", "short"), as_chat=True)
    template = prefix_template(tokenizer.chat_template, format_weight_line(WEIGHTS, spec.objectives), "\n", True)
    expected = render_prompt(tokenizer, spec.render(conversation, WEIGHTS), True)
    assert _render_with(tokenizer, template, conversation) == expected


@pytest.mark.parametrize("tokenizer", _tokenizers(), ids=lambda t: type(t).__name__ + str(len(t)))
def test_text_block_template_matches_moalign_on_a_user_message(tokenizer):
    """Trained with the block in the prompt text (as_chat false): the user's message carries it."""
    spec = ConditioningSpec(("helpful", "short"), as_chat=False)
    template = prefix_template(tokenizer.chat_template, format_weight_line(WEIGHTS, spec.objectives), "\n", False)
    expected = render_prompt(tokenizer, spec.render("hello you", WEIGHTS), True)
    assert _render_with(tokenizer, template, CONVERSATIONS[0]) == expected


@pytest.mark.parametrize("tokenizer", _tokenizers(), ids=lambda t: type(t).__name__ + str(len(t)))
@pytest.mark.parametrize("conversation", CONVERSATIONS, ids=["user", "system", "multi-turn"])
def test_reward_tags_template_matches_moalign(tokenizer, conversation):
    tags = "<rm1_score> 1.2 <rm2_score> -0.4"
    expected = render_prompt(tokenizer, render_reward_prompt(conversation, [1.2, -0.4]), True)
    assert _render_with(tokenizer, reward_tags_template(tokenizer.chat_template, tags), conversation) == expected


def test_raw_text_templates_render_what_a_raw_text_model_continued():
    tokenizer = make_tiny_tokenizer()
    block = format_weight_line(WEIGHTS, ("helpful", "short"))
    text = _render_with(tokenizer, prefix_template(None, block, "\n", False), CONVERSATIONS[0])
    assert text == ConditioningSpec(("helpful", "short")).render("hello you", WEIGHTS)
    tags = "<rm1_score> 1.2 <rm2_score> -0.4"
    assert _render_with(tokenizer, reward_tags_template(None, tags), CONVERSATIONS[0]) == \
        render_reward_prompt("hello you", [1.2, -0.4])
