"""The compute precision of every model pass: ``auto``, ``fp32`` or ``bf16``.

One setting, ``precision``, chooses how the language model's forward passes run in training,
generation and evaluation:

* ``fp32`` — everything in float32, as PyTorch does by default;
* ``bf16`` — forward passes under ``torch.autocast(device, dtype=torch.bfloat16)``: matrix products
  and the layers autocast lists run in bfloat16, reductions such as ``log_softmax`` stay in float32,
  and the **master weights stay float32** (autocast casts on the fly; the optimizer sees float32);
* ``auto`` (the default everywhere) — ``bf16`` where the device computes it natively and ``fp32``
  elsewhere. Natively means: a CPU that reports bfloat16 instructions (``avx512_bf16`` or AMX tiles;
  without them bf16 matmuls are emulated and slower than float32) or a CUDA device with bf16 support.

Why autocast and not ``TrainingArguments(bf16=True)``: with transformers 5 the Trainer leaves autocast
to accelerate, which wraps only ``model.forward``. moalign's trainers also run the snapshot and reference
log-probs (``sequence_logps`` on the unwrapped model) and generate on-policy samples outside that
forward; the Trainer's flag would leave those in float32. moalign's trainers therefore enter one
autocast context around the whole loss computation (:meth:`MultiObjectiveTrainer.autocast_smart_context_manager`),
and generation enters the same context; ``tests/test_precision.py`` checks that every forward pass sees it.

The math of :mod:`moalign.core` never runs in bfloat16, whatever the model's precision
(:func:`moalign.core.precision.full_precision`). This module imports torch only.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["MERGE_LORA_ENV", "PRECISIONS", "generation_autocast", "merge_lora_default", "native_bf16",
           "resolve_precision", "precision_autocast", "validate_precision"]

PRECISIONS = ("auto", "fp32", "bf16")
#: environment variable that turns generation's LoRA merging on (1) or off (0); unset: on a CPU only
MERGE_LORA_ENV = "MOALIGN_MERGE_LORA"


def _cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), as torch's own dispatch checks it."""
    cpu = torch.cpu
    checks: list[Callable[[], bool]] = [getattr(cpu, name) for name in ("_is_avx512_bf16_supported",
                                                                        "_is_amx_tile_supported")
                                        if hasattr(cpu, name)]
    return any(bool(check()) for check in checks)


def native_bf16(device: torch.device | str | None = None) -> bool:
    """Whether ``device`` (default: the CPU) computes bfloat16 natively.

    CPU: the processor reports AVX512-BF16 or AMX instructions. CUDA: ``torch.cuda.is_bf16_supported()``
    without emulation. Other devices (MPS, XLA): False — ``auto`` keeps float32 there.
    """
    device = torch.device(device if device is not None else "cpu")
    if device.type == "cpu":
        return _cpu_has_native_bf16()
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False))
    return False


def validate_precision(precision: str) -> str:
    """``precision`` itself if it is one of :data:`PRECISIONS`; otherwise a ValueError naming the choices."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    return precision


def resolve_precision(precision: str, device: torch.device | str | None = None) -> str:
    """``"bf16"`` or ``"fp32"``: what ``precision`` means on ``device`` (``auto`` asks :func:`native_bf16`).

    ``bf16`` asked explicitly on a device without native support is honoured (autocast emulates it, slowly);
    only ``auto`` looks at the hardware.
    """
    validate_precision(precision)
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def precision_autocast(precision: str, device: torch.device | str | None = None) -> Any:
    """The context every model pass of ``precision`` runs in: bf16 autocast on ``device``, or a no-op for fp32.

    ``precision`` may be ``auto``; it is resolved for ``device`` first.
    """
    device = torch.device(device if device is not None else "cpu")
    if resolve_precision(precision, device) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def merge_lora_default(device: torch.device) -> bool:
    """Whether generation merges LoRA layers (:func:`generation_autocast`): ``MOALIGN_MERGE_LORA`` (1 or 0) when
    set, else on a CPU."""
    value = os.environ.get(MERGE_LORA_ENV)
    if value is None or value == "":
        return device.type == "cpu"
    if value not in ("0", "1"):
        raise ValueError(f"{MERGE_LORA_ENV} must be 1 or 0, got {value!r}")
    return value == "1"


@contextlib.contextmanager
def generation_autocast(precision: str, model: Any, device: torch.device | str | None = None,
                        merge_lora: bool | None = None) -> Any:
    """:func:`precision_autocast` for generation: every frozen weight of ``model`` is cast to bf16 once per
    context instead of once per decoding step, and (``merge_lora``) LoRA layers compute with their merged weight.

    Why the casts: autocast keeps its bf16 copy of a float32 weight for the rest of the context only when the
    weight is a leaf that *requires grad* (PyTorch's autocast cache rule); a frozen weight -- the base model
    under a LoRA adapter, any model loaded for inference -- is cast again by every operation that uses it.
    Generation runs the same weights once per new token, so those casts took half of a bf16 ``generate``
    of SmolLM2 with frozen weights (profile: ``aten::_to_copy`` 1245 of 2448 ms; 48 ms when the weights
    require grad; ``benchmarks/bench_generation.py``). Inside ``torch.no_grad()`` no graph is built
    whatever ``requires_grad`` says, so this context marks the frozen float32 weights as requiring grad
    for its duration and restores them after: the numbers are the same (the same casts, made once),
    only faster. Every model pass inside must run without grad -- it is entered under ``torch.no_grad()``
    and refuses otherwise.

    ``merge_lora``: :func:`moalign.models.lora_merge.merged_lora` in the compute dtype -- one product per
    adapted layer instead of three; the stored weights are untouched, outputs agree to rounding (not bit for
    bit), and LoRA dropout is not applied inside. Default: the environment variable ``MOALIGN_MERGE_LORA``
    (``1`` / ``0``) when set, else on a CPU only (on a GPU the unmerged products cost little, and the merged
    copy of the adapted weights would take accelerator memory).
    """
    from moalign.models.lora_merge import merged_lora

    resolved = resolve_precision(precision, device)
    device = torch.device(device if device is not None else "cpu")
    merge = merge_lora_default(device) if merge_lora is None else merge_lora
    merging = merged_lora(model, torch.bfloat16 if resolved == "bf16" else None) if merge \
        else contextlib.nullcontext()
    if resolved == "fp32":
        with merging:
            yield
        return
    if torch.is_grad_enabled():
        raise RuntimeError("generation_autocast marks frozen weights as requiring grad; enter it under "
                           "torch.no_grad() so that no graph is built")
    frozen = [p for p in model.parameters() if not p.requires_grad and p.is_leaf and p.dtype == torch.float32]
    for p in frozen:
        p.requires_grad_(True)
    try:
        with precision_autocast(precision, device), merging:
            yield
    finally:
        for p in frozen:
            p.requires_grad_(False)
