"""MO-ODPO on the continuous toy problem: one weight-conditioned policy trained by online DPO.

The training loop is the toy's online engine (:func:`moalign.experiments.toy_online.train_online` with the DPO
loss; MO-ODPO paper §3); :func:`run_toy` is MO-ODPO's entry in ``moalign synthetic toy``: the conditioned policy
at every weight vector of the family's grids (:mod:`moalign.experiments.toy_odpo_run`).
"""

from __future__ import annotations

import numpy as np

from moalign.experiments.toy_odpo_run import ODPOToySettings, run_weighted_method
from moalign.experiments.toy_online import conditioned_probs, train_online
from moalign.experiments.toy_run import ToyRun


def run_toy(run: ToyRun) -> None:
    """MO-ODPO for every seed, evaluated at every weight vector of the grids."""
    cfg = run.cfg

    def train(s: ODPOToySettings, index: int, seed: int, weights: np.ndarray) -> np.ndarray:
        return conditioned_probs(train_online(cfg.set, cfg.num_actions, "dpo", s.online, seed), weights)[0]

    run_weighted_method(run, "mo_odpo", "MO-ODPO", train)
