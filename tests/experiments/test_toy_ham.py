"""HaM, SCA and RiC on the continuous toy problem, checked against independent computations.

* HaM's weighted-likelihood hypervolume rises over the steps and its final value equals moocore's
  hypervolume of the K points (F recomputed here row by row from the data, eq. 9, and eq. 4 by hand).
* SCA with w = (1, 0): for a tabular policy ``max_pi sum_i r1_i log pi(a_i | c_i)`` is, per context,
  ``max_pi sum_a S[c, a] log pi(a | c)`` with ``S[c, a]`` the sum of r1 over the rows in cell (c, a),
  whose maximiser is ``pi(a | c) = S[c, a] / sum_a' S[c, a']`` (Gibbs' inequality). S is computed
  here by a plain loop over rows.
* The best-K-points dynamic programme equals exhaustive search (moocore) on small fronts.
* ``--methods`` selects any subset, comma- or space-separated.
"""

from __future__ import annotations

import itertools
import json

import moocore
import numpy as np
import pytest

from moalign.experiments.toy import ToyConfig, run_toy
from moalign.experiments.toy_best_k import best_k_points, greedy_k_points
from moalign.experiments.toy_pointwise import (
    TabularSettings,
    default_z,
    pointwise_tables,
    sample_pointwise_data,
    weighted_likelihood_optimum,
)
from moalign.experiments.toy_problem import sample_preference_data
from moalign.methods.ham.toy import train_ham
from moalign.methods.ric.toy import ric_policy, ric_tables, sft_optimum, train_ric
from moalign.methods.sca.toy import train_sca

A = 11  # a coarse action grid keeps the tests fast


def _cells(data, num_actions=A, num_contexts=201):
    """(context node, action) of every row, by rounding (written out here, not imported)."""
    return np.rint(data.x * (num_contexts - 1)).astype(int), np.rint(data.y * (num_actions - 1)).astype(int)


def _mapped(data):
    r = data.rewards
    return (r - r.min(0)) / (r.max(0) - r.min(0))


@pytest.fixture(scope="module")
def data_b():
    return sample_pointwise_data("B", 30_000, np.random.default_rng(3))


def test_pointwise_rows_are_the_pairwise_rows_xy():
    d = sample_pointwise_data("A", 500, np.random.default_rng(7))
    p = sample_preference_data("A", 500, np.array([0.5]), np.random.default_rng(7))
    np.testing.assert_array_equal(d.x, p.x)
    np.testing.assert_array_equal(d.y, p.y)
    np.testing.assert_allclose(d.rewards[:, 0], np.exp(d.x) + np.sqrt(d.y) - d.y)
    np.testing.assert_allclose(d.rewards[:, 1], -np.sin(d.x) - d.y ** 2)


def test_ham_raises_weighted_likelihood_hv_and_matches_moocore(data_b):
    tables = pointwise_tables(data_b, A)
    z = default_z(tables, 2.0)
    out = train_ham(tables, 3, z, TabularSettings(steps=150, learning_rate=0.05, init_noise=0.1), seed=0)
    trace = np.array(out["hv_trace"])
    assert trace[-1] > trace[0] + 1e-3
    checkpoints = trace[::25]
    assert np.all(np.diff(checkpoints) > -1e-9), checkpoints  # rises over the steps
    assert np.mean(np.diff(trace) >= -1e-9) > 0.95  # and (Adam) at almost every single step
    # independent: eq. 9 row by row with the final probabilities, eq. 4 by hand, moocore's HV
    c, a = _cells(data_b)
    r = _mapped(data_b)
    logp = np.log(out["probs"][:, c, a])  # (K, N)
    f = logp @ r / len(data_b)
    f_bar = np.maximum((f + z) / z, 0.0)
    np.testing.assert_allclose(out["F"], f, rtol=1e-10)
    want = float(moocore.hypervolume(f_bar, ref=np.zeros(2), maximise=True))
    assert trace[-1] == pytest.approx(want, rel=1e-9)


