"""Turning a moalign policy into one plain transformers causal LM: merged LoRA, one merged output layer.

**Heads with reverse-KL steering are one output layer.** MOPO's inference steering (MOPO paper App. A.6,
"Inference code", reverse KL) gives the next-token distribution ``softmax(sum_k w_k log p_k)`` with
``log p_k = z_k - logsumexp(z_k)`` and ``z_k = W_k h + b_k`` the logits of head k on the shared backbone's last
hidden state h. The ``logsumexp`` terms are constants over the vocabulary and cancel in the softmax, so

    softmax(sum_k w_k log p_k) = softmax(sum_k w_k z_k) = softmax((sum_k w_k W_k) h + sum_k w_k b_k),

one linear output layer ``W(w) = sum_k w_k W_k`` with bias ``b(w) = sum_k w_k b_k``. For low-rank heads
``W_k = W_0 + s A_k B_k``, so ``W(w) = (sum_k w_k) W_0 + s sum_k w_k A_k B_k`` -- the base layer plus the
weighted merged deltas (for w on the simplex the base layer keeps weight 1). No condition on ``sum_k w_k`` is
needed for the identity itself (a sum other than 1 is an inverse temperature, in both forms). Forward KL and
the alpha-divergences combine the heads' *probabilities* (``-logsumexp_k(-alpha log p_k + log w_k)``), which
is not linear in the logits: no single output layer computes them, and :func:`merge_multihead` refuses them.

**Tied embeddings.** Many small models share the input embedding and the output layer. The merged output
layer differs from the embedding whenever a head moved, so the exported config unties them
(``tie_word_embeddings = False``) and both matrices are saved.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["merged_head_weight", "merge_multihead", "merge_adapter", "untie_output_layer"]


@torch.no_grad()
def merged_head_weight(output: Any, coefficients: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(sum_k c_k W_k, sum_k c_k b_k)`` of a :class:`~moalign.models.heads.MultiHeadOutput`, in float64.

    Accumulated in float64 so that the only rounding is the final cast to the model's dtype. Heads with
    ``c_k == 0`` are skipped (as steering skips them). A low-rank head's bias is the base layer's.
    """
    if len(coefficients) != output.num_heads:
        raise ValueError(f"{len(coefficients)} coefficients for {output.num_heads} heads")
    base_w = output.base_weight.detach().double()
    base_b = output.base_bias.detach().double() if output.base_bias is not None else None
    weight = torch.zeros_like(base_w)
    bias = torch.zeros_like(base_b) if base_b is not None else None
    for c, head in zip(coefficients, output.heads):
        if c == 0:
            continue
        if output.head_type == "full":
            weight += c * head.weight.detach().double()
            if bias is not None:
                bias += c * head.bias.detach().double()
        else:
            a, b = head.factors()
            weight += c * (base_w + head.scaling * (a.detach().double() @ b.detach().double()))
            if bias is not None:
                bias += c * base_b
    return weight, bias


def untie_output_layer(causal_lm: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    """Give ``causal_lm`` a fresh ``nn.Linear`` output layer holding ``weight``/``bias``; untie it in the config."""
    old = causal_lm.get_output_embeddings()
    dtype = old.base_weight.dtype if hasattr(old, "base_weight") else old.weight.dtype
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, dtype=dtype, device=weight.device)
    with torch.no_grad():
        layer.weight.copy_(weight.to(dtype))
        if bias is not None:
            layer.bias.copy_(bias.to(dtype))
    layer.requires_grad_(False)
    causal_lm.set_output_embeddings(layer)
    configs = [causal_lm.config]
    if hasattr(causal_lm.config, "get_text_config"):
        configs.append(causal_lm.config.get_text_config())
    for config in configs:
        if getattr(config, "tie_word_embeddings", False):
            config.tie_word_embeddings = False


def merge_adapter(model: nn.Module) -> nn.Module:
    """The plain transformers model of a PEFT model with its active LoRA adapter merged into the weights."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        return model.merge_and_unload()
    return model


def merge_multihead(model: Any, coefficients: Sequence[float], divergence: str = "reverse_kl") -> nn.Module:
    """A plain causal LM computing ``model``'s heads combined with ``coefficients`` (module docstring).

    ``model`` is a :class:`~moalign.models.MultiHeadCausalLM`; it is consumed (its LoRA adapter is merged in
    place). One-hot coefficients give that head exactly, whatever the divergence; any other combination must
    be reverse KL.
    """
    from moalign.models.steering import parse_divergence

    coefficients = [float(c) for c in coefficients]
    one_hot = sum(c > 0 for c in coefficients) == 1
    if not one_hot and parse_divergence(divergence).kind != "reverse_kl":
        raise ValueError(
            f"cannot export steering with divergence {divergence!r}: forward-KL and alpha-divergence steering mix the "
            "heads' probabilities (-logsumexp_k(-alpha log p_k + log w_k)), which is not a linear function of the "
            "logits, so no single transformers model computes it. Export with --divergence reverse_kl (one merged "
            "output layer, exact), or use `moalign generate` with this divergence")
    weight, bias = merged_head_weight(model.output, coefficients)
    causal_lm = merge_adapter(model.model)
    untie_output_layer(causal_lm, weight, bias)
    return causal_lm.eval()
