"""Label a user's own rows with K reward functions into the data contract (``moalign label``, ``train --label_rewards``).

A user has text, not labels: a JSONL / CSV / Parquet file (or a ``save_to_disk`` folder) of rows with

* ``prompt`` and ``completion`` -- without ``pairs``: each row gets ``scores`` (K floats, pointwise rows);
  with ``pairs``: the rows are **grouped by prompt and every two distinct completions of one prompt become
  one pair** (``completion_a`` is the earlier row in the file), labelled per objective from their scores --
  the rule of :func:`moalign.data.convert.scores_to_pairwise`, which the demo uses too. A prompt with a
  single completion cannot form a pair: an error naming its row, unless ``unpaired="drop"`` (then it is left
  out and counted in the printed report). A completion repeated under one prompt is an error, unless
  ``duplicates="merge"`` (counted once);
* ``prompt``, ``completion_a`` and ``completion_b`` -- one pair per row (``pairs`` or not): each row gets
  ``preference``, ``scores_a`` and ``scores_b``.

Prompts and completions are text, or chat message lists (JSONL / Parquet). Labels are hard (1 / 0, 0.5 on a
tie) or Bradley-Terry probabilities (``mode``); see :mod:`moalign.rewards.labelling`, whose
:func:`~moalign.rewards.labelling.score_pointwise` / :func:`~moalign.rewards.labelling.label_pairwise` do
all scoring here. The result is a validated
:class:`~moalign.data.schema.MultiObjectiveDataset` whose objectives are the reward functions' names, in
order; :func:`write_dataset` writes it with its ``.moalign.json`` sidecar, so that ``moalign train`` reads
the objectives back.

Every problem is an error that names the file, the row (and line) and the column: a missing column, a row
with other columns than the first, a line that is not JSON, an empty text, a reward function's non-finite
score. Nothing is dropped, clipped or coerced unless an option above says so, and then it is counted.
Existing label columns (``scores``, ``preference``, ``scores_a``, ``scores_b``) are an error unless
``overwrite``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from moalign.data.convert import ConversionReport, scores_to_pairwise, text_key
from moalign.data.io import (
    EmptyDataError,
    PathLike,
    _rows_to_columns,
    check_data_file,
    from_rows,
    read_csv_rows,
    read_jsonl_rows,
    read_parquet_rows,
    to_csv,
    to_jsonl,
    to_parquet,
)
from moalign.data.schema import DatasetValidationError, MultiObjectiveDataset, ValidationIssue, text_problem
from moalign.data.schema import validation_error
from moalign.rewards.base import InvalidScoreError
from moalign.rewards.labelling import RewardFns, label_pairwise, objective_names, score_pointwise

__all__ = ["WRITERS", "label_file", "label_rows", "read_rows", "write_dataset"]

PAIR_COLUMNS = ("prompt", "completion_a", "completion_b")
COMPLETION_COLUMNS = ("prompt", "completion")
#: writers by file suffix; each also writes the ``<file>.moalign.json`` sidecar with the objectives
WRITERS: dict[str, Callable[[MultiObjectiveDataset, PathLike], None]] = {
    ".jsonl": to_jsonl, ".parquet": to_parquet, ".csv": to_csv}
MAX_LISTED = 10


def read_rows(path: PathLike) -> tuple[list[dict[str, Any]], list[int] | None, str]:
    """``(rows, line numbers or None, source)`` of an unlabelled JSONL / CSV / Parquet file or saved dataset folder.

    No contract validation (the rows have no labels yet); a line that is not a JSON object, a malformed CSV
    row, a missing or empty file are errors naming the file (and line). CSV cells are plain text.
    """
    path = Path(path)
    source = str(path)
    if path.is_dir():
        import datasets

        loaded = datasets.load_from_disk(source)
        if isinstance(loaded, datasets.DatasetDict):
            raise ValueError(f"{source}: holds splits {list(loaded)}; save the one split to label on its own")
        rows = loaded.with_format(None).to_list()
        if not rows:
            raise EmptyDataError(source, "saved dataset")
        return rows, None, source
    suffix = check_data_file(path)
    lines: list[int] | None = None
    if suffix == ".jsonl":
        rows, lines = read_jsonl_rows(path)
    elif suffix == ".csv":
        rows, lines = read_csv_rows(path)
    else:
        rows = read_parquet_rows(path)
    if not rows:
        raise EmptyDataError(source)
    return rows, lines, source


def _line(lines: Sequence[int] | None, row: int) -> int | None:
    return lines[row] if lines else None


def _check_text(columns: Mapping[str, list[Any]], names: Sequence[str], source: str,
                lines: Sequence[int] | None) -> None:
    """Every prompt/completion cell is non-empty text or a chat list; up to ten problems are listed at once."""
    issues = []
    for name in names:
        for row, value in enumerate(columns[name]):
            problem = text_problem(value)
            if problem is not None:
                issues.append(ValidationIssue(row, name, problem, _line(lines, row)))
    if issues:
        raise DatasetValidationError(source, issues[:MAX_LISTED], truncated=len(issues) > MAX_LISTED)


def _shape(columns: Mapping[str, list[Any]], pairs: bool | None, source: str, lines: Sequence[int] | None) -> str:
    """``"pair_rows"`` (prompt, completion_a, completion_b) or ``"completion_rows"`` (prompt, completion)."""
    have = list(columns)
    expected = ("columns 'prompt' and 'completion' (one completion per row), or 'prompt', 'completion_a' and "
                "'completion_b' (one pair per row)")

    def missing(column: str, why: str) -> DatasetValidationError:
        return validation_error(source, f"no column '{column}' (the rows have {have}); {why}", row=0,
                                column=column, line=_line(lines, 0))

    if "prompt" not in columns:
        raise missing("prompt", f"expected {expected}")
    if "completion_a" in columns or "completion_b" in columns:
        for column in ("completion_a", "completion_b"):
            if column not in columns:
                raise missing(column, "pair rows need both 'completion_a' and 'completion_b'")
        if "completion" in columns:
            raise validation_error(source, "has both 'completion' and 'completion_a'/'completion_b'; expected one "
                                           "of the two shapes", row=0, column="completion", line=_line(lines, 0))
        if pairs is False:
            raise validation_error(source, "the rows are pairs (completion_a, completion_b), which have no pointwise "
                                           "scores of their own; label them as pairs (--pairs)", row=0,
                                   column="completion_a", line=_line(lines, 0))
        return "pair_rows"
    if "completion" not in columns:
        raise missing("completion", f"expected {expected}")
    return "completion_rows"


def _check_groups(columns: Mapping[str, list[Any]], duplicates: str, unpaired: str, source: str,
                  lines: Sequence[int] | None) -> None:
    """Before scoring: no completion repeated under one prompt (unless ``duplicates="merge"``), and every prompt
    has two distinct completions (unless ``unpaired="drop"``); up to ten problems are listed at once."""
    first_row: dict[tuple[str, str], int] = {}
    groups: dict[str, tuple[int, set[str]]] = {}
    issues = []
    for row, (prompt, completion) in enumerate(zip(columns["prompt"], columns["completion"], strict=True)):
        key = (text_key(prompt), text_key(completion))
        if key in first_row and duplicates == "error":
            issues.append(ValidationIssue(row, "completion", f"repeats the completion of row {first_row[key]} for "
                                          "the same prompt; pass --duplicates merge to count it once",
                                          _line(lines, row)))
        first_row.setdefault(key, row)
        groups.setdefault(key[0], (row, set()))[1].add(key[1])
    if unpaired == "error":
        issues += [ValidationIssue(row, "prompt", "this prompt has a single distinct completion, so it forms no "
                                   "pair (--pairs pairs the completions of one prompt); give it another "
                                   "completion, or pass --unpaired drop to leave such prompts out (counted)",
                                   _line(lines, row))
                   for row, seen in groups.values() if len(seen) < 2]
    if issues:
        raise DatasetValidationError(source, issues[:MAX_LISTED], truncated=len(issues) > MAX_LISTED)


def _scored(call: Callable[[], Any], source: str, lines: Sequence[int] | None, n: int, column_a: str,
            column_b: str | None = None) -> Any:
    """``call()``; a reward function's bad score becomes an error naming the row and the completion column."""
    try:
        return call()
    except InvalidScoreError as err:
        row, column = (err.index, column_a) if column_b is None or err.index < n else (err.index - n, column_b)
        raise validation_error(source, f"reward function '{err.reward}' returned {err.value!r} for this "
                                       "completion; expected a finite number", row=row, column=column,
                               line=_line(lines, row)) from None


