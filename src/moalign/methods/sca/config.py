"""Configuration of :class:`~moalign.methods.sca.trainer.SCATrainer` (HaM paper, arXiv 2412.05469, eq. 5)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from moalign.methods.ham.config import WeightedLikelihoodConfig

#: the HaM paper's scalarisation vectors: §4 for J = 2, §4.4 for J = 3
PAPER_WEIGHTS = {
    2: [(0.0, 1.0), (0.3, 0.7), (0.5, 0.5), (0.7, 0.3), (1.0, 0.0)],
    3: [(0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0), (0.1, 0.1, 0.8), (0.1, 0.8, 0.1), (0.8, 0.1, 0.1),
        (0.2, 0.2, 0.6), (0.2, 0.6, 0.2), (0.6, 0.2, 0.2), (0.33, 0.33, 0.34)],
}


def parse_weight_vectors(specs: list[str] | None, num_objectives: int) -> list[tuple[float, ...]]:
    """Weight vectors from ``"w1,...,wJ"`` strings (each on the simplex), or the paper's for J = 2 / 3."""
    if specs is None:
        if num_objectives not in PAPER_WEIGHTS:
            raise ValueError(f"sca_weights: the paper gives weights for 2 or 3 objectives; with {num_objectives} "
                             "objectives list them, e.g. --sca_weights 0.5,0.25,0.25 ...")
        return list(PAPER_WEIGHTS[num_objectives])
    if not specs:
        raise ValueError("sca_weights must name at least one weight vector")
    vectors = []
    for spec in specs:
        try:
            vector = tuple(float(x) for x in str(spec).split(","))
        except ValueError as err:
            raise ValueError(f"sca_weights: {spec!r} is not a comma-separated list of numbers") from err
        if len(vector) != num_objectives:
            raise ValueError(f"sca_weights: {spec!r} has {len(vector)} weights, expected one per objective "
                             f"({num_objectives})")
        if not all(math.isfinite(w) and w >= 0 for w in vector) or abs(sum(vector) - 1) > 1e-6:
            raise ValueError(f"sca_weights: {spec!r} must be non-negative and sum to 1 (a point of the simplex)")
        vectors.append(vector)
    if len(set(vectors)) != len(vectors):
        raise ValueError(f"sca_weights: repeated weight vectors in {specs}")
    return vectors


def weight_head_name(vector: tuple[float, ...]) -> str:
    """Head name of a weight vector, e.g. ``w_0.3_0.7``."""
    return "w_" + "_".join(f"{w:g}" for w in vector)


@dataclass
class SCAConfig(WeightedLikelihoodConfig):
    """SCA's own field: the weight vectors, one policy head each."""

    sca_weights: list[str] | None = field(
        default=None,
        metadata={"help": "Weight vectors w (each 'w1,...,wJ' on the simplex), one policy head each (eq. 5). "
                  "Default: the HaM paper's, (0,1) (.3,.7) (.5,.5) (.7,.3) (1,0) for J = 2 and its ten vectors "
                  "for J = 3. One vector gives one separately trained policy, as in the paper."},
    )
