"""Label pairwise data with K reward functions (scores -> multi-objective preferences).

Produces rows in the pairwise data contract (docs/design.md, "Data contract"): ``prompt``,
``completion_a``, ``completion_b``, ``preference`` (K floats in [0, 1], the
probability/label that a is preferred to b on objective k), ``scores_a``, ``scores_b``.
The order of the K objectives is the order of ``reward_fns`` (their ``name`` s, see
:func:`objective_names`).

Two labelling modes, per objective k with scores s_a, s_b:

- ``"hard"``: 1 if s_a > s_b, 0 if s_a < s_b, and **0.5 for an exact tie** (neither
  completion is preferred; a tie carries no preference, and 0.5 keeps the label
  symmetric under swapping a and b, which MOPO's symmetric augmentation relies on);
- ``"bradley_terry"``: sigmoid((s_a - s_b) / temperature_k), the Bradley-Terry
  probability (Bradley & Terry, 1952; the reward-model likelihood of MOPO App. A.6.1).

With a ``normalizer`` the scores are normalised first, and ``scores_a``/``scores_b``
hold the normalised scores that the preferences were computed from (invert with
``normalizer.inverse_transform``). Without one they hold the raw scores.

Input and output are the same kind: a list of dicts, or a ``datasets.Dataset``. Other
columns are kept. Existing ``preference``/``scores_a``/``scores_b`` columns are an error
unless ``overwrite=True``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Union

import numpy as np
from tqdm.auto import tqdm

from moalign.rewards.base import RewardFunction, RewardNormalizer, TextOrChat

try:  # datasets is a dependency, but keep list[dict] usable without it
    from datasets import Dataset
except ImportError:  # pragma: no cover
    Dataset = None  # type: ignore[assignment,misc]

Rows = Union[Sequence[Mapping[str, Any]], "Dataset"]

__all__ = ["label_pairwise", "objective_names", "preferences_from_scores", "score_completions", "score_pointwise"]

LABEL_COLUMNS = ("preference", "scores_a", "scores_b")
MODES = ("hard", "bradley_terry")


def objective_names(reward_fns: Sequence[RewardFunction]) -> list[str]:
    """The objective names of a labelled dataset: the reward functions' names, in order (must be unique)."""
    names = [fn.name for fn in reward_fns]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"reward functions must have unique names; duplicated: {duplicates}")
    return names


def score_completions(
    prompts: Sequence[TextOrChat],
    completions: Sequence[TextOrChat],
    reward_fns: Sequence[RewardFunction],
    show_progress: bool = False,
) -> np.ndarray:
    """Scores of each (prompt, completion) under each reward function: array of shape ``(n, K)``."""
    if not reward_fns:
        raise ValueError("need at least one reward function")
    objective_names(reward_fns)
    columns = []
    for fn in tqdm(reward_fns, desc="reward functions", disable=not show_progress):
        columns.append(fn(list(prompts), list(completions)))  # validated by RewardFunction.__call__
    return np.asarray(columns, dtype=float).T.reshape(len(prompts), len(reward_fns))


def preferences_from_scores(
    scores_a: Any,
    scores_b: Any,
    mode: str = "hard",
    temperature: float | Sequence[float] = 1.0,
) -> np.ndarray:
    """Per-objective preference that a beats b, from score arrays of shape ``(n, K)``; see the module doc."""
    a, b = np.asarray(scores_a, dtype=float), np.asarray(scores_b, dtype=float)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"scores_a and scores_b must both have shape (n, K); got {a.shape} and {b.shape}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "hard":
        return np.where(a > b, 1.0, np.where(a < b, 0.0, 0.5))
    temp = np.asarray(temperature, dtype=float)
    if temp.ndim > 1 or (temp.ndim == 1 and temp.shape[0] != a.shape[1]):
        raise ValueError(
            f"temperature must be a float or a list of {a.shape[1]} floats (one per objective), got {temperature!r}"
        )
    if not np.all(np.isfinite(temp)) or not np.all(temp > 0):
        raise ValueError(f"temperature must be positive and finite, got {temperature!r}")
    z = (a - b) / temp
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # = sigmoid(z), without overflow for large |z|


def _check_rows(rows: Sequence[Mapping[str, Any]], required: Sequence[str], overwrite: bool) -> None:
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise TypeError(f"row {i}: expected a dict, got {type(row).__name__}")
        for column in required:
            if column not in row:
                raise KeyError(f"row {i}: missing column {column!r} (required: {list(required)})")
            if row[column] is None:
                raise ValueError(f"row {i}, column {column!r}: value is None; expected text or a chat message list")
        if not overwrite:
            present = [c for c in LABEL_COLUMNS if c in row]
            if present:
                raise ValueError(
                    f"row {i} already has column(s) {present}; pass overwrite=True to replace them"
                )


