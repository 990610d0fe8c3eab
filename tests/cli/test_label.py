"""``moalign label`` end to end on small files with scripted rewards: the written scores and labels are the reward
functions' own outputs, the sidecar names the objectives, and a bad file is an error naming file, row and column."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from moalign.cli.main import main
from moalign.data import load_multi_objective
from tests.baselines.scripted_rewards import brevity, count_good
from tests.cli_setup import write_jsonl

REWARDS = ["good=py:tests.baselines.scripted_rewards:count_good", "short=py:tests.baselines.scripted_rewards:brevity"]
ROWS = [
    {"prompt": "p one", "completion": "good good day", "id": 0},
    {"prompt": "p one", "completion": "a good one here today", "id": 1},
    {"prompt": "p two", "completion": "nothing at all", "id": 2},
    {"prompt": "p two", "completion": "good", "id": 3},
    {"prompt": "p two", "completion": "good good good but long answer", "id": 4},
]


def nan_for_bad(prompts, completions, **kwargs) -> list[float]:
    """A scripted reward that fails on the completion 'bad' (NaN), for the error test."""
    return [math.nan if c == "bad" else 1.0 for c in completions]


def direct_scores(prompts: list, completions: list) -> list[list[float]]:
    """The scripted rewards called directly: one [good, short] vector per completion."""
    return [list(v) for v in zip(count_good(prompts, completions), brevity(prompts, completions), strict=True)]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def label(*args: str) -> int:
    return main(["label", *args])


def test_pointwise_scores_are_the_reward_functions_outputs(tmp_path):
    data, out = write_jsonl(tmp_path / "mine.jsonl", ROWS), tmp_path / "out" / "scored.jsonl"
    assert label("--data", str(data), "--rewards", *REWARDS, "--out", str(out), "--batch_size", "2") == 0
    written = read_jsonl(out)
    expected = direct_scores([r["prompt"] for r in ROWS], [r["completion"] for r in ROWS])
    assert [r["scores"] for r in written] == expected
    assert [r["id"] for r in written] == [0, 1, 2, 3, 4]  # other columns kept, row order kept
    meta = json.loads(Path(str(out) + ".moalign.json").read_text())["moalign_multi_objective"]
    assert meta["objectives"] == ["good", "short"] and meta["kind"] == "pointwise"
    assert load_multi_objective(out).objectives == ["good", "short"]  # readable without --objectives


def test_pairs_group_the_completions_of_each_prompt(tmp_path, capsys):
    data, out = write_jsonl(tmp_path / "mine.jsonl", ROWS), tmp_path / "pairs.jsonl"
    assert label("--data", str(data), "--rewards", *REWARDS, "--pairs", "--out", str(out)) == 0
    written = read_jsonl(out)
    scores = direct_scores([r["prompt"] for r in ROWS], [r["completion"] for r in ROWS])
    # every two completions of one prompt, completion_a the earlier row
    assert [(r["completion_a"], r["completion_b"]) for r in written] == [
        (ROWS[i]["completion"], ROWS[j]["completion"]) for i, j in [(0, 1), (2, 3), (2, 4), (3, 4)]]
    for row, (i, j) in zip(written, [(0, 1), (2, 3), (2, 4), (3, 4)], strict=True):
        assert row["scores_a"] == scores[i] and row["scores_b"] == scores[j]
        assert row["preference"] == [1.0 if a > b else 0.0 if a < b else 0.5
                                     for a, b in zip(scores[i], scores[j], strict=True)]
    assert load_multi_objective(out).kind == "pairwise"
    assert "4 rows out" in capsys.readouterr().out


def test_pair_rows_and_bradley_terry_labels(tmp_path):
    rows = [{"prompt": "q", "completion_a": "good good", "completion_b": "fine answer here"},
            {"prompt": "r", "completion_a": "so so", "completion_b": "good"}]
    data, out = write_jsonl(tmp_path / "pairs_in.jsonl", rows), tmp_path / "pairs.parquet"
    assert label("--data", str(data), "--rewards", *REWARDS, "--pairs", "--label_mode", "bradley_terry",
                 "--temperature", "2", "--out", str(out)) == 0
    labelled = load_multi_objective(out)
    a = direct_scores(["q", "r"], [r["completion_a"] for r in rows])
    b = direct_scores(["q", "r"], [r["completion_b"] for r in rows])
    assert labelled.dataset["scores_a"] == a and labelled.dataset["scores_b"] == b
    for got, sa, sb in zip(labelled.dataset["preference"], a, b, strict=True):
        assert got == pytest.approx([1 / (1 + math.exp(-(x - y) / 2)) for x, y in zip(sa, sb, strict=True)])


def test_unpaired_prompts_are_an_error_or_dropped_and_counted(tmp_path, capsys):
    data = write_jsonl(tmp_path / "mine.jsonl", ROWS + [{"prompt": "alone", "completion": "just me", "id": 5}])
    out = tmp_path / "pairs.jsonl"
    assert label("--data", str(data), "--rewards", *REWARDS, "--pairs", "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert f"{data}: row 5 (line 6), column 'prompt'" in err and "single distinct completion" in err
    assert not out.exists()
    assert label("--data", str(data), "--rewards", *REWARDS, "--pairs", "--unpaired", "drop", "--out", str(out)) == 0
    assert len(read_jsonl(out)) == 4
    assert "1 (prompt with a single completion (no pair))" in capsys.readouterr().out


def test_repeated_completion_is_an_error_unless_merged(tmp_path, capsys):
    data = write_jsonl(tmp_path / "mine.jsonl", ROWS + [{"prompt": "p one", "completion": "good good day", "id": 5}])
    out = tmp_path / "pairs.jsonl"
    assert label("--data", str(data), "--rewards", *REWARDS, "--pairs", "--out", str(out)) == 2
    assert "row 5 (line 6), column 'completion': repeats the completion of row 0" in capsys.readouterr().err
    assert label("--data", str(data), "--rewards", *REWARDS, "--pairs", "--duplicates", "merge",
                 "--out", str(out)) == 0
    assert len(read_jsonl(out)) == 4


@pytest.mark.parametrize("content, where", [
    ('{"prompt": "a", "answer": "b"}\n', "row 0 (line 1), column 'completion': no column 'completion'"),
    ('{"prompt": "a", "completion": "b"}\n{"prompt": "a", "completion": "c"}\n{"prompt": "a"}\n',
     "row 2 (line 3), column 'completion'"),
    ('{"prompt": "a", "completion": "b"}\n{"prompt": "a", "completion": \n', "row 1 (line 2): not valid JSON"),
    ('{"prompt": "a", "completion": "b"}\n\n{"prompt": "a", "completion": ""}\n',
     "row 1 (line 3), column 'completion': empty text"),
    ('{"prompt": "a", "completion": "b", "scores": [1, 2]}\n',
     "row 0 (line 1), column 'scores': already has label column(s) ['scores']"),
], ids=["no-such-column", "row-without-column", "bad-json-line", "empty-completion", "already-labelled"])
def test_bad_file_errors_name_file_row_and_column(tmp_path, capsys, content, where):
    data = tmp_path / "bad.jsonl"
    data.write_text(content)
    assert label("--data", str(data), "--rewards", *REWARDS, "--out", str(tmp_path / "out.jsonl")) == 2
    err = capsys.readouterr().err
    assert "moalign label: error:" in err and f"{data}: {where}" in err
    assert not (tmp_path / "out.jsonl").exists()


def test_bad_score_names_the_row_and_the_completion_column(tmp_path, capsys):
    rows = [{"prompt": "q", "completion_a": "fine", "completion_b": "ok"},
            {"prompt": "r", "completion_a": "ok", "completion_b": "bad"}]
    data = write_jsonl(tmp_path / "pairs_in.jsonl", rows)
    assert label("--data", str(data), "--rewards", "nan=py:tests.cli.test_label:nan_for_bad", "--pairs",
                 "--batch_size", "1", "--out", str(tmp_path / "out.jsonl")) == 2
    err = capsys.readouterr().err
    assert f"{data}: row 1 (line 2), column 'completion_b': reward function 'nan' returned nan" in err


def test_overwrite_replaces_existing_scores(tmp_path):
    data = write_jsonl(tmp_path / "scored_before.jsonl", [{**r, "scores": [9.0]} for r in ROWS])
    out = tmp_path / "scored.jsonl"
    assert label("--data", str(data), "--rewards", *REWARDS, "--overwrite", "true", "--out", str(out)) == 0
    assert [r["scores"] for r in read_jsonl(out)] == direct_scores([r["prompt"] for r in ROWS],
                                                                   [r["completion"] for r in ROWS])


def test_output_and_option_errors(tmp_path, capsys):
    data = write_jsonl(tmp_path / "mine.jsonl", ROWS)
    assert label("--data", str(data), "--rewards", *REWARDS, "--out", str(tmp_path / "out.txt")) == 2
    assert "unsupported output type '.txt'" in capsys.readouterr().err
    assert label("--data", str(data), "--rewards", *REWARDS, "--out", str(data)) == 2
    assert "would overwrite the input file" in capsys.readouterr().err
    assert label("--data", str(data), "--rewards", *REWARDS, "--label_mode", "soft", "--out", "x.jsonl") == 2
    assert "--label_mode must be one of ['hard', 'bradley_terry']" in capsys.readouterr().err
    assert label("--data", str(tmp_path / "missing.jsonl"), "--rewards", *REWARDS, "--out", "x.jsonl") == 2
    assert "missing.jsonl: no such file" in capsys.readouterr().err
