"""RewardFunction validation, CallableReward conventions, chat helpers and RewardNormalizer."""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import pytest

from moalign.rewards.base import (
    CallableReward,
    RewardFunction,
    RewardNormalizer,
    completion_text,
    last_user_message,
    validate_scores,
)


class Constant(RewardFunction):
    def __init__(self, values, name="const"):
        super().__init__(name)
        self.values = values

    def score(self, prompts, completions):
        return self.values


# ----------------------------------------------------------------------------- validation


def test_output_validation_names_function_and_index():
    with pytest.raises(ValueError, match=r"'const' returned 2 scores for 3"):
        Constant([1.0, 2.0])(["a", "b", "c"], ["x", "y", "z"])
    with pytest.raises(ValueError, match=r"'const' returned a non-finite score at index 1: nan"):
        Constant([1.0, float("nan"), 2.0])(["a"] * 3, ["x"] * 3)
    with pytest.raises(ValueError, match=r"non-finite score at index 2: inf"):
        Constant([1.0, 0.0, math.inf])(["a"] * 3, ["x"] * 3)
    with pytest.raises(TypeError, match=r"'const' returned a non-numeric score at index 0: '1.0'"):
        Constant(["1.0"])(["a"], ["x"])
    with pytest.raises(TypeError, match=r"non-numeric score at index 1: None"):
        Constant([0.5, None])(["a"] * 2, ["x"] * 2)
    with pytest.raises(TypeError, match="must return a list of floats"):
        Constant(3.0)(["a"], ["x"])
    with pytest.raises(ValueError, match=r"got 2 prompts but 1 completions"):
        Constant([1.0])(["a", "b"], ["x"])


def test_numeric_scalars_are_accepted_as_floats():
    import torch

    out = validate_scores([np.float32(0.5), 2, torch.tensor(1.5), np.array(3.0)], 4, "f")
    assert out == [0.5, 2.0, 1.5, 3.0] and all(type(x) is float for x in out)
    assert validate_scores(np.array([1.0, 2.0]), 2, "f") == [1.0, 2.0]
    with pytest.raises(ValueError, match="1-D"):
        validate_scores(np.ones((2, 1)), 2, "f")


def test_empty_input_returns_empty_list():
    assert Constant([])([], []) == []


# ----------------------------------------------------------------------------- CallableReward


def trl_style_length_reward(completions, **kwargs):
    """A reward in TRL's documented style: keyword completions, extra columns via **kwargs."""
    trl_style_length_reward.seen = kwargs
    return [float(len(c)) for c in completions]


def test_callable_reward_keyword_convention_like_trl():
    reward = CallableReward(trl_style_length_reward)
    assert reward.name == "trl_style_length_reward" and reward.convention == "keyword"
    # exactly how trl 1.x GRPOTrainer._calculate_rewards calls a custom reward function
    out = reward(prompts=["p1", "p2"], completions=["abc", "de"], completion_ids=[[1], [2]], level=["x", "y"])
    assert out == [3.0, 2.0]
    seen = trl_style_length_reward.seen
    assert seen["completion_ids"] == [[1], [2]] and seen["level"] == ["x", "y"]
    assert "prompts" in trl_style_length_reward.seen  # forwarded by keyword, as TRL does


def test_callable_reward_positional_convention_and_names():
    reward = CallableReward(lambda p, c: [float(len(x) - len(y)) for x, y in zip(p, c)], name="diff")
    assert reward.convention == "positional"
    assert reward(["abcd", "a"], ["ab", "abc"]) == [2.0, -2.0]

    def scaled(prompts, completions, factor):
        return [factor * len(c) for c in completions]

    partial_reward = CallableReward(functools.partial(scaled, factor=2.0))
    assert partial_reward.name == "scaled" and partial_reward(["p"], ["abc"]) == [6.0]
    assert CallableReward(lambda p, c: [1.0] * len(c), convention="keyword").convention == "keyword"
    with pytest.raises(ValueError, match="convention"):
        CallableReward(len, convention="other")


def test_callable_reward_bad_output_named():
    reward = CallableReward(lambda p, c: [0.0, float("nan")], name="broken")
    with pytest.raises(ValueError, match=r"'broken' returned a non-finite score at index 1"):
        reward(["a", "b"], ["c", "d"])


def test_trl_get_callable_name_sees_reward_name():
    from trl.trainer.utils import get_callable_name

    assert get_callable_name(Constant([1.0], name="my_reward")) == "my_reward"


# ----------------------------------------------------------------------------- chat helpers


def test_chat_helpers():
    chat = [
        {"role": "system", "content": "weights: 0.3, 0.7"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "second question"},
    ]
    assert last_user_message(chat) == "second question"
    assert last_user_message("plain") == "plain"
    assert completion_text([{"role": "assistant", "content": "answer"}]) == "answer"
    with pytest.raises(ValueError, match="without a 'user' message"):
        last_user_message([{"role": "system", "content": "x"}])
    with pytest.raises(TypeError, match="completion"):
        completion_text(42)
    with pytest.raises(TypeError, match="'content' must be a string"):
        completion_text([{"role": "assistant", "content": [{"type": "text", "text": "x"}]}])


# ----------------------------------------------------------------------------- RewardNormalizer

SCORES = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 60.0]])


