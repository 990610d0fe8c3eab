"""Loading and saving multi-objective datasets: local files, ``save_to_disk`` folders, in-memory data.

Entry point: :func:`load_multi_objective` (any source -> validated
:class:`~moalign.data.schema.MultiObjectiveDataset`). Saving is here too
(:func:`save_to_disk`, :func:`to_jsonl`, :func:`to_parquet`, :func:`to_csv`;
read back with :func:`load_multi_objective` or :func:`load_from_disk`): this
module imports :mod:`moalign.data.schema`, never the reverse.

A data file or saved folder without a single row is an error at load time
(:class:`EmptyDataError`, a ``ValueError`` naming the source), so that an empty
file is reported as such instead of failing later inside training.

Where the objective names live
------------------------------
- ``save_to_disk`` folders (:func:`save_to_disk`): as JSON in
  ``dataset.info.description`` (``{"moalign_multi_objective": {"version": 1,
  "kind": ..., "objectives": [...], "conversational": ...}}``; a description the
  dataset had before is kept under ``"description"``). ``datasets`` preserves
  it through ``load_from_disk``, ``map``, ``filter`` and ``select``, so a plain
  ``datasets.load_from_disk(path)`` result can be passed to
  :func:`load_multi_objective` without repeating the names.
- JSONL / Parquet / CSV files: a sidecar JSON file ``<file>.moalign.json`` with
  the same object. Without a sidecar, pass ``objectives=`` (and ``kind=`` if
  the columns are ambiguous). Names given and names stored must agree.

File formats
------------
- JSONL (``.jsonl``): one JSON object per line; blank lines are skipped; errors
  name the line.
- Parquet (``.parquet``): columns as in the contract (list<double> for vectors).
- CSV (``.csv``): a header row with the column names. Cells of list-valued
  columns (``preference``, ``scores``, ``scores_a``, ``scores_b``) hold JSON
  lists, e.g. ``"[1.0, 0.5]"``. Prompt/completion cells hold plain text, unless
  the dataset is conversational (sidecar ``"conversational": true``, or
  ``conversational=True`` passed to :func:`load_multi_objective`): then they
  hold JSON message lists. Other columns stay strings. Every cell is parsed
  strictly; an unparseable cell is an error naming the row, line and column.
  Numbers follow Python's ``json`` (``NaN`` parses, then fails validation).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets

from moalign.data.encoding import named_decode_errors
from moalign.data.schema import (
    REQUIRED_COLUMNS,
    TEXT_COLUMNS,
    DatasetValidationError,
    Kind,
    MultiObjectiveDataset,
    ValidationIssue,
    check_kind,
    check_objectives,
    infer_kind,
    is_chat,
    parse_metadata,
    validate_columns,
    validation_error,
)

VECTOR_COLUMNS = ("preference", "scores", "scores_a", "scores_b")
FILE_SUFFIXES = (".jsonl", ".parquet", ".csv")
SIDECAR_SUFFIX = ".moalign.json"

PathLike = str | os.PathLike


class EmptyDataError(ValueError):
    """A data file or saved dataset folder that holds no rows (``source`` names it)."""

    def __init__(self, source: str, what: str = "data file") -> None:
        self.source = source
        super().__init__(f"{source}: the {what} has no rows; a multi-objective dataset to load needs at least one "
                         "row (was it written completely?)")
        self.what = what

    def __reduce__(self) -> tuple[object, ...]:
        return type(self), (self.source, self.what)


def sidecar_path(path: PathLike) -> Path:
    """Where the metadata of a file export lives: ``<file>.moalign.json``."""
    return Path(str(path) + SIDECAR_SUFFIX)


# ----------------------------------------------------------------------------------------------
# rows -> validated dataset
# ----------------------------------------------------------------------------------------------
def _rows_to_columns(rows: Sequence[Mapping[str, Any]], source: str | None,
                     line_numbers: Sequence[int] | None) -> dict[str, list[Any]]:
    """Column-oriented copy of ``rows``; every row must have the same columns."""
    if not rows:
        return {}
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            line = line_numbers[i] if line_numbers else None
            raise validation_error(source, f"expected a JSON object / dict per row, got {type(row).__name__}",
                                   row=i, line=line)
    names = list(rows[0].keys())
    wanted = set(names)
    for i, row in enumerate(rows):
        if set(row.keys()) != wanted:
            line = line_numbers[i] if line_numbers else None
            missing = sorted(wanted - set(row.keys()))
            extra = sorted(set(row.keys()) - wanted)
            raise validation_error(source, f"has columns differing from row 0: missing {missing}, extra {extra}",
                                   row=i, column=(missing or extra)[0], line=line)
    return {name: [row[name] for row in rows] for name in names}


def _empty_features(kind: Kind, extra: Sequence[str]) -> datasets.Features:
    vec = datasets.List(datasets.Value("float64"))
    feats = {c: (vec if c in VECTOR_COLUMNS else datasets.Value("string"))
             for c in list(REQUIRED_COLUMNS[kind]) + list(extra)}
    return datasets.Features(feats)


def dataset_from_columns(columns: Mapping[str, list[Any]], objectives: Sequence[str], kind: Kind | None = None,
                         source: str | None = None, line_numbers: Sequence[int] | None = None,
                         conversational: bool | None = None) -> MultiObjectiveDataset:
    """Validate column-oriented data, then store it in a ``datasets.Dataset``.

    Validation happens on the Python values *before* Arrow sees them, so a bad
    cell gets our row/column message instead of an Arrow type error. Numeric
    lists are stored as float64 (int -> float is the only conversion).
    """
    objectives = check_objectives(objectives, source)
    kind = check_kind(kind, source) if kind is not None else infer_kind(columns.keys(), source)
    validate_columns(columns, objectives, kind, source, line_numbers, conversational)
    n_rows = len(next(iter(columns.values()))) if columns else 0
    if n_rows == 0:
        extra = [c for c in columns if c not in REQUIRED_COLUMNS[kind]]
        ds = datasets.Dataset.from_dict({c: [] for c in _empty_features(kind, extra)},
                                        features=_empty_features(kind, extra))
    else:
        stored = {c: ([[float(x) for x in v] for v in values] if c in VECTOR_COLUMNS else list(values))
                  for c, values in columns.items()}
        for c in TEXT_COLUMNS[kind]:  # tuples of messages -> lists of plain dicts (Arrow wants lists)
            stored[c] = [[dict(m) for m in v] if is_chat(v) else v for v in stored[c]]
        ds = datasets.Dataset.from_dict(stored)
    return MultiObjectiveDataset._from_validated(ds, objectives, kind, source)


def from_rows(rows: Sequence[Mapping[str, Any]], objectives: Sequence[str], kind: Kind | None = None,
              source: str | None = None, line_numbers: Sequence[int] | None = None,
              conversational: bool | None = None) -> MultiObjectiveDataset:
    """A validated dataset from a list of row dicts (the in-memory source)."""
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence):
        raise TypeError(f"rows must be a list of dicts, got {type(rows).__name__}")
    columns = _rows_to_columns(rows, source, line_numbers)
    if not columns:
        if kind is None:
            raise validation_error(source, "no rows: pass kind= to build an empty dataset")
        columns = {c: [] for c in REQUIRED_COLUMNS[check_kind(kind, source)]}
    return dataset_from_columns(columns, objectives, kind, source, line_numbers, conversational)


def _resolve_metadata(stored: dict[str, Any] | None, objectives: Sequence[str] | None, kind: Kind | None,
                      conversational: bool | None, source: str) -> tuple[list[str], Kind | None, bool | None]:
    """Merge stored metadata with the caller's arguments; disagreement is an error."""
    if objectives is not None:
        objectives = check_objectives(objectives, source)
    if stored is None:
        if objectives is None:
            raise validation_error(source, "objective names are neither stored with the data (no moalign metadata"
                                           f" / no '{SIDECAR_SUFFIX}' sidecar) nor given: pass objectives=[...]")
        return objectives, kind, conversational
    for name, given, have in (("objectives", objectives, stored["objectives"]), ("kind", kind, stored["kind"]),
                              ("conversational", conversational, stored["conversational"])):
        if given is not None and have is not None and given != have:
            raise validation_error(source, f"{name}={given!r} was passed but the stored metadata says {have!r}")
    conv = conversational if conversational is not None else stored["conversational"]
    return stored["objectives"], (kind or stored["kind"]), conv


