"""MO-ODPO, P-MORL, Rewarded Soups, ODPO Soups and MODPO inside ``moalign synthetic toy``.

:func:`run_odpo_methods` is called by :func:`moalign.experiments.toy.run_toy` for
``--methods mo_odpo,p_morl,rewarded_soups,odpo_soups,modpo`` (the registry's names). Per seed it trains
the selected methods (``toy_online``, ``toy_soups``, ``toy_modpo``) and adds, for the 11- and the 101-point
weight grids ``w = (w_1, 1 - w_1)``, ``w_1 = linspace(1, 0, n)``, every policy's probability table on the
x-grid to the toy's policy list (same JSON format as MOPO's), as the methods ``"<name> (11 w)"`` and
``"<name> (101 w)"`` (the 11 weights are a subset of the 101; their policies are the same). docs/toy.md,
"MO-ODPO and its baselines", has the setup and the results.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from moalign.experiments.toy_modpo import modpo_terms, train_modpo
from moalign.experiments.toy_online import OnlineSettings, conditioned_probs, train_online, weight_grid
from moalign.experiments.toy_problem import sample_preference_data
from moalign.experiments.toy_soups import soup_probs

ODPO_METHODS = ("mo_odpo", "p_morl", "rewarded_soups", "odpo_soups", "modpo")
DISPLAY = {"mo_odpo": "MO-ODPO", "p_morl": "P-MORL", "rewarded_soups": "Rewarded Soups",
           "odpo_soups": "ODPO Soups", "modpo": "MODPO"}
GRIDS = (11, 101)
AddPolicy = Callable[[str, dict, np.ndarray], None]


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


def method_policies(method: str, reward_set: str, num_actions: int, s: ODPOToySettings, seed: int,
                    weights: np.ndarray, data=None, train_contexts: int = 101, hidden: int = 16) -> np.ndarray:
    """Train one method for one seed; probabilities ``(W, 201, A)`` at every row of ``weights``."""
    onehot = np.eye(2)
    rloo = replace(s.online, learning_rate=s.rloo_learning_rate)
    if method == "mo_odpo":
        return conditioned_probs(train_online(reward_set, num_actions, "dpo", s.online, seed), weights)[0]
    if method == "p_morl":
        return conditioned_probs(train_online(reward_set, num_actions, "rloo", rloo, seed), weights)[0]
    if method == "rewarded_soups":
        return soup_probs(train_online(reward_set, num_actions, "rloo", rloo, seed, onehot, shared_init=True), weights)
    if method == "odpo_soups":
        return soup_probs(train_online(reward_set, num_actions, "dpo", s.online, seed, onehot, shared_init=True),
                          weights)
    if method == "modpo":
        return train_modpo(data, reward_set, weights, num_actions, s.modpo_beta, s.modpo_steps, s.modpo_batch_size,
                           s.modpo_learning_rate, hidden, seed, train_contexts)
    raise ValueError(f"unknown method {method!r}; use one of {ODPO_METHODS}")


def run_odpo_methods(cfg, seeds: list[int], datasets: list, add: AddPolicy, timings: dict,
                     progress: bool = False) -> dict:
    """Train the selected methods for every seed and add their policies (both weight grids); returns the settings."""
    selected = [m for m in ODPO_METHODS if m in cfg.methods]
    s = settings_from(cfg)
    weights = weight_grid(max(GRIDS))
    subsets = {n: np.flatnonzero(np.isin(np.round(weights[:, 0], 9), np.round(weight_grid(n)[:, 0], 9)))
               for n in GRIDS}
    assert all(len(v) == n for n, v in subsets.items())
    for si, seed in enumerate(seeds):
        data = None
        if "modpo" in selected:
            # the seed's pairwise rows: the same (x, y, y', I1, I2) as DPO/MOPO draw from default_rng(seed)
            data = datasets[si] if si < len(datasets) else sample_preference_data(
                cfg.set, cfg.num_rows, np.zeros(0), np.random.default_rng(seed))
        for method in selected:
            t = time.time()
            probs = method_policies(method, cfg.set, cfg.num_actions, s, seed, weights, data, cfg.train_contexts,
                                    cfg.hidden)
            target = modpo_terms(weights)[0] if method == "modpo" else None
            for n, rows in subsets.items():
                for i in rows:
                    params = {"seed": seed, "w": weights[i].tolist(), "grid": n}
                    if target is not None:
                        params["target_objective"] = f"r{target[i] + 1}"
                    add(f"{DISPLAY[method]} ({n} w)", params, probs[i])
            timings[method] = timings.get(method, 0.0) + time.time() - t
            if progress:
                print(f"  {DISPLAY[method]} seed {seed}: {time.time() - t:.1f} s", flush=True)
        del data
    return {"online": vars(s.online), "rloo_learning_rate": s.rloo_learning_rate, "modpo_beta": s.modpo_beta,
            "modpo_steps": s.modpo_steps, "modpo_batch_size": s.modpo_batch_size,
            "modpo_learning_rate": s.modpo_learning_rate, "weight_grids": list(GRIDS),
            "reward_normalisation": "online methods: per objective min-max over the 201 x 51 grid to [0, 1]; "
                                    "MODPO: raw rewards (the BT labels' scale)"}
