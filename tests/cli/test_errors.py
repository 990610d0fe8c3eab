"""CLI errors read like errors: bad input -> one message and exit 2, no traceback; ``--debug`` -> traceback.

``moalign train mopo`` loads the dataset before the model, so dataset errors
are reached without any model; config errors happen before either.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from moalign.cli import main as cli_main
from moalign.cli.errors import error_message, is_user_error, pop_debug_flag, report_error
from moalign.cli.main import main
from moalign.data.schema import DatasetValidationError
from tests.cli_setup import write_jsonl

ROW = {"prompt": "hello", "completion_a": "good", "completion_b": "bad", "preference": [1.0, 0.0]}
HINT = "(run again with --debug to see the full traceback)"


def _train(tmp_path: Path, dataset: Path, *extra: str) -> list[str]:
    return ["train", "mopo", "--dataset_path", str(dataset), "--objectives", "helpful", "harmless",
            "--output_dir", str(tmp_path / "out"), *extra]


def _stderr_of_user_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("moalign train mopo: error: ")
    assert err.rstrip().endswith(HINT)
    return err


# ---------------------------------------------------------------------------------------- datasets
def test_preference_out_of_range_names_file_row_line_and_column(tmp_path, capsys):
    bad = write_jsonl(tmp_path / "prefs.jsonl", [ROW, {**ROW, "completion_b": "rude", "preference": [1.5, 0.0]}])
    assert main(_train(tmp_path, bad)) == 2
    err = _stderr_of_user_error(capsys)
    assert "prefs.jsonl: row 1 (line 2), column 'preference'" in err
    assert "1.5" in err and "[0, 1]" in err


def test_missing_column_names_the_column(tmp_path, capsys):
    row = {k: v for k, v in ROW.items() if k != "completion_b"}
    bad = write_jsonl(tmp_path / "missing.jsonl", [row])
    assert main(_train(tmp_path, bad)) == 2
    err = _stderr_of_user_error(capsys)
    assert "missing.jsonl" in err and "completion_b" in err


def test_empty_dataset_file_is_an_error_naming_the_file(tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(_train(tmp_path, empty)) == 2
    err = _stderr_of_user_error(capsys)
    assert "empty.jsonl" in err
    assert "no rows" in err.lower() or "empty" in err.lower()


def test_missing_dataset_file(tmp_path, capsys):
    assert main(_train(tmp_path, tmp_path / "nowhere.jsonl")) == 2
    assert "nowhere.jsonl" in _stderr_of_user_error(capsys)


# ---------------------------------------------------------------------------------------- configs
def _config(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return ["train", "mopo", "--config", str(path)]


def test_unknown_yaml_key_names_file_key_and_closest_field(tmp_path, capsys):
    assert main(_config(tmp_path, "output_dir: x\nlora_rr: 4\n")) == 2
    err = _stderr_of_user_error(capsys)
    assert "run.yaml" in err and "'lora_rr'" in err and "did you mean 'lora_r'?" in err


def test_bad_yaml_value_checked_by_the_config_class(tmp_path, capsys):
    assert main(_config(tmp_path, "output_dir: x\nuse_cpu: true\neval_strategy: sometimes\n")) == 2
    assert "sometimes" in _stderr_of_user_error(capsys)


def test_yaml_syntax_error_names_the_line(tmp_path, capsys):
    assert main(_config(tmp_path, "output_dir: [x\n")) == 2
    err = _stderr_of_user_error(capsys)
    assert "not valid YAML" in err and "line 1" in err


@pytest.mark.parametrize("text, expected", [("- a\n- b\n", "expected a YAML mapping"), ("", "got NoneType")])
def test_yaml_that_is_not_a_mapping(tmp_path, capsys, text, expected):
    assert main(_config(tmp_path, text)) == 2
    assert expected in _stderr_of_user_error(capsys)


def test_missing_config_file_and_missing_config_path(tmp_path, capsys):
    assert main(["train", "mopo", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml: no such file" in _stderr_of_user_error(capsys)
    assert main(["train", "mopo", "--config"]) == 2
    assert "--config needs the path" in _stderr_of_user_error(capsys)


def test_argparse_keeps_its_own_exits(tmp_path, capsys):
    """Wrongly typed values, unknown flags and --help stay argparse's (SystemExit, usage text)."""
    with pytest.raises(SystemExit) as exit_info:
        main(_config(tmp_path, "output_dir: x\nlora_r: abc\n"))
    assert exit_info.value.code == 2 and "invalid int value: 'abc'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "mopo", "--help"])
    assert exit_info.value.code == 0 and "--model_name_or_path" in capsys.readouterr().out


def test_unknown_flag_names_the_closest_option(tmp_path, capsys):
    assert main(["train", "mopo", "--output_dir", str(tmp_path), "--lora-rr", "4"]) == 2
    err = _stderr_of_user_error(capsys)
    assert "unknown option(s) --lora-rr (did you mean --lora-r?)" in err
    assert main(["train", "mopo", "--output_dir", str(tmp_path), "stray"]) == 2
    assert "unexpected argument(s) stray" in _stderr_of_user_error(capsys)


