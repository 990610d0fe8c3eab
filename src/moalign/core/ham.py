"""Differentiable hypervolume for HaM (HaM paper, arXiv 2412.05469, §3.1-§3.6).

Pure torch (no transformers; docs/design.md, "Layers"). Convention: every
objective is **maximised** and the reference point is always explicit (HaM's is
the origin, after the normalisation of eq. 4). Points are a ``(K, J)`` tensor:
K policies (heads), J objectives.

* :func:`weighted_log_likelihood` -- the mini-batch estimate F_j(theta_k) of
  eq. 9, ``(1/B) sum_i r_j(x_i, y_i) log p(y_i | x_i; theta_k)``, for all heads
  and objectives at once.
* :func:`normalize_log_likelihood` -- eq. 4, ``max((F + z) / z, 0)``. The
  clip at 0 has **zero gradient** wherever ``F + z < 0``: a head whose weighted
  log-likelihood is below ``-z`` on some objective gets no signal from that
  objective (and, through the product in eq. 6, none from any subset whose
  minimum it sets), so it never moves back. ``smooth_temperature=t`` replaces
  the clip by ``t * softplus(u / t)`` (``u = (F + z) / z``), which is within
  ``t log 2`` of the clip everywhere, keeps the order, and has a positive
  gradient everywhere (see tests/core/test_ham.py).
* :func:`inclusion_exclusion_hypervolume` -- the exact hypervolume of eq. 6,
  ``sum_{S != {}} (-1)^{|S|-1} prod_j max(min_{k in S} v_kj - ref_j, 0)``,
  vectorised over the 2^K - 1 subsets: O(J K 2^K) time and memory.
* :func:`random_hypervolume_scalarization` -- eq. 10 with the constant of
  Zhang & Golovin (2020), Lemma 1, so that it estimates the hypervolume itself:
  ``HV = c_J E_{w ~ S^{J-1}_+} [max_k min_j (max(v_kj - ref_j, 0) / w_j)^J]``
  with ``c_J = pi^{J/2} / (2^J Gamma(J/2 + 1))`` (the volume of the unit
  J-ball divided by 2^J). N directions give O(J K N) work and an error of
  O(1/sqrt(N)).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from moalign.core.precision import full_precision

__all__ = [
    "hypervolume_scalarization_constant",
    "inclusion_exclusion_hypervolume",
    "normalize_log_likelihood",
    "random_hypervolume_scalarization",
    "sample_positive_directions",
    "subset_masks",
    "weighted_log_likelihood",
]

#: beyond this many points the exact estimator's 2^K subsets are too many to hold in memory at once
MAX_EXACT_POINTS = 20


def _check_points(points: torch.Tensor, reference: torch.Tensor | None) -> torch.Tensor:
    if points.ndim != 2 or points.shape[0] < 1 or points.shape[1] < 1:
        raise ValueError(f"points must be a (K, J) tensor with K >= 1 points and J >= 1 objectives, "
                         f"got shape {tuple(points.shape)}")
    if reference is None:
        raise ValueError("a reference point is required (HaM's is the origin: torch.zeros(J))")
    reference = torch.as_tensor(reference, dtype=points.dtype, device=points.device).reshape(-1)
    if reference.shape[0] != points.shape[1]:
        raise ValueError(f"reference has {reference.shape[0]} coordinates but points have {points.shape[1]} "
                         "objectives")
    if not torch.isfinite(reference).all():
        raise ValueError(f"reference must be finite, got {reference.tolist()}")
    return reference


@lru_cache(maxsize=32)
def subset_masks(num_points: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(masks, signs)`` of the 2^K - 1 non-empty subsets S of [K] (the set script-S of eq. 6).

    ``masks`` is ``(2^K - 1, K)`` boolean (row s: which points are in subset s); ``signs`` is
    ``(-1)^{|S| - 1}`` as float64. Cached per K (CPU tensors; move them to the points' device).
    """
    if not 1 <= num_points <= MAX_EXACT_POINTS:
        raise ValueError(f"exact hypervolume handles 1..{MAX_EXACT_POINTS} points, got {num_points}; use "
                         "random_hypervolume_scalarization for more")
    codes = torch.arange(1, 2 ** num_points, dtype=torch.long)
    masks = (codes.unsqueeze(1) >> torch.arange(num_points)) & 1 == 1
    sizes = masks.sum(dim=1)
    signs = torch.where(sizes % 2 == 1, 1.0, -1.0).to(torch.float64)
    return masks, signs


