"""The online toy family (MO-ODPO, P-MORL, Rewarded Soups, ODPO Soups, and MODPO) in ``moalign synthetic toy``.

Each method's toy version (``moalign.methods.<name>.toy``) trains for every seed with the family's settings
(:func:`settings_from`, from the ``odpo_*`` and ``dpo_*`` fields of the toy config) and hands its policies to
:func:`run_weighted_method`, which adds, for the 11- and the 101-point weight grids ``w = (w_1, 1 - w_1)``,
``w_1 = linspace(1, 0, n)``, every policy's probability table on the x-grid to the toy's policy list (same JSON
format as MOPO's), as the methods ``"<title> (11 w)"`` and ``"<title> (101 w)"`` (the 11 weights are a subset of
the 101; their policies are the same). docs/toy.md, "MO-ODPO and its baselines", has the setup and the results.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from moalign.experiments.toy_online import OnlineSettings, weight_grid
from moalign.experiments.toy_run import ToyRun

GRIDS = (11, 101)
#: ``train(settings, seed index, seed, weights) -> (W, 201, A)`` probabilities of one method for one seed
TrainPolicies = Callable[["ODPOToySettings", int, int, np.ndarray], np.ndarray]


@dataclass
class ODPOToySettings:
    """Defaults of the five methods (``ToyConfig`` fields ``odpo_*`` override them where present)."""

    online: OnlineSettings = field(default_factory=OnlineSettings)
    rloo_learning_rate: float = 0.05  # P-MORL and the RS specialists (0.01: not converged in 1500 steps)
    modpo_beta: float = 0.01  # the toy's DPO beta (the BT scale of the rows)
    modpo_steps: int = 1000
    modpo_batch_size: int = 2048
    modpo_learning_rate: float = 0.01
    quick_online_steps: int = 200
    quick_modpo_steps: int = 150


def settings_from(cfg) -> ODPOToySettings:
    """The settings of a :class:`~moalign.experiments.toy.ToyConfig` (quick tier: fewer steps)."""
    base = ODPOToySettings()
    online = replace(base.online, steps=getattr(cfg, "odpo_steps", base.online.steps),
                     beta=getattr(cfg, "odpo_beta", base.online.beta),
                     alpha=getattr(cfg, "odpo_alpha", base.online.alpha),
                     learning_rate=getattr(cfg, "odpo_learning_rate", base.online.learning_rate))
    out = replace(base, online=online, modpo_steps=getattr(cfg, "dpo_steps", base.modpo_steps),
                  modpo_batch_size=getattr(cfg, "dpo_batch_size", base.modpo_batch_size),
                  modpo_learning_rate=getattr(cfg, "dpo_learning_rate", base.modpo_learning_rate))
    if getattr(cfg, "quick", False):
        out = replace(out, online=replace(online, steps=min(online.steps, base.quick_online_steps)),
                      modpo_steps=min(out.modpo_steps, base.quick_modpo_steps))
    return out


def online_weights() -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """The weight vectors every method of the family is evaluated at (the 101-point grid) and, per grid size of
    :data:`GRIDS`, the indices of its weights among them."""
    weights = weight_grid(max(GRIDS))
    subsets = {n: np.flatnonzero(np.isin(np.round(weights[:, 0], 9), np.round(weight_grid(n)[:, 0], 9)))
               for n in GRIDS}
    assert all(len(v) == n for n, v in subsets.items())
    return weights, subsets


def settings_report(s: ODPOToySettings) -> dict:
    """The family's settings as the result's ``odpo_settings`` entry."""
    return {"online": vars(s.online), "rloo_learning_rate": s.rloo_learning_rate, "modpo_beta": s.modpo_beta,
            "modpo_steps": s.modpo_steps, "modpo_batch_size": s.modpo_batch_size,
            "modpo_learning_rate": s.modpo_learning_rate, "weight_grids": list(GRIDS),
            "reward_normalisation": "online methods: per objective min-max over the 201 x 51 grid to [0, 1]; "
                                    "MODPO: raw rewards (the BT labels' scale)"}


def run_weighted_method(run: ToyRun, name: str, title: str, train: TrainPolicies,
                        extra_params: Callable[[np.ndarray], list[dict]] | None = None) -> None:
    """Train one method of the family for every seed and add its policies on both weight grids.

    ``train(settings, index, seed, weights)`` returns the probabilities ``(W, 201, A)`` at every row of
    ``weights`` (the seed is the ``index``-th of ``run.seeds``); the policies are added as ``"<title> (11 w)"`` and
    ``"<title> (101 w)"``, each with its weights and ``extra_params(weights)[i]``.
    """
    s = settings_from(run.cfg)
    weights, subsets = online_weights()
    extra = extra_params(weights) if extra_params is not None else [{} for _ in weights]
    for si, seed in enumerate(run.seeds):
        t = time.time()
        probs = train(s, si, seed, weights)
        for n, rows in subsets.items():
            for i in rows:
                run.add(f"{title} ({n} w)", {"seed": seed, "w": weights[i].tolist(), "grid": n, **extra[i]}, probs[i])
        run.add_time(name, time.time() - t)
        if run.progress:
            print(f"  {title} seed {seed}: {time.time() - t:.1f} s", flush=True)
    run.results["odpo_settings"] = settings_report(s)
