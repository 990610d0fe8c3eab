"""ODPO Soups on the continuous toy problem: one online-DPO specialist per objective, their weights interpolated.

The specialists are MO-ODPO's loop with one-hot fixed weights (:func:`moalign.experiments.toy_online.train_online`),
from one shared initialisation; the soup at ``w`` is :func:`moalign.experiments.toy_soups.soup_probs`.
:func:`run_toy` is its entry in ``moalign synthetic toy``.
"""

from __future__ import annotations

import numpy as np

from moalign.experiments.toy_odpo_run import ODPOToySettings, run_weighted_method
from moalign.experiments.toy_online import train_online
from moalign.experiments.toy_run import ToyRun
from moalign.experiments.toy_soups import soup_probs


def run_toy(run: ToyRun) -> None:
    """ODPO Soups for every seed, souped at every weight vector of the grids."""
    cfg = run.cfg

    def train(s: ODPOToySettings, index: int, seed: int, weights: np.ndarray) -> np.ndarray:
        specialists = train_online(cfg.set, cfg.num_actions, "dpo", s.online, seed, np.eye(2), shared_init=True)
        return soup_probs(specialists, weights)

    run_weighted_method(run, "odpo_soups", "ODPO Soups", train)
