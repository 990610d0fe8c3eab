"""Token log-probs of K low-rank heads that share one base projection.

A low-rank head's logits are ``z_k = W_0 h + s_k A_k (B_k h)`` (see
:class:`~moalign.models.heads.LowRankHead`).  Computed head by head, every
head repeats the expensive ``W_0 h`` (``N x d x V`` multiply-adds; for
SmolLM2 ``V = 49152``).  :func:`low_rank_token_logps` computes ``W_0 h`` once
for all heads, in the forward pass and again (recomputed, not stored) in the
backward pass:

forward, per head ``k``:
    ``z_k = Z_0 + s_k (h B_k^T) A_k^T``,
    ``log pi_k(y_t) = z_k[y_t] - logsumexp(z_k)``;

backward, with ``g_k`` the upstream gradient of head ``k``'s token log-probs and
``p_k = softmax(z_k)``:
    ``dz_k = g_k (onehot(y) - p_k)``,
    ``dA_k = s_k dz_k^T (h B_k^T)``,  ``dB_k = s_k (dz_k A_k)^T h``,
    ``dh = (sum_k dz_k) W_0 + sum_k s_k (dz_k A_k) B_k``  -- one ``N x V x d``
    product for all heads instead of one per head.

Only ``hidden``, the targets and one log-sum-exp per head and token are kept
between forward and backward, so the memory is that of per-head activation
checkpointing (a few ``N x V`` buffers at a time, whatever K).  The base
output layer ``W_0`` is frozen (it is the pretrained model's), so no gradient
is returned for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.nn import functional as F

__all__ = ["low_rank_token_logps"]


def _head_logits(base: torch.Tensor, hb: torch.Tensor, a: torch.Tensor, scaling: float) -> torch.Tensor:
    """``base + s A (B h)`` for every row, from ``hb = h B^T``, in at least float32 (a fresh tensor)."""
    logits = torch.addmm(base, hb, a.T, alpha=scaling)
    return logits.to(_accumulation_dtype(logits))


def _accumulation_dtype(t: torch.Tensor) -> torch.dtype:
    """float32 for half/bfloat16 tensors, else the tensor's own dtype (float64 stays float64)."""
    return torch.promote_types(t.dtype, torch.float32)


class _SharedBaseLowRankLogps(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor | None, scalings: tuple[float, ...], *factors: torch.Tensor) -> torch.Tensor:
        base = F.linear(hidden, weight, bias)
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        token_logps, lses = [], []
        for k, scaling in enumerate(scalings):
            logits = _head_logits(base, F.linear(hidden, factors[2 * k + 1]), factors[2 * k], scaling)
            lse = torch.logsumexp(logits, dim=-1)
            token_logps.append(logits[rows, targets] - lse)
            lses.append(lse)
            del logits  # free before the next head's logits exist: peak memory independent of K
        ctx.scalings = scalings
        ctx.has_bias = bias is not None
        ctx.save_for_backward(hidden, targets, weight, bias if bias is not None else hidden.new_empty(0),
                              torch.stack(lses), *factors)
        return torch.stack(token_logps)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        hidden, targets, weight, bias, lses, *factors = ctx.saved_tensors
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        base = F.linear(hidden, weight, bias if ctx.has_bias else None)  # recomputed once for all heads
        acc = _accumulation_dtype(base)
        grad = grad.to(acc)
        dz_sum = torch.zeros(base.shape, dtype=acc, device=base.device)
        dhidden = torch.zeros(hidden.shape, dtype=acc, device=hidden.device)
        factor_grads: list[torch.Tensor | None] = []
        for k, scaling in enumerate(ctx.scalings):
            a, b = factors[2 * k], factors[2 * k + 1]
            hb = F.linear(hidden, b)  # (N, r)
            # dz_k = g_k (onehot - softmax_k), built in place in the softmax buffer
            dz = _head_logits(base, hb, a, scaling).sub_(lses[k].unsqueeze(-1)).exp_()
            dz.mul_(-grad[k].unsqueeze(-1))
            dz[rows, targets] += grad[k]
            dz_sum.add_(dz)
            dz = dz.to(a.dtype)
            dz_a = scaling * (dz @ a)  # (N, r)
            factor_grads.append(scaling * (dz.T @ hb) if ctx.needs_input_grad[5 + 2 * k] else None)
            factor_grads.append(dz_a.T @ hidden if ctx.needs_input_grad[6 + 2 * k] else None)
            dhidden.add_((dz_a @ b).to(acc))
            del dz  # as in forward: at most one head's N x V buffer at a time
        dhidden.add_((dz_sum.to(weight.dtype) @ weight).to(acc))
        dhidden = dhidden.to(hidden.dtype) if ctx.needs_input_grad[0] else None
        return (dhidden, None, None, None, None, *factor_grads)


def low_rank_token_logps(hidden: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor,
                         bias: torch.Tensor | None, factors: Sequence[tuple[torch.Tensor, torch.Tensor]],
                         scalings: Sequence[float]) -> torch.Tensor:
    """Token log-probs ``(K, N)`` of K low-rank heads ``W_0 + s_k A_k B_k`` sharing one ``W_0 h``.

    Args:
        hidden: ``(N, d)`` hidden states that predict ``targets``.
        targets: ``(N,)`` token ids.
        weight, bias: the frozen base output layer ``W_0`` (``V x d``) and its bias.
        factors: per head ``(A_k, B_k)`` with shapes ``(V, r)`` and ``(r, d)``.
        scalings: per head ``s_k = alpha / r``.

    Returns log-probabilities in float32 (float64 for float64 inputs); gradients flow to
    ``hidden`` and the factors.
    """
    if len(factors) != len(scalings) or not factors:
        raise ValueError(f"need one (A, B) pair and one scaling per head, got {len(factors)} and {len(scalings)}")
    if weight.requires_grad or (bias is not None and bias.requires_grad):
        raise ValueError("the shared base output layer must be frozen (requires_grad=False)")
    flat = [t for pair in factors for t in pair]
    scales = tuple(float(s) for s in scalings)
    device = hidden.device.type
    if torch.is_autocast_enabled(device):
        # Autocast does not reach a custom Function's backward (it runs outside the context). Cast the
        # inputs once here, as autocast casts a linear layer's, and run forward and backward on those
        # explicit dtypes with autocast off; gradients flow back through the casts to float32 parameters.
        dtype = torch.get_autocast_dtype(device)
        hidden, weight = hidden.to(dtype), weight.to(dtype)
        bias = bias.to(dtype) if bias is not None else None
        flat = [t.to(dtype) for t in flat]
        with torch.autocast(device_type=device, enabled=False):
            return _SharedBaseLowRankLogps.apply(hidden, targets, weight, bias, scales, *flat)
    return _SharedBaseLowRankLogps.apply(hidden, targets, weight, bias, scales, *flat)
