"""Soups: w = e_1 gives specialist 1 exactly; 'cat' merges to sum_k w_k s B_k A_k, 'linear' to s B(w) A(w);
MultiHeadCausalLM specialists (heads souped too); bad weights are rejected; a soup folder round-trips."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file

from moalign.models import MultiHeadCausalLM, MultiHeadConfig
from moalign.models.soups import SoupModel, save_soup_config
from moalign.models.testing import make_tiny_llama

MODULE = "base_model.model.model.layers.0.self_attn.q_proj"
IDS = torch.tensor([[1, 5, 9, 12, 7, 30]])


def _randomise(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "lora_" in name or name.endswith(".A") or name.endswith(".B"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)


@pytest.fixture(scope="module")
def peft_specialists(tmp_path_factory):
    root = tmp_path_factory.mktemp("soups")
    dirs = []
    for k in range(2):
        model = get_peft_model(make_tiny_llama(), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
        _randomise(model, seed=10 + k)
        model.save_pretrained(root / f"spec{k}")
        dirs.append(root / f"spec{k}")
    return dirs


@pytest.fixture(scope="module")
def multihead_specialists(tmp_path_factory):
    root = tmp_path_factory.mktemp("soups_mh")
    dirs = []
    for k in range(2):
        model = MultiHeadCausalLM(make_tiny_llama(), MultiHeadConfig(num_heads=1, head_rank=2),
                                  lora_config=LoraConfig(r=4, target_modules=["q_proj"]))
        _randomise(model, seed=20 + k)
        model.save_pretrained(root / f"mh{k}")
        dirs.append(root / f"mh{k}")
    return dirs


def _logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS).logits


@pytest.mark.parametrize("interpolation", ["linear", "cat"])
def test_vertex_is_the_specialist(peft_specialists, interpolation):
    soup = SoupModel(make_tiny_llama(), peft_specialists, interpolation=interpolation)
    for k in range(2):
        specialist = PeftModel.from_pretrained(make_tiny_llama(), str(peft_specialists[k])).eval()
        with soup.weighted_policy([1.0 - k, float(k)]):
            assert torch.allclose(_logits(soup), _logits(specialist), atol=1e-5)
    with soup.disable_adapter():
        assert torch.allclose(_logits(soup), _logits(make_tiny_llama()), atol=1e-6)


def _factors(directory) -> tuple[torch.Tensor, torch.Tensor]:
    state = load_file(str(directory / "adapter_model.safetensors"))
    a = next(v for k, v in state.items() if "layers.0.self_attn.q_proj.lora_A" in k)
    b = next(v for k, v in state.items() if "layers.0.self_attn.q_proj.lora_B" in k)
    return a, b


def test_cat_is_the_weighted_sum_of_updates_and_linear_mixes_factors(peft_specialists):
    w = [0.3, 0.7]
    (a0, b0), (a1, b1) = (_factors(d) for d in peft_specialists)
    scaling = 8 / 4
    cat = SoupModel(make_tiny_llama(), peft_specialists, interpolation="cat")
    with cat.weighted_policy(w):
        delta = cat.merged_delta(MODULE)
    expected = scaling * (w[0] * b0 @ a0 + w[1] * b1 @ a1)
    assert torch.allclose(delta, expected, atol=1e-6)
    linear = SoupModel(make_tiny_llama(), peft_specialists)
    with linear.weighted_policy(w):
        mixed = linear.merged_delta(MODULE)
    assert torch.allclose(mixed, scaling * (w[0] * b0 + w[1] * b1) @ (w[0] * a0 + w[1] * a1), atol=1e-6)
    assert not torch.allclose(mixed, expected, atol=1e-4)  # the two rules differ off the vertices


@pytest.mark.parametrize("interpolation", ["linear", "cat"])
def test_multihead_specialists_vertex_and_heads(multihead_specialists, interpolation):
    soup = SoupModel(make_tiny_llama(), multihead_specialists, interpolation=interpolation)
    for k in range(2):
        specialist = MultiHeadCausalLM.from_pretrained(multihead_specialists[k], base_model=make_tiny_llama(),
                                                       is_trainable=False)
        with soup.weighted_policy([1.0 - k, float(k)]):
            assert torch.allclose(_logits(soup), _logits(specialist), atol=1e-4)
    heads = [load_file(str(d / "heads.safetensors")) for d in multihead_specialists]
    with soup.weighted_policy([0.5, 0.5]):
        soup(input_ids=IDS)
        weight = soup.peft.get_output_embeddings().weight
        base = make_tiny_llama().get_output_embeddings().weight
        a = [h["0.A"] for h in heads]
        b = [h["0.B"] for h in heads]
        if interpolation == "cat":
            expected = base + 0.5 * (a[0] @ b[0]) + 0.5 * (a[1] @ b[1])
        else:
            expected = base + (0.5 * a[0] + 0.5 * a[1]) @ (0.5 * b[0] + 0.5 * b[1])
        assert torch.allclose(weight, expected, atol=1e-5)


@pytest.mark.parametrize("weights, message", [
    ([0.5, 0.6], "sum to 1"), ([1.0], "soup weights"), ([-0.5, 1.5], "negative"), ([float("nan"), 1.0], "finite"),
])
def test_bad_weights_are_rejected(peft_specialists, weights, message):
    soup = SoupModel(make_tiny_llama(), peft_specialists)
    with pytest.raises(ValueError, match=message):
        with soup.weighted_policy(weights):
            pass


def test_soup_folder_round_trip_and_errors(peft_specialists, tmp_path):
    save_soup_config(tmp_path / "soup", peft_specialists, ["a", "b"], None, interpolation="cat")
    soup = SoupModel.from_pretrained(tmp_path / "soup", base_model=make_tiny_llama())
    assert soup.interpolation == "cat" and soup.objectives == ["a", "b"]
    with pytest.raises(ValueError, match="at least 2"):
        SoupModel(make_tiny_llama(), peft_specialists[:1])
    with pytest.raises(FileNotFoundError, match="not a specialist"):
        SoupModel(make_tiny_llama(), [peft_specialists[0], tmp_path])
    with pytest.raises(ValueError, match="interpolation"):
        SoupModel(make_tiny_llama(), peft_specialists, interpolation="svd")
