"""Rescoring a finished comparison's stored answers with other scorers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from moalign.experiments.compare_rescore import render_rescored, rescore_comparison
from moalign.rewards.base import CallableReward

PROMPTS = ["How do I boil an egg?", "What is a good name for a cat?"]


def _count_a(prompts, completions):
    return [float(c.count("a")) for c in completions]


def _minus_words(prompts, completions):
    return [-float(len(c.split())) for c in completions]


SCORERS = [CallableReward(_count_a, name="a_count", convention="positional"),
           CallableReward(_minus_words, name="shortness", convention="positional")]


def _write_run(tmp_path):
    policy = lambda name, weights, answers: {"name": name, "weights": weights, "completions": answers}  # noqa: E731
    methods = {
        "long_a": {"policies": [policy("w0", [0.0, 1.0], ["a b", "a a b"]),            # means (1.5, -2.5)
                                policy("w1", [0.5, 0.5], ["aaa b c", "aa b c"]),       # (2.5, -3.0)
                                policy("w2", [1.0, 0.0], ["aaaa b c d", "aaaa b c d"])]},  # (4.0, -4.0)
        "echo": {"policies": [policy("h0", None, PROMPTS)]},  # an echo of each prompt: degenerate
    }
    run = {"task": "demo", "objectives": ["x", "y"], "test_prompts": PROMPTS, "methods": methods}
    (tmp_path / "compare.json").write_text(json.dumps(run))
    (tmp_path / "base_eval.json").write_text(json.dumps({"completions": ["b c d e", "b c d e f"]}))  # (0, -4.5)


def _staircase_hv(points, reference):
    """2-D hypervolume by sweeping the points by the first objective, largest first (maximisation)."""
    area, best_y = 0.0, reference[1]
    for x, y in sorted(points, key=lambda p: -p[0]):
        if y > best_y:
            area += (x - reference[0]) * (y - best_y)
            best_y = y
    return area


def test_rescored_hypervolumes_equal_a_hand_sweep_over_hand_computed_means(tmp_path):
    _write_run(tmp_path)
    result = rescore_comparison(tmp_path, SCORERS)
    assert result["objectives"] == ["a_count", "shortness"] and result["trained_on"] == ["x", "y"]
    long_a = result["methods"]["long_a"]
    assert long_a["points"] == [[1.5, -2.5], [2.5, -3.0], [4.0, -4.0]]
    echo_points = [[np.mean([p.count("a") for p in PROMPTS]), -np.mean([len(p.split()) for p in PROMPTS])]]
    assert result["methods"]["echo"]["points"][0] == pytest.approx(echo_points[0])
    assert result["base"] == [0.0, -4.5]
    # the shared reference: per objective the minimum over every point and the base, minus 0.1 x range
    everything = np.array(long_a["points"] + echo_points + [[0.0, -4.5]])
    low, high = everything.min(axis=0), everything.max(axis=0)
    reference = low - 0.1 * (high - low)
    assert result["reference_point"] == pytest.approx(reference.tolist())
    assert long_a["hv"]["hv"] == pytest.approx(_staircase_hv(long_a["points"], reference))
    assert result["hypervolume_base"] == pytest.approx(_staircase_hv([[0.0, -4.5]], reference))
    # steering: weight on a_count rises with a_count's mean, weight on shortness with shortness
    assert long_a["steerability"]["spearman"] == pytest.approx({"a_count": 1.0, "shortness": 1.0})
    assert result["methods"]["echo"]["steerability"]["steerable"] is False
    # the largest front is long_a; its "a b" answers have 2 words: degenerate, so it is flagged
    win = result["largest_hv_front"]
    assert win["method"] == "long_a" and win["flagged"]
    assert [p["policy"] for p in win["degenerate_policies"]] == ["w0"]
    assert result["methods"]["echo"]["policies"][0]["degeneracy"]["echo_share"] == 1.0
    assert "FLAG" in render_rescored(result) and "| long_a |" in render_rescored(result)


def test_rescoring_reads_only_finished_runs_and_says_which_file_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="compare.json"):
        rescore_comparison(tmp_path, SCORERS)
    _write_run(tmp_path)
    (tmp_path / "base_eval.json").write_text(json.dumps({"completions": ["only one"]}))
    with pytest.raises(ValueError, match="base_eval.json: 1 answers for 2 test prompts"):
        rescore_comparison(tmp_path, SCORERS)
    (tmp_path / "base_eval.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        rescore_comparison(tmp_path, SCORERS)


def test_command_line_writes_the_result(tmp_path, capsys):
    from moalign.cli.main import main as moalign

    _write_run(tmp_path)
    assert moalign(["rescore", "--compare", str(tmp_path), "--reward_functions", "brevity", "conciseness"]) == 0
    saved = json.loads((tmp_path / "rescored_brevity_conciseness.json").read_text())
    assert saved["objectives"] == ["brevity", "conciseness"]
    assert (tmp_path / "rescored_brevity_conciseness.png").stat().st_size > 0
    # "a b" and "a a b": 2 and 3 words; brevity -(10 + 2 * 8) and -(10 + 2 * 7), conciseness -2 and -3
    assert saved["methods"]["long_a"]["points"][0] == [-25.0, -2.5]
    assert "Largest-HV front" in capsys.readouterr().out
    # bad input: a clear error, exit status 2
    assert moalign(["rescore", "--compare", str(tmp_path / "missing"), "--reward_functions", "brevity"]) == 2
    assert "compare.json" in capsys.readouterr().err
