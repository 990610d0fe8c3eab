"""The data contract: every promised validation error names the row, the column and what was expected."""

from __future__ import annotations

import math

import datasets
import pytest

from moalign.data import DatasetValidationError, MultiObjectiveDataset, from_rows, validate_columns
from moalign.data.schema import check_objectives, infer_kind

OBJ = ["helpful", "harmless"]


def pair(prompt="Hi?", a="Hello!", b="Go away.", pref=(1.0, 0.0), **extra):
    return {"prompt": prompt, "completion_a": a, "completion_b": b, "preference": list(pref), **extra}


def chat(role, content):
    return [{"role": role, "content": content}]


def errors_of(rows, objectives=OBJ, kind="pairwise"):
    with pytest.raises(DatasetValidationError) as info:
        from_rows(rows, objectives, kind)
    return info.value


def test_valid_pairwise_text_rows_are_stored_as_given():
    mo = from_rows([pair(), pair(prompt="Why?", pref=(0.5, 1))], OBJ)
    assert mo.kind == "pairwise" and mo.objectives == OBJ and len(mo) == 2
    assert mo[1] == {"prompt": "Why?", "completion_a": "Hello!", "completion_b": "Go away.", "preference": [0.5, 1.0]}
    assert mo.dataset.features["preference"] == datasets.List(datasets.Value("float64"))
    assert mo.conversational is False and mo.has_scores is False


def test_valid_chat_rows_and_pointwise_kind_inferred():
    rows = [{"prompt": chat("user", "Hi?"), "completion": chat("assistant", "Hello"), "scores": [0.3, -2.0]}]
    mo = from_rows(rows, OBJ)
    assert mo.kind == "pointwise" and mo.conversational is True and mo.has_scores
    assert mo[0]["prompt"] == [{"role": "user", "content": "Hi?"}]


def test_missing_column_is_named():
    rows = [{"prompt": "p", "completion_a": "a", "completion_b": "b"}]
    err = errors_of(rows)
    assert "column 'preference'" in str(err) and "missing required column" in str(err)
    assert err.issues[0].column == "preference" and err.issues[0].row is None


def test_preference_as_string_names_row_and_column():
    err = errors_of([pair(), pair(pref=("1", 0.0))])
    msg = str(err)
    assert "row 1" in msg and "column 'preference'" in msg and "str" in msg and "'helpful'" in msg
    assert err.issues[0].row == 1 and err.issues[0].column == "preference"


def test_preference_not_a_list():
    err = errors_of([pair(pref=(1.0, 0.0)) | {"preference": "[1, 0]"}])
    assert "row 0" in str(err) and "expected a list of 2 probabilities" in str(err)


def test_wrong_length_reports_k_and_objective_names():
    err = errors_of([pair(), pair(), pair(pref=(1.0, 0.0, 1.0))])
    msg = str(err)
    assert "row 2" in msg and "length 3" in msg and "['helpful', 'harmless']" in msg


@pytest.mark.parametrize("value", [1.5, -0.1])
def test_preference_outside_unit_interval(value):
    err = errors_of([pair(pref=(0.0, value))])
    assert "entry 1 ('harmless')" in str(err) and "outside [0, 1]" in str(err) and "row 0" in str(err)


def test_nan_and_inf_are_rejected():
    err = errors_of([pair(pref=(math.nan, 0.0))])
    assert "NaN" in str(err) and "row 0" in str(err)
    err = errors_of([{"prompt": "p", "completion": "c", "scores": [1.0, math.inf]}], kind="pointwise")
    assert "inf" in str(err) and "column 'scores'" in str(err)


def test_bool_is_not_silently_a_number():
    err = errors_of([pair(pref=(True, 0.0))])
    assert "bool" in str(err)


def test_null_value():
    err = errors_of([pair(pref=(1.0, 0.0)) | {"completion_b": None}])
    assert "column 'completion_b'" in str(err) and "null" in str(err)


@pytest.mark.parametrize("column", ["prompt", "completion_a", "completion_b"])
def test_empty_text_is_rejected(column):
    err = errors_of([pair(), pair() | {column: "   "}])
    assert f"column '{column}'" in str(err) and "row 1" in str(err) and "empty" in str(err)


@pytest.mark.parametrize(
    "messages, expected",
    [
        ([{"content": "hi"}], "no 'role'"),
        ([{"role": "user"}], "no string 'content'"),
        (["hi"], "chat message #0 is a str"),
        ([], "empty chat message list"),
        ([{"role": "user", "content": " "}], "all empty"),
    ],
)
def test_malformed_chat_messages(messages, expected):
    good = {"prompt": chat("user", "q"), "completion_a": chat("assistant", "a"),
            "completion_b": chat("assistant", "b"), "preference": [1.0, 0.0]}
    err = errors_of([good, good | {"completion_a": messages}])
    assert expected in str(err) and "row 1" in str(err) and "column 'completion_a'" in str(err)


def test_text_and_chat_cannot_be_mixed():
    err = errors_of([pair(prompt=chat("user", "q"))])  # chat prompt, text completions
    assert "column 'completion_a'" in str(err) and "one format" in str(err)