def from_hf_dataset(dataset: datasets.Dataset, objectives: Sequence[str] | None = None, kind: Kind | None = None,
                    source: str | None = None, conversational: bool | None = None) -> MultiObjectiveDataset:
    """Wrap (and validate) a ``datasets.Dataset``; the names may come from its ``info.description``."""
    source = source or "in-memory datasets.Dataset"
    stored = parse_metadata(dataset.info.description, source)
    objectives, kind, conversational = _resolve_metadata(stored, objectives, kind, conversational, source)
    kind = kind or infer_kind(dataset.column_names, source)
    mo = MultiObjectiveDataset(dataset, objectives, kind, source)
    if conversational is not None and mo.conversational is not None and mo.conversational != conversational:
        raise validation_error(source, f"expected conversational={conversational}, the data says {mo.conversational}",
                               row=0, column="prompt")
    return mo


# ----------------------------------------------------------------------------------------------
# file readers: -> (columns, line numbers)
# ----------------------------------------------------------------------------------------------
def read_jsonl_rows(path: PathLike) -> tuple[list[dict[str, Any]], list[int]]:
    """Rows of a JSONL file and the line of each row (1-based); a malformed line is an error."""
    rows, lines = [], []
    with open(path, encoding="utf-8") as handle, named_decode_errors(path, _not_utf8(path)):
        for line_no, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as err:
                raise validation_error(str(path), f"not valid JSON: {err.msg} (char {err.pos})",
                                       row=len(rows), line=line_no) from None
            if not isinstance(obj, dict):
                raise validation_error(str(path), f"expected a JSON object, got {type(obj).__name__}",
                                       row=len(rows), line=line_no)
            rows.append(obj)
            lines.append(line_no)
    return rows, lines


