"""HaM on the continuous toy problem: K tabular policies maximising the exact hypervolume (HaM paper eq. 6).

The pointwise setting, the statistics and the normalisation are shared with SCA and RiC
(:mod:`moalign.experiments.toy_pointwise`); :func:`run_toy` is HaM's entry in ``moalign synthetic toy``: one run
per ``ham_ks`` value and seed, every head a policy ``HaM (K=k)``.
"""

from __future__ import annotations

import time

import torch

from moalign.core.ham import inclusion_exclusion_hypervolume, normalize_log_likelihood
from moalign.experiments.toy_pointwise import (
    PointwiseTables,
    TabularSettings,
    finish_tabular,
    init_logits,
    tabular_weighted_ll,
)
from moalign.experiments.toy_run import ToyRun
from moalign.experiments.toy_weighted_likelihood import seed_statistics, weighted_likelihood_run


def train_ham(tables: PointwiseTables, num_policies: int, z: float, settings: TabularSettings, seed: int) -> dict:
    """HaM: K tabular policies maximising the exact HV (eq. 6) of their normalised F (eq. 4, eq. 9), ref 0.

    Returns ``probs`` (K, C, A), ``F`` (K, J), ``F_bar`` (K, J), ``hv_trace`` (steps + 1,) — the HV before each
    step and after the last.
    """
    sums = torch.as_tensor(tables.sums, dtype=torch.float64)
    logits = torch.nn.Parameter(init_logits(tables, num_policies, settings.init_noise, seed))
    opt = torch.optim.Adam([logits], lr=settings.learning_rate)
    ref = torch.zeros(sums.shape[0], dtype=torch.float64)
    trace = []

    def objective() -> torch.Tensor:
        f_bar = normalize_log_likelihood(tabular_weighted_ll(sums, torch.log_softmax(logits, -1)), z,
                                         settings.smooth_temperature)
        return inclusion_exclusion_hypervolume(f_bar, ref)

    for _ in range(settings.steps):
        opt.zero_grad()
        hv = objective()
        trace.append(float(hv.detach()))
        (-hv).backward()
        opt.step()
    return finish_tabular(tables, logits, z, settings, {"hv_trace": trace + [float(objective().detach())]})


def run_toy(run: ToyRun) -> None:
    """HaM for every K of ``ham_ks`` and every seed; each head is a policy of ``HaM (K=k)``."""
    settings = weighted_likelihood_run(run).tabular
    for seed in run.seeds:
        tables, z, base = seed_statistics(run, seed)
        t = time.time()
        for k in run.cfg.ham_ks:
            out = train_ham(tables, k, z, settings, seed)
            for head in range(k):
                run.add(f"HaM (K={k})", {**base, "K": k, "head": head, "F": out["F"][head].tolist(),
                                         "F_bar": out["F_bar"][head].tolist(),
                                         "hv_first_last": [out["hv_trace"][0], out["hv_trace"][-1]]},
                        out["probs"][head])
        run.add_time("ham", time.time() - t)
