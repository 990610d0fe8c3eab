"""The math of ``moalign.core`` runs in float32 or float64, whatever precision the model ran in.

A trainer calls the core functions (duals, lower bounds, losses, hypervolumes) from inside the bf16
autocast context of its loss computation (:mod:`moalign.precision`). Under autocast a matrix product in
``core`` would silently run in bfloat16 (8 bits of mantissa), and a bf16 log-prob handed in would carry
its rounding into the dual step. :func:`full_precision` makes a core function immune to both: it leaves
every autocast context that is active (CPU, CUDA) for the duration of the call and casts half-precision
floating tensors among the arguments to float32 (float32 and float64 tensors are passed unchanged, so
the call is bit-identical to one made outside any autocast context with float32 inputs). Gradients flow
through the cast to the caller's bf16 tensors as usual.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any, TypeVar

import torch

__all__ = ["full_precision", "is_full_precision"]

F = TypeVar("F", bound=Callable[..., Any])
_HALF = (torch.bfloat16, torch.float16)
_AUTOCAST_DEVICES = ("cpu", "cuda")


def _upcast(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.dtype in _HALF:
        return value.float()
    if isinstance(value, (list, tuple)) and any(isinstance(v, torch.Tensor) and v.dtype in _HALF for v in value):
        return type(value)(_upcast(v) for v in value)
    return value


def full_precision(fn: F) -> F:
    """Decorate a core function so that it runs outside autocast, on float32-or-wider tensors."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with contextlib.ExitStack() as stack:
            for device in _AUTOCAST_DEVICES:
                if torch.is_autocast_enabled(device):
                    stack.enter_context(torch.autocast(device_type=device, enabled=False))
            return fn(*(_upcast(a) for a in args), **{k: _upcast(v) for k, v in kwargs.items()})

    wrapper.full_precision = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def is_full_precision(fn: Any) -> bool:
    """Whether ``fn`` (a function, or a method of a class) was decorated with :func:`full_precision`."""
    return bool(getattr(fn, "full_precision", False))