def _not_utf8(path: PathLike) -> Callable[[str], DatasetValidationError]:
    return lambda message: validation_error(str(path), message)


def read_parquet_rows(path: PathLike) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def read_csv_rows(path: PathLike, conversational: bool = False) -> tuple[list[dict[str, Any]], list[int]]:
    """Rows of a CSV file with JSON cells decoded (see module docstring) and each row's first line."""
    source = str(path)
    json_columns = set(VECTOR_COLUMNS)
    if conversational:
        json_columns |= set(TEXT_COLUMNS["pairwise"]) | set(TEXT_COLUMNS["pointwise"])
    rows, lines = [], []
    with open(path, encoding="utf-8", newline="") as handle, named_decode_errors(path, _not_utf8(path)):
        reader = csv.reader(handle, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            raise validation_error(source, "empty CSV file; expected a header row") from None
        except csv.Error as err:
            raise validation_error(source, f"malformed CSV header: {err}", line=1) from None
        if len(set(header)) != len(header):
            raise validation_error(source, f"duplicate column names in the CSV header {header}", line=1)
        previous_line = reader.line_num
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as err:
                raise validation_error(source, f"malformed CSV: {err}", row=len(rows), line=previous_line + 1) from None
            line, previous_line = previous_line + 1, reader.line_num
            if not cells:
                continue
            row_index = len(rows)
            if len(cells) != len(header):
                raise validation_error(source, f"has {len(cells)} cells but the header has {len(header)} columns",
                                       row=row_index, line=line)
            row: dict[str, Any] = {}
            for name, cell in zip(header, cells, strict=True):
                if name in json_columns:
                    if cell == "":
                        raise validation_error(source, "empty cell; expected a JSON value", row=row_index,
                                               column=name, line=line)
                    try:
                        row[name] = json.loads(cell)
                    except json.JSONDecodeError as err:
                        raise validation_error(source, f"cell {cell!r:.60} is not valid JSON ({err.msg}); list-valued"
                                                       " CSV cells must hold JSON, e.g. \"[1.0, 0.0]\"",
                                               row=row_index, column=name, line=line) from None
                else:
                    row[name] = cell
            rows.append(row)
            lines.append(line)
    return rows, lines


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    side = sidecar_path(path)
    if not side.exists():
        return None
    try:
        obj = json.loads(side.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise validation_error(str(side), f"metadata file is not valid JSON: {err}") from None
    meta = parse_metadata(obj, str(side))
    if meta is None:
        raise validation_error(str(side), "metadata file lacks the 'moalign_multi_objective' object")
    return meta


def check_data_file(path: Path) -> str:
    """The lower-case suffix of a local data file, after checking its type, that it exists and is not 0 bytes.

    Errors name the file; a saved-dataset folder is the caller's case (it has no suffix to check).
    """
    source = str(path)
    suffix = path.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise ValueError(f"{source}: unsupported file type {suffix!r}; supported: {list(FILE_SUFFIXES)} or a "
                         "save_to_disk folder")
    if not path.exists():
        raise FileNotFoundError(f"{source}: no such file")
    if path.is_file() and path.stat().st_size == 0:
        raise EmptyDataError(source, "data file (0 bytes)")
    return suffix


def load_file(path: PathLike, objectives: Sequence[str] | None = None, kind: Kind | None = None,
              conversational: bool | None = None) -> MultiObjectiveDataset:
    """Load and validate a local JSONL / Parquet / CSV file (objectives from its sidecar or the arguments).

    A file without rows (0 bytes, only blank lines, only a CSV header, a Parquet table of 0 rows)
    raises :class:`EmptyDataError`.
    """
    path = Path(path)
    source = str(path)
    suffix = check_data_file(path)
    stored = _read_sidecar(path)
    objectives, kind, conversational = _resolve_metadata(stored, objectives, kind, conversational, source)
    lines: list[int] | None = None
    if suffix == ".jsonl":
        rows, lines = read_jsonl_rows(path)
    elif suffix == ".csv":
        rows, lines = read_csv_rows(path, conversational=bool(conversational))
    else:
        rows = read_parquet_rows(path)
    if not rows:
        raise EmptyDataError(source)
    return from_rows(rows, objectives, kind, source, lines, conversational)


# ----------------------------------------------------------------------------------------------
# save / export
# ----------------------------------------------------------------------------------------------
def _described_dataset(mo: MultiObjectiveDataset) -> datasets.Dataset:
    """A copy of ``mo.dataset`` whose ``info.description`` holds the moalign metadata."""
    # a new Dataset (with its own copy of ``info``) holding exactly the rows of ``mo``
    if len(mo) == 0:
        ds = datasets.Dataset.from_dict({c: [] for c in mo.dataset.column_names}, features=mo.dataset.features,
                                        info=mo.dataset.info.copy())
    elif mo.dataset._indices is not None:
        ds = mo.dataset.flatten_indices()
    else:
        ds = datasets.Dataset(mo.dataset.data, info=mo.dataset.info.copy(), split=mo.dataset.split)
    meta = mo.metadata()
    previous = mo.dataset.info.description
    if previous and parse_metadata(previous) is None:
        meta["description"] = previous
    ds.info.description = json.dumps(meta)
    return ds


def save_to_disk(mo: MultiObjectiveDataset, path: PathLike) -> None:
    """``datasets.Dataset.save_to_disk`` with the objectives in ``info.description``."""
    # an empty dataset needs num_shards=1: with 0 shards ``datasets.load_from_disk`` fails to read it back
    _described_dataset(mo).save_to_disk(str(path), num_shards=1 if len(mo) == 0 else None)


def load_from_disk(path: PathLike, split: str | None = None, objectives: Sequence[str] | None = None,
                   kind: Kind | None = None) -> MultiObjectiveDataset:
    """Load a ``save_to_disk`` folder (a Dataset, or a DatasetDict with ``split``) and validate it.

    The inverse of :func:`save_to_disk`, so an empty saved dataset loads as an empty one here;
    :func:`load_multi_objective`, the entry point for data to train or evaluate on, refuses it.
    """
    loaded = datasets.load_from_disk(str(path))
    return _from_loaded(loaded, str(path), split, objectives, kind, None)


def _write_sidecar(mo: MultiObjectiveDataset, path: PathLike) -> None:
    sidecar_path(path).write_text(json.dumps(mo.metadata(), indent=2) + "\n", encoding="utf-8")


def _plain_rows(mo: MultiObjectiveDataset) -> list[dict[str, Any]]:
    return mo.dataset.with_format(None).to_list()


def to_jsonl(mo: MultiObjectiveDataset, path: PathLike) -> None:
    """One JSON object per row (UTF-8, non-ASCII kept) plus the ``.moalign.json`` sidecar."""
    with open(path, "w", encoding="utf-8") as handle:
        for row in _plain_rows(mo):
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    _write_sidecar(mo, path)


def to_parquet(mo: MultiObjectiveDataset, path: PathLike) -> None:
    mo.dataset.with_format(None).to_parquet(str(path))
    _write_sidecar(mo, path)


def to_csv(mo: MultiObjectiveDataset, path: PathLike) -> None:
    """CSV with vector cells (and chat prompt/completion cells) JSON-encoded, plus the sidecar."""
    chat = bool(mo.conversational)
    json_columns = set(VECTOR_COLUMNS) | (set(TEXT_COLUMNS[mo.kind]) if chat else set())
    columns = mo.dataset.column_names
    bad = [c for c in columns if c not in json_columns and not isinstance(mo.dataset.features[c], datasets.Value)]
    if bad:
        raise ValueError(f"cannot write columns {bad} to CSV: only text/number columns and the contract's list "
                         "columns are supported; drop them or use to_jsonl/to_parquet")
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in _plain_rows(mo):
            writer.writerow([json.dumps(row[c], ensure_ascii=False) if c in json_columns else row[c] for c in columns])
    _write_sidecar(mo, path)


# ----------------------------------------------------------------------------------------------
# the single entry point
# ----------------------------------------------------------------------------------------------
def _from_loaded(loaded: Any, source: str, split: str | None, objectives: Sequence[str] | None,
                 kind: Kind | None, conversational: bool | None) -> MultiObjectiveDataset:
    if isinstance(loaded, datasets.DatasetDict):
        names = list(loaded.keys())
        if split is None:
            if len(names) != 1:
                raise ValueError(f"{source}: holds splits {names}; pass split=")
            split = names[0]
        if split not in loaded:
            raise ValueError(f"{source}: no split {split!r}; available splits: {names}")
        return from_hf_dataset(loaded[split], objectives, kind, f"{source} [split {split}]", conversational)
    if split is not None:
        raise ValueError(f"{source}: split={split!r} was given but the source is a single dataset, not a DatasetDict")
    return from_hf_dataset(loaded, objectives, kind, source, conversational)


def load_multi_objective(
    source: MultiObjectiveDataset | datasets.Dataset | datasets.DatasetDict | Sequence[Mapping[str, Any]] | PathLike,
    objectives: Sequence[str] | None = None,
    kind: Kind | None = None,
    split: str | None = None,
    conversational: bool | None = None,
) -> MultiObjectiveDataset:
    """Load any supported source as a validated :class:`MultiObjectiveDataset`.

    Args:
        source: a ``MultiObjectiveDataset``; a ``datasets.Dataset`` or
            ``DatasetDict``; a list of row dicts; a path to a ``.jsonl``,
            ``.parquet`` or ``.csv`` file or to a ``save_to_disk`` folder.
        objectives: ordered objective names. Required unless stored with the
            data (``info.description`` or sidecar); if both, they must agree.
        kind: ``"pairwise"``/``"pointwise"``; inferred from the columns if None.
        split: which split of a ``DatasetDict`` (needed when it has several);
            an error for single-dataset sources.
        conversational: expected prompt/completion format (True: chat lists);
            for CSV it also says whether those cells hold JSON message lists.

    Raises:
        DatasetValidationError: the data breaks the contract (message names the
            file, row, line, column and what was expected).
        EmptyDataError: a file or ``save_to_disk`` folder holds no rows (a
            ``ValueError`` naming it; in-memory sources may be empty).
    """
    if isinstance(source, MultiObjectiveDataset):
        if split is not None:
            raise ValueError("split= does not apply to a MultiObjectiveDataset")
        stored = {"objectives": source.objectives, "kind": source.kind, "conversational": source.conversational}
        _resolve_metadata(stored, objectives, kind, conversational, source.source or "MultiObjectiveDataset")
        return source
    if isinstance(source, (datasets.Dataset, datasets.DatasetDict)):
        return _from_loaded(source, "in-memory datasets." + type(source).__name__, split, objectives, kind,
                            conversational)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            loaded = datasets.load_from_disk(str(path))
            mo = _from_loaded(loaded, str(path), split, objectives, kind, conversational)
            if len(mo) == 0:
                raise EmptyDataError(mo.source, "saved dataset")
            return mo
        if split is not None:
            raise ValueError(f"{path}: split={split!r} was given but a file holds a single split")
        return load_file(path, objectives, kind, conversational)
    if isinstance(source, Sequence):
        if split is not None:
            raise ValueError("split= does not apply to a list of rows")
        if objectives is None:
            raise validation_error("list of rows", "objective names are not stored in a list of rows: pass "
                                                   "objectives=[...]")
        return from_rows(source, objectives, kind, "list of rows", None, conversational)
    raise TypeError(f"unsupported source type {type(source).__name__}; expected a MultiObjectiveDataset, "
                    "datasets.Dataset/DatasetDict, list of dicts or a path")


__all__ = [
    "DatasetValidationError", "EmptyDataError", "ValidationIssue", "dataset_from_columns", "from_hf_dataset",
    "from_rows", "load_file", "load_from_disk", "load_multi_objective", "read_csv_rows", "read_jsonl_rows",
    "read_parquet_rows", "save_to_disk", "sidecar_path", "to_csv", "to_jsonl", "to_parquet",
]
