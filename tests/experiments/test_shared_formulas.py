"""The trainer and the toy, fed the same inputs, compute the same shared formula (core.thresholds, core.cloning,
core.pairs): the toy's figures test the trainer's rules.

Hand computations of the formulas themselves: tests/core/test_shared_formulas.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from moalign.core.cloning import behaviour_cloning_loss
from moalign.core.mopo import MOPODual
from moalign.methods.mopo.toy_dual import DualTracker
from moalign.experiments.toy_online import pair_labels
from moalign.methods.mo_odpo.trainer import label_pairs
from tests.trainers.test_mopo_trainer import make_trainer

BETA = 0.99
PHASE_STEPS = 3
PHASE_BOUNDS = [0.42, 0.61]  # per head (trainer) / per run (toy): the phase mean of the checked lower bound
SECONDARY = [[0.2, 0.8, 1.0, 0.0], [1.0, 1.0, 0.5, 0.0]]  # per head / run: secondary labels of 4 rows


def _toy_threshold(rule: str) -> np.ndarray:
    """The toy's end-of-phase rule on two runs with 4 equally likely rows and the new reference at w = 1."""
    n = 4
    secondary = torch.tensor(SECONDARY, dtype=torch.float32).reshape(1, 1, 2, n, 1)
    mass = torch.full((1, 1, 1, n), 1.0 / n)
    dual = MOPODual(lam=torch.zeros(1, 1, 2, 1, dtype=torch.float64),
                    threshold=torch.full((1, 1, 2, 1), 0.5, dtype=torch.float64), tau=1.0, eps=0.0, lr_lambda=1.0)
    tracker = DualTracker(dual, secondary, mass, None, rule, BETA, shape=(1, 1, 2, 1, n), repeat=1)
    tracker._phase_sum["lower_bound"] = torch.tensor(PHASE_BOUNDS, dtype=torch.float64).reshape(1, 1, 2) * PHASE_STEPS
    tracker._phase_count = PHASE_STEPS
    tracker.end_phase(torch.full((1, 1, 2, 1, n), -np.log(n)), torch.ones(1, 1, 2, n))
    return dual.threshold[0, 0, :, 0].numpy()


def _trainer_threshold(tmp_path, rule: str) -> np.ndarray:
    """The trainer's lag update with the same phase: the phase mean of the checked bound, and the lagged policy's
    value of the source the rule scales (here its G_hat = LB at eps 0: the mean secondary label)."""
    trainer = make_trainer(tmp_path, threshold_rule=rule, threshold_beta=BETA, lag_steps=2, lower_bound_eps=0.0)
    trainer._phase_bound_sum = torch.tensor(PHASE_BOUNDS).reshape(2, 1) * PHASE_STEPS
    trainer._phase_bound_count = PHASE_STEPS
    trainer._lagged_estimate_sum = torch.tensor(SECONDARY).mean(-1, keepdim=True) * PHASE_STEPS
    trainer._lagged_estimate_count = PHASE_STEPS
    trainer.state.global_step = 2
    trainer._maybe_update_lag(trainer.model)
    return np.array([float(d.threshold[0]) for d in trainer.duals])


@pytest.mark.parametrize("rule, by_hand", [
    ("attained", [BETA * b for b in PHASE_BOUNDS]),
    ("paper", [BETA * float(np.mean(s)) for s in SECONDARY]),
    ("lower_bound", [BETA * float(np.mean(s)) for s in SECONDARY]),  # eps = 0: LB = G_hat
])
def test_threshold_rule_toy_and_trainer_agree(tmp_path, rule, by_hand):
    toy, trainer = _toy_threshold(rule), _trainer_threshold(tmp_path, rule)
    np.testing.assert_allclose(toy, by_hand, rtol=1e-6)
    np.testing.assert_allclose(trainer, by_hand, rtol=1e-6)


def test_behaviour_cloning_per_row_mean_equals_the_toys_per_cell_sum():
    """The trainer averages w_i log pi(y_i) over its n rows; the toy sums p(cell) w log pi(cell) after adding up
    the rows of each cell. Same rows, same loss and gradient."""
    gen = torch.Generator().manual_seed(1)
    cells, n = 5, 40
    cell_of_row = torch.randint(cells, (n,), generator=gen)
    weights = torch.rand(n, generator=gen, dtype=torch.float64) * 2
    logits = torch.randn(cells, generator=gen, dtype=torch.float64, requires_grad=True)
    log_pi = torch.log_softmax(logits, -1)
    trainer = behaviour_cloning_loss(log_pi[cell_of_row], weights, "mean")
    target = torch.zeros(cells, dtype=torch.float64).index_add_(0, cell_of_row, weights / n)  # p(cell) E[w | cell]
    toy = behaviour_cloning_loss(log_pi, target)
    torch.testing.assert_close(trainer, toy)
    (g_trainer,) = torch.autograd.grad(trainer, logits, retain_graph=True)
    (g_toy,) = torch.autograd.grad(toy, logits)
    torch.testing.assert_close(g_trainer, g_toy)


def test_pair_labels_toy_and_trainer_agree():
    rng = np.random.default_rng(0)
    r1 = rng.integers(0, 3, size=(200, 2)) / 2.0  # coarse rewards: many exact ties
    r2 = rng.integers(0, 3, size=(200, 2)) / 2.0
    w = np.repeat(rng.integers(0, 5, size=(200, 1)) / 4.0, 2, axis=1) * [1.0, -1.0] + [0.0, 1.0]  # (w, 1 - w)
    first_toy, tie_toy = pair_labels(r1, r2, w)
    first, used, _, _ = label_pairs(torch.tensor(r1), torch.tensor(r2), torch.tensor(w))
    assert tie_toy.any() and first_toy.any() and (~first_toy & ~tie_toy).any()
    np.testing.assert_array_equal(first.numpy(), first_toy)
    np.testing.assert_array_equal((~used).numpy(), tie_toy)
    s1, s2 = (r1 * w).sum(-1), (r2 * w).sum(-1)  # by hand
    np.testing.assert_array_equal(first_toy, s1 > s2)
    np.testing.assert_array_equal(tie_toy, s1 == s2)
