"""``experiments.task_conflict``: Spearman conflict and p-value against hand-computed ranks, the probes' shares
against a hand count (ties one half), the rendered tables, and the command end to end on a tiny saved model with
download-free scorers (samples reused on a second call, refused when they do not match the arguments)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from moalign.eval.degeneracy import degeneracy_summary
from moalign.experiments.task_conflict import (DEFAULT_SCORERS, DEGENERATE_PROBES, PROMPT_ECHO, conflict_table, main,
                                               probe_shares, render)
from tests.cli_setup import save_tiny_model


def test_conflict_table_monotone_columns_give_plus_and_minus_one():
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    scores = np.stack([a, a**2, -(a**3)], axis=1)
    rows = conflict_table(scores, ["a", "b", "c"])
    assert [r["pair"] for r in rows] == ["a~b", "a~c", "b~c"]
    assert [r["spearman"] for r in rows] == pytest.approx([1.0, -1.0, -1.0])


def test_conflict_table_against_hand_computed_ranks():
    # x ranks 1 2 3 4 5, y ranks 2 1 4 3 5: d^2 sums to 4, rho = 1 - 6 * 4 / (5 * (25 - 1)) = 0.8.
    # p (two-sided, t = rho sqrt((n-2)/(1-rho^2)) = 4/3 sqrt(3), 3 degrees of freedom, whose CDF is closed-form):
    # 1 - (2/pi) (t/sqrt3 / (1 + t^2/3) + atan(t/sqrt3)) = 1 - (2/pi) (12/25 + atan(4/3))
    scores = np.array([[10, 0.3], [20, 0.1], [30, 0.9], [40, 0.5], [50, 2.0]])
    (row,) = conflict_table(scores, ["x", "y"])
    assert row["pair"] == "x~y"
    assert row["spearman"] == pytest.approx(0.8)
    assert row["p_value"] == pytest.approx(1 - 2 / math.pi * (12 / 25 + math.atan(4 / 3)))
    # ties take the mean rank: y ranks 1.5 1.5 3 4 against 1 2 3 4; Pearson of the ranks = 4.5 / sqrt(5 * 4.5);
    # p with 2 degrees of freedom: t^2 = 18, p = 1 - t / sqrt(2 + t^2) = 1 - sqrt(0.9)
    (tied,) = conflict_table(np.array([[1, 1], [2, 1], [3, 2], [4, 3]], float), ["x", "y"])
    assert tied["spearman"] == pytest.approx(math.sqrt(0.9))
    assert tied["p_value"] == pytest.approx(1 - math.sqrt(0.9))


def test_probe_shares_against_a_hand_count():
    samples = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 5.0], [4.0, 5.0]])  # 4 responses x 2 scorers
    probes = np.array([
        [[2.0, 0.0], [4.0, 0.0]],   # means (3, 0): beats 1, 2 and ties 3 -> 2.5/4; ties two zeros -> 1/4
        [[10.0, 6.0], [0.0, 4.0]],  # means (5, 5): beats all four -> 1; beats two, ties two -> 3/4
    ])  # 2 probes x 2 prompts x 2 scorers
    np.testing.assert_allclose(probe_shares(samples, probes), [[0.625, 0.25], [1.0, 0.75]])


def test_defaults_measure_both_relevances_and_the_echo_probe():
    from moalign.experiments.compare import CompareConfig
    from moalign.rewards.registry import OFFLINE_NAMES

    assert DEFAULT_SCORERS == ("positivity", "relevance", "answer_relevance", "conciseness", "brevity")
    assert set(DEFAULT_SCORERS) <= set(OFFLINE_NAMES)
    assert set(CompareConfig().reward_functions) <= set(DEFAULT_SCORERS)  # compare's demo task is measured here
    assert list(DEGENERATE_PROBES)[-1] == "echo of the prompt"
    assert DEGENERATE_PROBES["echo of the prompt"] == PROMPT_ECHO


def _result() -> dict:
    return {"num_samples": 8, "num_prompts": 4,
            "samples_degeneracy": {"degenerate_share": 0.125},
            "mean_score": {"a": -3.0, "b": 0.5},
            "conflict": [{"pair": "a~b", "spearman": -0.3254, "p_value": 7.04e-11}],
            "degenerate_probes": {"empty": {"a": 1.0, "b": 0.03}, "one word": {"a": 0.995, "b": 0.214}}}


def test_render_writes_both_tables():
    lines = render(_result()).splitlines()
    assert lines[0] == "8 base-model samples on 4 train prompts; 12.5% of them degenerate."
    assert "| pair | Spearman | p |" in lines and "| a~b | -0.325 | 7e-11 |" in lines
    assert "| answer | a | b |" in lines and "|---|---|---|" in lines
    assert "| empty | 1.00 | 0.03 |" in lines and "| one word | 0.99 | 0.21 |" in lines


#: download-free scorers: brevity, characters / 100, vowel share (the tiny model's 4-token samples all have 4 words,
#: so brevity is constant on them and its Spearman is undefined; the other two vary)
SCORERS = ["brevity", "length=py:tests.trainers.mo_odpo_rewards:Length",
           "vowels=py:tests.experiments.compare_rewards:Vowels"]


def _argv(out: Path, model: Path, num_train_prompts: int = 4) -> list[str]:
    return ["--out", str(out), "--model", str(model), "--scorers", *SCORERS,
            "--num_train_prompts", str(num_train_prompts), "--responses_per_prompt", "2", "--max_new_tokens", "4",
            "--precision", "fp32"]


@pytest.mark.filterwarnings("ignore::scipy.stats.ConstantInputWarning")
def test_command_end_to_end_on_a_tiny_model(tmp_path, capsys):
    tiny = save_tiny_model(tmp_path / "tiny")
    out = tmp_path / "out"
    main(_argv(out, tiny))
    printed = capsys.readouterr().out
    result = json.loads((out / "task_conflict.json").read_text())
    assert (result["num_samples"], result["num_prompts"]) == (8, 4)
    assert [r["pair"] for r in result["conflict"]] == ["brevity~length", "brevity~vowels", "length~vowels"]
    assert -1.0 <= result["conflict"][2]["spearman"] <= 1.0
    assert list(result["degenerate_probes"]) == list(DEGENERATE_PROBES)
    assert "| length~vowels |" in printed and "| answer | brevity | length | vowels |" in printed
    # counted by hand from the samples: the empty answer scores -30 on brevity (beats answers over 30 words, ties
    # empty ones and 30-word ones) and 0 on length (ties empty answers); the repeated phrase has 43 characters
    texts = [json.loads(line)["generated"] for line in (out / "samples.jsonl").read_text().splitlines()]
    words, chars = [len(t.split()) for t in texts], [len(t) for t in texts]
    assert len(DEGENERATE_PROBES["repeated phrase"]) == 43
    shares = result["degenerate_probes"]
    assert shares["empty"]["brevity"] == pytest.approx(
        (sum(n > 30 for n in words) + 0.5 * sum(n in (0, 30) for n in words)) / 8)
    assert shares["empty"]["length"] == pytest.approx(0.5 * sum(n == 0 for n in chars) / 8)
    assert shares["repeated phrase"]["length"] == pytest.approx(
        (sum(n < 43 for n in chars) + 0.5 * sum(n == 43 for n in chars)) / 8)
    # the echo probe answers each prompt with the prompt itself: its length score is the prompts' mean length
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    prompts = list(dict.fromkeys(s["prompt"] for s in samples))
    echo_length = np.mean([len(p) / 100 for p in prompts])
    assert len(prompts) == 4
    assert shares["echo of the prompt"]["length"] == pytest.approx(
        (sum(n / 100 < echo_length for n in chars) + 0.5 * sum(n / 100 == echo_length for n in chars)) / 8)
    # the samples' degeneracy counts echoes of their own prompts
    assert result["samples_degeneracy"] == pytest.approx(degeneracy_summary(texts, [s["prompt"] for s in samples]))
    assert "echo_share" in result["samples_degeneracy"]
    # a second call reuses the samples (the model is not loaded again) and gives the same numbers
    main(_argv(out, tmp_path / "absent"))
    again = json.loads((out / "task_conflict.json").read_text())
    assert again["degenerate_probes"] == shares and again["conflict"][2] == result["conflict"][2]
    # samples of other prompts are refused
    with pytest.raises(ValueError, match="other prompts"):
        main(_argv(out, tmp_path / "absent", num_train_prompts=3))