@full_precision
def inclusion_exclusion_hypervolume(points: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Exact hypervolume dominated by ``points`` (K, J) above ``reference`` (J,), maximisation (eq. 6).

    The box of point k is ``[ref, v_k]`` (empty when ``v_k`` does not exceed ``ref`` in every
    coordinate); the intersection of the boxes of a subset S is ``[ref, min_{k in S} v_k]``, and
    inclusion-exclusion over the subsets gives the volume of their union (HaM paper, Prop. 1 / eq. 11).
    Differentiable (almost everywhere; at ties the gradient of the min is shared between the tied
    points, a valid subgradient). Dominated and coincident points are handled exactly.
    """
    reference = _check_points(points, reference)
    num_points = points.shape[0]
    masks, signs = subset_masks(num_points)
    masks, signs = masks.to(points.device), signs.to(device=points.device, dtype=points.dtype)
    shifted = points - reference  # (K, J)
    inf = torch.tensor(float("inf"), dtype=points.dtype, device=points.device)
    # (S, K, J): entries outside the subset become +inf and never win the min
    mins = torch.where(masks.unsqueeze(-1), shifted.unsqueeze(0), inf).amin(dim=1)  # (S, J)
    volumes = mins.clamp(min=0).prod(dim=1)  # (S,)
    return (signs * volumes).sum()


def hypervolume_scalarization_constant(num_objectives: int) -> float:
    """``c_J = pi^{J/2} / (2^J Gamma(J/2 + 1))`` of Zhang & Golovin (2020), Lemma 1 (c_1 = 1, c_2 = pi/4)."""
    if num_objectives < 1:
        raise ValueError(f"num_objectives must be >= 1, got {num_objectives}")
    j = num_objectives
    return math.pi ** (j / 2) / (2 ** j * math.gamma(j / 2 + 1))


@full_precision
def sample_positive_directions(num_directions: int, num_objectives: int, seed: int | None = None,
                               generator: torch.Generator | None = None,
                               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(N, J)`` directions uniform on the unit sphere restricted to the positive orthant (B_J of eq. 10).

    |Gaussian| vectors normalised to length 1 (the Gaussian is rotation invariant, and folding into the
    positive orthant keeps it uniform there). Reproducible from ``seed`` or ``generator``.
    """
    if num_directions < 1:
        raise ValueError(f"num_directions must be >= 1, got {num_directions}")
    if generator is None:
        generator = torch.Generator()
        if seed is not None:
            generator.manual_seed(seed)
    raw = torch.randn(num_directions, num_objectives, generator=generator, dtype=torch.float64).abs()
    raw = raw.clamp(min=1e-300)
    return (raw / raw.norm(dim=1, keepdim=True)).to(dtype)


@full_precision
def random_hypervolume_scalarization(points: torch.Tensor, reference: torch.Tensor, num_directions: int = 1024,
                                     seed: int | None = None, directions: torch.Tensor | None = None
                                     ) -> torch.Tensor:
    """Monte-Carlo hypervolume of ``points`` (K, J) above ``reference`` by random scalarisation (eq. 10).

    ``c_J * mean_n max_k s_{w_n}(v_k)`` with ``s_w(v) = min_j (max(v_j - ref_j, 0) / w_j)^J``
    (Zhang & Golovin 2020, Lemma 1): unbiased for the hypervolume, standard error O(1/sqrt(N)),
    cost O(J K N). ``directions`` (N, J) may be given (e.g. shared across calls); otherwise N are drawn
    with ``seed``. Differentiable almost everywhere (through the max and min).
    """
    reference = _check_points(points, reference)
    num_objectives = points.shape[1]
    if directions is None:
        directions = sample_positive_directions(num_directions, num_objectives, seed=seed, dtype=points.dtype)
    if directions.ndim != 2 or directions.shape[1] != num_objectives:
        raise ValueError(f"directions must be (N, {num_objectives}), got {tuple(directions.shape)}")
    directions = directions.to(device=points.device, dtype=points.dtype)
    shifted = (points - reference).clamp(min=0)  # (K, J)
    ratios = shifted.unsqueeze(0) / directions.unsqueeze(1)  # (N, K, J)
    scal = ratios.amin(dim=2).pow(num_objectives)  # (N, K): s_w(v_k)
    return hypervolume_scalarization_constant(num_objectives) * scal.amax(dim=1).mean()


@full_precision
def weighted_log_likelihood(logps: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    """``(K, J)`` mini-batch weighted log-likelihoods F_j(theta_k) of eq. 9.

    ``F[k, j] = (1/B) sum_i rewards[i, j] * logps[k, i]`` for ``logps`` (K, B) -- each head's sequence
    log-probs of the batch -- and ``rewards`` (B, J) in [0, 1] (eq. 3 assumes rewards in [0, 1]).
    """
    if logps.ndim != 2 or rewards.ndim != 2 or logps.shape[1] != rewards.shape[0]:
        raise ValueError(f"logps must be (K, B) and rewards (B, J) with the same B, got {tuple(logps.shape)} "
                         f"and {tuple(rewards.shape)}")
    return logps @ rewards.to(logps) / logps.shape[1]


@full_precision
def normalize_log_likelihood(values: torch.Tensor, z: float, smooth_temperature: float | None = None
                             ) -> torch.Tensor:
    """Eq. 4: ``max((F + z) / z, 0)``, or its smooth variant ``t * softplus(((F + z) / z) / t)``.

    With F <= 0 (rewards in [0, 1], log-probs <= 0) the result is at most 1. The clip has zero gradient
    where ``F + z < 0`` (the head is stuck there, see the module docstring); the softplus variant
    (``smooth_temperature=t > 0``) is at most ``t log 2`` above the clip and has gradient
    ``sigmoid(u / t) / z > 0`` everywhere.
    """
    if not z > 0:
        raise ValueError(f"z must be > 0 (eq. 4), got {z}")
    scaled = (values + z) / z
    if smooth_temperature is None:
        return scaled.clamp(min=0)
    if not smooth_temperature > 0:
        raise ValueError(f"smooth_temperature must be > 0 (or None for the clip of eq. 4), got {smooth_temperature}")
    return smooth_temperature * torch.nn.functional.softplus(scaled / smooth_temperature)
