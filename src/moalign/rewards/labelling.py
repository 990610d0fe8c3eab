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

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

import numpy as np
from tqdm.auto import tqdm

from moalign.rewards.base import (
    InvalidScoreError,
    RewardFunction,
    RewardNormalizer,
    TextOrChat,
    validate_scores,
)

try:  # datasets is a dependency, but keep list[dict] usable without it
    from datasets import Dataset
except ImportError:  # pragma: no cover
    Dataset = None  # type: ignore[assignment,misc]

Rows = Union[Sequence[Mapping[str, Any]], "Dataset"]
RewardFns = Union[Sequence[Any], Mapping[str, Any]]
"""K reward functions: a sequence of objects with a ``name`` (e.g. :class:`RewardFunction`), or a
mapping ``{name: function}``. A function is called as ``fn(prompts, completions)``, or through its
``.score(prompts, completions)`` method when it has one and is not a :class:`RewardFunction`."""

__all__ = [
    "RewardFns", "label_pairwise", "objective_names", "pair_preference", "preference_matrix", "score_completions",
    "score_pointwise",
]

LABEL_COLUMNS = ("preference", "scores_a", "scores_b")
MODES = ("hard", "bradley_terry")


def _scorer(fn: Any, name: str) -> Callable[[list, list], Any]:
    """What to call to score with ``fn``: a RewardFunction itself (it validates), else ``.score``, else ``fn``."""
    if isinstance(fn, RewardFunction):
        return fn
    score = getattr(fn, "score", None)
    if callable(score):
        return score
    if callable(fn):
        return fn
    raise TypeError(f"reward function '{name}' is neither callable nor has a .score(prompts, completions) method")


def _named_scorers(reward_fns: RewardFns) -> list[tuple[str, Callable[[list, list], Any]]]:
    """``(name, callable)`` per objective, in order; names must be unique and at least one is needed."""
    if isinstance(reward_fns, Mapping):
        named = [(str(name), _scorer(fn, str(name))) for name, fn in reward_fns.items()]
    else:
        named = []
        for i, fn in enumerate(reward_fns):
            name = getattr(fn, "name", None)
            if not isinstance(name, str) or not name:
                raise ValueError(f"reward function {i} ({fn!r}) has no .name; pass a mapping {{name: fn}} instead")
            named.append((name, _scorer(fn, name)))
    if not named:
        raise ValueError("no reward functions given: at least one objective is needed")
    names = [n for n, _ in named]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"reward functions must have unique names; duplicated: {duplicates}")
    return named


def objective_names(reward_fns: RewardFns) -> list[str]:
    """The objective names of K reward functions, in order (their ``name`` s or mapping keys; must be unique)."""
    return [name for name, _ in _named_scorers(reward_fns)]


def _in_context(exc: Exception, context: str, name: str) -> Exception:
    """A ValueError/TypeError (as ``exc``) saying "while scoring <context> with reward function '<name>': <exc>"."""
    kind = TypeError if isinstance(exc, TypeError) else ValueError
    return kind(f"while scoring {context} with reward function '{name}': {exc}")


