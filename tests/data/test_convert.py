"""Conversions, checked against hand-computed labels (and SciPy's logistic function for BT labels)."""

from __future__ import annotations

import datasets
import pytest
from scipy.special import expit

from moalign.data import (
    DatasetValidationError,
    conflicting_pairs,
    from_rows,
    pairwise_from_trl,
    pairwise_to_pointwise,
    pairwise_to_trl,
    scores_to_pairwise,
)

OBJ = ["helpful", "harmless"]


def point(prompt, completion, scores, **extra):
    return {"prompt": prompt, "completion": completion, "scores": list(scores), **extra}


def test_scores_to_pairwise_hand_computed():
    mo = from_rows([
        point("p1", "x", [1.0, 5.0]),
        point("p2", "only", [0.0, 0.0]),
        point("p1", "y", [2.0, 5.0]),
        point("p3", "u", [0.0, 1.0]),
        point("p1", "z", [0.0, 9.0]),
        point("p3", "v", [0.0, 0.0]),
    ], OBJ)
    pw, report = scores_to_pairwise(mo)
    got = [(r["prompt"], r["completion_a"], r["completion_b"], r["preference"]) for r in pw.dataset.to_list()]
    assert got == [
        ("p1", "x", "y", [0.0, 0.5]),   # 1<2, 5=5
        ("p1", "x", "z", [1.0, 0.0]),   # 1>0, 5<9
        ("p1", "y", "z", [1.0, 0.0]),
        ("p3", "u", "v", [0.5, 1.0]),
    ]
    assert pw.dataset[0]["scores_a"] == [1.0, 5.0] and pw.dataset[0]["scores_b"] == [2.0, 5.0]
    assert report.rows_in == 6 and report.rows_out == 4
    assert report.dropped == {"prompt with a single completion (no pair)": 1}


def test_scores_to_pairwise_bt_temperature():
    mo = from_rows([point("p", "a", [1.0, 0.0]), point("p", "b", [0.0, 2.0])], OBJ)
    pw, _ = scores_to_pairwise(mo, temperature=2.0)
    assert pw[0]["preference"] == pytest.approx([expit(0.5), expit(-1.0)], rel=1e-12)


def test_scores_to_pairwise_chat_prompts_group_by_value():
    p = [{"role": "user", "content": "q"}]
    c = lambda t: [{"role": "assistant", "content": t}]  # noqa: E731
    mo = from_rows([point(p, c("a"), [1.0]), point(p, c("b"), [0.0])], ["only"])
    pw, _ = scores_to_pairwise(mo)
    assert len(pw) == 1 and pw[0]["preference"] == [1.0] and pw.conversational


def test_scores_to_pairwise_duplicates_and_sampling():
    rows = [point("p", "a", [1.0]), point("p", "a", [1.0]), point("p", "b", [0.0])]
    with pytest.raises(DatasetValidationError, match=r"row 1, column 'completion'.*repeats the completion of row 0"):
        scores_to_pairwise(from_rows(rows, ["k"]))
    pw, report = scores_to_pairwise(from_rows(rows, ["k"]), duplicates="merge")
    assert len(pw) == 1 and report.dropped == {"duplicate completion merged": 1}
    conflicting = [point("p", "a", [1.0]), point("p", "a", [2.0])]
    with pytest.raises(DatasetValidationError, match="differing scores"):
        scores_to_pairwise(from_rows(conflicting, ["k"]), duplicates="merge")

    many = from_rows([point("p", f"c{i}", [float(i)]) for i in range(6)], ["k"])  # C(6,2) = 15 pairs
    pw, report = scores_to_pairwise(many, max_pairs_per_prompt=4, seed=3)
    pairs = [(r["completion_a"], r["completion_b"]) for r in pw.dataset.to_list()]
    assert len(pairs) == 4 and len(set(pairs)) == 4
    assert all(int(a[1:]) < int(b[1:]) for a, b in pairs)
    assert all(r["preference"] == [0.0] for r in pw.dataset.to_list())  # earlier rows have lower scores
    assert "11 pairs not sampled" in report.notes[0]
    again, _ = scores_to_pairwise(many, max_pairs_per_prompt=4, seed=3)
    assert again.dataset.to_list() == pw.dataset.to_list()


def test_pairwise_to_pointwise_inverts_scores_to_pairwise():
    rows = [point("p1", "x", [1.0, 5.0]), point("p1", "y", [2.0, 5.0]), point("p1", "z", [0.0, 9.0]),
            point("p3", "u", [0.0, 1.0]), point("p3", "v", [0.0, 0.0])]
    pw, _ = scores_to_pairwise(from_rows(rows, OBJ))
    back, report = pairwise_to_pointwise(pw)
    assert back.kind == "pointwise" and back.dataset.to_list() == rows
    assert report.dropped == {"repeated (prompt, completion) merged": 3}  # x, y, z each appear twice in 3 pairs