def test_unknown_command_goes_to_stderr(capsys):
    assert main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "moalign: error: unknown command 'frobnicate'" in err and "train mopo" in err


# ---------------------------------------------------------------------------------------- --debug
def test_debug_anywhere_raises_the_original_exception(tmp_path):
    bad = write_jsonl(tmp_path / "prefs.jsonl", [{**ROW, "preference": [0.5, -1.0]}])
    with pytest.raises(DatasetValidationError, match="row 0"):
        main(["--debug", *_train(tmp_path, bad)])
    with pytest.raises(DatasetValidationError):
        main(_train(tmp_path, bad, "--debug"))


def test_pop_debug_flag_leaves_training_arguments_debug_alone():
    assert pop_debug_flag(["train", "--debug", "mopo"]) == (["train", "mopo"], True)
    assert pop_debug_flag(["eval", "--debug"]) == (["eval"], True)
    assert pop_debug_flag(["x", "--debug", "underflow_overflow"]) == (["x", "--debug", "underflow_overflow"], False)
    assert pop_debug_flag(["x", "--debug=underflow_overflow"]) == (["x", "--debug=underflow_overflow"], False)
    assert pop_debug_flag(["x", "--debug", "--debug", "tpu_metrics_debug"]) == (["x", "--debug", "tpu_metrics_debug"],
                                                                                 True)


def test_console_entry_prints_no_traceback(tmp_path):
    """The real process (``python -m moalign``): exit 2 and the message, nothing else from Python."""
    bad = write_jsonl(tmp_path / "prefs.jsonl", [{**ROW, "preference": [0.5]}])
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "moalign", *_train(tmp_path, bad)]
    plain = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert plain.returncode == 2, plain.stderr
    assert "Traceback" not in plain.stderr
    assert "moalign train mopo: error: invalid multi-objective dataset" in plain.stderr
    assert "prefs.jsonl: row 0 (line 1), column 'preference'" in plain.stderr
    assert plain.stderr.rstrip().endswith(HINT)


# ---------------------------------------------------------------------------------------- internal errors
def test_internal_error_is_concise_with_exit_1(monkeypatch, capsys):
    def broken(argv: list[str]) -> int:
        raise RuntimeError("CUDA error: device-side assert triggered")

    monkeypatch.setitem(cli_main.COMMANDS, "eval", broken)
    assert main(["eval", "--model", "x"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("moalign eval: internal error: RuntimeError: CUDA error: device-side assert triggered\n")
    assert "Traceback" not in err and "--debug" in err
    with pytest.raises(RuntimeError, match="device-side"):
        main(["eval", "--debug"])


def test_keyboard_interrupt_exits_130(monkeypatch, capsys):
    def interrupted(argv: list[str]) -> int:
        raise KeyboardInterrupt

    monkeypatch.setitem(cli_main.COMMANDS, "demo", interrupted)
    assert main(["demo"]) == 130
    assert capsys.readouterr().err == "moalign demo: interrupted\n"


def _raise(err: BaseException) -> BaseException:
    try:
        raise err
    except BaseException as caught:  # noqa: BLE001 -- the traceback is what the classification reads
        return caught


def test_which_exceptions_are_user_errors():
    from moalign.models.testing import make_tiny_tokenizer  # noqa: F401 -- any moalign import
    from moalign.rewards.hf import HFRewardModel

    assert is_user_error(ValueError("bad"))
    assert is_user_error(FileNotFoundError(errno.ENOENT, "No such file or directory", "x.jsonl"))
    assert is_user_error(OSError("We couldn't connect to 'https://huggingface.co'"))  # transformers: no errno
    assert not is_user_error(OSError(errno.ENOSPC, "No space left on device"))
    assert not is_user_error(RuntimeError("boom"))
    assert not is_user_error(_raise(KeyError("lookup")))  # raised here, not by moalign's validation
    assert not is_user_error(_lookup_error())  # a failed dict lookup is a bug
    with pytest.raises(KeyError) as info:  # moalign's own validation raises KeyError with a message
        HFRewardModel.from_known("no-such-reward-model")
    assert is_user_error(info.value)
    assert error_message(info.value).startswith("unknown reward model 'no-such-reward-model'")


def _lookup_error() -> BaseException:
    try:
        {}["missing"]
    except KeyError as err:
        return err
    raise AssertionError("unreachable")


def test_error_message_forms(capsys):
    assert error_message(FileNotFoundError(errno.ENOENT, "No such file or directory", "a.yaml")) == \
        "a.yaml: No such file or directory"
    assert error_message(ValueError("")) == "ValueError"
    assert report_error("moalign x", ValueError("bad\n  detail")) == 2
    assert capsys.readouterr().err == f"moalign x: error: bad\n  detail\n{HINT}\n"
