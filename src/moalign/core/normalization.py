"""Per-objective reward normalisation fits, written once for the trainers and the synthetic benchmarks.

A fit maps each objective's scores by ``(s - shift) / scale`` (docs/design.md, "Layers": rewards). Two statistics:

* ``'zscore'``: ``shift = mean``, ``scale = std`` (population std, ddof = 0, as ``np.std``): the MOPO/RiC recipe of
  normalising by the offline dataset's mean and standard deviation;
* ``'minmax'``: ``shift = min``, ``scale = max - min``: the fitted scores map onto [0, 1] (HaM paper eq. 3 needs
  rewards in [0, 1]; MO-ODPO and P-MORL put the K rewards on one scale before ``s = w^T r``, MO-ODPO eq. 1).

An objective whose scores are all equal has no spread; what happens then is the ``zero_spread`` rule, chosen per
use (one rule per caller, stated there):

* ``'raise'`` (default): a ValueError naming the objective. For **offline data** (the HaM, SCA, RiC and MODPO
  trainers through :class:`moalign.rewards.base.RewardNormalizer`, and the toy's HaM and RiC, which model them):
  a constant objective in a training set is a data error, and dividing by its (zero) spread would blow it up.
* ``'unit'``: that objective gets ``scale = 1`` (shift only; every sample maps to 0). For **online fits on the
  initial policy's first samples** (MO-ODPO, P-MORL): a reward that happens to be constant on a small first batch
  is no error, and the run must go on; the objective then contributes ``s - min`` unscaled.

Earlier the toys floored the spread at 1e-12 instead; on their data the spread is never that small, so the
``'raise'`` rule gives them bit-identical results.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

NORMALIZATION_METHODS = ("zscore", "minmax")
ZERO_SPREAD_RULES = ("raise", "unit")

__all__ = ["NORMALIZATION_METHODS", "ZERO_SPREAD_RULES", "fit_normalization", "normalize"]


def fit_normalization(scores: Any, method: str = "zscore", zero_spread: str = "raise",
                      objectives: Sequence[str] | None = None, what: str = "fit_normalization"
                      ) -> tuple[np.ndarray, np.ndarray]:
    """``(shift, scale)`` per column of ``scores`` ``(n, K)`` (module docstring for the methods and rules).

    ``objectives`` names the columns in the error of the ``'raise'`` rule; ``what`` prefixes it (the caller's
    name). The statistics are computed in float64 exactly as ``arr.mean(0)``, ``arr.std(0)``, ``arr.min(0)``
    and ``arr.max(0) - arr.min(0)``.
    """
    if method not in NORMALIZATION_METHODS:
        raise ValueError(f"normalisation method must be one of {NORMALIZATION_METHODS}, got {method!r}")
    if zero_spread not in ZERO_SPREAD_RULES:
        raise ValueError(f"zero_spread must be one of {ZERO_SPREAD_RULES}, got {zero_spread!r}")
    arr = np.asarray(scores, dtype=float)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"{what}: scores must have shape (n, K) with n >= 1, got {arr.shape}")
    if method == "zscore":
        shift, scale = arr.mean(axis=0), arr.std(axis=0)
    else:
        shift, scale = arr.min(axis=0), arr.max(axis=0) - arr.min(axis=0)
    flat = ~(scale > 0)
    if flat.any() and zero_spread == "raise":
        k = int(np.flatnonzero(flat)[0])
        name = objectives[k] if objectives is not None and k < len(objectives) else f"objective {k}"
        kind = "zero variance" if method == "zscore" else "zero range (max == min)"
        raise ValueError(f"{what}: objective {name!r} has {kind} over {arr.shape[0]} scores (all equal to "
                         f"{arr[0, k]}); it cannot be normalised")
    if flat.any():  # 'unit'
        scale = np.where(flat, 1.0, scale)
    return shift, scale


def normalize(scores: Any, shift: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``(scores - shift) / scale`` per column (nothing clipped)."""
    return (np.asarray(scores, dtype=float) - shift) / scale
