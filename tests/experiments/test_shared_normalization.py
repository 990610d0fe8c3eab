"""The trainers and the toy, fed the same rewards, fit the same normalisation (core.normalization), RiC's bounds
(data.ric.target_bounds) and the same soup theta(w) (core.soups): the toy's figures test the trainers' rules.

Hand computations of the formulas themselves: tests/core/test_normalization_soups_modpo.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from moalign.experiments.toy_pointwise import PointwiseData, pointwise_tables
from moalign.experiments.toy_online import CondPolicy, RewardScale
from moalign.experiments.toy_problem import NUM_CONTEXTS, action_grid, context_grid, reward_tables
from moalign.methods.ric.toy import ric_tables
from moalign.experiments.toy_soups import interpolate
from moalign.models.soups import interpolate_tensors
from moalign.methods.ric.config import RiCConfig
from moalign.methods.ric.trainer import RiCTrainer
from tests.trainers.test_ham_trainer import make_pointwise_rows
from tests.trainers.test_ham_trainer import make_trainer as make_ham_trainer
from tests.trainers.test_mo_odpo_trainer import make_trainer as make_mo_odpo_trainer

NUM_ACTIONS = 51


def _toy_data(scores: np.ndarray) -> PointwiseData:
    """Toy rows carrying the trainer's scores as their rewards (x, y only place them on the grid)."""
    rng = np.random.default_rng(0)
    return PointwiseData(rng.random(len(scores)), rng.random(len(scores)), scores)


def test_ham_trainer_and_toy_map_rewards_identically(tmp_path):
    trainer = make_ham_trainer(tmp_path)
    scores = np.asarray(trainer.train_dataset["scores"], dtype=float)
    tables = pointwise_tables(_toy_data(scores), NUM_ACTIONS)
    np.testing.assert_array_equal(tables.low, trainer.normalizer.shift)
    np.testing.assert_array_equal(tables.spread, trainer.normalizer.scale)
    probe = np.array([[-5.0, 5.0], [0.5, 20.0]])  # outside the range on one side each: clipped by both
    toy = np.clip((probe - tables.low) / tables.spread, 0.0, 1.0)
    np.testing.assert_array_equal(trainer.rewards(torch.from_numpy(probe)).numpy(), toy.astype(np.float32))


def test_offline_fits_refuse_a_constant_objective(tmp_path):
    rows = make_pointwise_rows()
    constant = np.array([[r["scores"][0], 4.0] for r in rows])
    with pytest.raises(ValueError, match="zero range"):
        pointwise_tables(_toy_data(constant), NUM_ACTIONS)
    with pytest.raises(ValueError, match="zero variance"):
        ric_tables(_toy_data(constant), NUM_ACTIONS)


def test_ric_trainer_and_toy_have_the_same_statistics_conditions_and_bounds(tmp_path):
    trainer = make_ham_trainer(tmp_path, config_class=RiCConfig, trainer_class=RiCTrainer)
    scores = np.asarray(trainer.train_dataset["scores"], dtype=float)
    tables = ric_tables(_toy_data(scores), NUM_ACTIONS, decimals=trainer.conditioner.decimals)
    np.testing.assert_array_equal(tables.mean, trainer.conditioner.normalizer.shift)
    np.testing.assert_array_equal(tables.std, trainer.conditioner.normalizer.scale)
    assert tables.bounds == trainer.conditioner.bounds  # both: the range of the rounded conditions
    written = {tuple(trainer.conditioner.targets_for_scores(s)) for s in scores}  # what training prompts carry
    assert {tuple(b) for b in tables.bins.tolist()} == written
    lows, highs = zip(*trainer.conditioner.bounds)
    assert lows == tuple(min(w[j] for w in written) for j in range(2))
    assert highs == tuple(max(w[j] for w in written) for j in range(2))


@pytest.mark.parametrize("reward_set", ["A", "B"])
def test_mo_odpo_trainer_and_toy_scale_the_grid_rewards_identically(tmp_path, reward_set):
    """The toy fits on the whole grid, the trainer on its first batch: given the grid as that batch, they agree."""
    raw = reward_tables(reward_set, context_grid(NUM_CONTEXTS), action_grid(NUM_ACTIONS))
    raw = raw.reshape(2, -1).T  # (C * A, 2)
    trainer = make_mo_odpo_trainer(tmp_path)
    mapped = trainer.normalized_rewards(raw, "train")
    scale = RewardScale.of(reward_set, NUM_ACTIONS)
    np.testing.assert_array_equal(trainer.normalizer.shift, scale.low)
    np.testing.assert_array_equal(trainer.normalizer.scale, scale.spread)
    xx, yy = np.meshgrid(context_grid(NUM_CONTEXTS), action_grid(NUM_ACTIONS), indexing="ij")
    np.testing.assert_allclose(scale.rewards(xx.ravel(), yy.ravel()), mapped, rtol=0, atol=1e-15)


def test_mo_odpo_first_batch_fit_keeps_a_constant_objective(tmp_path):
    trainer = make_mo_odpo_trainer(tmp_path)
    mapped = trainer.normalized_rewards(np.array([[1.0, 3.0], [2.0, 3.0], [4.0, 3.0]]), "eval")
    np.testing.assert_allclose(mapped, [[0.0, 0.0], [1 / 3, 0.0], [1.0, 0.0]])  # range 1 for the constant one


def test_soup_model_and_toy_interpolate_identically():
    specialists = CondPolicy(2, NUM_ACTIONS, 1, hidden=8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for p in specialists.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    per_specialist = [{n: p[k].detach() for n, p in specialists.params().items()} for k in range(2)]
    weights = np.array([[1.0, 0.0], [0.7, 0.3], [0.1, 0.9]])
    toy = interpolate(specialists, weights)
    for i, w in enumerate(weights):
        soup = interpolate_tensors(per_specialist, w.tolist())  # what SoupModel applies for w
        for name, value in soup.items():
            torch.testing.assert_close(value, toy[name][i], rtol=0, atol=0)