def score_completions(
    prompts: Sequence[TextOrChat],
    completions: Sequence[TextOrChat],
    reward_fns: RewardFns,
    *,
    batch_size: int | None = None,
    show_progress: bool = False,
    context: str | None = None,
) -> np.ndarray:
    """Scores of each (prompt, completion) under each reward function: array of shape ``(n, K)``.

    The one scoring loop of moalign (labelling, the data recipes and evaluation all use it). Column k
    is reward function k. Each function is called on ``batch_size`` pairs at a time (all at once when
    ``None``), and every output is checked by :func:`~moalign.rewards.base.validate_scores`: a wrong
    count, a non-numeric or a non-finite score is an error naming the function; a bad score raises
    :class:`~moalign.rewards.base.InvalidScoreError` whose ``index`` is the row in ``prompts``. With
    ``context`` (e.g. ``"policy 'base'"``) every error raised while scoring starts with
    "while scoring <context> with reward function '<name>'". Nothing is coerced.
    """
    named = _named_scorers(reward_fns)
    prompts, completions = list(prompts), list(completions)
    n = len(prompts)
    if len(completions) != n:
        message = f"{len(completions)} completions for {n} prompts; they must pair up one to one"
        raise ValueError(f"while scoring {context}: {message}" if context else message)
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 or None, got {batch_size}")
    step = batch_size or max(n, 1)
    out = np.empty((n, len(named)), dtype=float)
    with tqdm(total=len(named) * len(range(0, n, step)), desc="scoring", disable=not show_progress) as bar:
        for k, (name, score) in enumerate(named):
            for start in range(0, n, step):
                stop = min(start + step, n)
                try:
                    out[start:stop, k] = validate_scores(score(prompts[start:stop], completions[start:stop]),
                                                         stop - start, name)
                except (ValueError, TypeError) as exc:
                    error = exc.shifted(start) if isinstance(exc, InvalidScoreError) and start else exc
                    if context is not None:
                        raise _in_context(error, context, name) from exc
                    if error is exc:
                        raise
                    raise error from None
                bar.update(1)
    return out


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """The logistic function without overflow and without cancellation for large negative ``z``."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def preference_matrix(
    scores_a: Any,
    scores_b: Any,
    mode: str = "hard",
    temperature: float | Sequence[float] = 1.0,
) -> np.ndarray:
    """Preferences of n pairs on K objectives, from score arrays of shape ``(n, K)``; see the module doc.

    The one implementation of labels from scores (:func:`pair_preference` is the one-pair view of it).
    """
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
    return _sigmoid((a - b) / temp)


def pair_preference(scores_a: Sequence[float], scores_b: Sequence[float],
                    temperature: float | Sequence[float] | None = None) -> list[float]:
    """Per-objective probability that a ≻ b for one pair, from its two score vectors (K floats each).

    ``temperature=None``: hard labels 1 if s_a > s_b, 0 if s_a < s_b, 0.5 on a tie. Otherwise the
    Bradley-Terry probability σ((s_a − s_b)/T) (MOPO paper §2, BT(r)); ``temperature`` is one
    positive number or one per objective. Computed by :func:`preference_matrix` on a one-row batch.
    """
    if len(scores_a) != len(scores_b):
        raise ValueError(f"score vectors differ in length: {len(scores_a)} vs {len(scores_b)}")
    mode = "hard" if temperature is None else "bradley_terry"
    temp = 1.0 if temperature is None else temperature
    return preference_matrix([list(scores_a)], [list(scores_b)], mode, temp)[0].tolist()


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
    reward_fns: RewardFns,
    mode: str = "hard",
    temperature: float | Sequence[float] = 1.0,
    normalizer: RewardNormalizer | None = None,
    fit_normalizer: bool = False,
    overwrite: bool = False,
    show_progress: bool = False,
    batch_size: int | None = None,
) -> Rows:
    """Add ``preference``, ``scores_a``, ``scores_b`` (K floats each) to pairwise rows.

    Args:
        data: rows with ``prompt``, ``completion_a``, ``completion_b`` (text or chat), as a list of
            dicts or a ``datasets.Dataset``; the same kind is returned, other columns kept.
        reward_fns: the K reward functions (see :data:`RewardFns`); objective k is ``reward_fns[k].name``
            (or the k-th key of a mapping).
        mode: ``"hard"`` (1/0, ties 0.5) or ``"bradley_terry"`` (sigmoid of the score gap / temperature).
        temperature: Bradley-Terry temperature, one float or one per objective (ignored in hard mode).
        normalizer: optional :class:`RewardNormalizer` applied to the scores before labelling.
        fit_normalizer: fit ``normalizer`` on the pooled a- and b-scores of ``data`` first. Without it
            the normaliser must already be fitted (e.g. loaded from a run).
        overwrite: replace existing label columns instead of raising.
        show_progress: tqdm bar over the scoring calls.
        batch_size: (prompt, completion) pairs per reward-function call (all at once when None); a bad
            score's :class:`InvalidScoreError` ``index`` is ``i`` for row i's a and ``n + i`` for its b.
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
        columns["prompt"] * 2, columns["completion_a"] + columns["completion_b"], reward_fns,
        show_progress=show_progress, batch_size=batch_size,
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
    preference = preference_matrix(scores_a, scores_b, mode, temperature)
    return _attach(
        data,
        is_dataset,
        {"preference": preference.tolist(), "scores_a": scores_a.tolist(), "scores_b": scores_b.tolist()},
    )


def score_pointwise(
    data: Rows,
    reward_fns: RewardFns,
    normalizer: RewardNormalizer | None = None,
    overwrite: bool = False,
    show_progress: bool = False,
    batch_size: int | None = None,
) -> Rows:
    """Add ``scores`` (K floats) to pointwise rows with ``prompt`` and ``completion`` (docs/design.md, "Data contract").

    ``batch_size`` rows per reward-function call (all at once when None; see :func:`score_completions`).
    """
    names = objective_names(reward_fns)
    is_dataset = Dataset is not None and isinstance(data, Dataset)
    existing = data.column_names if is_dataset else [c for row in data for c in row] if data else []
    if "scores" in existing and not overwrite:
        raise ValueError("data already has a 'scores' column; pass overwrite=True to replace it")
    columns, is_dataset = _columns(data, ("prompt", "completion"), overwrite=True)
    scores = score_completions(columns["prompt"], columns["completion"], reward_fns, show_progress=show_progress,
                               batch_size=batch_size)
    if normalizer is not None:
        if normalizer.objectives is not None and list(normalizer.objectives) != names:
            raise ValueError(f"normalizer objectives {normalizer.objectives} differ from the reward functions {names}")
        scores = normalizer.transform(scores)
    return _attach(data, is_dataset, {"scores": scores.tolist()})
