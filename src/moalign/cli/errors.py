"""How the ``moalign`` command line reports errors.

Three kinds of failure, three behaviours:

- **Usage errors** from argparse (``--help``, an unknown flag, a flag value of
  the wrong type) raise ``SystemExit`` inside the parser; they are never
  caught here and keep argparse's own output and exit codes (0 for help, 2
  for errors).
- **User errors** -- the input is wrong, not the program: a dataset that
  breaks the data contract, a bad config value or key, a missing file, an
  unknown model name.  Printed as ``moalign <command>: error: <message>`` plus
  one hint line, no traceback; exit code 2 (as argparse uses for bad input).
  See :func:`is_user_error` for the exception types counted.
- **Internal errors** -- everything else (e.g. a ``RuntimeError`` from torch,
  running out of memory, a bug).  Also printed concisely, as ``moalign
  <command>: internal error: <Type>: <message>``, with exit code 1, so
  scripts can tell them from bad input.

``--debug`` anywhere on the command line (removed before parsing) turns the
handling off: the exception propagates with its full Python traceback.
The TrainingArguments field of the same name stays reachable with a value
(``--debug underflow_overflow``, ``--debug=...``) or from the YAML config.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import TextIO

__all__ = [
    "DEBUG_FLAG",
    "EXIT_INTERNAL_ERROR",
    "EXIT_USER_ERROR",
    "error_message",
    "is_user_error",
    "pop_debug_flag",
    "report_error",
]

DEBUG_FLAG = "--debug"
EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1
#: values of ``TrainingArguments.debug``; ``--debug`` followed by these belongs to that field, not to us
_TRAINING_DEBUG_VALUES = frozenset({"underflow_overflow", "tpu_metrics_debug"})
#: file-system errors about paths the user gave
_PATH_ERRORS = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError)
_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # src/moalign


def pop_debug_flag(argv: list[str]) -> tuple[list[str], bool]:
    """``(argv without our --debug flags, whether one was given)``.

    A ``--debug`` directly followed by values of ``TrainingArguments.debug``
    (e.g. ``underflow_overflow``) is left in place for that field.
    """
    kept: list[str] = []
    debug = False
    for i, arg in enumerate(argv):
        if arg == DEBUG_FLAG:
            following = argv[i + 1] if i + 1 < len(argv) else ""
            words = following.split()
            if not (words and all(w in _TRAINING_DEBUG_VALUES for w in words)):
                debug = True
                continue
        kept.append(arg)
    return kept, debug


def _raised_by_moalign(err: BaseException) -> bool:
    """Whether ``err`` comes from an explicit ``raise`` statement in moalign's own source (not a failed lookup)."""
    frames = traceback.extract_tb(err.__traceback__)
    if not frames:
        return False
    last = frames[-1]
    try:
        inside = Path(last.filename).resolve().is_relative_to(_PACKAGE_DIR)
    except (OSError, ValueError):
        return False
    return inside and (last.line or "").lstrip().startswith("raise ")


def is_user_error(err: BaseException) -> bool:
    """Whether ``err`` means bad input rather than a failing program (exit 2 instead of 1).

    Counted as user errors:

    - ``ValueError`` and subclasses: moalign's ``DatasetValidationError`` (file,
      row, line, column, expectation), TRL's unknown config keys,
      ``TrainingArguments`` checks of option values, JSON decoding errors;
    - file-system errors about a given path (not found, exists, is/is not a
      directory, permission denied);
    - an ``OSError`` without an errno: how transformers and huggingface_hub
      report a model name they cannot resolve (unknown id, hub unreachable);
    - YAML syntax errors;
    - ``KeyError``/``TypeError``/``LookupError`` raised explicitly by moalign's
      validation (e.g. an unknown reward model name).  The same types from a
      failed dictionary lookup or a wrong call inside the code are bugs and
      count as internal errors.
    """
    if isinstance(err, (ValueError, *_PATH_ERRORS)):
        return True
    if isinstance(err, OSError) and err.errno is None:
        return True
    if _is_yaml_error(err):
        return True
    if isinstance(err, (LookupError, TypeError)):
        return _raised_by_moalign(err)
    return False


def _is_yaml_error(err: BaseException) -> bool:
    yaml = sys.modules.get("yaml")
    return yaml is not None and isinstance(err, yaml.YAMLError)


def error_message(err: BaseException) -> str:
    """The text of ``err`` for a user: no ``[Errno 2]``, no quotes around a ``KeyError`` message."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{err.filename}: {err.strerror}"
    if isinstance(err, KeyError) and len(err.args) == 1 and isinstance(err.args[0], str):
        return err.args[0]
    if _is_yaml_error(err):
        return f"invalid YAML: {err}"
    text = str(err).strip()
    return text or type(err).__name__


def report_error(prog: str, err: BaseException, file: TextIO | None = None) -> int:
    """Print ``err`` for a user of ``prog`` (e.g. ``moalign train mopo``) and return the exit code."""
    out = sys.stderr if file is None else file
    if is_user_error(err):
        print(f"{prog}: error: {error_message(err)}", file=out)
        print(f"(run again with {DEBUG_FLAG} to see the full traceback)", file=out)
        return EXIT_USER_ERROR
    print(f"{prog}: internal error: {type(err).__name__}: {error_message(err)}", file=out)
    print(f"(this is a bug or a problem of the environment, not of the input; run again with {DEBUG_FLAG} "
          "to see the full traceback)", file=out)
    return EXIT_INTERNAL_ERROR
