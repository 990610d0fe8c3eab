"""A data or prompt file that is not UTF-8 is an error naming the file, the line and the byte.

Each file is written line by line with one Latin-1 line (``é`` as the single byte 0xe9) at a known place, far
past the first read buffer, so the expected line is the one the test wrote, not a position Python reports.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from moalign.data import DatasetValidationError, load_multi_objective
from moalign.data.encoding import check_utf8, first_undecodable
from moalign.data.prompt_data import load_prompt_data
from moalign.eval.run import read_prompts

ROW = {"prompt": "Hi?", "completion_a": "Hello!", "completion_b": "Go away.", "preference": [1.0, 0.5]}
BAD_LINE = 3000  # 1-based; ~250 KB in, far beyond any decoder buffer


def write_lines(path: Path, lines: list[str], bad_line: int) -> Path:
    """UTF-8 ``lines`` except line ``bad_line``, written as Latin-1 (its 'é' becomes the lone byte 0xe9)."""
    with open(path, "wb") as handle:
        for number, line in enumerate(lines, start=1):
            handle.write((line + "\n").encode("latin-1" if number == bad_line else "utf-8"))
    return path


def pairwise_jsonl(path: Path) -> Path:
    lines = [json.dumps(ROW, ensure_ascii=False) for _ in range(BAD_LINE + 5)]
    lines[BAD_LINE - 1] = json.dumps({**ROW, "prompt": "café?"}, ensure_ascii=False)
    return write_lines(path, lines, BAD_LINE)


def test_first_undecodable_finds_the_written_line_and_byte(tmp_path):
    lines = ["ascii", "ünïcödé 中文", "x" * 20000, "caf" + "é" + " ok"]
    path = write_lines(tmp_path / "text.txt", lines, bad_line=4)
    assert first_undecodable(path) == (4, len("caf") + 1, "é".encode("latin-1")[0])
    utf8 = write_lines(tmp_path / "ok.txt", lines, bad_line=0)
    assert first_undecodable(utf8) is None
    check_utf8(utf8)
    with pytest.raises(ValueError, match=r"text.txt, line 4: not UTF-8"):
        check_utf8(path)


def test_jsonl_data_file_names_file_and_line(tmp_path):
    path = pairwise_jsonl(tmp_path / "pairs.jsonl")
    with pytest.raises(DatasetValidationError) as err:
        load_multi_objective(str(path), objectives=["helpful", "harmless"])
    message = str(err.value)
    assert str(path) in message and f"line {BAD_LINE}:" in message and "0xe9" in message and "UTF-8" in message


def test_csv_data_file_names_file_and_line(tmp_path):
    header = "prompt,completion_a,completion_b,preference"
    lines = [header] + ['Hi?,Hello!,Go away.,"[1.0, 0.5]"'] * (BAD_LINE + 5)
    lines[BAD_LINE - 1] = 'café?,Hello!,Go away.,"[1.0, 0.5]"'
    path = write_lines(tmp_path / "pairs.csv", lines, BAD_LINE)
    with pytest.raises(DatasetValidationError, match=rf"pairs.csv: line {BAD_LINE}: not UTF-8 text \(byte 0xe9"):
        load_multi_objective(str(path), objectives=["helpful", "harmless"])


def test_prompt_files_name_file_and_line(tmp_path):
    lines = [json.dumps({"prompt": "hello"})] * (BAD_LINE + 5)
    lines[BAD_LINE - 1] = json.dumps({"prompt": "café"}, ensure_ascii=False)
    path = write_lines(tmp_path / "prompts.jsonl", lines, BAD_LINE)
    expected = rf"prompts.jsonl, line {BAD_LINE}: not UTF-8 text \(byte 0xe9"
    with pytest.raises(ValueError, match=expected):  # moalign eval --prompts
        read_prompts(path)
    with pytest.raises(ValueError, match=expected):  # the online methods' prompt data
        load_prompt_data(SimpleNamespace(dataset_recipe=None, reward_functions=[]), str(path))
