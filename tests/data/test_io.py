"""Loading from files / folders / memory, with file-named errors, and save/export round trips."""

from __future__ import annotations

import json

import datasets
import pytest

from moalign.data import DatasetValidationError, MultiObjectiveDataset, from_rows, load_multi_objective
from moalign.data.io import EmptyDataError, load_from_disk, save_to_disk, sidecar_path, to_csv, to_jsonl, to_parquet

OBJ = ["helpful", "harmless"]
TEXT_ROWS = [
    {"prompt": "Hi?", "completion_a": "Hello!", "completion_b": "Go away.", "preference": [1.0, 0.5]},
    {"prompt": "Line one\nline two, \"quoted\"", "completion_a": "ok", "completion_b": "é ü 中文",
     "preference": [0.0, 1.0]},
]
CHAT_ROWS = [
    {"prompt": [{"role": "system", "content": "Be nice."}, {"role": "user", "content": "Hi?"}],
     "completion_a": [{"role": "assistant", "content": "Hello!"}],
     "completion_b": [{"role": "assistant", "content": "Go away."}],
     "preference": [1.0, 0.0], "scores_a": [2.0, 1.5], "scores_b": [-1.0, 3.0]},
]


def write_jsonl(path, rows, blank_after=None):
    with open(path, "w", encoding="utf-8") as f:
        for i, row in enumerate(rows):
            f.write(json.dumps(row) + "\n")
            if i == blank_after:
                f.write("\n")


def test_jsonl_loads_with_objectives_argument(tmp_path):
    path = tmp_path / "d.jsonl"
    write_jsonl(path, TEXT_ROWS)
    mo = load_multi_objective(path, objectives=OBJ)
    assert mo.kind == "pairwise" and mo.objectives == OBJ
    assert [mo[i] for i in range(2)] == TEXT_ROWS


def test_jsonl_error_names_file_row_line_and_column(tmp_path):
    path = tmp_path / "bad.jsonl"
    rows = [TEXT_ROWS[0], TEXT_ROWS[0] | {"preference": "high"}]
    write_jsonl(path, rows, blank_after=0)  # row 1 is on line 3
    with pytest.raises(DatasetValidationError) as info:
        load_multi_objective(path, objectives=OBJ)
    msg = str(info.value)
    assert str(path) in msg and "row 1 (line 3)" in msg and "column 'preference'" in msg and "'high'" in msg


def test_jsonl_malformed_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(TEXT_ROWS[0]) + "\n{not json\n")
    with pytest.raises(DatasetValidationError, match=r"bad.jsonl: row 1 \(line 2\).*not valid JSON"):
        load_multi_objective(path, objectives=OBJ)
    path.write_text("[1, 2]\n")
    with pytest.raises(DatasetValidationError, match="expected a JSON object, got list"):
        load_multi_objective(path, objectives=OBJ)


def test_jsonl_row_missing_a_column(tmp_path):
    path = tmp_path / "d.jsonl"
    row = dict(TEXT_ROWS[0])
    del row["completion_b"]
    write_jsonl(path, [TEXT_ROWS[0], row])
    with pytest.raises(DatasetValidationError, match=r"row 1 \(line 2\), column 'completion_b'.*missing"):
        load_multi_objective(path, objectives=OBJ)


def test_file_without_metadata_needs_objectives(tmp_path):
    path = tmp_path / "d.jsonl"
    write_jsonl(path, TEXT_ROWS)
    with pytest.raises(DatasetValidationError, match="pass objectives="):
        load_multi_objective(path)


def test_jsonl_export_round_trip_with_sidecar(tmp_path):
    mo = from_rows(CHAT_ROWS, OBJ)
    path = tmp_path / "out.jsonl"
    to_jsonl(mo, path)
    meta = json.loads(sidecar_path(path).read_text())
    assert meta == {"moalign_multi_objective": {"version": 1, "kind": "pairwise", "objectives": OBJ,
                                                "conversational": True}}
    assert [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] == CHAT_ROWS
    back = load_multi_objective(path)  # names from the sidecar
    assert back.objectives == OBJ and back.conversational and back[0] == CHAT_ROWS[0]
    with pytest.raises(DatasetValidationError, match="objectives=.*stored metadata says"):
        load_multi_objective(path, objectives=["harmless", "helpful"])
    with pytest.raises(DatasetValidationError, match="kind=.*stored metadata"):
        load_multi_objective(path, kind="pointwise")


