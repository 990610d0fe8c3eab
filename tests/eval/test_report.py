"""Report statistics checked against closed forms, hand computation, moocore and SciPy."""

from __future__ import annotations

import json

import moocore
import numpy as np
import pytest
from scipy import stats

from moalign.eval.plots import plot_report
from moalign.eval.policies import Policy
from moalign.eval.report import (
    auto_reference_point,
    bootstrap_mean_ci,
    compare_methods,
    paired_difference_ci,
    render_markdown,
    steering_spearman,
    summarize_scores,
    write_report,
)


# ------------------------------------------------------------------ bootstrap
def test_bootstrap_interval_covers_true_mean_at_nominal_rate():
    rng = np.random.default_rng(1234)
    mu, reps, hits = 3.0, 200, 0
    for r in range(reps):
        x = rng.normal(mu, 2.0, size=100)
        ci = bootstrap_mean_ci(x, num_samples=500, confidence=0.95, seed=r)
        hits += ci.low <= mu <= ci.high
    coverage = hits / reps
    assert 0.9 <= coverage <= 0.99, coverage


def test_bootstrap_interval_equals_hand_computed_percentiles():
    # values (0, 0, 0, 1): a resampled mean is Binomial(4, 1/4) / 4 with
    # P = 81/256, 108/256, 54/256, 12/256, 1/256 at 0, .25, .5, .75, 1.
    # CDF: .316, .738, .949, .996 -> the 2.5% quantile is 0 and the 97.5% quantile is 0.75.
    ci = bootstrap_mean_ci([0.0, 0.0, 0.0, 1.0], num_samples=20000, confidence=0.95, seed=0)
    assert ci.mean == 0.25 and ci.low == 0.0 and ci.high == 0.75
    # values (1, 2, 3): resampled sums 3..9 with counts 1,3,6,7,6,3,1 of 27; P(mean=1) = 1/27 > 2.5%.
    ci = bootstrap_mean_ci([1.0, 2.0, 3.0], num_samples=20000, confidence=0.95, seed=1)
    assert (ci.mean, ci.low, ci.high) == (2.0, 1.0, 3.0)
    # 50% interval of (1, 2, 3): CDF is .148 at mean 4/3, .370 at 5/3, .630 at 2, .852 at 7/3 -> quantiles 5/3 and 7/3
    ci = bootstrap_mean_ci([1.0, 2.0, 3.0], num_samples=20000, confidence=0.5, seed=2)
    assert ci.low == pytest.approx(5 / 3) and ci.high == pytest.approx(7 / 3)


def test_bootstrap_is_joint_over_columns_and_seeded():
    x = np.column_stack([np.arange(10.0), -np.arange(10.0)])
    ci = bootstrap_mean_ci(x, num_samples=300, seed=7)
    np.testing.assert_allclose(ci.mean, [4.5, -4.5])
    # the same resamples are used for both columns, so the second interval mirrors the first
    assert ci.low[1] == pytest.approx(-ci.high[0]) and ci.high[1] == pytest.approx(-ci.low[0])
    again = bootstrap_mean_ci(x, num_samples=300, seed=7)
    np.testing.assert_array_equal(again.low, ci.low)


def test_bootstrap_rejects_bad_input():
    with pytest.raises(ValueError, match="empty"):
        bootstrap_mean_ci([])
    with pytest.raises(ValueError, match="non-finite entry in row 1"):
        bootstrap_mean_ci([1.0, np.nan])
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_mean_ci([1.0], confidence=1.0)


def test_paired_difference_of_a_constant_shift_is_exact():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(30, 2))
    ci = paired_difference_ci(base + [1.0, -0.5], base, num_samples=200)
    np.testing.assert_allclose(ci.mean, [1.0, -0.5])
    np.testing.assert_allclose(ci.low, [1.0, -0.5])
    np.testing.assert_allclose(ci.high, [1.0, -0.5])
    with pytest.raises(ValueError, match="same shape"):
        paired_difference_ci(base[:5], base)


