"""Tests of the continuous toy benchmark (MOPO paper §2 / App. A.1) against independent truth.

Closed forms: Set B's weighted-sum maximiser per context is an end point
(``w r1 + (1-w) r2`` is convex in y), chosen by comparing
``w (2x + 1)`` with ``(1 - w) log 2``; Set A's front is the curve
``y -> (mean e^x + sqrt(y) - y, -mean sin x - y^2)`` for ``y in [0, 1/4]``.
The re-evaluation test recomputes expected rewards from the JSON with reward
functions written here, not imported.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from moalign.core.pareto import hypervolume
from moalign.experiments.toy import ToyConfig, run_toy
from moalign.experiments.toy_baselines import cop_oracle
from moalign.experiments.toy_problem import (
    action_grid,
    context_grid,
    expected_rewards,
    gap_to_front,
    hypervolume_ratio,
    true_front,
    weighted_sum_front,
)

X = np.linspace(0.0, 1.0, 201)


def set_b_front_point(w: float) -> np.ndarray:
    """Closed form for Set B: y*(x) = 1 iff w (2x + 1) > (1 - w) log 2, else 0; mean rewards over X."""
    y = (w * (2 * X + 1) > (1 - w) * math.log(2)).astype(float)
    return np.array([np.mean((X + y) ** 2), np.mean(np.log((1 + X) / (1 + y)))])


@pytest.fixture(scope="module")
def front_b():
    return true_front("B", num_y=401, num_weights=4001)


@pytest.fixture(scope="module")
def front_a():
    return true_front("A", num_y=801, num_weights=801)


def test_set_b_weighted_sum_matches_closed_form():
    weights = np.linspace(0.0, 1.0, 57)
    got = weighted_sum_front("B", X, np.linspace(0.0, 1.0, 301), weights)
    want = np.array([set_b_front_point(w) for w in weights])
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_set_b_front_vertices_are_threshold_policies(front_b):
    # Every threshold policy (y = 1 for x > x*, else 0) is a closed-form front point; the traced
    # vertices must be exactly these (no interior y), and all of them must be found.
    thresholds = [set_b_front_point(w) for w in np.linspace(0.15, 0.45, 4001)]
    closed = np.unique(np.round(np.array(thresholds), 12), axis=0)
    got = np.unique(np.round(front_b.vertices, 12), axis=0)
    assert got.shape == closed.shape
    np.testing.assert_allclose(got, closed, atol=1e-12)


def test_set_a_front_is_the_y_curve(front_a):
    c1, c2 = np.mean(np.exp(X)), -np.mean(np.sin(X))
    v = front_a.vertices
    y = np.sqrt(np.clip(c2 - v[:, 1], 0.0, None))
    np.testing.assert_allclose(v[:, 0], c1 + np.sqrt(y) - y, atol=1e-12)
    assert y.min() == pytest.approx(0.0, abs=1e-12) and y.max() == pytest.approx(0.25, abs=1e-12)


def test_hv_ratio_of_true_front_is_one(front_a, front_b):
    for front in (front_a, front_b):
        assert hypervolume_ratio(front.dense, front) == pytest.approx(1.0, abs=1e-12)
        assert gap_to_front(front.vertices, front).max() == pytest.approx(0.0, abs=1e-12)
        # the reference point is dominated by every front point, with the stated 10% margin
        assert np.all(front.vertices > front.reference)
        np.testing.assert_allclose(front.reference, front.nadir - 0.1 * (front.ideal - front.nadir))


def test_hv_ratio_penalises_points_inside(front_b):
    uniform = np.array([np.mean(X**2 + X + 1 / 3), np.mean(np.log(1 + X)) - (2 * math.log(2) - 1)])
    assert hypervolume_ratio(uniform, front_b) < 0.5
    assert gap_to_front(uniform, front_b)[0] > 0.05


def test_expected_rewards_uniform_policy_closed_form():
    a = action_grid(51)
    probs = np.full((201, 51), 1 / 51)
    want_b = [np.mean((X[:, None] + a[None]) ** 2), np.mean(np.log((1 + X[:, None]) / (1 + a[None])))]
    np.testing.assert_allclose(expected_rewards("B", probs), want_b, atol=1e-12)


def test_cop_oracle_matches_brute_force():
    rng = np.random.default_rng(0)
    a = action_grid(21)
    xs = context_grid(201)
    for b in rng.uniform(-1.5, 0.2, size=5):
        policy = cop_oracle("A", np.array([b]), 21)[0]
        for i in range(0, 201, 20):
            r1 = np.exp(xs[i]) + np.sqrt(a) - a
            r2 = -np.sin(xs[i]) - a**2
            feasible = np.flatnonzero(r2 >= b)
            want = feasible[np.argmax(r1[feasible])] if feasible.size else int(np.argmax(r2))
            assert policy[i].argmax() == want and policy[i].sum() == 1.0


def test_cop_relative_threshold_traces_set_a_front(front_a):
    # r2 >= max_y r2 - delta  <=>  y <= sqrt(delta): the same y at every x, which is on the front.
    deltas = np.linspace(0.0, 0.0625, 101)
    probs = cop_oracle("A", deltas, 401, relative=True)
    pts = expected_rewards("A", probs)
    assert gap_to_front(pts, front_a).max() < 1e-3
    assert hypervolume_ratio(pts, front_a) >= 0.99


def test_cop_absolute_threshold_is_inside_set_b_front(front_b):
    # A per-context threshold on r2 = log((1+x)/(1+y)) picks interior y, but r1 is convex in y,
    # so the front uses only the end points: the printed COP cannot reach the front on Set B.
    bs = np.linspace(-0.7, 0.7, 101)
    pts = expected_rewards("B", cop_oracle("B", bs, 101))
    assert hypervolume_ratio(pts, front_b) < 0.9
    assert np.median(gap_to_front(pts, front_b)) > 0.02


# --------------------------------------------------------------------------- end to end (quick tier)
@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy")
    result = run_toy(ToyConfig(set="B", quick=True, out=str(out)), progress=False)
    return result, out


def test_quick_mopo_moves_towards_front(quick_run):
    result, _ = quick_run
    methods = result["methods"]
    assert methods["MOPO"]["hv_ratio_mean"] > methods["uniform reference"]["hv_ratio_mean"] + 0.2
    # single-objective DPO improves its own objective over the uniform reference
    er = {p["method"]: p["expected_rewards"] for p in result["policies"] if p["method"] in
          ("uniform reference", "DPO-D1", "DPO-D2")}
    assert er["DPO-D1"][0] > er["uniform reference"][0] + 0.2
    assert er["DPO-D2"][1] > er["uniform reference"][1] + 0.1


def test_json_contents(quick_run):
    _, out = quick_run
    data = json.loads((out / "toy_B.json").read_text())
    for key in ("config", "grids", "true_front", "reference_point", "methods", "policies", "timings_s", "format"):
        assert key in data
    assert len(data["grids"]["x"]) == 201 and data["grids"]["x"][-1] == 1.0
    for name in ("DPO-D1", "DPO-D2", "DPO-DJ", "DPO-DC", "DPO-DC sweep", "COP", "MOPO", "uniform reference"):
        assert "hv_ratio_mean" in data["methods"][name]
    for policy in data["policies"]:
        probs = np.asarray(policy["probs"], float)
        assert probs.shape == (201, len(data["grids"]["y"]))
        np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-4)
        assert "method" in policy and "params" in policy and len(policy["expected_rewards"]) == 2
    mopo = [p for p in data["policies"] if p["method"] == "MOPO"]
    assert {"b", "tau", "seed", "primary"} <= set(mopo[0]["params"])
    assert (out / "toy_B.png").stat().st_size > 10_000


def test_stored_actions_reproduce_expected_rewards(quick_run):
    _, out = quick_run
    data = json.loads((out / "toy_B.json").read_text())
    x = np.asarray(data["grids"]["x"])[:, None]
    y = np.asarray(data["grids"]["y"])[None, :]
    r1, r2 = (x + y) ** 2, np.log((1 + x) / (1 + y))
    for policy in data["policies"]:
        probs = np.asarray(policy["probs"], float)
        probs = probs / probs.sum(-1, keepdims=True)
        got = [np.mean((probs * r1).sum(-1)), np.mean((probs * r2).sum(-1))]
        np.testing.assert_allclose(got, policy["expected_rewards"], rtol=0, atol=1e-10)


def test_stored_hv_ratio_reproduces(quick_run):
    _, out = quick_run
    data = json.loads((out / "toy_B.json").read_text())
    ref = np.asarray(data["reference_point"])
    pts = np.array([p["expected_rewards"] for p in data["policies"] if p["method"] == "MOPO"])
    # the true front's HV from its vertices joined by segments, by the trapezoid rule (independent of moocore)
    v = np.asarray(data["true_front"]["vertices"])
    v = v[np.argsort(v[:, 0])]
    area = np.sum((v[1:, 0] - v[:-1, 0]) * ((v[1:, 1] + v[:-1, 1]) / 2 - ref[1])) + (v[0, 0] - ref[0]) * (
        v[0, 1] - ref[1])
    assert data["true_front"]["hypervolume"] == pytest.approx(area, rel=1e-3)
    assert data["methods"]["MOPO"]["hv_ratio_mean"] == pytest.approx(hypervolume(pts, ref) / data["true_front"][
        "hypervolume"], rel=1e-12)


# --------------------------------------------------------------------------- MOPO ingredients
def test_per_sample_tilt_ignores_lambda_as_tau_vanishes():
    # For tau -> 0 and any lambda > 0 the rows that won on both objectives dominate
    # E[exp((I1 + lambda I2) / tau)], so the maximiser no longer depends on lambda; the
    # win-rate form's maximiser, argmax p1 + lambda p2, does.
    from moalign.experiments.toy_analysis import log_tilt, pairwise_win_probabilities

    pw = pairwise_win_probabilities("B", num_actions=11, num_opponents=51)
    sample = [log_tilt(pw, "sample", 0.02, lam).argmax(-1) for lam in (0.3, 1.0, 3.0)]
    assert all(np.array_equal(sample[0], s) for s in sample[1:])
    both_won = (pw[0] * pw[1]).mean(-1).argmax(-1)
    np.testing.assert_array_equal(sample[0], both_won)
    win_rate = [log_tilt(pw, "winrate", 0.02, lam).argmax(-1) for lam in (0.3, 3.0)]
    assert not np.array_equal(win_rate[0], win_rate[1])


def test_bandwidth_selection_pools_contexts_when_labels_ignore_x():
    # Set A's win rates do not depend on x (x only shifts both rewards of a pair equally),
    # Set B's r1 win rates do: held-out likelihood must pool widely on A and not on B's r1.
    from moalign.methods.mopo.toy import select_bandwidths
    from moalign.experiments.toy_problem import sample_preference_data

    rng = np.random.default_rng(3)
    chosen_a = select_bandwidths(sample_preference_data("A", 400_000, np.array([]), rng), 101, 51)
    chosen_b = select_bandwidths(sample_preference_data("B", 400_000, np.array([]), rng), 101, 51)
    assert chosen_a[0][0] >= 0.5 and chosen_a[1][0] >= 0.5
    assert chosen_b[0][0] <= 0.2


def test_train_mopo_iterates_the_core_mopo_step(monkeypatch):
    # Lines 5-7 of every MOPO step are moalign.core's MOPODual.step with the toy's ratio injected as weight_fn:
    # one call per step, over the (seed, primary, b) grid as leading dimensions, and what train_mopo reports is
    # what those calls returned (final lambda; G_hat of the last step, before its dual update).
    import torch

    from moalign.core.mopo import MOPODual
    from moalign.methods.mopo.toy import MOPOSettings, preference_tables, threshold_range, train_mopo
    from moalign.experiments.toy_problem import sample_preference_data

    data = sample_preference_data("B", 20_000, np.array([]), np.random.default_rng(0))
    tables = preference_tables([data], 11, 11, bandwidth_x=0.1, bandwidth_y=0.0)
    ends = threshold_range(tables, 0)  # (1, 2): greedy and best secondary win rate
    thresholds = (ends[:, :1] + torch.tensor([0.25, 0.75], dtype=torch.float64) * (ends[:, 1:] - ends[:, :1]))[:, None]
    calls = []
    step = MOPODual.step

    def spy(self, primary, secondary, *args, **kwargs):
        out = step(self, primary, secondary, *args, **kwargs)
        calls.append((primary, kwargs.get("weight_fn"), out))
        return out

    monkeypatch.setattr(MOPODual, "step", spy)
    settings = MOPOSettings("winrate", tau=0.02, lag_steps=3, steps=8, learning_rate=0.02, lambda_learning_rate=2.0,
                            lag_clip=10.0, lower_bound_eps=0.0, hidden=4)
    out = train_mopo(tables, thresholds, [0], settings, seed=0, num_contexts=11, progress=False)
    assert len(calls) == settings.steps
    assert all(primary is None and weight_fn is not None for primary, weight_fn, _ in calls)
    last = calls[-1][2]
    assert last.lam.shape == (1, 1, 2, 1) and last.lam.dtype == torch.float64
    np.testing.assert_array_equal(out["lambda"], last.lam[..., 0].numpy())
    np.testing.assert_array_equal(out["estimate"], last.estimate[..., 0].numpy())
    assert (out["lambda"] > 0).any()  # a binding threshold moved lambda: the run is not trivial