def test_sca_w10_converges_to_reward_weighted_likelihood_optimum(data_b):
    tables = pointwise_tables(data_b, A)
    z = default_z(tables, 2.0)
    out = train_sca(tables, np.array([[1.0, 0.0]]), z, TabularSettings(steps=1500, learning_rate=0.1,
                                                                         init_noise=0.1), seed=1)
    c, a = _cells(data_b)
    r1 = _mapped(data_b)[:, 0]
    s = np.zeros((201, A))
    for ci, ai, ri in zip(c, a, r1):
        s[ci, ai] += ri
    has = s.sum(1) > 0
    closed = s[has] / s[has].sum(1, keepdims=True)
    assert np.abs(out["probs"][0][has] - closed).sum(1).max() < 2e-3
    np.testing.assert_allclose(weighted_likelihood_optimum(tables, np.array([[1.0, 0.0]]))[0][has], closed, atol=1e-12)
    # it is the maximum: any other policy has a lower r1-weighted log-likelihood
    rng = np.random.default_rng(0)
    other = np.clip(closed + 0.01 * rng.random(closed.shape), 1e-12, None)
    other /= other.sum(1, keepdims=True)
    assert (s[has] * np.log(closed)).sum() > (s[has] * np.log(other)).sum()


@pytest.mark.parametrize("trial", range(6))
def test_best_k_equals_brute_force(trial):
    rng = np.random.default_rng(trial)
    t = np.sort(rng.random(11))
    pts = np.column_stack([t, 1 - t ** rng.uniform(0.3, 3.0)])
    pts = np.vstack([pts, 0.6 * rng.random((4, 2)), pts[:2]])  # dominated and coincident points
    ref = np.array([-0.05, -0.1])
    for k in (1, 2, 3, 4):
        chosen, value = best_k_points(pts, ref, k)
        brute = max(moocore.hypervolume(pts[list(s)], ref=ref, maximise=True)
                    for s in itertools.combinations(range(len(pts)), k))
        assert value == pytest.approx(brute, rel=1e-12)
        assert moocore.hypervolume(chosen, ref=ref, maximise=True) == pytest.approx(value, rel=1e-12)
        assert greedy_k_points(pts, ref, k)[1] <= value + 1e-12


def test_ric_sft_reaches_the_count_optimum_and_maps_preferences(data_b):
    ric = ric_tables(data_b, A)
    probs = train_ric(ric, steps=300, learning_rate=0.1)
    assert np.abs(probs - sft_optimum(ric)).sum(1).max() < 0.05
    policy, targets = ric_policy(ric, probs, (1.0, 0.0))
    np.testing.assert_allclose(policy.sum(1), 1.0)
    assert targets[0] == pytest.approx(round(ric.bounds[0][1], 1))  # w_1 >= 1/2: r1's maximum (RiC mapping)
    # Set B: r1 = (x + y)^2 is largest and r2 = log((1+x)/(1+y)) smallest at y = 1, so w = (1, 0) puts most mass there
    assert policy[:, -1].mean() > 0.5


def test_methods_selection(tmp_path):
    from moalign.cli.main import parse_config

    cfg = parse_config(ToyConfig, ["--methods", "mopo,ham", "sca", "--quick", "true"], "moalign synthetic toy")
    assert cfg.resolved().methods == ["mopo", "ham", "sca"]
    with pytest.raises(ValueError, match="unknown entries"):
        ToyConfig(methods=["ham,nope"]).resolved()
    result = run_toy(ToyConfig(set="B", quick=True, methods=["ham,ric"], ham_ks=[2], ham_steps=20,
                               out=str(tmp_path)), progress=False)
    assert set(result["methods"]) == {"uniform reference", "HaM (K=2)", "RiC"}
    saved = json.loads((tmp_path / "toy_B.json").read_text())
    assert set(saved["weighted_likelihood"]["methods"]) == set(result["methods"])
    ham = [p for p in saved["policies"] if p["method"] == "HaM (K=2)"]
    assert len(ham) == 2 and len(ham[0]["probs"]) == 201 and len(ham[0]["probs"][0]) == 51
