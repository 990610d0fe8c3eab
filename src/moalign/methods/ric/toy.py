"""Rewards-in-Context (RiC; Yang et al. 2024, as the HaM paper §2.2 summarises it) on the continuous toy problem.

The text RiC writes the (normalised) rewards into the prompt; its toy analogue is a policy
**conditioned on target rewards**, tabular in (context node, target bin): the condition of a row
is its own rewards, z-scored per objective on the training rows (RiC's recipe) and rounded to
``decimals`` digits (RiC writes one decimal), so a bin is the pair of rounded values. Training is
SFT: maximise ``(1/N) sum_i log pi(a_i | c_i, bin_i)`` by Adam on the logits of the populated
(context, bin) rows (full batch); its optimum is the empirical conditional ``count(c, bin, a) /
count(c, bin)``. At inference a preference ``w`` is mapped to targets by RiC's mapping
(:func:`moalign.data.ric.preference_to_targets`, HaM paper §2.2) with the range of the normalised
training rewards.

A tabular policy cannot generalise to a condition it never saw: the targets of a preference are
mostly not reachable at a given context (``f(0.5, 0.5) = (r_max_1, r_max_2)`` over *all* contexts).
Our rule, stated because the text model has no such step: at each context the policy uses the
populated bin nearest to the targets (Euclidean, in the normalised units) — the condition the
tabular model "knows" that is closest to what it was asked.

:func:`run_toy` is RiC's entry in ``moalign synthetic toy``: the SFT on each seed's pointwise rows (HaM's, from
:mod:`moalign.experiments.toy_weighted_likelihood`), then one policy per preference ``(w, 1 - w)``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from moalign.core.normalization import fit_normalization, normalize
from moalign.data.ric import preference_to_targets, round_conditions, target_bounds
from moalign.experiments.toy_pointwise import PointwiseData, normalised, weighted_ll_of_probs
from moalign.experiments.toy_problem import NUM_CONTEXTS, cell_widths, nearest_node
from moalign.experiments.toy_run import ToyRun
from moalign.experiments.toy_weighted_likelihood import seed_data, seed_statistics, sweep, weighted_likelihood_run


@dataclass
class RiCTables:
    """Populated (context, bin) keys and their action counts; the normalisation and the target range."""

    context: np.ndarray  # (U,) context node of each key
    bins: np.ndarray  # (U, J) the rounded normalised rewards of each key (bin centres)
    counts: np.ndarray  # (U, A) rows per action, / N
    mean: np.ndarray
    std: np.ndarray
    bounds: list[tuple[float, float]]  # range of the rounded normalised training rewards (the RiC mapping's)
    decimals: int
    num_contexts: int


def ric_tables(data: PointwiseData, num_actions: int, decimals: int = 1,
               num_contexts: int = NUM_CONTEXTS) -> RiCTables:
    """Z-score the rewards, round them to ``decimals`` (the bins), and count actions per (context, bin).

    As the text trainer (``RewardConditioner.fit``): a z-score fit on the training rewards
    (:func:`moalign.core.normalization.fit_normalization`, offline rule: a constant objective raises), the
    conditions rounded by :func:`moalign.data.ric.round_conditions`, RiC's bounds from
    :func:`moalign.data.ric.target_bounds` (the range of the rounded conditions).
    """
    mean, std = fit_normalization(data.rewards, "zscore", "raise")
    normed = normalize(data.rewards, mean, std)
    codes = np.rint(round_conditions(normed, decimals) * 10 ** decimals).astype(np.int64)
    node = nearest_node(data.x, num_contexts)
    keys, inverse = np.unique(np.column_stack([node, codes]), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    action = nearest_node(data.y, num_actions)
    counts = np.bincount(inverse * num_actions + action, minlength=keys.shape[0] * num_actions)
    bounds = target_bounds(normed, decimals)
    return RiCTables(keys[:, 0], keys[:, 1:] / 10 ** decimals,
                     counts.reshape(-1, num_actions).astype(np.float64) / len(data), mean, std, bounds, decimals,
                     num_contexts)


def train_ric(tables: RiCTables, steps: int, learning_rate: float) -> np.ndarray:
    """SFT of the conditional tabular policy by Adam (full batch), from the uniform density; ``(U, A)`` probs."""
    counts = torch.as_tensor(tables.counts, dtype=torch.float64)
    log_mu = torch.as_tensor(np.log(cell_widths(counts.shape[1])), dtype=torch.float64)
    logits = torch.nn.Parameter(log_mu.expand_as(counts).clone())
    opt = torch.optim.Adam([logits], lr=learning_rate)
    for _ in range(steps):
        opt.zero_grad()
        (-(counts * torch.log_softmax(logits, -1)).sum()).backward()
        opt.step()
    with torch.no_grad():
        return torch.softmax(logits, -1).numpy()


def sft_optimum(tables: RiCTables) -> np.ndarray:
    """The SFT (maximum-likelihood) optimum: the empirical conditional ``count(c, bin, a) / count(c, bin)``."""
    return tables.counts / tables.counts.sum(-1, keepdims=True)


def ric_policy(tables: RiCTables, key_probs: np.ndarray, preference: tuple[float, ...]) -> tuple[np.ndarray, list]:
    """The policy ``(C, A)`` for preference ``w``: targets by RiC's mapping, then per context the populated bin
    nearest to them. Returns the probabilities and the targets."""
    targets = preference_to_targets(preference, tables.bounds, decimals=tables.decimals)
    dist = np.linalg.norm(tables.bins - np.asarray(targets)[None], axis=1)
    probs = np.broadcast_to(cell_widths(key_probs.shape[1]), (tables.num_contexts, key_probs.shape[1])).copy()
    order = np.lexsort((dist, tables.context))  # by context, then distance
    first = np.ones(order.size, dtype=bool)
    first[1:] = tables.context[order][1:] != tables.context[order][:-1]
    chosen = order[first]  # the nearest populated key of every context that has data
    probs[tables.context[chosen]] = key_probs[chosen]
    return probs, targets


def run_toy(run: ToyRun) -> None:
    """RiC for every seed: SFT on the reward-conditioned table, then the policy of each of ``ric_preferences``
    preferences, with its targets and its F, F_bar on HaM's statistics."""
    cfg = run.cfg
    steps = weighted_likelihood_run(run).tabular.steps
    for seed in run.seeds:
        tables, z, base = seed_statistics(run, seed)
        data = seed_data(run, seed)
        t = time.time()
        ric = ric_tables(data, cfg.num_actions)
        del data
        key_probs = train_ric(ric, steps, cfg.ric_learning_rate)
        tv = float(0.5 * np.abs(key_probs - sft_optimum(ric)).sum(-1).max())
        for w in sweep(cfg.ric_preferences):
            probs, targets = ric_policy(ric, key_probs, (float(w[0]), float(w[1])))
            f = weighted_ll_of_probs(tables, probs)
            run.add("RiC", {**base, "preference": w.tolist(), "targets": targets, "F": f.tolist(),
                            "F_bar": normalised(f, z, cfg.ham_smooth_temperature).tolist(),
                            "populated_bins": int(len(ric.context)), "tv_to_sft_optimum": tv}, probs)
        run.add_time("ric", time.time() - t)