def test_csv_strict_parsing_and_errors(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('prompt,completion_a,completion_b,preference\n'
                    '"multi\nline prompt",a,b,"[1, 0]"\n'
                    'p2,a,b,"[0.5, 0.5]"\n', encoding="utf-8")
    mo = load_multi_objective(path, objectives=OBJ)
    assert mo[0]["prompt"] == "multi\nline prompt" and mo[1]["preference"] == [0.5, 0.5]

    path.write_text('prompt,completion_a,completion_b,preference\n'
                    '"multi\nline prompt",a,b,"[1, 0]"\n'
                    'p2,a,b,"1, 0"\n', encoding="utf-8")
    with pytest.raises(DatasetValidationError) as info:
        load_multi_objective(path, objectives=OBJ)
    msg = str(info.value)  # row 1 starts on line 4 because row 0 spans lines 2-3
    assert str(path) in msg and "row 1 (line 4)" in msg and "column 'preference'" in msg and "not valid JSON" in msg

    path.write_text('prompt,completion_a,completion_b,preference\np,a,b,\n')
    with pytest.raises(DatasetValidationError, match=r"row 0 \(line 2\), column 'preference': empty cell"):
        load_multi_objective(path, objectives=OBJ)
    path.write_text('prompt,completion_a,completion_b,preference\np,a,"[1, 0]"\n')
    with pytest.raises(DatasetValidationError, match="has 3 cells but the header has 4"):
        load_multi_objective(path, objectives=OBJ)
    path.write_text('prompt,completion_a,completion_b,preference\np,a,b,"[1, NaN]"\n')
    with pytest.raises(DatasetValidationError, match=r"row 0 \(line 2\), column 'preference'.*NaN"):
        load_multi_objective(path, objectives=OBJ)


def test_csv_round_trip_text_and_chat(tmp_path):
    for rows in (TEXT_ROWS, CHAT_ROWS):
        mo = from_rows(rows, OBJ)
        path = tmp_path / "x.csv"
        to_csv(mo, path)
        back = load_multi_objective(path)
        assert [back[i] for i in range(len(back))] == rows and back.objectives == OBJ


def test_csv_chat_cell_that_is_not_json(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text('prompt,completion_a,completion_b,preference\nhello,a,b,"[1, 0]"\n')
    with pytest.raises(DatasetValidationError, match=r"row 0 \(line 2\), column 'prompt'.*not valid JSON"):
        load_multi_objective(path, objectives=OBJ, conversational=True)


def test_parquet_round_trip(tmp_path):
    mo = from_rows(CHAT_ROWS, OBJ)
    path = tmp_path / "x.parquet"
    to_parquet(mo, path)
    back = load_multi_objective(path)
    assert back[0] == CHAT_ROWS[0] and back.objectives == OBJ


def test_parquet_with_bad_values_names_file(tmp_path):
    path = tmp_path / "bad.parquet"
    datasets.Dataset.from_list([TEXT_ROWS[0] | {"preference": [1.0, 0.0, 0.0]}]).to_parquet(str(path))
    with pytest.raises(DatasetValidationError, match=r"bad.parquet: row 0, column 'preference'.*length 3"):
        load_multi_objective(path, objectives=OBJ)


def test_to_disk_round_trip_keeps_objectives_and_does_not_mutate(tmp_path):
    ds = datasets.Dataset.from_list(TEXT_ROWS)
    ds.info.description = "my notes"
    mo = MultiObjectiveDataset(ds, OBJ, "pairwise")
    save_to_disk(mo, tmp_path / "saved")
    assert ds.info.description == "my notes"  # the caller's dataset is untouched
    back = load_from_disk(tmp_path / "saved")
    assert back.objectives == OBJ and back.kind == "pairwise" and back.dataset.to_list() == TEXT_ROWS
    # a plain datasets round trip (and a map) keeps the names in info.description
    plain = datasets.load_from_disk(str(tmp_path / "saved")).map(lambda r: r)
    assert json.loads(plain.info.description)["description"] == "my notes"
    again = load_multi_objective(plain)
    assert again.objectives == OBJ
    assert load_multi_objective(tmp_path / "saved").objectives == OBJ
    with pytest.raises(DatasetValidationError, match="stored metadata says"):
        load_multi_objective(tmp_path / "saved", objectives=["x", "y"])


def test_to_disk_after_shuffle_saves_the_selected_rows(tmp_path):
    mo = MultiObjectiveDataset(datasets.Dataset.from_list(TEXT_ROWS).select([1]), OBJ)
    save_to_disk(mo, tmp_path / "s")
    assert load_from_disk(tmp_path / "s").dataset.to_list() == [TEXT_ROWS[1]]


def test_folder_with_bad_rows_names_the_folder(tmp_path):
    datasets.Dataset.from_list([TEXT_ROWS[0] | {"preference": [1.0, 2.0]}]).save_to_disk(str(tmp_path / "raw"))
    with pytest.raises(DatasetValidationError) as info:
        load_multi_objective(tmp_path / "raw", objectives=OBJ)
    assert str(tmp_path / "raw") in str(info.value) and "outside [0, 1]" in str(info.value)


def test_dataset_dict_split_selection(tmp_path):
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(TEXT_ROWS),
                               "test": datasets.Dataset.from_list(TEXT_ROWS[:1])})
    with pytest.raises(ValueError, match=r"holds splits \['train', 'test'\]; pass split="):
        load_multi_objective(dd, objectives=OBJ)
    with pytest.raises(ValueError, match="no split 'dev'"):
        load_multi_objective(dd, objectives=OBJ, split="dev")
    assert len(load_multi_objective(dd, objectives=OBJ, split="test")) == 1
    dd.save_to_disk(str(tmp_path / "dd"))
    assert len(load_multi_objective(tmp_path / "dd", objectives=OBJ, split="train")) == 2