def _columns(data: Rows, names: Sequence[str], overwrite: bool) -> tuple[dict[str, list], bool]:
    is_dataset = Dataset is not None and isinstance(data, Dataset)
    if is_dataset:
        missing = [c for c in names if c not in data.column_names]
        if missing:
            raise KeyError(f"dataset is missing column(s) {missing}; has {data.column_names}")
        present = [c for c in LABEL_COLUMNS if c in data.column_names]
        if present and not overwrite:
            raise ValueError(f"dataset already has column(s) {present}; pass overwrite=True to replace them")
        columns = {c: list(data[c]) for c in names}
        for c, values in columns.items():
            for i, value in enumerate(values):
                if value is None:
                    raise ValueError(f"row {i}, column {c!r}: value is None; expected text or a chat message list")
        return columns, True
    if isinstance(data, (str, bytes, Mapping)) or not isinstance(data, Sequence):
        raise TypeError(f"data must be a list of dicts or a datasets.Dataset, got {type(data).__name__}")
    _check_rows(data, names, overwrite)
    return {c: [row[c] for row in data] for c in names}, False


def _attach(data: Rows, is_dataset: bool, new_columns: dict[str, list]) -> Rows:
    if is_dataset:
        out = data.remove_columns([c for c in new_columns if c in data.column_names])
        for column, values in new_columns.items():
            out = out.add_column(column, values)
        return out
    return [{**row, **{c: v[i] for c, v in new_columns.items()}} for i, row in enumerate(data)]


def label_pairwise(
    data: Rows,
    reward_fns: Sequence[RewardFunction],
    mode: str = "hard",
    temperature: float | Sequence[float] = 1.0,
    normalizer: RewardNormalizer | None = None,
    fit_normalizer: bool = False,
    overwrite: bool = False,
    show_progress: bool = False,
) -> Rows:
    """Add ``preference``, ``scores_a``, ``scores_b`` (K floats each) to pairwise rows.

    Args:
        data: rows with ``prompt``, ``completion_a``, ``completion_b`` (text or chat), as a list of
            dicts or a ``datasets.Dataset``; the same kind is returned, other columns kept.
        reward_fns: the K reward functions; objective k is ``reward_fns[k].name``.
        mode: ``"hard"`` (1/0, ties 0.5) or ``"bradley_terry"`` (sigmoid of the score gap / temperature).
        temperature: Bradley-Terry temperature, one float or one per objective (ignored in hard mode).
        normalizer: optional :class:`RewardNormalizer` applied to the scores before labelling.
        fit_normalizer: fit ``normalizer`` on the pooled a- and b-scores of ``data`` first. Without it
            the normaliser must already be fitted (e.g. loaded from a run).
        overwrite: replace existing label columns instead of raising.
        show_progress: tqdm bar over reward functions.
    """
    names = objective_names(reward_fns)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if fit_normalizer and normalizer is None:
        raise ValueError("fit_normalizer=True needs a normalizer")
    columns, is_dataset = _columns(data, ("prompt", "completion_a", "completion_b"), overwrite)
    n = len(columns["prompt"])
    if n == 0:
        raise ValueError("no rows to label")

    # One call per reward function on the 2n (prompt, completion) pairs: a's then b's.
    both = score_completions(
        columns["prompt"] * 2, columns["completion_a"] + columns["completion_b"], reward_fns, show_progress
    )
    if normalizer is not None:
        if normalizer.objectives is None:
            normalizer.objectives = list(names)
        elif list(normalizer.objectives) != names:
            raise ValueError(f"normalizer objectives {normalizer.objectives} differ from the reward functions {names}")
        if fit_normalizer:
            normalizer.fit(both)
        both = normalizer.transform(both)
    scores_a, scores_b = both[:n], both[n:]
    preference = preferences_from_scores(scores_a, scores_b, mode, temperature)
    return _attach(
        data,
        is_dataset,
        {"preference": preference.tolist(), "scores_a": scores_a.tolist(), "scores_b": scores_b.tolist()},
    )


def score_pointwise(
    data: Rows,
    reward_fns: Sequence[RewardFunction],
    normalizer: RewardNormalizer | None = None,
    overwrite: bool = False,
    show_progress: bool = False,
) -> Rows:
    """Add ``scores`` (K floats) to pointwise rows with ``prompt`` and ``completion`` (docs/design.md, "Data contract")."""
    names = objective_names(reward_fns)
    is_dataset = Dataset is not None and isinstance(data, Dataset)
    existing = data.column_names if is_dataset else [c for row in data for c in row] if data else []
    if "scores" in existing and not overwrite:
        raise ValueError("data already has a 'scores' column; pass overwrite=True to replace it")
    columns, is_dataset = _columns(data, ("prompt", "completion"), overwrite=True)
    scores = score_completions(columns["prompt"], columns["completion"], reward_fns, show_progress)
    if normalizer is not None:
        if normalizer.objectives is not None and list(normalizer.objectives) != names:
            raise ValueError(f"normalizer objectives {normalizer.objectives} differ from the reward functions {names}")
        scores = normalizer.transform(scores)
    return _attach(data, is_dataset, {"scores": scores.tolist()})