def test_pairwise_to_pointwise_errors():
    no_scores = from_rows([{"prompt": "p", "completion_a": "a", "completion_b": "b", "preference": [1.0]}], ["k"])
    with pytest.raises(DatasetValidationError, match="needs columns 'scores_a' and 'scores_b'"):
        pairwise_to_pointwise(no_scores)
    base = {"prompt": "p", "completion_b": "b", "preference": [1.0], "scores_b": [0.0]}
    clash = from_rows([base | {"completion_a": "a", "scores_a": [1.0]},
                       base | {"completion_a": "c", "scores_a": [2.0], "scores_b": [0.5]}], ["k"])
    with pytest.raises(DatasetValidationError, match=r"row 1, column 'scores_b'.*same prompt and completion as row 0"):
        pairwise_to_pointwise(clash)


# ----- (b) TRL per objective -> pairwise ---------------------------------------------------------
HELPFUL = [
    {"prompt": "q1", "chosen": "long answer", "rejected": "no"},
    {"prompt": "q2", "chosen": "sure", "rejected": "rude"},
    {"prompt": "q3", "chosen": "a", "rejected": "b"},
]
HARMLESS = [
    {"prompt": "q2", "chosen": "sure", "rejected": "rude"},      # agrees with helpful
    {"prompt": "q1", "chosen": "no", "rejected": "long answer"},  # disagrees (pair given reversed)
    {"prompt": "q4", "chosen": "c", "rejected": "d"},             # only in harmless
]


def test_pairwise_from_trl_missing_is_an_error_by_default():
    with pytest.raises(DatasetValidationError) as info:
        pairwise_from_trl({"helpful": HELPFUL, "harmless": HARMLESS})
    msg = str(info.value)
    assert "2 of 4 pairs are missing" in msg and "'helpful': 1" in msg and "'harmless': 1" in msg


def test_pairwise_from_trl_labels_and_drop_report():
    mo, report = pairwise_from_trl({"helpful": HELPFUL, "harmless": datasets.Dataset.from_list(HARMLESS)},
                                   missing="drop")
    assert mo.objectives == ["helpful", "harmless"]
    assert mo.dataset.to_list() == [
        {"prompt": "q1", "completion_a": "long answer", "completion_b": "no", "preference": [1.0, 0.0]},
        {"prompt": "q2", "completion_a": "sure", "completion_b": "rude", "preference": [1.0, 1.0]},
    ]
    assert report.dropped == {"pair absent from objective 'helpful'": 1, "pair absent from objective 'harmless'": 1}
    assert report.rows_in == 6 and report.rows_out == 2


def test_pairwise_from_trl_implicit_text_prompt_follows_trl():
    # TRL's extract_prompt: longest common character prefix, minus a trailing space
    per = {"k": [{"chosen": "Q: sky? A: blue", "rejected": "Q: sky? A: green"}]}
    mo, _ = pairwise_from_trl(per)
    assert mo[0] == {"prompt": "Q: sky? A:", "completion_a": " blue", "completion_b": " green", "preference": [1.0]}


def test_pairwise_from_trl_implicit_chat_prompt_and_matching_with_explicit():
    user = {"role": "user", "content": "Sky colour?"}
    blue, green = {"role": "assistant", "content": "Blue."}, {"role": "assistant", "content": "Green."}
    per = {
        "helpful": [{"chosen": [user, blue], "rejected": [user, green]}],
        "honest": [{"prompt": [user], "chosen": [green], "rejected": [blue]}],
    }
    mo, _ = pairwise_from_trl(per)
    assert mo[0] == {"prompt": [user], "completion_a": [blue], "completion_b": [green], "preference": [1.0, 0.0]}


def test_pairwise_from_trl_rejects_undefined_prompt_extraction_and_duplicates():
    with pytest.raises(DatasetValidationError, match=r"objective 'k' dataset: row 0: .*prefix"):
        pairwise_from_trl({"k": [{"chosen": "abc", "rejected": "abcd"}]})
    with pytest.raises(DatasetValidationError, match="chosen equals rejected"):
        pairwise_from_trl({"k": [{"prompt": "p", "chosen": "a", "rejected": "a"}]})
    with pytest.raises(DatasetValidationError, match="missing column 'rejected'"):
        pairwise_from_trl({"k": [{"prompt": "p", "chosen": "a"}]})
    dup = [{"prompt": "p", "chosen": "a", "rejected": "b"}, {"prompt": "p", "chosen": "b", "rejected": "a"},
           {"prompt": "p", "chosen": "a", "rejected": "b"}, {"prompt": "p", "chosen": "a", "rejected": "b"}]
    with pytest.raises(DatasetValidationError, match=r"row 1: repeats an earlier"):
        pairwise_from_trl({"k": dup})
    mo, _ = pairwise_from_trl({"k": dup}, duplicates="mean")
    assert len(mo) == 1 and mo[0]["preference"] == [0.75]  # 3 of 4 rows prefer "a"


