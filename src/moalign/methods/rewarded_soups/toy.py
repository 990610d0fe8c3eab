"""Rewarded Soups on the continuous toy problem: one RL specialist per objective, their weights interpolated.

The specialists are trained with RLOO on the toy's online engine (the trainer uses TRL's GRPO; docs/toy.md),
from one shared initialisation; the soup at ``w`` is :func:`moalign.experiments.toy_soups.soup_probs`.
:func:`run_toy` is its entry in ``moalign synthetic toy``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from moalign.experiments.toy_odpo_run import ODPOToySettings, run_weighted_method
from moalign.experiments.toy_online import train_online
from moalign.experiments.toy_run import ToyRun
from moalign.experiments.toy_soups import soup_probs


def run_toy(run: ToyRun) -> None:
    """Rewarded Soups for every seed, souped at every weight vector of the grids."""
    cfg = run.cfg

    def train(s: ODPOToySettings, index: int, seed: int, weights: np.ndarray) -> np.ndarray:
        rloo = replace(s.online, learning_rate=s.rloo_learning_rate)
        specialists = train_online(cfg.set, cfg.num_actions, "rloo", rloo, seed, np.eye(2), shared_init=True)
        return soup_probs(specialists, weights)

    run_weighted_method(run, "rewarded_soups", "Rewarded Soups", train)
