"""Batched generation: left padding, chat template, policy routing, seeding -- on a tiny random Llama."""

from __future__ import annotations

import contextlib

import pytest
import torch

from moalign.eval.generate import GenerationSettings, generate_completions, render_prompts, validate_prompts
from moalign.eval.policies import Policy

from .conftest import CHAT_TEMPLATE, make_char_tokenizer, make_tiny_llama

PROMPTS = ["hello there", "how are you today?", "what is 2+2", "tell me a joke please", "hi", "ok so"]


class PeftLike(torch.nn.Module):
    """A plain model with PEFT's disable_adapter() context manager (records whether it was used)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.adapter_disabled_calls = 0
        self.disabled = False

    def generate(self, **kwargs):
        self.adapter_disabled_calls += self.disabled
        return self.model.generate(**kwargs)

    @contextlib.contextmanager
    def disable_adapter(self):
        self.disabled = True
        try:
            yield
        finally:
            self.disabled = False


def _settings(**kw) -> GenerationSettings:
    return GenerationSettings(**{"max_new_tokens": 10, "batch_size": 4, "progress": False, **kw})


def test_validate_prompts_errors():
    with pytest.raises(ValueError, match="empty"):
        validate_prompts([])
    with pytest.raises(ValueError, match="prompt 1 is an empty string"):
        validate_prompts(["ok", "  "])
    with pytest.raises(TypeError, match="prompt 0 must be a string"):
        validate_prompts([3])
    with pytest.raises(ValueError, match="chat message list"):
        validate_prompts([[{"text": "x"}]])
    with pytest.raises(TypeError, match="not a single string"):
        validate_prompts("hello")


def test_chat_template_rendering():
    tok = make_char_tokenizer(CHAT_TEMPLATE)
    texts, templated = render_prompts(tok, ["hi", [{"role": "system", "content": "be kind"}, {"role": "user", "content": "yo"}]])
    assert templated
    assert texts == ["<|user|>hi<|assistant|>", "<|system|>be kind<|user|>yo<|assistant|>"]
    plain = make_char_tokenizer(None)
    assert render_prompts(plain, ["hi"]) == (["hi"], False)
    assert render_prompts(tok, ["hi"], use_chat_template=False) == (["hi"], False)
    with pytest.raises(ValueError, match="chat template"):
        render_prompts(plain, [[{"role": "user", "content": "yo"}]])


def test_batched_left_padded_greedy_equals_one_at_a_time():
    tok = make_char_tokenizer(None)
    model = PeftLike(make_tiny_llama(len(tok), initializer_range=0.5))  # larger init: varied greedy outputs
    batched = generate_completions(model, tok, PROMPTS, Policy.as_is(), _settings(batch_size=4))
    single = generate_completions(model, tok, PROMPTS, Policy.as_is(), _settings(batch_size=1, sort_by_length=False))
    assert batched == single
    assert len(set(batched)) > 1 and all(len(c) > 0 for c in batched)
    assert tok.padding_side == "right" and tok.pad_token == "<pad>"  # tokenizer state restored


def test_left_padding_and_policy_routing(standin_model, char_tokenizer):
    out = {}
    for pol in [Policy.base(), Policy.from_head(0), Policy.from_head(1), Policy.steered([0.5, 0.5]), Policy.as_is()]:
        standin_model.calls.clear()
        out[pol.name] = generate_completions(standin_model, char_tokenizer, PROMPTS, pol, _settings(max_new_tokens=6))
        modes = {c[0] for c in standin_model.calls}
        expected = {"base": ("reference",), "head_0": ("head", 0), "head_1": ("head", 1),
                    "steer[0.5,0.5]": ("steer", (0.5, 0.5)), "model": ("model",)}[pol.name]
        assert modes == {expected}
        for _, ids in standin_model.calls:  # left padding: pads only before the first real token
            is_pad = ids == char_tokenizer.pad_token_id
            assert torch.all(is_pad[:, :-1] >= is_pad[:, 1:])
            assert not is_pad[:, -1].any()
    assert standin_model.mode == ("model",)  # context restored
    assert all(c == "a" * 6 for c in out["head_0"]) and all(c == "b" * 6 for c in out["head_1"])
    assert out["base"] != out["head_0"]


def test_base_policy_uses_disable_adapter_or_reference_model():
    tok = make_char_tokenizer(None)
    model = PeftLike(make_tiny_llama(len(tok)))
    generate_completions(model, tok, PROMPTS[:2], Policy.base(), _settings())
    assert model.adapter_disabled_calls == 1
    ref = PeftLike(make_tiny_llama(len(tok), seed=1))
    generate_completions(model, tok, PROMPTS[:2], Policy.base(), _settings(), reference_model=ref)
    assert model.adapter_disabled_calls == 1 and ref.adapter_disabled_calls == 0
    with pytest.raises(ValueError, match="neither head"):
        generate_completions(model, tok, PROMPTS[:2], Policy.from_head(0), _settings())


def test_sampling_is_seeded():
    tok = make_char_tokenizer(CHAT_TEMPLATE)
    model = PeftLike(make_tiny_llama(len(tok)))
    a = generate_completions(model, tok, PROMPTS, Policy.as_is(), _settings(do_sample=True, seed=3))
    b = generate_completions(model, tok, PROMPTS, Policy.as_is(), _settings(do_sample=True, seed=3))
    c = generate_completions(model, tok, PROMPTS, Policy.as_is(), _settings(do_sample=True, seed=4))
    assert a == b and a != c


def test_settings_validation():
    with pytest.raises(ValueError, match="max_new_tokens"):
        GenerationSettings(max_new_tokens=0)
    with pytest.raises(ValueError, match="temperature"):
        GenerationSettings(do_sample=True, temperature=0.0)


class ScriptedGenerator(torch.nn.Module):
    """Generates a fixed continuation per prompt: prompts with "stop" end with EOS after two tokens, prompts
    with "end" with the generation config's second stop id, the others run to max_new_tokens."""

    def __init__(self, tokenizer, other_stop_id: int):
        super().__init__()
        self.tokenizer, self.other_stop_id = tokenizer, other_stop_id
        self.generation_config = type("GenerationConfig", (), {"eos_token_id": [tokenizer.eos_token_id, other_stop_id]})()

    def generate(self, input_ids, attention_mask, max_new_tokens, pad_token_id, **kwargs):
        a, b = self.tokenizer.convert_tokens_to_ids(["a", "b"])
        rows = []
        for ids in input_ids:
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            if "stop" in text:
                new = [a, b, self.tokenizer.eos_token_id] + [pad_token_id] * (max_new_tokens - 3)
            elif "end" in text:
                new = [b, self.other_stop_id] + [pad_token_id] * (max_new_tokens - 2)
            else:
                new = [a] * max_new_tokens
            rows.append(torch.cat([ids, torch.tensor(new)]))
        return torch.stack(rows)


def test_finished_flags_say_which_completions_ended_with_a_stop_token():
    tok = make_char_tokenizer(None)
    other_stop = tok.convert_tokens_to_ids("z")
    prompts = ["please stop", "go on", "the end", "more", "stop now"]
    texts, finished = generate_completions(ScriptedGenerator(tok, other_stop), tok, prompts, Policy.as_is(),
                                           _settings(max_new_tokens=5, batch_size=2), return_finished=True)
    assert finished == [True, False, True, False, True]
    assert texts[0] == "ab" and texts[1] == "aaaaa" and texts[2] == "bz"  # "z" is an ordinary token to the decoder
    assert generate_completions(ScriptedGenerator(tok, other_stop), tok, prompts, Policy.as_is(),
                                _settings(max_new_tokens=5)) == texts  # the default return is the texts alone