# ------------------------------------------------------------------ fronts and hypervolume
# four policies whose per-prompt rewards are the hand-made means +- 0.5 (alternating), so every
# mean and every balanced-cluster mean is exactly the hand-made value.
MEANS = {"base": (1.0, 1.0), "p1": (3.0, 1.5), "p2": (2.0, 2.5), "p3": (1.5, 1.2)}


def _scores(means: dict, n: int = 8) -> np.ndarray:
    noise = np.tile([[0.5, -0.5], [-0.5, 0.5]], (n // 2, 1))  # (n, 2), zero mean in every cluster below
    return np.stack([np.asarray(m) + noise for m in means.values()])


def _policies(names) -> list[Policy]:
    return [Policy.base() if n == "base" else Policy.as_is(n) for n in names]


def test_front_and_hypervolume_equal_moocore_on_hand_made_numbers():
    scores = _scores(MEANS)
    labels = np.repeat([0, 1], 4)  # clusters {0..3}, {4..7}: each holds two +-0.5 pairs
    rep = summarize_scores(scores, _policies(MEANS), ["r1", "r2"], labels, bootstrap_samples=100, reference_point=[0.0, 0.0])
    pts = np.array(list(MEANS.values()))
    mask = moocore.is_nondominated(pts, maximise=True)
    assert rep["front"]["overall"]["non_dominated"] == [n for n, m in zip(MEANS, mask) if m] == ["p1", "p2"]
    hv = moocore.hypervolume(pts, ref=[0.0, 0.0], maximise=True)
    assert rep["front"]["overall"]["hypervolume"] == pytest.approx(hv) == pytest.approx(6.5)  # 3*1.5 + 2*(2.5-1.5)
    assert rep["front"]["overall"]["hypervolume_base"] == pytest.approx(1.0)
    assert rep["reference_point"] == {"value": [0.0, 0.0], "source": "user", "rule": "given by the user"}
    assert [p["on_front"] for p in rep["policies"]] == [False, True, True, False]
    # cluster means equal the overall means here, so (policy, cluster) points duplicate the policy points
    for p in rep["policies"]:
        for c in p["clusters"]:
            np.testing.assert_allclose(c["mean"], MEANS[p["name"]])
    assert rep["front"]["policy_cluster"]["hypervolume"] == pytest.approx(hv)
    for c in rep["front"]["per_cluster"]:
        assert c["hypervolume"] == pytest.approx(hv)


def test_automatic_reference_point_is_minimum_minus_margin_and_stated():
    scores = _scores(MEANS)
    rep = summarize_scores(scores, _policies(MEANS), ["r1", "r2"], np.zeros(8, int), bootstrap_samples=50)
    # min over cluster means (1, 1), range (2, 1.5), margin 0.1 -> (0.8, 0.85)
    np.testing.assert_allclose(rep["reference_point"]["value"], [0.8, 0.85])
    assert rep["reference_point"]["source"] == "auto" and "minus 0.1" in rep["reference_point"]["rule"]
    pts = np.array(list(MEANS.values()))
    assert rep["front"]["overall"]["hypervolume"] == pytest.approx(moocore.hypervolume(pts, ref=[0.8, 0.85], maximise=True))
    assert rep["front"]["overall"]["points_not_beating_reference"] == 0
    np.testing.assert_allclose(auto_reference_point([[2.0, 5.0], [2.0, 7.0]], 0.5), [2.0 - 0.5 * 2.0, 4.0])


def test_per_cluster_means_differ_when_clusters_differ():
    # base rewards 0 on cluster 0 and 2 on cluster 1; policy rewards 1 everywhere
    base = np.array([[0.0, 0.0]] * 3 + [[2.0, 2.0]] * 2)
    pol = np.ones((5, 2))
    labels = np.array([0, 0, 0, 1, 1])
    rep = summarize_scores(np.stack([base, pol]), _policies(["base", "p"]), ["a", "b"], labels, bootstrap_samples=100)
    b = rep["policies"][0]
    assert [c["mean"] for c in b["clusters"]] == [[0.0, 0.0], [2.0, 2.0]] and b["mean"] == [0.8, 0.8]
    assert rep["cluster_sizes"] == [3, 2]
    assert rep["front"]["per_cluster"][0]["non_dominated"] == ["p"]
    assert rep["front"]["per_cluster"][1]["non_dominated"] == ["base"]
    d = rep["policies"][1]["diff_vs_base"]
    np.testing.assert_allclose(d["mean"], [0.2, 0.2])


def test_significance_of_paired_differences():
    rng = np.random.default_rng(3)
    base = rng.normal(size=(40, 2))
    better = base + [1.0, 0.0] + rng.normal(scale=0.01, size=(40, 2)) * [1, 0]
    rep = summarize_scores(np.stack([base, better]), _policies(["base", "b"]), ["x", "y"], np.zeros(40, int), bootstrap_samples=300)
    d = rep["policies"][1]["diff_vs_base"]
    assert d["significant"] == [True, False]
    assert rep["policies"][0]["diff_vs_base"] is None


def test_summarize_rejects_bad_input():
    scores = _scores(MEANS)
    pols = _policies(MEANS)
    with pytest.raises(ValueError, match="shape"):
        summarize_scores(scores[:, :, :1], pols, ["r1", "r2"], np.zeros(8, int))
    bad = scores.copy()
    bad[2, 3, 1] = np.inf
    with pytest.raises(ValueError, match="policy 'p2', prompt 3, objective 'r2'"):
        summarize_scores(bad, pols, ["r1", "r2"], np.zeros(8, int))
    with pytest.raises(ValueError, match="exactly one base"):
        summarize_scores(scores, [Policy.as_is(n) for n in MEANS], ["r1", "r2"], np.zeros(8, int))
    with pytest.raises(ValueError, match="reference_point has 3"):
        summarize_scores(scores, pols, ["r1", "r2"], np.zeros(8, int), reference_point=[0, 0, 0])
    with pytest.raises(ValueError, match=r"clusters \[1\] have no prompts"):
        summarize_scores(scores, pols, ["r1", "r2"], np.zeros(8, int), num_clusters=2)


# ------------------------------------------------------------------ steering correlation
def test_spearman_along_steering_grid_matches_scipy_and_hand_values():
    pols = [Policy.base()] + [Policy.steered([w, 1 - w]) for w in (0.0, 0.25, 0.5, 0.75, 1.0)]
    r1 = np.array([0.0, 0.1, 0.3, 0.2, 0.6, 0.9])  # base first; steered: 0.1, 0.3, 0.2, 0.6, 0.9
    r2 = np.array([0.0, 5.0, 4.0, 3.0, 2.0, 1.0])
    out = steering_spearman(pols, np.column_stack([r1, r2]), ["a", "b"])
    ref = stats.spearmanr([0.0, 0.25, 0.5, 0.75, 1.0], r1[1:])
    assert out[0]["rho"] == pytest.approx(ref.statistic) == pytest.approx(0.9)  # 1 - 6*2/(5*24)
    assert out[0]["pvalue"] == pytest.approx(ref.pvalue)
    assert out[1]["rho"] == pytest.approx(1.0)  # w_2 falls as r2 falls
    few = steering_spearman(pols[:3], np.zeros((3, 2)), ["a", "b"])
    assert few[0]["rho"] is None and "at least 3" in few[0]["reason"]
    flat = steering_spearman(pols, np.zeros((6, 2)), ["a", "b"])
    assert flat[0]["rho"] is None and "constant" in flat[0]["reason"]


# ------------------------------------------------------------------ comparison and output
def test_compare_methods_uses_a_common_reference():
    rep_a = summarize_scores(_scores(MEANS), _policies(MEANS), ["r1", "r2"], np.zeros(8, int), bootstrap_samples=20)
    worse = {k: (v[0] - 0.5, v[1] - 0.5) for k, v in MEANS.items()}
    rep_b = summarize_scores(_scores(worse), _policies(worse), ["r1", "r2"], np.zeros(8, int), bootstrap_samples=20)
    cmp = compare_methods({"A": rep_a, "B": rep_b}, reference_point=[0.0, 0.0])
    assert cmp["hypervolume"]["A"] == pytest.approx(moocore.hypervolume(np.array(list(MEANS.values())), ref=[0, 0], maximise=True))
    assert cmp["hypervolume"]["B"] == pytest.approx(moocore.hypervolume(np.array(list(worse.values())), ref=[0, 0], maximise=True))
    assert cmp["dominance"]["A"]["B"]["a_covers_b"] and not cmp["dominance"]["B"]["A"]["a_covers_b"]
    auto = compare_methods({"A": rep_a, "B": rep_b})
    np.testing.assert_allclose(auto["reference_point"]["value"], [0.5 - 0.25, 0.5 - 0.2])


def test_written_report_has_promised_keys_and_plots(tmp_path):
    rng = np.random.default_rng(0)
    names = ["r1", "r2", "r3"]
    pols = [Policy.base(), Policy.from_head(0)] + [Policy.steered(w) for w in ([1, 0, 0], [0.5, 0.5, 0], [0, 0.5, 0.5])]
    scores = rng.normal(size=(len(pols), 12, 3))
    rep = summarize_scores(scores, pols, names, np.repeat([0, 1, 2], 4), bootstrap_samples=50)
    plots = plot_report(rep, tmp_path)
    paths = write_report(rep, tmp_path, plots=[str(p) for p in plots])
    data = json.loads(paths["json"].read_text())
    for key in ("objectives", "num_prompts", "num_clusters", "cluster_sizes", "base_policy", "bootstrap",
                "reference_point", "policies", "front", "steering_spearman"):
        assert key in data
    assert set(data["front"]) == {"overall", "policy_cluster", "per_cluster"}
    assert plots[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = paths["markdown"].read_text()
    assert "reference point" in md and "front.png" in md
    assert render_markdown(rep).count("| `") >= 2 * len(pols)


# ------------------------------------------------------------------ degenerate answers
def test_add_degeneracy_counts_echoes_of_string_and_chat_prompts():
    from moalign.eval.degeneracy import DEGENERACY_RULE
    from moalign.eval.report import add_degeneracy

    means = {"base": (1.0, 1.0), "p1": (2.0, 2.0)}
    question = "Are solar panels worth it?"
    chat = [{"role": "system", "content": "Yes they are worth it, mostly."}, {"role": "user", "content": question}]
    prompts = [question, chat]
    # base: the first answer copies nothing, the second echoes the chat's question
    answers = [["They cut bills over the years.", "Are solar panels worth it?"],
               ["Are solar panels worth it, really?", "Yes they are worth it, mostly."]]
    # p1: the first answer copies (are solar)(solar panels)(panels worth)(worth it) of its 5 2-grams: 4/5 >= 1/2, an
    # echo; the second repeats the chat's system message, but only (worth it) of its 5 2-grams is in the last user
    # message, which is what the prompt asks: 1/5, no echo
    rep = summarize_scores(_scores(means, 2), _policies(means), ["r1", "r2"], np.zeros(2, int), bootstrap_samples=20)
    add_degeneracy(rep, answers, prompts)
    assert [p["degeneracy"]["echo_share"] for p in rep["policies"]] == [0.5, 0.5]
    assert [p["degeneracy"]["num_degenerate"] for p in rep["policies"]] == [1, 1]
    assert rep["degeneracy_rule"] == DEGENERACY_RULE and "echo" in DEGENERACY_RULE
    md = render_markdown(rep)
    assert "| policy | degenerate answers | echoes of the prompt | distinct-2 |" in md
    assert "| `base` | 1/2 (50%) | 50% |" in md
    # without prompts: no echo rule, no echo column (the echoes are 5-word answers without a repeated 3-gram)
    add_degeneracy(rep, answers)
    assert all("echo_share" not in p["degeneracy"] and p["degeneracy"]["num_degenerate"] == 0 for p in rep["policies"])
    assert "| policy | degenerate answers | distinct-2 |" in render_markdown(rep)
    with pytest.raises(ValueError, match="1 completion lists for 2 policies"):
        add_degeneracy(rep, answers[:1], prompts)
