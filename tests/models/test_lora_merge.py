"""``merged_lora``: each adapted layer computes x (W + s B A)^T (checked against the product written out by
hand from the layer's own A, B and scaling), the stored weights are untouched, a disabled adapter and
DoRA layers keep PEFT's own forward, and greedy generation through ``generate_completions`` is unchanged
in float32 on a tiny model."""

from __future__ import annotations

import contextlib

import torch
from peft import LoraConfig, get_peft_model

from moalign.models.lora_merge import merged_lora
from moalign.models.testing import make_tiny_llama_and_tokenizer


def _adapted(seed: int = 0, **lora: object):
    torch.manual_seed(seed)
    base, tokenizer = make_tiny_llama_and_tokenizer()
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear",
                                            init_lora_weights=False, **lora))  # B != 0: the adapter matters
    return model.eval(), tokenizer


def test_each_layer_computes_the_merged_product_and_the_stored_weights_stay():
    model, _ = _adapted()
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    stored = {n: p.detach().clone() for n, p in model.named_parameters()}
    x = torch.randn(3, layer.in_features, generator=torch.Generator().manual_seed(1))
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    by_hand = x.double() @ (layer.base_layer.weight.double() + layer.scaling["default"] * (b.double() @ a.double())).T
    with torch.no_grad():
        unmerged = layer(x)
        with merged_lora(model) as count:
            merged = layer(x)
            with model.disable_adapter():
                disabled = layer(x)
    assert count == len([m for m in model.modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer")])
    assert count > 0
    torch.testing.assert_close(merged.double(), by_hand, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(merged, unmerged, rtol=1e-5, atol=1e-5)
    assert not torch.equal(merged, disabled)
    torch.testing.assert_close(disabled, x @ layer.base_layer.weight.T)  # the adapter off: the base layer
    assert all(torch.equal(p, stored[n]) for n, p in model.named_parameters())  # nothing written
    assert "forward" not in vars(layer)  # the class's forward is back
    with torch.no_grad():
        torch.testing.assert_close(layer(x), unmerged, rtol=0, atol=0)
    with model.disable_adapter(), merged_lora(model) as merged_off:
        assert merged_off == 0  # entered with the adapter off (a base-model policy): nothing to merge


def test_bf16_merged_weight_and_dora_layers_left_alone():
    model, _ = _adapted()
    layer = model.base_model.model.model.layers[0].mlp.down_proj
    x = torch.randn(2, layer.in_features, generator=torch.Generator().manual_seed(2))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        reference = layer(x).float()
        with merged_lora(model, torch.bfloat16):
            merged = layer(x)
    assert merged.dtype == torch.bfloat16
    torch.testing.assert_close(merged.float(), reference, rtol=0.05, atol=0.05)  # bf16 rounding
    dora, _ = _adapted(use_dora=True)
    with merged_lora(dora) as count:
        assert count == 0


def test_generation_merges_on_cpu_and_greedy_tokens_are_unchanged_in_float32(monkeypatch):
    import moalign.models.lora_merge as lora_merge
    import moalign.precision as precision
    from moalign.eval.generate import GenerationSettings, generate_completions
    from moalign.eval.policies import Policy

    model, tokenizer = _adapted(seed=3)
    prompts = ["hello there", "a b c d", "tell me", "x"]
    settings = GenerationSettings(max_new_tokens=6, batch_size=4, use_chat_template=False, progress=False,
                                  precision="fp32")
    merged_counts = []
    real = lora_merge.merged_lora

    @contextlib.contextmanager
    def spy(*args, **kwargs):
        with real(*args, **kwargs) as count:
            merged_counts.append(count)
            yield count

    monkeypatch.setattr(lora_merge, "merged_lora", spy)
    merged = generate_completions(model, tokenizer, prompts, Policy.as_is("policy"), settings)
    assert merged_counts and merged_counts[0] > 0  # the default path merged every adapted layer
    monkeypatch.setattr(lora_merge, "merged_lora", real)
    unmerged_context = precision.generation_autocast
    monkeypatch.setattr("moalign.eval.generate.generation_autocast",
                        lambda p, m, d=None: unmerged_context(p, m, d, merge_lora=False))
    plain = generate_completions(model, tokenizer, prompts, Policy.as_is("policy"), settings)
    assert merged == plain


def test_merge_default_reads_the_environment_and_refuses_other_values(monkeypatch):
    import pytest

    from moalign.precision import MERGE_LORA_ENV, merge_lora_default

    monkeypatch.delenv(MERGE_LORA_ENV, raising=False)
    assert merge_lora_default(torch.device("cpu")) and not merge_lora_default(torch.device("cuda"))
    monkeypatch.setenv(MERGE_LORA_ENV, "0")
    assert not merge_lora_default(torch.device("cpu"))
    monkeypatch.setenv(MERGE_LORA_ENV, "1")
    assert merge_lora_default(torch.device("cuda"))
    monkeypatch.setenv(MERGE_LORA_ENV, "yes")
    with pytest.raises(ValueError, match="MOALIGN_MERGE_LORA must be 1 or 0"):
        merge_lora_default(torch.device("cpu"))


def test_merged_weight_is_reused_until_a_source_weight_changes():
    model, _ = _adapted()
    layer = model.base_model.model.model.layers[1].self_attn.v_proj
    x = torch.randn(2, layer.in_features, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        with merged_lora(model):
            first = layer(x)
        cached = vars(layer)["_moalign_merged_weight"][1]
        with merged_lora(model):
            assert vars(layer)["_moalign_merged_weight"][1] is cached  # nothing changed: made once
        layer.lora_B["default"].weight.mul_(2.0)  # an in-place update, as an optimizer step makes
        with merged_lora(model):
            second = layer(x)
            assert vars(layer)["_moalign_merged_weight"][1] is not cached
        with merged_lora(model, torch.bfloat16):  # another dtype: another merged weight
            assert vars(layer)["_moalign_merged_weight"][1].dtype == torch.bfloat16
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    expected = x @ (layer.base_layer.weight + layer.scaling["default"] * b @ a).T
    torch.testing.assert_close(second, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(first, second)
