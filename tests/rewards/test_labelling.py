"""label_pairwise / score_pointwise against hand-computed preferences."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from datasets import Dataset
from scipy.special import expit

from moalign.rewards.base import CallableReward, RewardNormalizer, completion_text
from moalign.rewards.labelling import label_pairwise, pair_preference, preference_matrix, score_pointwise
from moalign.rewards.offline import ConcisenessReward


def n_excl(prompts, completions):
    """Number of '!' in the completion (a plain callable: it receives chat completions as they are)."""
    return [float(completion_text(c).count("!")) for c in completions]


ROWS = [
    {"prompt": "p0", "completion_a": "one two three", "completion_b": "one!", "source": "x"},
    {"prompt": "p1", "completion_a": "a!!", "completion_b": "b c d e!!"},
    {"prompt": "p2", "completion_a": "same words", "completion_b": "other words!"},
]
# conciseness = -words: a = [-3, -1, -2], b = [-1, -4, -2]; excl: a = [0, 2, 0], b = [1, 2, 1]


def reward_fns():
    return [ConcisenessReward(), CallableReward(n_excl, name="excitement")]


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def test_hard_labels_with_ties_at_one_half():
    out = label_pairwise(ROWS, reward_fns(), mode="hard")
    assert [r["preference"] for r in out] == [[0.0, 0.0], [1.0, 0.5], [0.5, 0.0]]
    assert [r["scores_a"] for r in out] == [[-3.0, 0.0], [-1.0, 2.0], [-2.0, 0.0]]
    assert [r["scores_b"] for r in out] == [[-1.0, 1.0], [-4.0, 2.0], [-2.0, 1.0]]
    assert out[0]["source"] == "x" and out[0]["prompt"] == "p0"  # other columns kept


def test_bradley_terry_probabilities_by_hand():
    out = label_pairwise(ROWS, reward_fns(), mode="bradley_terry", temperature=[2.0, 0.5])
    expected = [
        [sigmoid((-3 + 1) / 2.0), sigmoid((0 - 1) / 0.5)],
        [sigmoid((-1 + 4) / 2.0), 0.5],
        [0.5, sigmoid((0 - 1) / 0.5)],
    ]
    np.testing.assert_allclose([r["preference"] for r in out], expected, rtol=1e-12)
    scalar = label_pairwise(ROWS, reward_fns(), mode="bradley_terry", temperature=1.0)
    assert scalar[0]["preference"][0] == pytest.approx(sigmoid(-2.0))


def test_bradley_terry_is_stable_for_large_gaps_and_symmetric():
    p = preference_matrix([[1000.0, 0.0]], [[-1000.0, 3.0]], mode="bradley_terry")
    assert p[0, 0] == 1.0 and p[0, 1] == pytest.approx(sigmoid(-3.0))
    a, b = np.random.default_rng(0).normal(size=(2, 20, 3))
    for mode in ("hard", "bradley_terry"):
        np.testing.assert_allclose(preference_matrix(a, b, mode) + preference_matrix(b, a, mode), 1.0)
    with pytest.raises(ValueError, match="positive"):
        preference_matrix(a, b, "bradley_terry", temperature=0.0)
    with pytest.raises(ValueError, match="one per objective"):
        preference_matrix(a, b, "bradley_terry", temperature=[1.0, 2.0])


def test_pair_preference_hard_and_bradley_terry():
    assert pair_preference([2.0, 1.0, 3.0], [1.0, 1.0, 5.0]) == [1.0, 0.5, 0.0]
    got = pair_preference([2.0, 0.0], [1.0, 3.0], temperature=0.5)
    assert got == pytest.approx([expit(2.0), expit(-6.0)], rel=1e-12)
    got = pair_preference([2.0, 0.0], [1.0, 3.0], temperature=[1.0, 3.0])
    assert got == pytest.approx([expit(1.0), expit(-1.0)], rel=1e-12)
    assert pair_preference([1000.0], [-1000.0], temperature=1.0) == [1.0]  # no overflow
    assert pair_preference([-1000.0], [1000.0], temperature=1.0) == [0.0]
    with pytest.raises(ValueError, match="temperature"):
        pair_preference([1.0], [0.0], temperature=0.0)
    with pytest.raises(ValueError, match="temperature"):
        pair_preference([1.0, 2.0], [0.0, 0.0], temperature=[1.0])


def test_normalizer_fitted_on_pooled_scores():
    norm = RewardNormalizer("zscore")
    out = label_pairwise(ROWS, reward_fns(), mode="bradley_terry", normalizer=norm, fit_normalizer=True)
    pooled = np.array([[-3, 0], [-1, 2], [-2, 0], [-1, 1], [-4, 2], [-2, 1]], dtype=float)
    mean, std = pooled.mean(axis=0), pooled.std(axis=0)  # by hand: means -13/6 and 1
    assert mean.tolist() == pytest.approx([-13 / 6, 1.0])
    np.testing.assert_allclose([r["scores_a"] for r in out], (pooled[:3] - mean) / std, rtol=1e-12)
    np.testing.assert_allclose([r["scores_b"] for r in out], (pooled[3:] - mean) / std, rtol=1e-12)
    z = (pooled - mean) / std
    np.testing.assert_allclose(out[0]["preference"][0], sigmoid(z[0, 0] - z[3, 0]), rtol=1e-12)
    assert norm.objectives == ["conciseness", "excitement"]
    with pytest.raises(RuntimeError, match="not fitted"):
        label_pairwise(ROWS, reward_fns(), normalizer=RewardNormalizer())


def test_dataset_in_dataset_out_and_input_not_mutated():
    rows = copy.deepcopy(ROWS)
    out_list = label_pairwise(rows, reward_fns())
    assert rows == ROWS and "preference" not in rows[0]
    ds = Dataset.from_list([{k: r[k] for k in ("prompt", "completion_a", "completion_b")} for r in ROWS])
    out_ds = label_pairwise(ds, reward_fns())
    assert isinstance(out_ds, Dataset)
    assert out_ds["preference"] == [r["preference"] for r in out_list]
    assert out_ds["scores_b"] == [r["scores_b"] for r in out_list]


def test_chat_rows_are_supported():
    rows = [
        {
            "prompt": [{"role": "user", "content": "hi"}],
            "completion_a": [{"role": "assistant", "content": "hello there!"}],
            "completion_b": [{"role": "assistant", "content": "hey"}],
        }
    ]
    assert label_pairwise(rows, reward_fns())[0]["preference"] == [0.0, 1.0]


def test_bad_input_errors_name_row_and_column():
    with pytest.raises(KeyError, match=r"row 1: missing column 'completion_b'"):
        label_pairwise([ROWS[0], {"prompt": "p", "completion_a": "a"}], reward_fns())
    with pytest.raises(ValueError, match=r"row 0, column 'completion_a': value is None"):
        label_pairwise([{"prompt": "p", "completion_a": None, "completion_b": "b"}], reward_fns())
    labelled = label_pairwise(ROWS, reward_fns())
    with pytest.raises(ValueError, match=r"already has column\(s\) \['preference', 'scores_a', 'scores_b'\]"):
        label_pairwise(labelled, reward_fns())
    relabelled = label_pairwise(labelled, reward_fns()[:1], overwrite=True)
    assert relabelled[0]["preference"] == [0.0]
    with pytest.raises(ValueError, match="unique names"):
        label_pairwise(ROWS, [ConcisenessReward(), ConcisenessReward()])
    with pytest.raises(ValueError, match="mode"):
        label_pairwise(ROWS, reward_fns(), mode="soft")
    ds = Dataset.from_list([{"prompt": "p", "completion_a": "a"}])
    with pytest.raises(KeyError, match="missing column"):
        label_pairwise(ds, reward_fns())


def test_score_pointwise():
    rows = [{"prompt": "p", "completion": "a b!"}, {"prompt": "q", "completion": "c"}]
    out = score_pointwise(rows, reward_fns())
    assert [r["scores"] for r in out] == [[-2.0, 1.0], [-1.0, 0.0]]
    ds_out = score_pointwise(Dataset.from_list(rows), reward_fns())
    assert ds_out["scores"] == [[-2.0, 1.0], [-1.0, 0.0]]
    with pytest.raises(ValueError, match="'scores' column"):
        score_pointwise(out, reward_fns())


# ----- score_completions: the one scoring loop (labelling, data recipes, evaluation) -------------------
class _HasScore:
    """An object with a ``.score`` method (not a RewardFunction)."""

    def score(self, prompts, completions):
        return [float(len(c)) for c in completions]


def test_score_completions_accepts_named_functions_mappings_and_score_objects():
    from moalign.rewards.labelling import objective_names, score_completions

    prompts, completions = ["p0", "p1", "p2"], ["a", "bb", "ccc!"]
    by_name = score_completions(prompts, completions, {"len": _HasScore(), "excl": n_excl})
    np.testing.assert_array_equal(by_name, [[1.0, 0.0], [2.0, 0.0], [4.0, 1.0]])
    named = score_completions(prompts, completions, [CallableReward(n_excl, name="excl")], batch_size=2)
    np.testing.assert_array_equal(named, [[0.0], [0.0], [1.0]])
    assert objective_names({"len": _HasScore(), "excl": n_excl}) == ["len", "excl"]
    assert score_completions([], [], {"len": _HasScore()}).shape == (0, 1)
    with pytest.raises(ValueError, match="no reward functions"):
        score_completions(prompts, completions, [])
    with pytest.raises(ValueError, match="has no .name"):
        score_completions(prompts, completions, [n_excl])
    with pytest.raises(ValueError, match="unique names"):
        score_completions(prompts, completions, [CallableReward(n_excl, name="x"), CallableReward(n_excl, name="x")])
    with pytest.raises(TypeError, match="neither callable"):
        score_completions(prompts, completions, {"x": 3})
    with pytest.raises(ValueError, match="2 completions for 3 prompts"):
        score_completions(prompts, completions[:2], {"len": _HasScore()})
    with pytest.raises(ValueError, match="batch_size"):
        score_completions(prompts, completions, {"len": _HasScore()}, batch_size=0)


def test_score_completions_errors_name_the_row_across_batches_and_the_context():
    from moalign.rewards.base import InvalidScoreError, NonNumericScoreError
    from moalign.rewards.labelling import score_completions

    def nan_at_3(prompts, completions):
        return [math.nan if c == "bad" else 1.0 for c in completions]

    completions = ["a", "b", "c", "bad", "e"]
    for batch_size in (None, 1, 2, 4):
        for fn in (nan_at_3, CallableReward(nan_at_3, name="nan_at_3")):  # plain, and one that validates itself
            with pytest.raises(InvalidScoreError, match="non-finite score at index 3: nan") as info:
                score_completions(["p"] * 5, completions, {"nan_at_3": fn}, batch_size=batch_size)
            assert (info.value.reward, info.value.index) == ("nan_at_3", 3) and math.isnan(info.value.value)
    with pytest.raises(NonNumericScoreError, match="non-numeric score at index 1: 'x'") as info:
        score_completions(["p", "p"], ["a", "b"], {"s": lambda p, c: [1.0, "x"]})
    assert isinstance(info.value, TypeError) and isinstance(info.value, InvalidScoreError)
    with pytest.raises(ValueError, match=r"^while scoring policy 'p1' with reward function 'short': .*returned 1 scores"):
        score_completions(["p", "p"], ["a", "b"], {"short": lambda p, c: [1.0]}, context="policy 'p1'")
    with pytest.raises(TypeError, match=r"^while scoring policy 'p1' with reward function 's': .*non-numeric"):
        score_completions(["p", "p"], ["a", "b"], {"s": lambda p, c: [1.0, "x"]}, context="policy 'p1'")