def test_duplicate_and_invalid_objective_names():
    with pytest.raises(DatasetValidationError, match=r"duplicate objective names \['a'\]"):
        check_objectives(["a", "b", "a"])
    with pytest.raises(DatasetValidationError, match="at least one objective"):
        check_objectives([])
    with pytest.raises(DatasetValidationError, match="non-blank string"):
        check_objectives(["a", " "])
    with pytest.raises(DatasetValidationError, match="list of names"):
        check_objectives("helpful")


def test_scores_a_requires_scores_b():
    err = errors_of([pair(scores_a=[1.0, 2.0])])
    assert "column 'scores_b'" in str(err) and "'scores_a' is present" in str(err)


def test_scores_may_be_any_finite_number_but_right_length():
    mo = from_rows([pair(scores_a=[3.5, -7], scores_b=[0, 100.25])], OBJ)
    assert mo[0]["scores_a"] == [3.5, -7.0] and mo.has_scores
    err = errors_of([pair(scores_a=[1.0], scores_b=[1.0, 2.0])])
    assert "column 'scores_a'" in str(err) and "length 1" in str(err)


def test_several_problems_are_listed_up_to_a_cap():
    rows = [pair(pref=(2.0, 0.0)) for _ in range(15)]
    err = errors_of(rows)
    assert len(err.issues) == 10 and err.truncated and "further problems" in str(err)
    assert [i.row for i in err.issues] == list(range(10))


def test_rows_must_share_columns():
    err = errors_of([pair(), pair(extra="x")])
    assert "row 1" in str(err) and "extra ['extra']" in str(err)


def test_extra_columns_are_carried():
    mo = from_rows([pair(source="x"), pair(source="y")], OBJ)
    assert mo.dataset["source"] == ["x", "y"]


def test_infer_kind():
    assert infer_kind(["prompt", "completion_a", "completion_b", "preference"]) == "pairwise"
    assert infer_kind(["prompt", "completion", "scores", "x"]) == "pointwise"
    with pytest.raises(DatasetValidationError, match="cannot tell the dataset kind"):
        infer_kind(["prompt", "chosen", "rejected"])
    both = ["prompt", "completion_a", "completion_b", "preference", "completion", "scores"]
    with pytest.raises(DatasetValidationError, match="fit both"):
        infer_kind(both)


def test_wrapping_a_bad_hf_dataset_fails():
    ds = datasets.Dataset.from_list([pair(), pair(pref=(1.0, 0.0, 0.0))])
    with pytest.raises(DatasetValidationError, match=r"row 1, column 'preference'.*length 3"):
        MultiObjectiveDataset(ds, OBJ, "pairwise")


def test_validate_columns_reports_line_numbers():
    cols = {"prompt": ["p", ""], "completion_a": ["a", "a"], "completion_b": ["b", "b"],
            "preference": [[1.0], [1.0]]}
    with pytest.raises(DatasetValidationError, match=r"data.jsonl: row 1 \(line 7\), column 'prompt'"):
        validate_columns(cols, ["x"], "pairwise", source="data.jsonl", line_numbers=[3, 7])


def test_select_objectives_reorders_every_vector():
    mo = from_rows([pair(pref=(1.0, 0.25), scores_a=[1.0, 2.0], scores_b=[3.0, 4.0])], ["a", "b"])
    swapped = mo.select_objectives(["b", "a"])
    assert swapped.objectives == ["b", "a"]
    assert swapped[0]["preference"] == [0.25, 1.0]
    assert swapped[0]["scores_a"] == [2.0, 1.0] and swapped[0]["scores_b"] == [4.0, 3.0]
    only_b = mo.select_objectives(["b"])
    assert only_b[0]["preference"] == [0.25]
    with pytest.raises(KeyError, match="unknown objective 'c'"):
        mo.select_objectives(["c"])


def test_truncation_flags_must_be_booleans():
    mo = from_rows([pair(truncated_a=True, truncated_b=False)], OBJ)
    assert mo[0]["truncated_a"] is True and mo[0]["truncated_b"] is False
    err = errors_of([pair(truncated_a=False, truncated_b=False), pair(truncated_a=1, truncated_b=False)])
    assert err.issues[0].row == 1 and err.issues[0].column == "truncated_a"
    assert "expected true or false" in str(err) and "int" in str(err)
    err = errors_of([point_row(truncated="yes")], kind="pointwise")
    assert err.issues[0].column == "truncated" and "'yes'" in str(err)


def point_row(**extra):
    return {"prompt": "Hi?", "completion": "Hello!", "scores": [0.1, 0.2], **extra}


def test_schema_does_not_import_io():
    """The dependency between the contract and the file formats goes one way: io imports schema, never the reverse."""
    import ast
    import inspect

    import moalign.data.schema as schema

    imported = set()
    for node in ast.walk(ast.parse(inspect.getsource(schema))):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    assert not {m for m in imported if m.startswith("moalign")}, imported
