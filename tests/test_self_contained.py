"""The repository stands alone: no file points outside it, every relative markdown link resolves.

A user who clones the repository has nothing next to it, so

* no tracked text file may mention the parent-directory path of the team's
  internal notes (the forbidden string is assembled below, so that this file
  does not contain it);
* no tracked text file may refer to the internal design notes or paper copies
  by their file names (``DESIGN.md``, "DESIGN 6", ``papers/<name>.md``,
  ``<name>-paper.md``, ``mopo-summary``): the repository's own design document
  is ``docs/design.md`` and papers are cited by title and arXiv id;
* every link in a tracked markdown file is either an http(s)/mailto URL, an
  in-page anchor, or a relative path that stays inside the repository and
  names a tracked file or a folder holding tracked files (an untracked file,
  e.g. a generated ``runs/...`` report, is absent from a fresh clone).

Nothing is skipped silently: every tracked file is read; a file that is not
UTF-8 text must have a known binary suffix, otherwise the test fails and names
it. The only files not read are tracked files already deleted from the working
tree (they have no content to check). The file list comes from ``git ls-files``;
outside a git checkout the tests fail with that reason instead of passing
vacuously.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: the brief's list; every other tracked file is read too, if it is UTF-8 text
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".cfg", ".json"}
#: tracked files that may legitimately not be UTF-8 text
BINARY_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".ico", ".pdf", ".gguf", ".safetensors", ".bin", ".pt",
                   ".parquet", ".arrow", ".gz", ".zip", ".npz", ".npy"}

FORBIDDEN_PATH = ".." + "/" + "shared"  # assembled: this file must not contain the string itself

#: references by file name to the team's internal notes (not part of the repository)
INTERNAL_NOTE_PATTERNS = [
    (re.compile(r"\bDESIGN\.md\b"), "mentions DESIGN.md (internal notes; use docs/design.md)"),
    (re.compile(r"\bDESIGN\s+(?:item\s+)?\d"), "mentions a numbered DESIGN item (use a docs/design.md section)"),
    (re.compile(r"\bpapers/[\w.-]+"), "mentions a papers/ file (cite the paper by title and arXiv id)"),
    (re.compile(r"\b[\w-]+-paper\.md\b"), "mentions a paper's .md copy (cite the paper by title and arXiv id)"),
    (re.compile(r"\bmopo-summary\b"), "mentions the internal paper summary (cite the paper by title and arXiv id)"),
]

ALLOWED_SCHEMES = ("http://", "https://", "mailto:")


# --------------------------------------------------------------------------- file list
def tracked_files() -> list[str]:
    """Every path ``git ls-files`` lists (relative, POSIX); fails when this is not a git checkout."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"cannot list the repository's files with `git ls-files` in {ROOT}: {exc}")
    files = [p for p in out.decode("utf-8").split("\0") if p]
    if not files:
        pytest.fail(f"`git ls-files` listed no files in {ROOT}")
    return files


def read_text(rel: str) -> str | None:
    """The file's text, or None for a binary file with a known suffix; fails for an unknown binary file."""
    data = (ROOT / rel).read_bytes()
    suffix = Path(rel).suffix.lower()
    try:
        if b"\0" in data:
            raise UnicodeDecodeError("utf-8", data, 0, 1, "NUL byte")
        return data.decode("utf-8")
    except UnicodeDecodeError:
        if suffix in BINARY_SUFFIXES:
            return None
        what = "a text suffix" if suffix in TEXT_SUFFIXES else f"the unknown suffix {suffix!r}"
        pytest.fail(f"{rel}: not UTF-8 text but has {what}; fix the file or add its suffix to BINARY_SUFFIXES")


def present_files(files: list[str]) -> list[str]:
    """Tracked files present in the working tree (deleted ones have nothing to check)."""
    return [f for f in files if (ROOT / f).is_file()]


@pytest.fixture(scope="module")
def files() -> list[str]:
    return present_files(tracked_files())


@pytest.fixture(scope="module")
def texts(files: list[str]) -> dict[str, str]:
    out = {}
    for rel in files:
        text = read_text(rel)
        if text is not None:
            out[rel] = text
    return out


