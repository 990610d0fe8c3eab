"""A prompt batch read once and shared by a multi-head model's head and steering policies."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig

from moalign.eval.generate import GenerationSettings, generate_completions
from moalign.eval.policies import Policy, head_policies, steering_policies
from moalign.eval.prompt_cache import SharedPromptCache
from moalign.models import MultiHeadCausalLM, MultiHeadConfig
from moalign.models.testing import make_tiny_llama_and_tokenizer

PROMPTS = ["tell me a story", "why is the sun big", "hello", "what is a good cat name please", "say yes"]


@pytest.fixture(scope="module")
def model_and_tokenizer():
    torch.manual_seed(0)
    base, tokenizer = make_tiny_llama_and_tokenizer()
    model = MultiHeadCausalLM(base, MultiHeadConfig(num_heads=2, head_type="full"),
                              lora_config=LoraConfig(r=4, lora_alpha=8, init_lora_weights=False)).eval()
    with torch.no_grad():  # heads that differ, so that every steering weight writes its own answers
        for head in model.output.heads:
            head.weight.add_(torch.randn_like(head.weight) * 0.5)
    return model, tokenizer


def _settings(precision: str = "fp32") -> GenerationSettings:
    return GenerationSettings(max_new_tokens=8, batch_size=2, precision=precision, progress=False,
                              use_chat_template=False)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_shared_prompt_cache_writes_what_plain_generation_writes(model_and_tokenizer, precision):
    model, tokenizer = model_and_tokenizer
    policies = steering_policies(2, steps=4, divergence="forward_kl") + head_policies(2)
    cache = SharedPromptCache()
    plain = [generate_completions(model, tokenizer, PROMPTS, p, _settings(precision)) for p in policies]
    shared = [generate_completions(model, tokenizer, PROMPTS, p, _settings(precision), prompt_cache=cache)
              for p in policies]
    assert shared == plain
    assert len({tuple(answers) for answers in plain}) > 2  # the policies do differ
    batches = 3  # 5 prompts, batch size 2
    assert (cache.stored, cache.reused) == (batches, batches * (len(policies) - 1))


def test_later_policies_read_only_the_last_prompt_token(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    widths: list[int] = []
    embed = model.model.get_input_embeddings()
    hook = embed.register_forward_hook(lambda module, args, out: widths.append(args[0].shape[1]))
    try:
        cache = SharedPromptCache()
        settings = GenerationSettings(max_new_tokens=3, batch_size=8, precision="fp32", progress=False,
                                      use_chat_template=False)
        generate_completions(model, tokenizer, PROMPTS, Policy.steered([1.0, 0.0]), settings, prompt_cache=cache)
        first = list(widths)
        widths.clear()
        generate_completions(model, tokenizer, PROMPTS, Policy.steered([0.0, 1.0]), settings, prompt_cache=cache)
    finally:
        hook.remove()
    prompt_length = max(len(tokenizer(p)["input_ids"]) for p in PROMPTS)
    # first policy: the prompt but its last token once, then generate reads that token and decodes
    assert first[0] == prompt_length - 1 and first[1] == 1
    # second policy: no prompt reading at all, only the last prompt token and the decoding steps
    assert widths and max(widths) == 1


def test_other_policies_and_models_generate_as_usual(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    cache = SharedPromptCache()
    # the base policy reads prompts with the adapter off: another backbone, never shared
    generate_completions(model, tokenizer, PROMPTS, Policy.base(), _settings(), prompt_cache=cache)
    assert (cache.stored, cache.reused) == (0, 0)
    # a model that does not declare heads sharing its backbone is called as it is
    assert not SharedPromptCache.shares(model.model, Policy.steered([0.5, 0.5]))
    assert SharedPromptCache.shares(model, Policy.steered([0.5, 0.5]))
    assert not SharedPromptCache.shares(model, Policy.as_is())
