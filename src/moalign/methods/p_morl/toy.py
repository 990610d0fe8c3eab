"""P-MORL on the continuous toy problem: one weight-conditioned policy trained by RL on ``w^T r``.

The toy trains it with RLOO on the toy's online engine (:func:`moalign.experiments.toy_online.train_online`),
where the trainer uses TRL's GRPO (docs/toy.md says so where the figures are reported); :func:`run_toy` is its
entry in ``moalign synthetic toy``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from moalign.experiments.toy_odpo_run import ODPOToySettings, run_weighted_method
from moalign.experiments.toy_online import conditioned_probs, train_online
from moalign.experiments.toy_run import ToyRun


def run_toy(run: ToyRun) -> None:
    """P-MORL for every seed, evaluated at every weight vector of the grids."""
    cfg = run.cfg

    def train(s: ODPOToySettings, index: int, seed: int, weights: np.ndarray) -> np.ndarray:
        rloo = replace(s.online, learning_rate=s.rloo_learning_rate)
        return conditioned_probs(train_online(cfg.set, cfg.num_actions, "rloo", rloo, seed), weights)[0]

    run_weighted_method(run, "p_morl", "P-MORL", train)