# ----- (c) pairwise -> TRL -------------------------------------------------------------------------
def labelled(prefs):
    return from_rows([{"prompt": f"p{i}", "completion_a": f"a{i}", "completion_b": f"b{i}", "preference": [p, 1.0]}
                      for i, p in enumerate(prefs)], OBJ)


def test_pairwise_to_trl_orientation_and_ties():
    mo = labelled([1.0, 0.0, 0.5, 0.7, 0.2])
    with pytest.raises(DatasetValidationError, match=r"row 2, column 'preference': tie \(0.5\) on objective 'helpful'"):
        pairwise_to_trl(mo, "helpful")
    trl, report = pairwise_to_trl(mo, "helpful", ties="drop")
    assert trl.to_list() == [
        {"prompt": "p0", "chosen": "a0", "rejected": "b0"},
        {"prompt": "p1", "chosen": "b1", "rejected": "a1"},
        {"prompt": "p3", "chosen": "a3", "rejected": "b3"},
        {"prompt": "p4", "chosen": "b4", "rejected": "a4"},
    ]
    assert report.dropped == {"tie (preference 0.5)": 1} and "2 soft labels" in report.notes[0]
    both, _ = pairwise_to_trl(mo, "helpful", ties="both")
    assert both.to_list()[2:4] == [{"prompt": "p2", "chosen": "a2", "rejected": "b2"},
                                   {"prompt": "p2", "chosen": "b2", "rejected": "a2"}]
    harmless, _ = pairwise_to_trl(mo, "harmless")
    assert harmless["chosen"] == ["a0", "a1", "a2", "a3", "a4"]
    with pytest.raises(KeyError, match="unknown objective"):
        pairwise_to_trl(mo, "funny")


def test_round_trip_trl_to_pairwise_to_trl():
    mo, _ = pairwise_from_trl({"helpful": HELPFUL, "harmless": HELPFUL})
    trl, _ = pairwise_to_trl(mo, "harmless")
    assert trl.to_list() == HELPFUL


def test_conflicting_pairs_keeps_rows_whose_objectives_name_different_winners():
    rows = [
        {"prompt": "p", "completion_a": "a", "completion_b": "b", "preference": [1.0, 0.0, 0.5]},   # conflict
        {"prompt": "p", "completion_a": "a", "completion_b": "c", "preference": [1.0, 1.0, 0.5]},   # agree
        {"prompt": "q", "completion_a": "x", "completion_b": "y", "preference": [0.5, 0.5, 0.5]},   # all tie
        {"prompt": "q", "completion_a": "x", "completion_b": "z", "preference": [0.5, 0.2, 0.9]},   # conflict
        {"prompt": "r", "completion_a": "u", "completion_b": "v", "preference": [0.0, 0.5, 0.3]},   # agree on b
    ]
    mo = from_rows(rows, objectives=["o1", "o2", "o3"], kind="pairwise")
    kept, report = conflicting_pairs(mo)
    assert [r["preference"] for r in kept.dataset.to_list()] == [[1.0, 0.0, 0.5], [0.5, 0.2, 0.9]]
    assert kept.objectives == ["o1", "o2", "o3"] and kept.kind == "pairwise"
    assert (report.rows_in, report.rows_out, report.dropped) == (5, 2, {"objectives agree or tie": 3})
    with pytest.raises(ValueError, match="pairwise"):
        conflicting_pairs(from_rows([{"prompt": "p", "completion": "c", "scores": [1.0, 2.0, 3.0]}],
                                    objectives=["o1", "o2", "o3"], kind="pointwise"))


def test_scores_to_pairwise_carries_truncation_flags_to_both_sides():
    mo = from_rows([point("p", "long and cut", (1, 0), truncated=True), point("p", "short.", (0, 1), truncated=False),
                    point("p", "medium", (0.5, 0.5), truncated=True)], OBJ, "pointwise")
    pairs, report = scores_to_pairwise(mo)
    rows = pairs.dataset.to_list()
    assert [(r["completion_a"], r["truncated_a"], r["completion_b"], r["truncated_b"]) for r in rows] == [
        ("long and cut", True, "short.", False), ("long and cut", True, "medium", True),
        ("short.", False, "medium", True)]
    assert not any("not carried" in note for note in report.notes)
    unflagged, _ = scores_to_pairwise(from_rows([point("p", "a", (1, 0)), point("p", "b", (0, 1))], OBJ, "pointwise"))
    assert "truncated_a" not in unflagged.dataset.column_names
