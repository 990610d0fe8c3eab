"""LoRA layers that compute with their merged weight while generating, without touching the stored weights.

A PEFT LoRA linear layer computes ``W x + s B (A x)``: three matrix products, two of them tiny, plus PEFT's
Python dispatch, at every layer and every new token. On a CPU that overhead is a large share of generation
(plain ``generate`` of SmolLM2-135M with LoRA r16 on every linear layer: 48 tokens/s at batch 4 against 78
without the adapter; docs/baselines.md). Generating with the merged weight ``W + s B A`` computes the same
function with one product.

PEFT's own ``merge_adapter()`` / ``unmerge_adapter()`` add and subtract ``s B A`` in place: the base weight
after a round trip differs from the stored one by rounding, a drift that accumulates over the thousands of
generations of a training run and that the reference model (the adapter disabled) would see. Here the
merged weight is a separate tensor in the compute dtype, and the layer's forward uses it only inside the
context and while its adapter is active; the stored weights are never written. Each layer keeps its last merged
weight and makes it again only when a tensor it is made from has changed, so the price is one copy of the
adapted weights, kept between generations (half the model's linear weights in bf16).

Outputs agree with the unmerged layer to rounding (a sum taken in another order), not bit for bit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F


def _mergeable(module: Any) -> bool:
    """A PEFT LoRA ``Linear`` computing vanilla LoRA (no DoRA or other variant) with its adapter on, not merged in
    place."""
    try:
        from peft.tuners.lora.layer import Linear as LoraLinear
    except ImportError:  # pragma: no cover - peft is a dependency
        return False
    if not isinstance(module, LoraLinear) or module.merged or module.disable_adapters:
        return False  # merged in place already, or the adapter is off for this context (a reference pass)
    active = [a for a in module.active_adapters if a in module.lora_A]
    return bool(active) and not any(a in getattr(module, "lora_variant", {}) for a in active) \
        and not getattr(module, "fan_in_fan_out", False)


def _merged_forward(module: Any, weight: torch.Tensor, original: Any) -> Any:
    """``module``'s forward with ``weight`` while its adapter is enabled; the original forward otherwise (the
    adapter disabled for a reference pass, or a mixed-adapter batch)."""

    def forward(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if module.disable_adapters or args or kwargs:
            return original(x, *args, **kwargs)
        bias = module.base_layer.bias
        if bias is not None and bias.dtype != weight.dtype:
            bias = bias.to(weight.dtype)
        out = F.linear(x.to(weight.dtype), weight, bias)
        return out if torch.is_autocast_enabled(x.device.type) else out.to(x.dtype)

    return forward


#: attribute of a LoRA layer holding its last merged weight and what it was made from
_CACHE = "_moalign_merged_weight"


def _sources(module: Any, dtype: torch.dtype) -> tuple:
    """What a merged weight is made from: the parameter objects themselves with their in-place version counters
    (an optimizer step or a loaded state bumps them), the scalings and the dtype."""
    tensors = [module.base_layer.weight]
    scalings = []
    for adapter in module.active_adapters:
        if adapter in module.lora_A:
            tensors += [module.lora_A[adapter].weight, module.lora_B[adapter].weight]
            scalings.append((adapter, module.scaling[adapter]))
    return tuple(tensors), tuple(t._version for t in tensors), tuple(scalings), dtype


def _merged_weight(module: Any, dtype: torch.dtype) -> torch.Tensor:
    """``W + sum_a s_a B_a A_a`` in ``dtype``, reused while nothing it is made from has changed.

    Evaluating a model at several weights enters one context per weight; the adapter is the same each time,
    so its merged weight is made once. The cache holds the source tensors themselves, so a match is by
    identity, never by a recycled address.
    """
    tensors, versions, scalings, _ = key = _sources(module, dtype)
    cached = getattr(module, _CACHE, None)
    if cached is not None:
        (old_tensors, old_versions, old_scalings, old_dtype), weight = cached
        if len(old_tensors) == len(tensors) and all(a is b for a, b in zip(old_tensors, tensors)) \
                and (old_versions, old_scalings, old_dtype) == (versions, scalings, dtype):
            return weight
    merged = module.base_layer.weight.detach().float().clone()
    for adapter, _ in scalings:
        merged += module.get_delta_weight(adapter).float()
    weight = merged.to(dtype)
    setattr(module, _CACHE, (key, weight))
    return weight


@contextlib.contextmanager
def merged_lora(model: Any, dtype: torch.dtype | None = None) -> Iterator[int]:
    """Within the context, every active vanilla LoRA linear layer of ``model`` computes ``x (W + s B A)^T``
    with the merged weight, in ``dtype`` (default: the base weight's). Yields the number of layers merged
    (0: nothing to merge, nothing changed).

    Meant for passes without grad (generation): the merged weight is a constant. The adapter's weights must
    not change inside the context. Each layer keeps its last merged weight for the next context (one copy of
    the adapted weights stays in memory) and makes it again only when a weight it is made from has changed.
    """
    patched: list[tuple[Any, Any]] = []
    try:
        with torch.no_grad():
            for module in model.modules():
                if not _mergeable(module):
                    continue
                merged = _merged_weight(module, dtype or module.base_layer.weight.dtype)
                patched.append((module, module.__dict__.get("forward")))
                module.forward = _merged_forward(module, merged, module.forward)
        yield len(patched)
    finally:
        for module, instance_forward in reversed(patched):
            if instance_forward is None:
                del module.forward
            else:
                module.forward = instance_forward
