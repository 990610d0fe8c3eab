"""The multi-objective preference dataset contract (docs/design.md, "Data contract") and its validation.

A multi-objective dataset names its K objectives (an ordered list of unique
strings) and stores, per row,

- ``pairwise``: ``prompt``, ``completion_a``, ``completion_b``, ``preference``
  (K floats in [0, 1]: the probability / label that ``completion_a`` is
  preferred to ``completion_b`` on objective k -- the indicator I(y, y') of
  the MOPO paper §3.1, "Empirical MOPO"); optional ``scores_a``, ``scores_b`` (K finite floats each);
- ``pointwise``: ``prompt``, ``completion``, ``scores`` (K finite floats).

Optional booleans ``truncated_a``/``truncated_b`` (pairwise) or ``truncated``
(pointwise) mark completions cut at a length limit: the trainer's collator
then trains them as prefixes, without the EOS a whole response gets.

Prompts and completions are plain text (``str``) or, as in TRL, chat message
lists (``[{"role": ..., "content": ...}, ...]``); one dataset uses one format
for all of its text columns. Other columns are allowed and carried along
untouched (TRL ignores them too).

The data lives in a :class:`datasets.Dataset` (what TRL users have), wrapped by
:class:`MultiObjectiveDataset`, which carries the objective names and the kind.
How the names survive saving (see :mod:`moalign.data.io`): ``save_to_disk`` writes
them as JSON into ``dataset.info.description`` (which ``datasets`` keeps
through ``save_to_disk``/``load_from_disk``, ``map``, ``filter`` and ``select``);
the file exports (JSONL / Parquet / CSV) write a sidecar ``<file>.moalign.json``.

Validation never drops, clips or coerces: it raises
:class:`DatasetValidationError` naming the source (file), the row (and file
line where known), the column and what was expected. The only conversion done
when storing is the value-preserving int -> float of numeric lists.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import datasets
import numpy as np

Kind = Literal["pairwise", "pointwise"]
KINDS: tuple[str, ...] = ("pairwise", "pointwise")

TEXT_COLUMNS: dict[str, tuple[str, ...]] = {
    "pairwise": ("prompt", "completion_a", "completion_b"),
    "pointwise": ("prompt", "completion"),
}
"""Columns holding a prompt or a completion (text or chat messages), per kind."""

REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "pairwise": ("prompt", "completion_a", "completion_b", "preference"),
    "pointwise": ("prompt", "completion", "scores"),
}
OPTIONAL_COLUMNS: dict[str, tuple[str, ...]] = {"pairwise": ("scores_a", "scores_b"), "pointwise": ()}
# Optional flags: the completion was cut at a length limit (a prefix, not a whole response; no EOS is trained).
TRUNCATION_COLUMNS: dict[str, tuple[str, ...]] = {"pairwise": ("truncated_a", "truncated_b"),
                                                  "pointwise": ("truncated",)}

METADATA_KEY = "moalign_multi_objective"
"""Key of the JSON object (in ``info.description`` or a sidecar file) holding objectives and kind."""
METADATA_VERSION = 1


@dataclass(frozen=True)
class ValidationIssue:
    """One problem found by validation: where it is and what was expected."""

    row: int | None
    column: str | None
    message: str
    line: int | None = None

    def location(self) -> str:
        parts = []
        if self.row is not None:
            parts.append(f"row {self.row}" + (f" (line {self.line})" if self.line is not None else ""))
        if self.column is not None:
            parts.append(f"column '{self.column}'")
        return ", ".join(parts)

    def __str__(self) -> str:
        where = self.location()
        return f"{where}: {self.message}" if where else self.message


class DatasetValidationError(ValueError):
    """A multi-objective dataset broke the data contract.

    ``source`` names the file (or "in-memory dataset"); ``issues`` lists every
    problem found (up to a cap), each with its row index (0-based, data rows),
    file line where known, column and what was expected.
    """

    def __init__(self, source: str | None, issues: Sequence[ValidationIssue], truncated: bool = False):
        self.source = source or "in-memory dataset"
        self.issues = list(issues)
        self.truncated = truncated
        lines = [f"{self.source}: {issue}" for issue in self.issues]
        if truncated:
            lines.append(f"{self.source}: (further problems not listed)")
        header = f"invalid multi-objective dataset ({len(self.issues)} problem(s) listed):"
        super().__init__(header + "\n  " + "\n  ".join(lines))


def validation_error(source: str | None, message: str, row: int | None = None, column: str | None = None,
                     line: int | None = None) -> DatasetValidationError:
    """A :class:`DatasetValidationError` with a single issue."""
    return DatasetValidationError(source, [ValidationIssue(row, column, message, line)])


def check_objectives(objectives: Any, source: str | None = None) -> list[str]:
    """Return the objective names as a list, or raise if they are not unique non-blank strings."""
    if isinstance(objectives, str) or not isinstance(objectives, Iterable):
        raise validation_error(source, f"objectives must be a list of names, got {type(objectives).__name__}")
    names = list(objectives)
    if not names:
        raise validation_error(source, "objectives must name at least one objective, got an empty list")
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name.strip():
            raise validation_error(source, f"objective name #{i} must be a non-blank string, got {name!r}")
    seen: set[str] = set()
    duplicates = [n for n in names if n in seen or seen.add(n)]  # type: ignore[func-returns-value]
    if duplicates:
        raise validation_error(source, f"duplicate objective names {sorted(set(duplicates))} in {names}")
    return names


def infer_kind(columns: Iterable[str], source: str | None = None) -> Kind:
    """``pairwise`` or ``pointwise`` from the column names; raises when neither or both fit."""
    cols = set(columns)
    fits = [k for k in KINDS if set(REQUIRED_COLUMNS[k]) <= cols]
    if len(fits) == 1:
        return fits[0]  # type: ignore[return-value]
    if not fits:
        raise validation_error(
            source, f"cannot tell the dataset kind from columns {sorted(cols)}: pairwise needs "
            f"{list(REQUIRED_COLUMNS['pairwise'])}, pointwise needs {list(REQUIRED_COLUMNS['pointwise'])}")
    raise validation_error(source, f"columns {sorted(cols)} fit both pairwise and pointwise: pass kind=")


def check_kind(kind: Any, source: str | None = None) -> Kind:
    if kind not in KINDS:
        raise validation_error(source, f"kind must be one of {list(KINDS)}, got {kind!r}")
    return kind


def is_chat(value: Any) -> bool:
    """True for a chat message list (TRL's conversational format), judged by its type only."""
    return isinstance(value, (list, tuple))


def text_problem(value: Any) -> str | None:
    """What is wrong with a prompt/completion value, or None."""
    if value is None:
        return "missing value (null); expected a non-empty string or a list of {'role', 'content'} messages"
    if isinstance(value, str):
        return None if value.strip() else f"empty text {value!r}; expected a non-empty string"
    if isinstance(value, (list, tuple)):
        if len(value) == 0:
            return "empty chat message list; expected at least one {'role', 'content'} message"
        for j, message in enumerate(value):
            if not isinstance(message, Mapping):
                return f"chat message #{j} is a {type(message).__name__}; expected a dict with 'role' and 'content'"
            role, content = message.get("role"), message.get("content")
            if not isinstance(role, str) or not role.strip():
                return f"chat message #{j} has no 'role' (got {role!r}); expected a non-empty string"
            if not isinstance(content, str):
                return f"chat message #{j} has no string 'content' (got {content!r})"
        if not any(m["content"].strip() for m in value):
            return "chat message list whose contents are all empty"
        return None
    return f"expected a string or a list of {{'role', 'content'}} messages, got {type(value).__name__} {value!r:.60}"


def _vector_problem(value: Any, k: int, objectives: Sequence[str], probability: bool) -> str | None:
    """What is wrong with a K-vector (preference or scores), or None."""
    what = "probabilities in [0, 1]" if probability else "finite numbers"
    expected = f"a list of {k} {what} (one per objective {list(objectives)})"
    if value is None:
        return f"missing value (null); expected {expected}"
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        return f"expected {expected}, got {type(value).__name__} {value!r:.60}"
    if len(value) != k:
        return f"expected {expected}, got a list of length {len(value)}"
    for j, x in enumerate(value):
        kind = type(x)
        if kind is not float and kind is not int:  # fast path above; bool is not a number here
            if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Real):
                return f"entry {j} ('{objectives[j]}') is {kind.__name__} {x!r:.40}; expected {expected}"
        x = float(x)
        if probability and 0.0 <= x <= 1.0:
            continue
        if math.isnan(x):
            return f"entry {j} ('{objectives[j]}') is NaN; expected {expected}"
        if math.isinf(x):
            return f"entry {j} ('{objectives[j]}') is {x}; expected {expected}"
        if probability:
            return f"entry {j} ('{objectives[j]}') is {x}, outside [0, 1]; expected {expected}"
    return None


