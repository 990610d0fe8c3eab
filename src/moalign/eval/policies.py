"""What a "policy" to evaluate is, and the steering grids that enumerate them.

A trained multi-objective method exposes several *policies* that share one set
of weights (docs/design.md, "Evaluation"): the untrained base model, a single head
``k`` of a multi-head model (App. A.6 of the MOPO paper), a steered
combination of the heads with weights ``w`` on the simplex (App. A.6,
"Inference code"), or simply the model as it is (a single-policy method such
as DPO). A :class:`Policy` is the *name* of such a generation setting plus the
parameters that select it; it holds no model and serialises to JSON.

The untrained base model is always part of an evaluation
(:func:`ensure_base_policy`), so every report can say whether training moved
the policy outwards in reward space.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from moalign.data.conditioning import ConditioningSpec
from moalign.models.steering import validate_steering_weights

POLICY_KINDS = ("base", "head", "steer", "model", "conditioned", "weighted")
"""``base``: the untrained reference model; ``head``: one head ``k``; ``steer``: heads
combined with simplex weights ``w``; ``model``: the model as it is (its default head);
``conditioned``: the model asked with ``w`` written into its prompt (MO-ODPO, P-MORL;
:mod:`moalign.data.conditioning`; rewards are scored on the unconditioned prompt);
``weighted``: the model's own ``weighted_policy(w)`` context (e.g. a soup of specialists)."""

WEIGHT_INDEXED_KINDS = ("steer", "conditioned", "weighted")
"""Kinds that are policies indexed by a weight vector ``w`` (steering Spearman, fronts along ``w``)."""

BASE_POLICY_NAME = "base"


def _format_weights(weights: Sequence[float]) -> str:
    return "steer[" + ",".join(f"{w:.4g}" for w in weights) + "]"