def _report(problems: list[str], what: str) -> None:
    if problems:
        files = sorted({p.split(":", 1)[0] for p in problems})
        pytest.fail(f"{len(problems)} {what} in {len(files)} file(s): {', '.join(files)}\n  " + "\n  ".join(problems))


# --------------------------------------------------------------------------- markdown links
_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
_INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^\s()]*(?:\([^\s()]*\)[^\s()]*)*)")
_REFERENCE_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)", re.M)
_HTML_ATTR = re.compile(r"<(?:a|img|source)\b[^>]*?\b(?:href|src)\s*=\s*[\"']([^\"']*)[\"']", re.I)


def _blank_code(text: str) -> str:
    """Text with fenced code blocks and inline code spans blanked out, line numbers and offsets kept.

    Code spans become spaces of the same length, so ``[`x`](target)`` is still a link but
    ``data[i](x)`` inside backticks or a fence is not mistaken for one.
    """
    lines = text.split("\n")
    fence: str | None = None
    for i, line in enumerate(lines):
        m = _FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)[0] * len(m.group(1))
            lines[i] = ""
        elif fence is not None:
            if m and m.group(1).startswith(fence):
                fence = None
            lines[i] = ""
    text = "\n".join(lines)
    return _CODE_SPAN.sub(lambda m: "`" + "x" * (len(m.group(0)) - 2) + "`", text)


def markdown_links(text: str) -> list[tuple[int, str]]:
    """``(line, target)`` of every inline link/image, reference definition and HTML href/src."""
    clean = _blank_code(text)
    found = []
    for pattern in (_INLINE_LINK, _REFERENCE_DEF, _HTML_ATTR):
        for m in pattern.finditer(clean):
            target = m.group(1).strip()
            if target.startswith("<") and target.endswith(">"):
                target = target[1:-1]
            found.append((clean.count("\n", 0, m.start(1)) + 1, target))
    return sorted(found)


def link_problem(md_file: str, target: str, tracked: set[str], tracked_dirs: set[str]) -> str | None:
    """Why ``target`` (a link in ``md_file``) does not work in a fresh clone, or None."""
    if not target:
        return "empty link target"
    if target.lower().startswith(ALLOWED_SCHEMES):
        return None
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target):
        return f"link {target!r} uses a scheme other than http(s)/mailto"
    path = unquote(target.split("#", 1)[0].split("?", 1)[0])
    if not path:
        return None  # an anchor in the same file
    if path.startswith("/") or os.path.isabs(path):
        return f"link {target!r} is an absolute path; use a path relative to {md_file}"
    resolved = os.path.normpath(os.path.join(os.path.dirname(md_file), path))
    if resolved == ".." or resolved.startswith("../") or os.path.isabs(resolved):
        return f"link {target!r} points outside the repository"
    real = (ROOT / resolved).resolve()
    if real != ROOT and ROOT not in real.parents:
        return f"link {target!r} resolves (through a symlink) outside the repository"
    rel = resolved.replace(os.sep, "/")
    if rel in tracked or rel == "." or rel in tracked_dirs:
        return None
    if (ROOT / resolved).exists():
        return f"link {target!r} names {rel}, which exists here but is not tracked by git (absent from a clone)"
    return f"link {target!r} names {rel}, which does not exist in the repository"


def _tracked_dirs(tracked: set[str]) -> set[str]:
    dirs = set()
    for f in tracked:
        parts = f.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    return dirs


# --------------------------------------------------------------------------- tests
def test_file_list_is_complete(files: list[str], texts: dict[str, str]) -> None:
    """The scan really covers the repository: this file, the README and the sources are read as text."""
    for rel in ("README.md", "pyproject.toml", "tests/test_self_contained.py", "src/moalign/__init__.py"):
        assert rel in texts, f"{rel} was not scanned (tracked: {rel in files})"
    unread = [f for f in files if f not in texts and Path(f).suffix.lower() not in BINARY_SUFFIXES]
    assert not unread, f"tracked files neither read as text nor known binaries: {unread}"
    assert FORBIDDEN_PATH not in Path(__file__).read_text(encoding="utf-8")


