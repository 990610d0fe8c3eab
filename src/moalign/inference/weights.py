"""Weight vectors given by a user: parsing ``0.7,0.3`` and checking them against what a method accepts.

Every method of moalign reads a preference as a point ``w`` of the simplex over its weight names (objectives,
or for HaM and a MOPO model trained on a subset of objectives, its heads): K finite, non-negative numbers
summing to 1. The prompt-conditioned methods (MO-ODPO, P-MORL) were trained only on weights written with one
decimal (MO-ODPO paper §3.2), so they accept only that grid. Errors name the weights the model expects, so a
user sees at once what to type.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from moalign.models.steering import WEIGHT_SUM_TOLERANCE

__all__ = ["parse_weights", "check_weights"]


def parse_weights(text: str | Sequence[float]) -> list[float]:
    """``"0.7,0.3"`` (or ``"0.7 0.3"``, or a sequence of numbers) as a list of floats; a clear error otherwise."""
    if isinstance(text, str):
        parts = [p for p in text.replace(",", " ").split() if p]
        if not parts:
            raise ValueError("--weights needs numbers, e.g. --weights 0.7,0.3")
        try:
            return [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"--weights {text!r}: not a comma-separated list of numbers (e.g. 0.7,0.3)") from None
    try:
        return [float(v) for v in text]
    except (TypeError, ValueError):
        raise ValueError(f"weights must be a sequence of numbers, got {text!r}") from None


def check_weights(weights: str | Sequence[float], names: Sequence[str], method: str,
                  decimals: int | None = None) -> tuple[float, ...]:
    """``weights`` as a tuple after checking them for a model whose weights are named ``names``.

    Checks, in order: one weight per name; every weight finite and >= 0; the sum is 1 (within
    ``WEIGHT_SUM_TOLERANCE``); with ``decimals``, every weight on the ``10**-decimals`` grid. Nothing is
    renormalised or rounded: a silent change would answer a different question than the one asked.
    """
    values = parse_weights(weights)
    label = f"{method} model with weights for {', '.join(names)}"
    if len(values) != len(names):
        raise ValueError(f"got {len(values)} weight(s) {values} but the {label} needs {len(names)}, one per name "
                         f"in this order")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"weights {values} contain a non-finite number")
    negative = [names[i] for i, v in enumerate(values) if v < 0]
    if negative:
        raise ValueError(f"weights {values}: negative weight for {', '.join(negative)}; weights must be >= 0")
    total = math.fsum(values)
    if abs(total - 1.0) > WEIGHT_SUM_TOLERANCE:
        raise ValueError(f"weights {values} sum to {total:.6g}; the {method} model needs weights on the simplex "
                         "(summing to 1), e.g. " + ",".join(f"{1 / len(names):.2g}" for _ in names))
    if decimals is not None:
        units = 10 ** decimals
        off = [v for v in values if abs(v * units - round(v * units)) > 1e-6]
        if off:
            raise ValueError(f"weights {values}: the {method} model was trained with weights written with {decimals} "
                             f"decimal(s) in its prompt and accepts only that grid (e.g. 0.3,0.7); {off} are off it")
    return tuple(values)
