"""What a method's toy version is handed by ``moalign synthetic toy``: one :class:`ToyRun` per benchmark run.

:func:`moalign.experiments.toy.run_toy` draws what several methods share, then calls the ``ToyEntry.run`` of every
selected method (:mod:`moalign.methods.spec`) with the same :class:`ToyRun`. A method adds each policy it offers
with :meth:`ToyRun.add` (a label, its parameters, its ``(201, A)`` action probabilities on the evaluation grid);
the runner evaluates every policy with the true rewards and compares each label's set with the true front.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from moalign.experiments.toy_problem import ToyPreferenceData, sample_preference_data

AddPolicy = Callable[[str, dict, np.ndarray], None]
#: ``report(policies, front, methods)``: called once every policy is evaluated (``methods``: the HV summary)
Report = Callable[[list[dict], Any, dict], None]


@dataclass
class ToyRun:
    """One toy benchmark run as its methods see it.

    ``cfg``: the resolved :class:`~moalign.experiments.toy.ToyConfig`; ``seeds``: the seeds, in order;
    ``datasets``: each seed's pairwise rows when a selected entry asked for them up front (``pairwise_rows``),
    else empty; ``add``: adds a policy; ``timings``: seconds per stage (a method adds its own);
    ``results``: entries of the result JSON beyond the policies (a method's diagnostics, under a key it owns);
    ``shared``: state that several methods of one family compute once (e.g. per-seed statistics);
    ``reports``: callbacks run after the evaluation (:data:`Report`).
    """

    cfg: Any
    seeds: list[int]
    datasets: list[ToyPreferenceData]
    add: AddPolicy
    timings: dict[str, float]
    progress: bool = False
    results: dict[str, Any] = field(default_factory=dict)
    shared: dict[str, Any] = field(default_factory=dict)
    reports: list[Report] = field(default_factory=list)

    def pairwise_rows(self, index: int) -> ToyPreferenceData:
        """The pairwise rows ``(x, y, y', I1, I2)`` of the ``index``-th seed: the ones drawn up front, else drawn
        now from ``default_rng(seed)`` (the same rows, without the D_C labels)."""
        if index < len(self.datasets):
            return self.datasets[index]
        return sample_preference_data(self.cfg.set, self.cfg.num_rows, np.zeros(0),
                                      np.random.default_rng(self.seeds[index]))

    def add_time(self, key: str, seconds: float) -> None:
        """Add ``seconds`` to the stage ``key`` of the timings."""
        self.timings[key] = self.timings.get(key, 0.0) + seconds
