"""The soup interpolation theta(w) = sum_k w_k theta_k (Rewarded Soups, Rame et al. 2023, eq. 2), written once.

Rewarded Soups and ODPO Soups (MO-ODPO paper §4.2) fine-tune one specialist per objective from one
initialisation and, for a weight vector w on the simplex, use the parameters ``theta(w) = sum_k w_k theta_k``,
entry by entry. Used by :class:`moalign.models.soups.SoupModel` (every LoRA matrix and head tensor of the K
specialists, one w at a time; docs/baselines.md, Soups) and by the toy (:mod:`moalign.experiments.toy_soups`,
every MLP parameter, many w at once): the same function, so the toy's figures test the trainer's rule.

The sum is one ``einsum`` in float32 (the specialists' tensors are cast up, the result cast back to their
dtype). At a vertex ``w = e_k`` it is specialist k exactly (``1 * a + 0 * b == a`` in floating point).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["interpolate_parameters"]


def interpolate_parameters(stacked: Mapping[str, torch.Tensor], weights: Any) -> dict[str, torch.Tensor]:
    """``theta(w) = sum_k w_k theta_k`` for every named parameter.

    Args:
        stacked: name -> the K specialists' tensors stacked on a leading dimension, shape ``(K, ...)``.
        weights: ``(K,)`` for one weight vector, or ``(W, K)`` for W of them (array-like).

    Returns:
        name -> ``(...)`` for one weight vector, or ``(W, ...)``, in the specialists' dtype.
    """
    w = torch.as_tensor(weights, dtype=torch.float32)
    single = w.ndim == 1
    w = w[None] if single else w
    if w.ndim != 2:
        raise ValueError(f"weights must have shape (K,) or (W, K), got {tuple(w.shape)}")
    out = {}
    for name, p in stacked.items():
        if p.shape[0] != w.shape[1]:
            raise ValueError(f"need one weight per specialist ({p.shape[0]} for {name!r}), got shape "
                             f"{tuple(w.shape[1:]) if single else tuple(w.shape)}")
        mixed = torch.einsum("wk,k...->w...", w, p.detach().float()).to(p.dtype)
        out[name] = mixed[0] if single else mixed
    return out
