"""SCA (HaM paper eq. 5) on the continuous toy problem: one tabular policy per weight vector.

The pointwise setting is HaM's (:mod:`moalign.experiments.toy_pointwise`); :func:`run_toy` is SCA's entry in
``moalign synthetic toy``: the HaM paper's 5 weight vectors and 11 evenly spaced ones, for every seed.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from moalign.core.ham import normalize_log_likelihood
from moalign.experiments.toy_pointwise import (
    PointwiseTables,
    TabularSettings,
    finish_tabular,
    init_logits,
    tabular_weighted_ll,
    weighted_likelihood_optimum,
)
from moalign.experiments.toy_run import ToyRun
from moalign.experiments.toy_weighted_likelihood import seed_statistics, sweep, weighted_likelihood_run

PAPER_SCA_WEIGHTS = ((0.0, 1.0), (0.3, 0.7), (0.5, 0.5), (0.7, 0.3), (1.0, 0.0))  # HaM paper, J = 2


def sca_weight_sets() -> dict[str, np.ndarray]:
    """The paper's 5 weight vectors (HaM paper §4) and 11 evenly spaced ones."""
    return {"SCA (5 paper weights)": np.array(PAPER_SCA_WEIGHTS), "SCA (11 weights)": sweep(11)}


def train_sca(tables: PointwiseTables, weights: np.ndarray, z: float, settings: TabularSettings, seed: int) -> dict:
    """SCA (eq. 5): one tabular policy per weight vector, maximising ``sum_j w_j F_bar_j`` (Adam, full batch)."""
    sums = torch.as_tensor(tables.sums, dtype=torch.float64)
    w = torch.as_tensor(np.asarray(weights, float), dtype=torch.float64)
    logits = torch.nn.Parameter(init_logits(tables, w.shape[0], settings.init_noise, seed))
    opt = torch.optim.Adam([logits], lr=settings.learning_rate)
    for _ in range(settings.steps):
        opt.zero_grad()
        f_bar = normalize_log_likelihood(tabular_weighted_ll(sums, torch.log_softmax(logits, -1)), z,
                                         settings.smooth_temperature)
        (-(w * f_bar).sum()).backward()
        opt.step()
    out = finish_tabular(tables, logits, z, settings, {})
    closed = weighted_likelihood_optimum(tables, np.asarray(weights, float))
    out["tv_to_closed_form"] = 0.5 * np.abs(out["probs"] - closed).sum(-1).max(-1)  # worst context, per policy
    return out


def run_toy(run: ToyRun) -> None:
    """SCA with both weight sets for every seed; each weight vector's policy is added under its set's label."""
    settings = weighted_likelihood_run(run).tabular
    for seed in run.seeds:
        tables, z, base = seed_statistics(run, seed)
        t = time.time()
        for name, weights in sca_weight_sets().items():
            out = train_sca(tables, weights, z, settings, seed)
            for i, w in enumerate(weights):
                run.add(name, {**base, "w": w.tolist(), "F": out["F"][i].tolist(), "F_bar": out["F_bar"][i].tolist(),
                               "tv_to_closed_form": float(out["tv_to_closed_form"][i])}, out["probs"][i])
        run.add_time("sca", time.time() - t)