@dataclass(frozen=True)
class Policy:
    """A named generation setting of a model under evaluation.

    Build with :meth:`base`, :meth:`from_head`, :meth:`steered` or
    :meth:`as_is` rather than by hand; the constructor validates the fields.
    """

    name: str
    kind: str
    head: int | None = None
    weights: tuple[float, ...] | None = None
    divergence: str | None = None
    conditioning: ConditioningSpec | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"policy name must be a non-empty string, got {self.name!r}")
        if self.kind not in POLICY_KINDS:
            raise ValueError(f"policy '{self.name}': kind must be one of {POLICY_KINDS}, got {self.kind!r}")
        if self.kind == "head":
            if not isinstance(self.head, (int, np.integer)) or isinstance(self.head, bool) or self.head < 0:
                raise ValueError(f"policy '{self.name}': head must be a non-negative int, got {self.head!r}")
            object.__setattr__(self, "head", int(self.head))
        elif self.head is not None:
            raise ValueError(f"policy '{self.name}' of kind '{self.kind}' must not set head (got {self.head!r})")
        if self.kind in ("conditioned", "weighted"):
            if self.weights is None:
                raise ValueError(f"policy '{self.name}' of kind '{self.kind}' needs weights")
            object.__setattr__(self, "weights", tuple(validate_steering_weights(self.weights)))
            if self.divergence is not None:
                raise ValueError(f"policy '{self.name}' of kind '{self.kind}' must not set a divergence")
            if self.kind == "conditioned":
                if not isinstance(self.conditioning, ConditioningSpec):
                    raise ValueError(f"policy '{self.name}' of kind 'conditioned' needs a ConditioningSpec")
                self.conditioning.render("x", self.weights)  # weights fit the objectives and the grid
            elif self.conditioning is not None:
                raise ValueError(f"policy '{self.name}' of kind 'weighted' must not set a conditioning")
            return
        if self.conditioning is not None:
            raise ValueError(f"policy '{self.name}' of kind '{self.kind}' must not set a conditioning")
        if self.kind == "steer":
            if self.weights is None:
                raise ValueError(f"policy '{self.name}' of kind 'steer' needs steering weights")
            object.__setattr__(self, "weights", tuple(validate_steering_weights(self.weights)))
            if not isinstance(self.divergence, str) or not self.divergence:
                raise ValueError(f"policy '{self.name}' of kind 'steer' needs a divergence name, got {self.divergence!r}")
        else:
            if self.weights is not None:
                raise ValueError(f"policy '{self.name}' of kind '{self.kind}' must not set weights")
            if self.divergence is not None:
                raise ValueError(f"policy '{self.name}' of kind '{self.kind}' must not set a divergence")

    # ------------------------------------------------------------------ constructors
    @classmethod
    def base(cls, name: str = BASE_POLICY_NAME) -> Policy:
        """The untrained reference model (``model.reference_context()`` or adapters disabled)."""
        return cls(name=name, kind="base")

    @classmethod
    def from_head(cls, head: int, name: str | None = None) -> Policy:
        """Generation with head ``head`` alone (``model.use_head(head)``)."""
        return cls(name=name or f"head_{head}", kind="head", head=head)

    @classmethod
    def steered(cls, weights: Sequence[float], divergence: str = "reverse_kl", name: str | None = None) -> Policy:
        """Heads combined with simplex weights ``weights`` (``model.steer(weights, divergence)``)."""
        w = tuple(validate_steering_weights(weights))
        return cls(name=name or _format_weights(w), kind="steer", weights=w, divergence=divergence)

    @classmethod
    def conditioned(cls, weights: Sequence[float], conditioning: ConditioningSpec, name: str | None = None) -> Policy:
        """The model asked with ``weights`` written into every prompt by ``conditioning`` (MO-ODPO §3.3)."""
        w = tuple(validate_steering_weights(weights))
        return cls(name=name or _format_weights(w).replace("steer", "cond"), kind="conditioned", weights=w,
                   conditioning=conditioning)

    @classmethod
    def weighted(cls, weights: Sequence[float], name: str | None = None) -> Policy:
        """Generation inside ``model.weighted_policy(weights)`` (a context manager the model provides)."""
        w = tuple(validate_steering_weights(weights))
        return cls(name=name or _format_weights(w).replace("steer", "weighted"), kind="weighted", weights=w)

    @classmethod
    def as_is(cls, name: str = "model") -> Policy:
        """The model exactly as passed in (a single-policy method, or a multi-head model's default head)."""
        return cls(name=name, kind="model")

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "kind": self.kind,
            "head": self.head,
            "weights": list(self.weights) if self.weights is not None else None,
            "divergence": self.divergence,
        }
        if self.conditioning is not None:
            out["conditioning"] = self.conditioning.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Policy:
        unknown = set(data) - {"name", "kind", "head", "weights", "divergence", "conditioning"}
        if unknown:
            raise ValueError(f"policy entry {data!r} has unknown keys {sorted(unknown)}")
        weights = data.get("weights")
        return cls(
            name=data["name"],
            kind=data["kind"],
            head=data.get("head"),
            weights=tuple(weights) if weights is not None else None,
            divergence=data.get("divergence"),
            conditioning=ConditioningSpec.from_dict(data["conditioning"]) if data.get("conditioning") else None,
        )