def test_zscore_matches_hand_computed_values():
    norm = RewardNormalizer("zscore", ["a", "b"]).fit(SCORES)
    # column a: mean 2, population std sqrt(2/3); column b: mean 30, std sqrt(1400/3)
    sa, sb = math.sqrt(2 / 3), math.sqrt(1400 / 3)
    expected = [[-1 / sa, -20 / sb], [0.0, -10 / sb], [1 / sa, 30 / sb]]
    np.testing.assert_allclose(norm.transform(SCORES), expected, rtol=1e-12)
    np.testing.assert_allclose(norm.transform([[4.0, 30.0]]), [[2 / sa, 0.0]], rtol=1e-12)
    np.testing.assert_allclose(norm.inverse_transform([[2 / sa, 0.0]]), [[4.0, 30.0]], rtol=1e-12)


def test_minmax_matches_hand_computed_values_without_clipping():
    norm = RewardNormalizer("minmax").fit(SCORES)
    np.testing.assert_allclose(norm.transform(SCORES), [[0.0, 0.0], [0.5, 0.2], [1.0, 1.0]], rtol=1e-12)
    np.testing.assert_allclose(norm.transform([[5.0, 0.0]]), [[2.0, -0.2]], rtol=1e-12)  # outside: not clipped
    np.testing.assert_allclose(norm.inverse_transform([[0.25, 0.5]]), [[1.5, 35.0]], rtol=1e-12)


def test_one_dimensional_scores_keep_their_shape():
    norm = RewardNormalizer().fit([2.0, 4.0])
    np.testing.assert_allclose(norm.transform([2.0, 4.0, 6.0]), [-1.0, 1.0, 3.0])


def test_save_and_load_roundtrip(tmp_path):
    norm = RewardNormalizer("zscore", ["helpful", "harmless"]).fit(SCORES)
    path = norm.save(tmp_path / "run" / "reward_stats.json")
    data = json.loads(path.read_text())
    assert data["method"] == "zscore" and data["objectives"] == ["helpful", "harmless"] and data["count"] == 3
    assert data["mean"] == [2.0, 30.0]
    loaded = RewardNormalizer.load(path)
    np.testing.assert_array_equal(loaded.transform(SCORES), norm.transform(SCORES))
    minmax = RewardNormalizer("minmax").fit(SCORES)
    assert RewardNormalizer.load(minmax.save(tmp_path / "mm.json")).transform([[3.0, 60.0]]).tolist() == [[1.0, 1.0]]


def test_normalizer_errors():
    with pytest.raises(RuntimeError, match="not fitted"):
        RewardNormalizer().transform(SCORES)
    with pytest.raises(RuntimeError, match="not fitted"):
        RewardNormalizer().save("/tmp/never-written.json")
    with pytest.raises(ValueError, match=r"objective 'harmless' has zero variance"):
        RewardNormalizer("zscore", ["helpful", "harmless"]).fit([[1.0, 5.0], [2.0, 5.0]])
    with pytest.raises(ValueError, match=r"objective 'b' has zero range"):
        RewardNormalizer("minmax", ["a", "b"]).fit([[1.0, 5.0], [2.0, 5.0]])
    with pytest.raises(ValueError, match=r"non-finite score nan at row 1, objective 'b'"):
        RewardNormalizer("zscore", ["a", "b"]).fit([[1.0, 5.0], [2.0, float("nan")]])
    with pytest.raises(ValueError, match="fitted on 2"):
        RewardNormalizer().fit(SCORES).transform([[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match="objectives are"):
        RewardNormalizer(objectives=["only_one"]).fit(SCORES)
    with pytest.raises(ValueError, match="method"):
        RewardNormalizer("robust")


def test_load_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"method": "zscore", "mean": [0.0]}')
    with pytest.raises(ValueError, match=r"bad.json: missing key 'std'"):
        RewardNormalizer.load(bad)
    bad.write_text('{"method": "zscore", "mean": [0.0], "std": [0.0]}')
    with pytest.raises(ValueError, match="positive"):
        RewardNormalizer.load(bad)
    bad.write_text("not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        RewardNormalizer.load(bad)


def test_joined_prompt_text_is_the_whole_conversation():
    from moalign.rewards.base import joined_prompt_text

    chat = [{"role": "system", "content": "weights: 0.3, 0.7"}, {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"}, {"role": "user", "content": "second question"}]
    assert joined_prompt_text(chat) == "weights: 0.3, 0.7\nfirst\nok\nsecond question"
    assert joined_prompt_text("plain") == "plain"
    assert last_user_message(chat) == "second question"  # the question alone
    with pytest.raises(TypeError, match="prompt 4"):
        joined_prompt_text(42, what="prompt 4")


def test_invalid_score_errors_carry_where_and_what_and_pickle():
    import pickle

    from moalign.rewards.base import InvalidScoreError, NonNumericScoreError

    with pytest.raises(InvalidScoreError) as info:
        validate_scores([1.0, float("inf")], 2, "r")
    assert (info.value.reward, info.value.index, info.value.value) == ("r", 1, float("inf"))
    assert str(info.value.shifted(10)) == str(info.value).replace("index 1", "index 11")
    with pytest.raises(NonNumericScoreError) as info:
        validate_scores([None], 1, "r")
    again = pickle.loads(pickle.dumps(info.value))
    assert type(again) is NonNumericScoreError and str(again) == str(info.value)
