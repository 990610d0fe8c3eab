"""SCA's policies: one head per trained weight vector (:class:`WeightHeadsFamily`), and the heads ``moalign compare``
evaluates (:func:`compare_policies`: every head with its weight vector)."""

from __future__ import annotations

import math
from typing import Any

from moalign.inference.families import HeadsFamily
from moalign.methods.ham.family import head_policies
from moalign.methods.spec import PolicyContext


def compare_policies(ctx: PolicyContext) -> list[tuple[Any, list]]:
    """SCA's heads, each with the weight vector its name carries."""
    return head_policies(ctx, weights_from_names=True)


class WeightHeadsFamily(HeadsFamily):
    """SCA: one head per trained weight vector (head names ``w_0.3_0.7``); the user gives objective weights.

    ``w`` equal to a head's vector selects that head. Between trained vectors (two objectives) the two
    neighbouring heads are steered with reverse KL, with the convex coefficients that reproduce ``w`` from their
    vectors. With three or more objectives only the trained vectors are accepted.
    """

    @property
    def weight_names(self) -> list[str]:
        return list(self.folder.objectives)

    @property
    def head_vectors(self) -> list[tuple[float, ...]]:
        vectors = []
        for name in self.head_names:
            try:
                vectors.append(tuple(float(v) for v in name.split("_")[1:]))
            except ValueError:
                raise ValueError(f"{self.folder.path}: head {name!r} does not name a weight vector (w_0.3_0.7)") from None
        return vectors

    def coefficients(self, weights: tuple[float, ...]) -> tuple[list[float], str | None]:
        vectors = self.head_vectors
        for j, v in enumerate(vectors):
            if all(math.isclose(a, b, abs_tol=1e-9) for a, b in zip(v, weights)):
                return [1.0 if i == j else 0.0 for i in range(len(vectors))], None
        trained = "; ".join(",".join(f"{x:g}" for x in v) for v in vectors)
        if len(weights) != 2:
            raise ValueError(f"SCA model: weights {list(weights)} are not one of its trained weight vectors ({trained});"
                             " with more than two objectives only those are offered")
        below = [(v[0], j) for j, v in enumerate(vectors) if v[0] <= weights[0]]
        above = [(v[0], j) for j, v in enumerate(vectors) if v[0] >= weights[0]]
        if not below or not above:
            raise ValueError(f"SCA model: weights {list(weights)} lie outside its trained weight vectors ({trained})")
        (lo, j), (hi, i) = max(below), min(above)
        t = (weights[0] - lo) / (hi - lo)
        coefficients = [0.0] * len(vectors)
        coefficients[j], coefficients[i] = 1.0 - t, t
        note = (f"between the trained heads {self.head_names[j]} and {self.head_names[i]}: reverse-KL steering with "
                f"{1 - t:.4g} / {t:.4g}")
        return coefficients, note