def validate_columns(
    columns: Mapping[str, Sequence[Any]],
    objectives: Sequence[str],
    kind: Kind,
    source: str | None = None,
    line_numbers: Sequence[int] | None = None,
    conversational: bool | None = None,
    max_issues: int = 10,
) -> None:
    """Validate column-oriented data (``{column: [value per row]}``) against the contract.

    Raises :class:`DatasetValidationError` listing up to ``max_issues`` problems.
    ``line_numbers[i]`` is the file line of row ``i`` (for messages only).
    ``conversational`` (when not None) is the format the caller expects.
    """
    objectives = check_objectives(objectives, source)
    kind = check_kind(kind, source)
    issues: list[ValidationIssue] = []
    truncated = False

    def add(row: int | None, column: str | None, message: str) -> bool:
        nonlocal truncated
        if len(issues) >= max_issues:
            truncated = True
            return False
        line = line_numbers[row] if (row is not None and line_numbers is not None) else None
        issues.append(ValidationIssue(row, column, message, line))
        return True

    required = REQUIRED_COLUMNS[kind]
    for col in required:
        if col not in columns:
            add(None, col, f"missing required column; {kind} datasets need columns {list(required)}"
                           f" (found {sorted(columns)})")
    optional = [c for c in OPTIONAL_COLUMNS[kind] if c in columns]
    if len(optional) == 1:
        other = next(c for c in OPTIONAL_COLUMNS[kind] if c != optional[0])
        add(None, other, f"missing column: '{optional[0]}' is present, so '{other}' must be too")
    if issues:
        raise DatasetValidationError(source, issues)

    lengths = {col: len(values) for col, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise validation_error(source, f"columns have different numbers of rows: {lengths}")

    k = len(objectives)
    vector_columns = [("preference", True)] if kind == "pairwise" else [("scores", False)]
    vector_columns += [(c, False) for c in optional]
    for col, probability in vector_columns:
        for i, value in enumerate(columns[col]):
            problem = _vector_problem(value, k, objectives, probability)
            if problem and not add(i, col, problem):
                break

    for col in (c for c in TRUNCATION_COLUMNS[kind] if c in columns):
        for i, value in enumerate(columns[col]):
            if not isinstance(value, (bool, np.bool_)):
                if not add(i, col, f"expected true or false (was the completion cut at a length limit?), "
                                   f"got {value!r} ({type(value).__name__})"):
                    break

    first_format: tuple[str, bool] | None = None  # (column, is_chat) of the first text value seen
    for col in TEXT_COLUMNS[kind]:
        for i, value in enumerate(columns[col]):
            problem = text_problem(value)
            if problem:
                if not add(i, col, problem):
                    break
                continue
            chat = is_chat(value)
            if first_format is None:
                first_format = (col, chat)
                if conversational is not None and chat != conversational:
                    want = "chat message lists" if conversational else "plain text"
                    add(i, col, f"expected {want} (conversational={conversational}), got "
                                f"{'a chat message list' if chat else 'plain text'}")
            elif chat != first_format[1]:
                fmt = lambda c: "a chat message list" if c else "plain text"  # noqa: E731
                add(i, col, f"is {fmt(chat)} but column '{first_format[0]}' starts with {fmt(first_format[1])}; "
                            "use one format (all text or all chat) for every prompt/completion")
    if issues:
        raise DatasetValidationError(source, issues, truncated)


def _plain_column_values(dataset: datasets.Dataset) -> dict[str, list[Any]]:
    """All columns of ``dataset`` as Python lists (respecting any select/shuffle indices)."""
    plain = dataset.with_format(None)
    return plain[:] if len(plain) else {c: [] for c in plain.column_names}


def metadata_dict(objectives: Sequence[str], kind: Kind, conversational: bool | None) -> dict[str, Any]:
    """The JSON-serialisable metadata object stored with a dataset."""
    return {METADATA_KEY: {"version": METADATA_VERSION, "kind": kind, "objectives": list(objectives),
                           "conversational": conversational}}


def parse_metadata(obj: Any, source: str | None = None) -> dict[str, Any] | None:
    """Objectives/kind stored by :func:`metadata_dict`, or None when ``obj`` holds no moalign metadata."""
    if isinstance(obj, str):
        try:
            obj = json.loads(obj)
        except (json.JSONDecodeError, ValueError):
            return None
    if not isinstance(obj, Mapping) or METADATA_KEY not in obj:
        return None
    meta = obj[METADATA_KEY]
    if not isinstance(meta, Mapping) or meta.get("version") != METADATA_VERSION:
        raise validation_error(source, f"unsupported moalign metadata {meta!r}; expected version {METADATA_VERSION}")
    return {"objectives": check_objectives(meta.get("objectives"), source),
            "kind": check_kind(meta.get("kind"), source), "conversational": meta.get("conversational")}


@dataclass
class MultiObjectiveDataset:
    """A validated multi-objective preference dataset: a ``datasets.Dataset`` plus its objectives and kind.

    Construction validates every row (see :func:`validate_columns`) and raises
    :class:`DatasetValidationError` on any breach. ``dataset`` is what TRL-style
    trainers consume; ``objectives[k]`` names entry k of ``preference``/``scores``.
    """

    dataset: datasets.Dataset = field(metadata={"help": "the rows (pairwise or pointwise columns)"})
    objectives: list[str] = field(metadata={"help": "ordered, unique objective names; entry k of each K-vector"})
    kind: Kind = field(default="pairwise", metadata={"help": "'pairwise' or 'pointwise'"})
    source: str | None = field(default=None, repr=False, metadata={"help": "where the rows came from (for errors)"})

    @classmethod
    def _from_validated(cls, dataset: datasets.Dataset, objectives: list[str], kind: Kind,
                        source: str | None) -> MultiObjectiveDataset:
        """Internal: wrap rows that :func:`validate_columns` has just checked (skips re-validating them)."""
        mo = cls.__new__(cls)
        mo.dataset, mo.objectives, mo.kind, mo.source = dataset, list(objectives), kind, source
        return mo

    def __post_init__(self) -> None:
        if not isinstance(self.dataset, datasets.Dataset):
            raise TypeError(f"dataset must be a datasets.Dataset, got {type(self.dataset).__name__}")
        self.objectives = check_objectives(self.objectives, self.source)
        self.kind = check_kind(self.kind, self.source)
        validate_columns(_plain_column_values(self.dataset), self.objectives, self.kind, self.source)

    # ----- properties -------------------------------------------------------------------------
    @property
    def num_objectives(self) -> int:
        return len(self.objectives)

    @property
    def has_scores(self) -> bool:
        """Whether per-completion scores are stored (always for pointwise; optional for pairwise)."""
        return self.kind == "pointwise" or "scores_a" in self.dataset.column_names

    @property
    def conversational(self) -> bool | None:
        """True for chat message lists, False for text, None for an empty dataset."""
        if len(self.dataset) == 0:
            return None
        return is_chat(self.dataset.with_format(None)[0]["prompt"])

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.dataset.with_format(None)[index]

    def metadata(self) -> dict[str, Any]:
        """The metadata object written next to / into saved copies."""
        return metadata_dict(self.objectives, self.kind, self.conversational)

    def objective_index(self, name: str) -> int:
        if name not in self.objectives:
            raise KeyError(f"unknown objective {name!r}; this dataset has objectives {self.objectives}")
        return self.objectives.index(name)

    # ----- transformations ----------------------------------------------------------------------
    def select_objectives(self, names: Sequence[str]) -> MultiObjectiveDataset:
        """A copy keeping (and reordering to) the objectives ``names``; e.g. to put the primary one first."""
        names = check_objectives(names, self.source)
        idx = [self.objective_index(n) for n in names]
        vector_cols = [c for c in ("preference", "scores", "scores_a", "scores_b") if c in self.dataset.column_names]

        def pick(batch: dict[str, list]) -> dict[str, list]:
            return {c: [[v[i] for i in idx] for v in batch[c]] for c in vector_cols}

        ds = self.dataset.map(pick, batched=True, desc="select objectives")
        return MultiObjectiveDataset(ds, names, self.kind, self.source)
