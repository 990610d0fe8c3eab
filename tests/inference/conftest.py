"""Trained-looking folders of every policy family, built in a second from the tiny Llama (no training).

Each folder has exactly the layout its trainer writes (saved MultiHeadCausalLM + ``<method>_state.pt``, a soup
folder, a conditioning file), with *random* LoRA and head weights so that the heads differ from each other and
from the base model -- an untrained folder (zero LoRA B, zero head B) would make every exactness check trivial.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from peft import LoraConfig

from moalign.models import MultiHeadCausalLM, MultiHeadConfig
from moalign.models.loading import load_base_model
from moalign.models.testing import make_tiny_llama_and_tokenizer, make_tiny_tokenizer

OBJECTIVES = ["helpful", "short"]




def randomise(module: torch.nn.Module, seed: int, scale: float = 0.1) -> None:
    """Draw every LoRA factor and head parameter at random (std ``scale``; full heads: base + noise)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "lora_" in name or name.endswith((".A", ".B")):
                p.copy_(torch.randn(p.shape, generator=g) * scale)
            elif ".heads." in name or name.startswith("heads."):
                p.add_(torch.randn(p.shape, generator=g) * scale)


def save_multihead(directory: Path, base_dir: Path, head_names: list[str], method: str, seed: int,
                   head_type: str = "low_rank", objectives: list[str] = OBJECTIVES, chat: bool = True) -> Path:
    """A randomised MultiHeadCausalLM on the saved tiny base, saved as ``moalign train <method>`` saves it."""
    model = MultiHeadCausalLM(load_base_model(str(base_dir)),
                              MultiHeadConfig(num_heads=len(head_names), head_names=head_names, head_type=head_type,
                                              head_rank=4),
                              lora_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"]))
    randomise(model, seed)
    model.save_pretrained(directory)
    tokenizer = make_tiny_tokenizer()
    if not chat:
        tokenizer.chat_template = None
    tokenizer.save_pretrained(directory)
    torch.save({"method": method, "objectives": list(objectives)}, directory / f"{method}_state.pt")
    return directory


#: the tiny Llama's weights (std 0.5) times this: std 0.2, next-token logits of magnitude ~10 as in real LMs. At
#: std 0.5 (logits ~20) the model's own float32 rounding (vs float64) is ~2.5e-5, above the 1e-5 the float32
#: exactness check asks for, whatever the export does; the float64 checks also run on that scale.
BASE_WEIGHT_SCALE = 0.4


def save_base(directory: Path, scale: float = BASE_WEIGHT_SCALE) -> Path:
    """The tiny Llama with its matrices scaled by ``scale``, and the tiny tokenizer, saved to ``directory``."""
    base, tokenizer = make_tiny_llama_and_tokenizer()
    with torch.no_grad():
        for p in base.parameters():
            if p.dim() >= 2:
                p.mul_(scale)
    base.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def save_adapter(directory: Path, base_dir: Path, seed: int) -> Path:
    """A randomised LoRA adapter on the saved tiny base in PEFT's folder format, with the tokenizer."""
    from peft import get_peft_model

    model = get_peft_model(load_base_model(str(base_dir)), LoraConfig(r=4, lora_alpha=8,
                                                                       target_modules=["q_proj", "v_proj"]))
    randomise(model, seed)
    model.save_pretrained(directory)
    make_tiny_tokenizer().save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    return save_base(tmp_path_factory.mktemp("base") / "tiny")


@pytest.fixture(scope="session")
def folders(tmp_path_factory, tiny_base) -> dict[str, Path]:
    """One folder per policy family (and head type): name -> path."""
    root = tmp_path_factory.mktemp("trained")
    out = {
        "mopo_low_rank": save_multihead(root / "mopo_lr", tiny_base, OBJECTIVES, "mopo", 1),
        "mopo_full": save_multihead(root / "mopo_full", tiny_base, OBJECTIVES, "mopo", 2, head_type="full"),
        "sca": save_multihead(root / "sca", tiny_base, ["w_0_1", "w_0.5_0.5", "w_1_0"], "sca", 3),
        "mo_odpo": save_multihead(root / "mo_odpo", tiny_base, ["policy"], "mo_odpo", 4),
        "ric": save_multihead(root / "ric", tiny_base, ["ric"], "ric", 5),
    }
    from moalign.data.conditioning import ConditioningSpec

    (out["mo_odpo"] / "mo_odpo_conditioning.json").write_text(json.dumps(
        {**ConditioningSpec(tuple(OBJECTIVES), as_chat=True).to_dict(), "condition_prompt": True}))
    from moalign.methods.ric.trainer import RewardConditioner

    scores = np.random.default_rng(0).normal(size=(20, 2))
    (out["ric"] / "ric_conditioning.json").write_text(json.dumps(RewardConditioner.fit(scores, OBJECTIVES).to_dict()))

    soup = root / "soup"
    specialists = [save_multihead(soup / "specialists" / n, tiny_base, ["policy"], "mo_odpo", 10 + k)
                   for k, n in enumerate(OBJECTIVES)]
    from moalign.models.soups import save_soup_config

    save_soup_config(soup, specialists, OBJECTIVES, str(tiny_base), "linear", method="odpo_soups")
    make_tiny_tokenizer().save_pretrained(soup)
    out["soup"] = soup

    rs = root / "rewarded_soups"  # PEFT adapter specialists (as TRL's GRPO saves them), no heads
    peft_specialists = [save_adapter(rs / "specialists" / n, tiny_base, 30 + k) for k, n in enumerate(OBJECTIVES)]
    save_soup_config(rs, peft_specialists, OBJECTIVES, str(tiny_base), "linear", method="rewarded_soups")
    make_tiny_tokenizer().save_pretrained(rs)
    out["rewarded_soups"] = rs

    # P-MORL trained on raw text (use_chat_template false): the block is written into the prompt text
    out["p_morl"] = save_adapter(root / "p_morl", tiny_base, 40)
    (out["p_morl"] / "p_morl_conditioning.json").write_text(json.dumps(
        {**ConditioningSpec(tuple(OBJECTIVES), as_chat=False).to_dict(), "normalizer": None}))

    modpo = root / "modpo"
    for k, w in enumerate((0.8, 0.2)):
        save_multihead(modpo / f"model_w{w:g}", tiny_base, [f"modpo_w_{w:g}_{1 - w:g}"], "modpo", 20 + k)
    out["modpo"] = modpo
    return out
