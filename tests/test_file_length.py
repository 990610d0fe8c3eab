"""No Python file of the repository (src, tests, benchmarks, scripts) is over 500 lines: split into coherent modules."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 500


def test_no_python_file_over_the_limit():
    skipped = {".venv", ".git", "runs", "build", "dist", "node_modules"}
    too_long = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).parts
        if skipped & set(parts) or any(p.startswith(".") for p in parts):
            continue
        with path.open(encoding="utf-8", errors="replace") as handle:
            lines = sum(1 for _ in handle)
        if lines > LIMIT:
            too_long[path.relative_to(ROOT).as_posix()] = lines
    assert not too_long, f"over {LIMIT} lines (split them into coherent modules): {too_long}"
