"""Steering: combine the log-probabilities of K policy heads with user weights.

MOPO trains one policy head per primary objective on a shared backbone
(MOPO paper App. A.6, Figure 10).  At inference a user either
picks one head or *steers* with a weight vector ``w`` by combining the heads'
next-token log-probabilities ``log p_k`` (docs/design.md, MOPO 8,
heads and steering).  The combination follows the paper's inference code ``f_divergence``:

* reverse KL (``"reverse_kl"``; the paper also maps ``"jsd"`` here):
  ``s = sum_k w_k log p_k``  -- a weighted geometric mean of the heads;
* forward KL (``"forward_kl"``, alpha = 1) and alpha-divergence
  (``"<alpha>-divergence"``, e.g. ``"0.5-divergence"``):
  ``s = -logsumexp_k(-alpha log p_k + log w_k)`` over the heads with
  ``w_k > 0``  -- for alpha = 1 a weighted harmonic mean of the heads.

``s`` is an unnormalised log-score over the vocabulary; :func:`steered_log_probs`
normalises it with ``log_softmax`` so that it is the log-probability of the
steered next-token distribution.

Two documented choices:

* Heads with ``w_k == 0`` are left out of *both* combinations (the paper's code
  does so for the alpha family only).  For reverse KL this avoids
  ``0 * (-inf) = nan`` and makes ``w = e_k`` reproduce head ``k`` exactly.
* Weights are *not* renormalised (as in the paper's code).  For reverse KL,
  ``sum_k w_k != 1`` acts as an inverse temperature; pass weights on the
  simplex for the weighted geometric mean.  For the alpha family a common
  scale of ``w`` only shifts ``s`` by a constant and cancels on normalisation.
  For alpha != 1 the paper's code omits the ``1/alpha`` factor of the
  alpha-mean ``(sum_k w_k p_k^-alpha)^(-1/alpha)``; we follow the paper.  The
  factor only rescales ``s`` (a sampling temperature): greedy decoding is
  unaffected.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = [
    "Divergence",
    "parse_divergence",
    "validate_steering_weights",
    "combine_head_log_probs",
    "steered_log_probs",
]

_REVERSE_KL_NAMES = ("reverse_kl", "reverse_kld", "jsd")
_FORWARD_KL_NAMES = ("forward_kl", "forward_kld")


@dataclass(frozen=True)
class Divergence:
    """A parsed steering divergence: ``kind`` is ``"reverse_kl"`` or ``"alpha"``."""

    kind: str
    alpha: float = 1.0

    @property
    def name(self) -> str:
        if self.kind == "reverse_kl":
            return "reverse_kl"
        return "forward_kl" if self.alpha == 1.0 else f"{self.alpha}-divergence"


def parse_divergence(divergence: str | Divergence) -> Divergence:
    """Parse ``"reverse_kl"``, ``"forward_kl"`` or ``"<alpha>-divergence"`` (alpha > 0).

    The aliases of the paper's code (``"reverse_kld"``, ``"jsd"`` -> reverse KL;
    ``"forward_kld"`` -> forward KL) are accepted.
    """
    if isinstance(divergence, Divergence):
        return divergence
    if not isinstance(divergence, str):
        raise TypeError(f"divergence must be a string, got {type(divergence).__name__}")
    name = divergence.strip().lower()
    if name in _REVERSE_KL_NAMES:
        return Divergence("reverse_kl")
    if name in _FORWARD_KL_NAMES:
        return Divergence("alpha", 1.0)
    if name.endswith("-divergence"):
        text = name[: -len("-divergence")]
        try:
            alpha = float(text)
        except ValueError:
            alpha = float("nan")
        if not math.isfinite(alpha) or alpha <= 0:
            raise ValueError(
                f"divergence {divergence!r}: expected '<alpha>-divergence' with a finite alpha > 0 "
                f"(e.g. '0.5-divergence'), got alpha={text!r}"
            )
        return Divergence("alpha", alpha)
    raise ValueError(
        f"unknown divergence {divergence!r}; expected one of 'reverse_kl', 'forward_kl', "
        "'<alpha>-divergence' (aliases: 'reverse_kld', 'jsd', 'forward_kld')"
    )


WEIGHT_SUM_TOLERANCE = 1e-6


def validate_steering_weights(
    weights: Sequence[float] | torch.Tensor, num_heads: int | None = None, on_simplex: bool = True
) -> list[float]:
    """Check a steering weight vector and return it as a list of floats; bad weights are an error.

    Always: a non-empty 1-D vector of finite, non-negative numbers, one of them > 0, with
    ``num_heads`` entries (one per head) when ``num_heads`` is given. With ``on_simplex`` (the
    default) the weights must also sum to 1 (within ``WEIGHT_SUM_TOLERANCE``), as evaluation
    policies do; the steering computation itself passes ``on_simplex=False`` because it accepts any
    scale (for reverse KL a sum other than 1 acts as an inverse temperature; see the module doc).
    Nothing is renormalised or clipped.
    """
    if isinstance(weights, torch.Tensor):
        if weights.dim() != 1:
            raise ValueError(f"steering weights must be a 1-D vector, got shape {tuple(weights.shape)}")
        values = [float(v) for v in weights.detach().cpu().tolist()]
    else:
        if isinstance(weights, (str, bytes)) or not hasattr(weights, "__iter__"):
            raise ValueError(f"steering weights must be a sequence of numbers, got {weights!r}")
        try:
            values = [float(v) for v in weights]
        except (TypeError, ValueError) as error:
            raise ValueError(f"steering weights must be a sequence of numbers, got {weights!r}") from error
    if not values:
        raise ValueError("steering weights must be a non-empty 1-D sequence, got no weights")
    if num_heads is not None and len(values) != num_heads:
        raise ValueError(
            f"steering weights {values} have {len(values)} entries but the model has {num_heads} heads "
            "(one weight per head)"
        )
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"steering weights {values} contain a non-finite value")
    if any(v < 0 for v in values):
        bad = min(range(len(values)), key=values.__getitem__)
        raise ValueError(f"steering weights {values} have a negative entry at position {bad}; they must be >= 0")
    if not any(v > 0 for v in values):
        raise ValueError(f"at least one steering weight must be > 0, got {values}")
    if on_simplex:
        total = math.fsum(values)
        if abs(total - 1.0) > WEIGHT_SUM_TOLERANCE:
            raise ValueError(
                f"steering weights {values} sum to {total!r}; they must sum to 1 (tolerance {WEIGHT_SUM_TOLERANCE})"
            )
    return values


def combine_head_log_probs(
    log_probs: Sequence[torch.Tensor] | torch.Tensor,
    weights: Sequence[float] | torch.Tensor,
    divergence: str | Divergence = "reverse_kl",
) -> torch.Tensor:
    """Combine per-head log-probabilities into an unnormalised steered log-score.

    Implements the paper's ``f_divergence`` (MOPO paper App. A.6):
    reverse KL ``sum_k w_k log p_k``; alpha-divergence / forward KL (alpha = 1)
    ``-logsumexp_k(-alpha log p_k + log w_k)``; heads with ``w_k = 0`` are skipped.

    Args:
        log_probs: K tensors of equal shape (``(..., V)``), or one tensor whose
            first dimension indexes the heads.  Entry ``k`` must hold
            ``log p_k`` (already normalised, e.g. by ``log_softmax``).
        weights: K non-negative weights, at least one positive.
        divergence: see :func:`parse_divergence`.

    Returns:
        Tensor of the shape of one head's log-probs (not normalised).
    """
    parsed = parse_divergence(divergence)
    heads = list(log_probs.unbind(0)) if isinstance(log_probs, torch.Tensor) else list(log_probs)
    values = validate_steering_weights(weights, len(heads), on_simplex=False)
    used = [(w, lp) for w, lp in zip(values, heads) if w > 0]
    if parsed.kind == "reverse_kl":
        combined = used[0][0] * used[0][1]
        for w, lp in used[1:]:
            combined = combined + w * lp
        return combined
    terms = torch.stack([-parsed.alpha * lp + math.log(w) for w, lp in used])
    return -torch.logsumexp(terms, dim=0)


def steered_log_probs(
    head_logits: Sequence[torch.Tensor] | torch.Tensor,
    weights: Sequence[float] | torch.Tensor,
    divergence: str | Divergence = "reverse_kl",
) -> torch.Tensor:
    """Log-probabilities of the steered next-token distribution from the heads' raw logits.

    Each head's logits (computed in at least float32) are normalised with ``log_softmax`` over the last
    (vocabulary) dimension, combined by :func:`combine_head_log_probs`, and the
    result normalised again.  Heads with zero weight are never evaluated.
    """
    heads = list(head_logits.unbind(0)) if isinstance(head_logits, torch.Tensor) else list(head_logits)
    values = validate_steering_weights(weights, len(heads), on_simplex=False)
    log_probs = [
        torch.log_softmax(_at_least_float32(logits), dim=-1) if w > 0 else None for w, logits in zip(values, heads)
    ]
    # entries with zero weight are skipped by combine_head_log_probs; any placeholder tensor works
    placeholder = next(lp for lp in log_probs if lp is not None)
    filled = [lp if lp is not None else placeholder for lp in log_probs]
    combined = combine_head_log_probs(filled, values, divergence)
    return torch.log_softmax(combined, dim=-1)


def _at_least_float32(tensor: torch.Tensor) -> torch.Tensor:
    return tensor if tensor.dtype in (torch.float32, torch.float64) else tensor.float()
