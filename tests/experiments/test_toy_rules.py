"""Issue 10 on the toy problem: the per-sample constraint estimate against the truth, lambda under the
adaptive threshold rule, and the per-phase records in the JSON.

The truth is independent of the learning code: the true win rate of each (context node, action) cell is
an integral of the Bradley-Terry probability (``toy_problem.true_win_rates``), checked here against the
empirical mean labels of a large sample. Small instances (11 contexts x 11 actions, 20k rows per seed,
several seeds as one batch of networks) keep the module under 30 s.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from moalign.experiments.toy import ToyConfig, run_toy
from moalign.methods.mopo.toy import MOPOSettings, mopo_thresholds, preference_tables, train_mopo
from moalign.experiments.toy_problem import nearest_node, sample_preference_data, true_win_rates

NODES = 11
SEEDS = 6


@pytest.fixture(scope="module")
def tables():
    data = [sample_preference_data("B", 20_000, np.array([]), np.random.default_rng(100 + s)) for s in range(SEEDS)]
    return preference_tables(data, NODES, NODES, bandwidth_x=0.1, bandwidth_y=0.0)


def _settings(form: str, tau: float, steps: int, **kw) -> MOPOSettings:
    return MOPOSettings(form, tau, lag_steps=10, steps=steps, learning_rate=0.02, lambda_learning_rate=2.0,
                        lag_clip=10.0, lower_bound_eps=0.0, hidden=16, **kw)


def test_true_win_rates_match_mean_labels():
    data = sample_preference_data("B", 400_000, np.array([]), np.random.default_rng(7))
    g, a = nearest_node(data.x, NODES), nearest_node(data.y, NODES)
    truth = true_win_rates("B", NODES, NODES)
    count = np.zeros((NODES, NODES))
    np.add.at(count, (g, a), 1.0)
    for k in range(2):
        won = np.zeros((NODES, NODES))
        np.add.at(won, (g, a), data.labels[:, k])
        z = (won / count - truth[k]) / np.sqrt(truth[k] * (1 - truth[k]) / count)
        assert np.abs(z).max() < 4.5 and abs(z.mean()) < 0.5  # 121 cells: no cell off by more than 4.5 s.e.


@pytest.mark.parametrize("estimator", ["row", "policy"])
def test_per_row_estimate_is_biased_policy_estimate_is_not(tables, estimator):
    # Per-sample form with the rows' own labels in the weight (eq. 10/11 as printed): G_row = mean(w I_q)
    # overstates the secondary value of the policy the weights define once lambda > 0; the label-free
    # clip(pi_theta / mu) estimate is within Monte Carlo error (over the seeds' datasets) of pi_theta's truth.
    thresholds = mopo_thresholds(tables, [0, 1], 4, 0.1)[:, :, 2:]  # the two upper b: lambda > 0
    out = train_mopo(tables, thresholds, [0, 1], _settings("sample_row", 2.0, 100, constraint_estimator=estimator),
                     seed=0, num_contexts=NODES, progress=False, true_rates=true_win_rates("B", NODES, NODES))
    errors, final = out["dual"]["errors"], out["dual"]["final"]
    assert (out["dual"]["lambda_max"] > 0.3).all()
    assert errors["row_vs_target"]["mean"].mean() > 0.03  # the per-row estimate's bias, before
    err = final["G_policy"] - final["true_policy"]  # (S, P, K): one per dataset
    se = err.reshape(SEEDS, -1).mean(-1).std() / np.sqrt(SEEDS)
    assert abs(err.mean()) < 3 * se + 2e-3, (err.mean(), se)  # after: unbiased within MC error
    assert np.abs(errors["policy_vs_policy"]["mean"]).mean() < 0.01


def test_lambda_bounded_under_attained_rule_unbounded_when_fixed(tables):
    # Win-rate form, thresholds spanning the data range widened by 10% (the outer ones infeasible).
    thresholds = mopo_thresholds(tables, [0, 1], 5, 0.1)
    runs = {}
    for rule, warmup in (("fixed", 0), ("attained", 0), ("attained", 100)):
        settings = _settings("winrate", 0.02, 400, threshold_rule=rule, threshold_warmup_steps=warmup)
        runs[rule, warmup] = train_mopo(tables, thresholds, [0, 1], settings, seed=0, num_contexts=NODES,
                                        progress=False)["dual"]
    fixed = runs["fixed", 0]
    assert fixed["lambda_final"].max() > 20.0  # an infeasible fixed b: lambda grows with the steps
    for key in (("attained", 0), ("attained", 100)):
        lam = runs[key]["lambda_max"]
        assert lam.max() < 10.0, (key, lam.max())
        # after its warm-up the rule only lowers lambda's growth: the last phase's lambda is not above the max
        # reached by the end of the warm-up plus a small drift
        phases = runs[key]["phases"]["lambda"]
        assert (phases[..., -1] <= phases[..., key[1] // 10:].max(-1) + 1e-9).all()
    assert runs["attained", 0]["lambda_max"].max() < 4.0


def test_lambda_max_projects_the_dual_step(tables):
    # Fixed b with the outer thresholds infeasible: lambda grows without bound as printed (above); with the
    # projection onto [0, lambda_max] it never exceeds the cap, and the feasible inner thresholds, whose lambda
    # stays below the cap, train exactly as without it.
    thresholds = mopo_thresholds(tables, [0, 1], 5, 0.1)
    free = train_mopo(tables, thresholds, [0, 1], _settings("winrate", 0.02, 400), seed=0, num_contexts=NODES,
                      progress=False)
    cap = 5.0
    capped = train_mopo(tables, thresholds, [0, 1], _settings("winrate", 0.02, 400, lambda_max=cap), seed=0,
                        num_contexts=NODES, progress=False)
    assert free["dual"]["lambda_max"].max() > 20.0
    assert capped["dual"]["lambda_max"].max() <= cap + 1e-12
    below = free["dual"]["lambda_max"] < cap  # runs that never reached the cap: identical trajectories
    assert below.any() and (~below).any()
    np.testing.assert_array_equal(capped["probs"][below], free["probs"][below])


def test_json_carries_per_phase_records(tmp_path):
    cfg = ToyConfig(set="B", methods=["mopo"], out=str(tmp_path), mopo_threshold_rule="attained", seeds=1,
                    num_rows=20_000, num_actions=11, train_contexts=11, mopo_thresholds=3, mopo_steps=100,
                    front_num_y=201, front_num_weights=201, mopo_winrate_bandwidth_x=0.1, mopo_winrate_bandwidth_y=0.0)
    run_toy(cfg, progress=False)
    data = json.loads((tmp_path / "toy_B.json").read_text())
    dual = data["mopo_dual"]
    resolved = cfg.resolved()
    n_phases = resolved.mopo_steps // resolved.mopo_lag_steps
    assert dual["threshold_rule"] == "attained" and len(dual["phase_steps"]) == n_phases
    assert len(dual["runs"]) == 2 * resolved.mopo_thresholds
    for run in dual["runs"]:
        assert set(run["phases"]) == {"lambda", "threshold", "G_hat", "lower_bound", "G_true_policy",
                                      "G_true_target"}
        assert all(len(v) == n_phases for v in run["phases"].values())
        assert run["lambda_max"] >= run["lambda_final"] >= 0.0
        assert run["phases"]["threshold"][0] == pytest.approx(run["b_initial"], abs=1e-6)
        assert 0.0 < run["final"]["true_policy"] < 1.0
    mopo = [p for p in data["policies"] if p["method"] == "MOPO"]
    assert {"b", "final_lambda", "max_lambda", "final_threshold", "threshold_rule"} <= set(mopo[0]["params"])
    assert "phases" not in mopo[0]["params"]  # the per-phase arrays live in mopo_dual, not in every policy


def test_unknown_rule_or_estimator_rejected():
    with pytest.raises(ValueError, match="mopo_threshold_rule"):
        ToyConfig(mopo_threshold_rule="nope").resolved()
    with pytest.raises(ValueError, match="mopo_constraint_estimator"):
        ToyConfig(mopo_constraint_estimator="nope").resolved()
    with pytest.raises(ValueError, match="mopo_lambda_max"):
        ToyConfig(mopo_lambda_max=0.0).resolved()
