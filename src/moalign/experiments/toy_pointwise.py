"""The pointwise toy setting that HaM, SCA and RiC share (mopo-paper App. A.1; HaM paper arXiv 2412.05469).

Offline **pointwise** data ``(x, y, r(x, y))``: ``x, y ~ U[0, 1]`` drawn exactly as the toy's
pairwise data (:func:`moalign.experiments.toy_problem.sample_preference_data` draws ``x`` then
``y`` from the same generator first, so for one seed the pointwise rows are the ``(x, y)`` of the
MOPO/DPO rows), with the rewards of the reward set, mapped per objective to ``[0, 1]`` by min-max
over the training rows (HaM eq. 3 assumes ``r_j in [0, 1]``; the rule of the text trainer).

Policies are **tabular**: a softmax over the action grid ``y = linspace(0, 1, A)`` per context node
of the 201-node evaluation grid (each row's ``x`` and ``y`` go to their nearest nodes), initialised
at the uniform density ``mu`` (the toy's reference). Because the weighted log-likelihood of eq. 9
is a sum over rows, it is a function of the sufficient statistics
``S_j[c, a] = (1/N) sum_{i in cell (c, a)} r_j(x_i, y_i)``:
``F_j(pi) = (1/N) sum_i r_j(x_i, y_i) log pi(a_i | c_i) = sum_{c, a} S_j[c, a] log pi(a | c)``
(full batch, B = N). Every step is plain Adam on the logits.

* HaM: K tabular policies, loss ``-HV(F_bar; ref = 0)`` with ``F_bar`` eq. 4 of F (eq. 9) and HV
  the exact inclusion-exclusion of eq. 6 (``moalign.core.ham``).
* SCA (eq. 5): one policy per weight vector w, loss ``-sum_j w_j F_bar_j``. Where the clip of eq. 4
  is inactive this is ``(1/z) sum_j w_j F_j + const``, maximised per context by the closed form
  ``pi_w(a | c) = sum_j w_j S_j[c, a] / sum_a' sum_j w_j S_j[c, a']`` (Gibbs' inequality; for
  ``w = (1, 0)``: pi proportional to the sum of ``r_1`` over the samples in each cell).
* z (eq. 4): ``z_scale * max_{j} |F_j(mu)|`` of the seed's data (the text trainer's rule applied to
  the initial policy), shared by every method of the seed so their ``F_bar`` are comparable.

The stationary points of HaM are SCA policies too: ``dHV/dF_bar_k`` is a non-negative vector
``g_k``, so a stationary head solves ``max sum_j g_kj F_j``, i.e. ``pi_k`` is ``pi_w`` for
``w = g_k / |g_k|_1``. HaM differs from SCA only in *which* weights it lands on.

This module holds the data, the statistics, F and its normalisation, the closed form and the tabular
training helpers; the methods themselves are ``moalign.methods.ham.toy.train_ham`` and
``moalign.methods.sca.toy.train_sca`` (RiC: ``moalign.methods.ric.toy``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from moalign.core.ham import (
    normalize_log_likelihood,
    weighted_log_likelihood,
)
from moalign.core.normalization import fit_normalization, normalize
from moalign.experiments.toy_problem import NUM_CONTEXTS, cell_widths, nearest_node, reward_functions


@dataclass
class PointwiseData:
    """Rows ``(x, y)`` in ``[0, 1]`` with raw rewards ``(N, 2)``."""

    x: np.ndarray
    y: np.ndarray
    rewards: np.ndarray

    def __len__(self) -> int:
        return int(self.x.shape[0])


def sample_pointwise_data(reward_set: str, num_rows: int, rng: np.random.Generator) -> PointwiseData:
    """``x, y ~ U[0, 1]`` (drawn first x, then y, as the pairwise toy data) and ``(r_1, r_2)(x, y)``."""
    if num_rows < 1:
        raise ValueError(f"num_rows must be >= 1, got {num_rows}")
    r1, r2 = reward_functions(reward_set)
    x, y = rng.random(num_rows), rng.random(num_rows)
    return PointwiseData(x, y, np.stack([r1(x, y), r2(x, y)], axis=1))


@dataclass
class PointwiseTables:
    """Sufficient statistics of a pointwise dataset on the (context node, action) grid.

    ``sums[j, c, a]``: (1/N) x the sum of the [0, 1]-mapped reward j over the rows in cell (c, a);
    ``counts[c, a]``: fraction of rows in the cell; ``low``/``spread``: the min-max map of the rewards;
    ``log_mu``: the uniform density's log-probabilities over the action grid (the initial policy).
    """

    sums: np.ndarray
    counts: np.ndarray
    low: np.ndarray
    spread: np.ndarray
    log_mu: np.ndarray
    num_rows: int


def pointwise_tables(data: PointwiseData, num_actions: int, num_contexts: int = NUM_CONTEXTS) -> PointwiseTables:
    """Cell sums of the [0, 1]-mapped rewards and cell counts, each divided by N.

    The map is the HaM trainer's: a min-max fit on the training rewards (:func:`moalign.core.normalization.
    fit_normalization`, offline rule: a constant objective raises), then clipped to [0, 1].
    """
    low, spread = fit_normalization(data.rewards, "minmax", "raise")
    mapped = np.clip(normalize(data.rewards, low, spread), 0.0, 1.0)
    cell = nearest_node(data.x, num_contexts) * num_actions + nearest_node(data.y, num_actions)
    size, n = num_contexts * num_actions, len(data)
    sums = np.stack([np.bincount(cell, weights=mapped[:, j], minlength=size) for j in range(mapped.shape[1])])
    counts = np.bincount(cell, minlength=size).astype(np.float64)
    return PointwiseTables(sums.reshape(-1, num_contexts, num_actions) / n, counts.reshape(num_contexts, num_actions) / n,
                           low, spread, np.log(cell_widths(num_actions)), n)


def weighted_ll_of_probs(tables: PointwiseTables, probs: np.ndarray) -> np.ndarray:
    """F (eq. 9, full batch) of policies ``probs`` ``(..., C, A)``: array ``(..., J)``; ``-inf`` if a cell with
    data has probability 0 (a deterministic policy has no likelihood on uniform data)."""
    probs = np.asarray(probs, float)
    with np.errstate(divide="ignore"):
        logp = np.log(probs)
    lead = probs.shape[:-2]
    flat = logp.reshape(-1, *probs.shape[-2:])  # (P, C, A)
    out = np.empty((flat.shape[0], tables.sums.shape[0]))
    for j in range(tables.sums.shape[0]):
        s = tables.sums[j]
        with np.errstate(invalid="ignore"):  # 0 * -inf in cells without data; np.where drops them
            out[:, j] = np.where(s > 0, s * flat, 0.0).sum((-2, -1))
    return out.reshape(*lead, -1)


def normalised(values: np.ndarray, z: float, smooth_temperature: float | None = None) -> np.ndarray:
    """Eq. 4 on numpy values (through ``core.ham.normalize_log_likelihood``)."""
    t = torch.as_tensor(np.asarray(values, float), dtype=torch.float64)
    return normalize_log_likelihood(t, z, smooth_temperature).numpy()


def default_z(tables: PointwiseTables, z_scale: float) -> float:
    """``z_scale * max_j |F_j(mu)|``: z of eq. 4 from the uniform initial policy (text trainer's rule)."""
    f0 = weighted_ll_of_probs(tables, np.exp(np.broadcast_to(tables.log_mu, tables.counts.shape)))
    return float(z_scale * np.abs(f0).max())


def weighted_likelihood_optimum(tables: PointwiseTables, weights: np.ndarray) -> np.ndarray:
    """Closed-form SCA optimum ``pi_w(a | c) ∝ sum_j w_j S_j[c, a]`` (uniform ``mu`` where a context has no
    weighted mass); ``weights`` ``(W, J)`` -> ``(W, C, A)``."""
    w = np.asarray(weights, float).reshape(-1, tables.sums.shape[0])
    mass = np.einsum("wj,jca->wca", w, tables.sums)
    total = mass.sum(-1, keepdims=True)
    mu = np.exp(tables.log_mu)
    return np.where(total > 0, mass / np.where(total > 0, total, 1.0), mu)


@dataclass
class TabularSettings:
    """Adam on the logits of tabular policies (full batch)."""

    steps: int = 1000
    learning_rate: float = 0.05
    init_noise: float = 0.1
    smooth_temperature: float | None = None


def init_logits(tables: PointwiseTables, num: int, noise: float, seed: int) -> torch.Tensor:
    """``num`` tabular logits at the uniform density plus seeded noise (identical heads never separate)."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.as_tensor(tables.log_mu, dtype=torch.float64).expand(num, *tables.counts.shape)
    return (base + noise * torch.randn(num, *tables.counts.shape, generator=gen, dtype=torch.float64)).clone()


def tabular_weighted_ll(sums: torch.Tensor, logp: torch.Tensor) -> torch.Tensor:
    """(P, J) F of eq. 9 for tabular log-probs ``(P, C, A)``, via ``core.ham.weighted_log_likelihood``:
    each cell is a 'row' with the cell's summed rewards; the 1/B of eq. 9 is undone since sums are already /N."""
    cells = sums.shape[1] * sums.shape[2]
    return weighted_log_likelihood(logp.reshape(logp.shape[0], cells), sums.reshape(sums.shape[0], cells).T) * cells


def finish_tabular(tables: PointwiseTables, logits: torch.Tensor, z: float, settings: TabularSettings, extra: dict) -> dict:
    """Probabilities, F and F_bar of trained logits (plus ``extra``): what a tabular method returns."""
    with torch.no_grad():
        probs = torch.softmax(logits, -1).numpy()
    f = weighted_ll_of_probs(tables, probs)
    return {"probs": probs, "F": f, "F_bar": normalised(f, z, settings.smooth_temperature), "z": z, **extra}