def steering_grid(num_objectives: int, steps: int = 10) -> list[tuple[float, ...]]:
    """All weight vectors on the simplex with coordinates in ``{0, 1/steps, ..., 1}``.

    For two objectives and ``steps=10`` this is the 11 points
    ``(0, 1), (0.1, 0.9), ..., (1, 0)`` in that order (``w_1`` increasing), the
    grid the papers sweep to trace a front. For ``K >= 3`` it is the full
    simplex lattice with ``C(steps + K - 1, K - 1)`` points (66 for K=3,
    steps=10), ordered lexicographically by ``(w_1, w_2, ...)``.
    Coordinates are ``i / steps``; they sum to 1 up to floating-point rounding
    (< 1e-12).
    """
    if not isinstance(num_objectives, int) or num_objectives < 2:
        raise ValueError(f"a steering grid needs at least 2 objectives, got {num_objectives!r}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steering grid steps must be a positive int, got {steps!r}")
    points = []
    for head in itertools.product(range(steps + 1), repeat=num_objectives - 1):
        rest = steps - sum(head)
        if rest >= 0:
            points.append(tuple(i / steps for i in (*head, rest)))
    points.sort()
    expected = math.comb(steps + num_objectives - 1, num_objectives - 1)
    assert len(points) == expected, (len(points), expected)
    return points


def steering_policies(num_heads: int, steps: int = 10, divergence: str = "reverse_kl") -> list[Policy]:
    """One steered :class:`Policy` per point of :func:`steering_grid` (see there for order and count)."""
    return [Policy.steered(w, divergence=divergence) for w in steering_grid(num_heads, steps)]


def conditioned_policies(conditioning: ConditioningSpec, steps: int = 10) -> list[Policy]:
    """One ``conditioned`` :class:`Policy` per point of :func:`steering_grid` over ``conditioning.objectives``."""
    return [Policy.conditioned(w, conditioning) for w in steering_grid(len(conditioning.objectives), steps)]


def weighted_policies(num_objectives: int, steps: int = 10) -> list[Policy]:
    """One ``weighted`` :class:`Policy` per point of :func:`steering_grid` (a soup's interpolation path)."""
    return [Policy.weighted(w) for w in steering_grid(num_objectives, steps)]


def head_policies(num_heads: int, head_names: Sequence[str] | None = None) -> list[Policy]:
    """One :class:`Policy` per head, named ``head:<name>`` when head names are known."""
    if head_names is not None and len(head_names) != num_heads:
        raise ValueError(f"got {len(head_names)} head names for {num_heads} heads")
    return [
        Policy.from_head(k, name=f"head:{head_names[k]}" if head_names is not None else None)
        for k in range(num_heads)
    ]


def ensure_base_policy(policies: Iterable[Policy] | None) -> list[Policy]:
    """Return ``policies`` with the base policy first; it is added when missing.

    The comparison against the untrained base model is always part of an
    evaluation. Raises if two policies share a name or if more than one base
    policy is given.
    """
    out = list(policies or [])
    for i, p in enumerate(out):
        if not isinstance(p, Policy):
            raise TypeError(f"policies[{i}] must be a moalign.eval.Policy, got {type(p).__name__}")
    names = [p.name for p in out]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"policy names must be unique; repeated: {duplicates}")
    bases = [p for p in out if p.kind == "base"]
    if len(bases) > 1:
        raise ValueError(f"at most one base policy may be given, got {[p.name for p in bases]}")
    if not bases:
        if BASE_POLICY_NAME in names:
            raise ValueError(f"a non-base policy is named '{BASE_POLICY_NAME}'; that name is reserved for the base model")
        return [Policy.base(), *out]
    return [bases[0], *[p for p in out if p.kind != "base"]]


def validate_policies_for_model(policies: Sequence[Policy], num_heads: int | None) -> None:
    """Check head indices and steering weight lengths against a model with ``num_heads`` heads.

    ``num_heads=None`` means the model has no heads: only ``base`` and
    ``model`` policies are then possible.
    """
    for p in policies:
        if p.kind == "head":
            if num_heads is None:
                raise ValueError(f"policy '{p.name}' selects head {p.head} but the model has no heads")
            if p.head >= num_heads:
                raise ValueError(f"policy '{p.name}' selects head {p.head} but the model has {num_heads} heads (0..{num_heads - 1})")
        elif p.kind == "steer":
            if num_heads is None:
                raise ValueError(f"policy '{p.name}' steers heads but the model has no heads")
            validate_steering_weights(p.weights, num_heads)