def label_rows(
    rows: Sequence[Mapping[str, Any]],
    reward_fns: RewardFns,
    *,
    pairs: bool | None = False,
    source: str = "list of rows",
    line_numbers: Sequence[int] | None = None,
    mode: Literal["hard", "bradley_terry"] = "hard",
    temperature: float | Sequence[float] = 1.0,
    unpaired: Literal["error", "drop"] = "error",
    duplicates: Literal["error", "merge"] = "error",
    max_pairs_per_prompt: int | None = None,
    seed: int = 0,
    batch_size: int | None = 64,
    overwrite: bool = False,
    show_progress: bool = True,
) -> tuple[MultiObjectiveDataset, ConversionReport | None]:
    """Score ``rows`` with ``reward_fns`` and return the labelled dataset (see the module docstring).

    ``pairs``: False -> pointwise ``scores`` (completion rows only); True -> pairwise labels; None -> as the
    rows are (pair rows -> pairwise, completion rows -> pointwise). The report is the grouping's
    (``scores_to_pairwise``: pairs made, prompts and duplicates left out), None when nothing was grouped.
    """
    if mode not in ("hard", "bradley_terry"):
        raise ValueError(f"mode must be 'hard' or 'bradley_terry', got {mode!r}")
    if unpaired not in ("error", "drop"):
        raise ValueError(f"unpaired must be 'error' or 'drop', got {unpaired!r}")
    if duplicates not in ("error", "merge"):
        raise ValueError(f"duplicates must be 'error' or 'merge', got {duplicates!r}")
    names = objective_names(reward_fns)
    rows = list(rows)
    if not rows:
        raise validation_error(source, "no rows to label")
    columns = _rows_to_columns(rows, source, line_numbers)  # objects with the same columns, else row/column/line
    shape = _shape(columns, pairs, source, line_numbers)
    text_columns = PAIR_COLUMNS if shape == "pair_rows" else COMPLETION_COLUMNS
    _check_text(columns, text_columns, source, line_numbers)
    labels = ("preference", "scores_a", "scores_b") if shape == "pair_rows" else ("scores",)
    present = [c for c in labels if c in columns]
    if present and not overwrite:
        raise validation_error(source, f"already has label column(s) {present}; pass --overwrite true to replace "
                                       "them with the new scores", row=0, column=present[0],
                               line=_line(line_numbers, 0))
    grouped = shape == "completion_rows" and bool(pairs)
    if grouped:
        _check_groups(columns, duplicates, unpaired, source, line_numbers)
    n = len(rows)
    if shape == "pair_rows":
        labelled = _scored(lambda: label_pairwise(rows, reward_fns, mode=mode, temperature=temperature,
                                                  overwrite=overwrite, show_progress=show_progress,
                                                  batch_size=batch_size),
                           source, line_numbers, n, "completion_a", "completion_b")
        return from_rows(labelled, names, "pairwise", source, line_numbers), None
    scored = _scored(lambda: score_pointwise(rows, reward_fns, overwrite=overwrite, show_progress=show_progress,
                                             batch_size=batch_size),
                     source, line_numbers, n, "completion")
    pointwise = from_rows(scored, names, "pointwise", source, line_numbers)
    if not grouped:
        return pointwise, None
    return scores_to_pairwise(pointwise, temperature=None if mode == "hard" else temperature,
                              max_pairs_per_prompt=max_pairs_per_prompt, seed=seed, duplicates=duplicates)


def label_file(path: PathLike, reward_fns: RewardFns, **options: Any
               ) -> tuple[MultiObjectiveDataset, ConversionReport | None]:
    """:func:`read_rows` then :func:`label_rows` (``options`` are its keyword arguments); errors name ``path``."""
    rows, lines, source = read_rows(path)
    return label_rows(rows, reward_fns, source=source, line_numbers=lines, **options)


def check_output_path(out: PathLike, data: PathLike | None = None) -> Path:
    """``out`` as a Path, after checking that its suffix has a writer and that it is not the input file."""
    out = Path(out)
    if out.suffix.lower() not in WRITERS:
        raise ValueError(f"{out}: unsupported output type {out.suffix!r}; supported: {list(WRITERS)}")
    if data is not None and out.resolve() == Path(data).resolve():
        raise ValueError(f"{out}: the output would overwrite the input file; choose another --out")
    return out


def write_dataset(mo: MultiObjectiveDataset, out: PathLike) -> Path:
    """Write ``mo`` to ``out`` (by suffix: .jsonl / .parquet / .csv) plus its ``.moalign.json`` sidecar."""
    out = check_output_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    WRITERS[out.suffix.lower()](mo, out)
    return out