def test_entry_point_argument_errors(tmp_path):
    with pytest.raises(DatasetValidationError, match="pass objectives="):
        load_multi_objective(TEXT_ROWS)
    with pytest.raises(ValueError, match="split= does not apply"):
        load_multi_objective(TEXT_ROWS, objectives=OBJ, split="train")
    path = tmp_path / "d.jsonl"
    write_jsonl(path, TEXT_ROWS)
    with pytest.raises(ValueError, match="a file holds a single split"):
        load_multi_objective(path, objectives=OBJ, split="train")
    with pytest.raises(ValueError, match="unsupported file type '.txt'"):
        load_multi_objective(tmp_path / "d.txt", objectives=OBJ)
    with pytest.raises(FileNotFoundError):
        load_multi_objective(tmp_path / "missing.jsonl", objectives=OBJ)
    with pytest.raises(TypeError, match="unsupported source type"):
        load_multi_objective(42, objectives=OBJ)
    with pytest.raises(DatasetValidationError, match="conversational=True.*plain text"):
        load_multi_objective(TEXT_ROWS, objectives=OBJ, conversational=True)


def test_multi_objective_dataset_passes_through_with_consistency_check():
    mo = from_rows(TEXT_ROWS, OBJ)
    assert load_multi_objective(mo) is mo
    assert load_multi_objective(mo, objectives=OBJ, kind="pairwise") is mo
    with pytest.raises(DatasetValidationError, match="objectives="):
        load_multi_objective(mo, objectives=["a", "b"])


def test_empty_dataset_with_explicit_kind(tmp_path):
    mo = load_multi_objective([], objectives=OBJ, kind="pointwise")
    assert len(mo) == 0 and mo.kind == "pointwise" and mo.conversational is None
    save_to_disk(mo, tmp_path / "e")
    assert len(load_from_disk(tmp_path / "e")) == 0
    with pytest.raises(DatasetValidationError, match="pass kind="):
        load_multi_objective([], objectives=OBJ)


# ----- an empty data source is its own error at load time ---------------------------------------------
def _empty_mo():
    return load_multi_objective([], objectives=OBJ, kind="pairwise")


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_empty_file_written_by_moalign_is_an_error_naming_it(tmp_path, suffix):
    # with its sidecar (objectives and kind known) an empty export used to load as a 0-row dataset,
    # and training failed much later inside torch ("num_samples should be a positive integer value")
    path = tmp_path / f"empty{suffix}"
    {".jsonl": to_jsonl, ".csv": to_csv, ".parquet": to_parquet}[suffix](_empty_mo(), path)
    with pytest.raises(EmptyDataError, match=rf"{path.name}: the data file( \(0 bytes\))? has no rows") as info:
        load_multi_objective(path)
    assert isinstance(info.value, ValueError) and info.value.source == str(path)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_zero_byte_file_is_an_error_even_without_metadata(tmp_path, suffix):
    path = tmp_path / f"zero{suffix}"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=rf"{path.name}: the data file \(0 bytes\) has no rows"):
        load_multi_objective(path)
    with pytest.raises(EmptyDataError):
        load_multi_objective(path, objectives=OBJ, kind="pairwise")


def test_blank_lines_only_jsonl_and_header_only_csv_have_no_rows(tmp_path):
    jsonl = tmp_path / "blank.jsonl"
    jsonl.write_text("\n\n  \n", encoding="utf-8")
    with pytest.raises(EmptyDataError, match="blank.jsonl: the data file has no rows"):
        load_multi_objective(jsonl, objectives=OBJ)  # not "pass kind=": the file is the problem
    csv_path = tmp_path / "header.csv"
    csv_path.write_text("prompt,completion_a,completion_b,preference\n", encoding="utf-8")
    with pytest.raises(EmptyDataError, match="header.csv: the data file has no rows"):
        load_multi_objective(csv_path, objectives=OBJ, kind="pairwise")


def test_empty_saved_dataset_folder_is_an_error_for_load_multi_objective(tmp_path):
    save_to_disk(_empty_mo(), tmp_path / "e")
    with pytest.raises(EmptyDataError, match=r"e: the saved dataset has no rows"):
        load_multi_objective(tmp_path / "e")
    assert len(load_from_disk(tmp_path / "e")) == 0  # the exact inverse of save_to_disk still round-trips
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(TEXT_ROWS),
                               "test": datasets.Dataset.from_list(TEXT_ROWS).select([])})
    dd.save_to_disk(str(tmp_path / "dd"), num_shards={"train": 1, "test": 1})  # 0 shards would not load back
    assert len(load_multi_objective(tmp_path / "dd", objectives=OBJ, split="train")) == 2
    with pytest.raises(EmptyDataError, match=r"\[split test\]: the saved dataset has no rows"):
        load_multi_objective(tmp_path / "dd", objectives=OBJ, split="test")


def test_empty_data_error_pickles():
    import pickle

    err = pickle.loads(pickle.dumps(EmptyDataError("x.jsonl")))
    assert str(err) == str(EmptyDataError("x.jsonl")) and err.source == "x.jsonl"