def test_no_parent_shared_path(texts: dict[str, str]) -> None:
    problems = []
    for rel, text in sorted(texts.items()):
        for number, line in enumerate(text.split("\n"), start=1):
            if FORBIDDEN_PATH in line:
                problems.append(f"{rel}:{number}: {line.strip()[:120]}")
    _report(problems, f"line(s) mention {FORBIDDEN_PATH!r}, a path outside the repository")


def test_no_references_to_internal_notes(texts: dict[str, str]) -> None:
    problems = []
    for rel, text in sorted(texts.items()):
        if rel == "tests/test_self_contained.py":
            continue  # holds the patterns themselves; checked by test_file_list_is_complete for the path
        for number, line in enumerate(text.split("\n"), start=1):
            for pattern, why in INTERNAL_NOTE_PATTERNS:
                m = pattern.search(line)
                if m:  # one report per line: the first pattern that matches
                    problems.append(f"{rel}:{number}: {why}: ...{line[max(0, m.start() - 30): m.end() + 30].strip()}...")
                    break
    _report(problems, "reference(s) to files outside the repository")


def test_markdown_links_resolve_inside_the_repository(texts: dict[str, str], files: list[str]) -> None:
    tracked = set(tracked_files())
    dirs = _tracked_dirs(tracked)
    md_files = [f for f in texts if f.lower().endswith(".md")]
    assert "README.md" in md_files
    problems = []
    for rel in sorted(md_files):
        for number, target in markdown_links(texts[rel]):
            problem = link_problem(rel, target, tracked, dirs)
            if problem:
                problems.append(f"{rel}:{number}: {problem}")
    _report(problems, "markdown link(s) that do not work in a fresh clone")


# --------------------------------------------------------------------------- the checker itself
def test_link_extraction_and_resolution() -> None:
    """The link parser and resolver on hand-made cases (so a broken checker cannot pass the repository)."""
    text = (
        "See [the spec](" + FORBIDDEN_PATH + "/x.md) and [`docs`](docs/design.md#layers).\n"
        "```python\nmodel.steer([0.7, 0.3])(x)\n[not](a-link.md)\n```\n"
        "Inline `[nor](this.md)` and ![img](docs/front.png \"title\") and <https://example.org>.\n"
        "[ref]: ../outside.md\n"
        '<a href="sub/page.md">x</a> [web](https://arxiv.org/abs/2505.10892) [anchor](#top)\n'
    )
    links = markdown_links(text)
    assert links == [(1, FORBIDDEN_PATH + "/x.md"), (1, "docs/design.md#layers"), (6, "docs/front.png"),
                     (7, "../outside.md"), (8, "#top"), (8, "https://arxiv.org/abs/2505.10892"),
                     (8, "sub/page.md")]
    tracked = {"README.md", "docs/design.md", "docs/bandit.md"}
    dirs = _tracked_dirs(tracked)
    ok = lambda target, where="README.md": link_problem(where, target, tracked, dirs) is None  # noqa: E731
    assert ok("docs/design.md#layers") and ok("docs") and ok("docs/") and ok("#top") and ok("https://x.org/a")
    assert ok("design.md", "docs/bandit.md") and ok("../README.md", "docs/bandit.md")
    assert not ok(FORBIDDEN_PATH + "/DESIGN.md")
    assert not ok("../README.md")  # escapes the root from README.md
    assert not ok("docs/missing.md") and not ok("/etc/passwd") and not ok("file:///etc/passwd")
    assert not ok("../../outside.md", "docs/bandit.md")


def test_internal_note_patterns() -> None:
    def flagged(line: str) -> bool:
        return any(p.search(line) for p, _ in INTERNAL_NOTE_PATTERNS)

    for bad in ("DESIGN.md item 2", "(DESIGN 6)", "see papers/mopo-paper.md", "mopo-paper.md §3.2", "mopo-summary"):
        assert flagged(bad), bad
    for good in ("docs/design.md, section Layers", "MOPO paper §3.1 (arXiv:2505.10892)", "design decisions"):
        assert not flagged(good), good
