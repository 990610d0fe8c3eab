"""render_prompt: the one renderer of prompts for training (collator) and generation (eval)."""

from __future__ import annotations

import pytest

from moalign.data.prompts import has_chat_template, render_prompt


class StubTokenizer:
    """Just enough of a tokenizer: a chat template flag and apply_chat_template."""

    def __init__(self, chat_template: str | None):
        self.chat_template = chat_template

    def apply_chat_template(self, messages, tokenize=True, add_generation_prompt=False):
        assert tokenize is False
        text = "".join(f"<{m['role']}>{m['content']}" for m in messages)
        return text + ("<assistant>" if add_generation_prompt else "")


CHAT = [{"role": "system", "content": "be kind"}, {"role": "user", "content": "yo"}]


def test_text_prompts_with_and_without_the_template():
    tok = StubTokenizer("a template")
    assert has_chat_template(tok) and not has_chat_template(StubTokenizer(None))
    assert not has_chat_template(StubTokenizer(""))
    assert render_prompt(tok, "hi", use_chat_template=True) == "<user>hi<assistant>"
    assert render_prompt(tok, "hi", use_chat_template=False) == "hi"
    assert render_prompt(StubTokenizer(None), "hi", use_chat_template=False) == "hi"


def test_chat_prompts_always_use_the_template():
    tok = StubTokenizer("a template")
    expected = "<system>be kind<user>yo<assistant>"
    assert render_prompt(tok, CHAT, use_chat_template=True) == expected
    assert render_prompt(tok, CHAT, use_chat_template=False) == expected  # a chat has no other text form
    assert render_prompt(tok, tuple(CHAT), use_chat_template=False) == expected


def test_a_missing_template_is_an_error_not_a_silent_fallback():
    plain = StubTokenizer(None)
    with pytest.raises(ValueError, match="chat message prompt needs a tokenizer with a chat template"):
        render_prompt(plain, CHAT, use_chat_template=False)
    with pytest.raises(ValueError, match="use_chat_template=True needs a tokenizer with a chat template"):
        render_prompt(plain, "hi", use_chat_template=True)


def test_collator_and_generation_render_with_this_function():
    from moalign.eval import generate
    from moalign.trainers import collator

    assert collator.render_prompt is render_prompt and generate.render_prompt is render_prompt
    tok = StubTokenizer("a template")
    texts, templated = generate.render_prompts(tok, ["hi", CHAT])
    assert templated and texts == [render_prompt(tok, "hi", True), render_prompt(tok, CHAT, True)]
