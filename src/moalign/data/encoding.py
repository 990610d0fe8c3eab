"""Where a text file stops being UTF-8.

Data and prompt files are read as UTF-8 (docs/design.md, Data contract). Python's own error for a file in
another encoding, ``'utf-8' codec can't decode byte 0x80 in position 128``, names neither the file nor the
line, and its position counts from the start of an internal read buffer, not of the file. The readers call
:func:`not_utf8_message` when decoding fails (or :func:`check_utf8` before handing a file to a library) so
that the error says which file, which line and which byte.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["first_undecodable", "not_utf8_message", "check_utf8", "named_decode_errors"]


def first_undecodable(path: str | os.PathLike[str]) -> tuple[int, int, int] | None:
    """``(line, offset, byte)`` of the first byte of ``path`` that is not UTF-8, or None when all of it decodes.

    ``line`` counts from 1, ``offset`` is the byte's 1-based position within its line. Lines are split on
    ``\\n`` before decoding, which is exact for UTF-8: no multi-byte sequence contains the byte 0x0A.
    """
    with open(path, "rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as err:
                return line_no, err.start + 1, raw[err.start]
    return None


def not_utf8_message(path: str | os.PathLike[str]) -> str:
    """``"line L: not UTF-8 text (...)"`` for the first undecodable byte of ``path`` (the file is re-read)."""
    where = first_undecodable(path)
    if where is None:
        return "not UTF-8 text"
    line, offset, byte = where
    return (f"line {line}: not UTF-8 text (byte 0x{byte:02x} at byte {offset} of the line); data files must be "
            f"UTF-8 — convert it, e.g. iconv -f latin1 -t utf-8 {os.fspath(path)} > converted{_suffix(path)}")


def check_utf8(path: str | os.PathLike[str]) -> None:
    """Raise ``ValueError("<path>, line L: not UTF-8 text ...")`` when ``path`` is not UTF-8 text."""
    if first_undecodable(path) is not None:
        raise ValueError(f"{os.fspath(path)}, {not_utf8_message(path)}")


@contextmanager
def named_decode_errors(path: str | os.PathLike[str],
                        make_error: Callable[[str], Exception] | None = None) -> Iterator[None]:
    """Turn a ``UnicodeDecodeError`` raised inside the block into an error naming ``path`` and the line.

    ``make_error(message)`` builds the error (default: ``ValueError("<path>, <message>")``), so that each
    reader keeps its own error type.
    """
    try:
        yield
    except UnicodeDecodeError:
        message = not_utf8_message(path)
        raise (make_error(message) if make_error else ValueError(f"{os.fspath(path)}, {message}")) from None


def _suffix(path: str | os.PathLike[str]) -> str:
    return os.path.splitext(os.fspath(path))[1]
