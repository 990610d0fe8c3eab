"""The reward-function interface, an adapter for plain callables, and reward normalisation.

A reward function maps ``(prompts, completions)`` -- two equally long lists whose
items are plain text or TRL-style chat message lists -- to one finite float per
pair. Every reward in moalign (HF reward models, offline text scorers, user
callables) goes through :class:`RewardFunction.__call__`, which validates the
inputs and the outputs, so a bad score is reported with the reward function's
name and the index of the offending item instead of propagating as a NaN.

Instances are also valid TRL ``reward_funcs``: TRL's ``GRPOTrainer`` calls
``reward_func(prompts=..., completions=..., completion_ids=..., **columns)``
and names the function by its ``__name__`` (``trl.trainer.utils.get_callable_name``);
extra keyword arguments are accepted and ignored here.

:class:`RewardNormalizer` holds per-objective z-score or min-max statistics
fitted on data. The MOPO paper (App. A.6.2) normalises rewards "using the mean
and standard [deviation] of the offline dataset"; the statistics are saved as
JSON next to a run so that later scoring uses exactly the same scale.
"""

from __future__ import annotations

import inspect
import json
import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np

from moalign.core.normalization import NORMALIZATION_METHODS, fit_normalization, normalize

Message = Mapping[str, Any]
Conversation = Sequence[Message]
TextOrChat = Union[str, Conversation]

__all__ = [
    "CallableReward",
    "Conversation",
    "RewardFunction",
    "RewardNormalizer",
    "TextOrChat",
    "InvalidScoreError",
    "NonNumericScoreError",
    "completion_text",
    "is_conversational",
    "joined_prompt_text",
    "last_user_message",
    "validate_scores",
]


# --------------------------------------------------------------------------- chat helpers


def is_conversational(item: Any) -> bool:
    """True for a TRL-style chat: a list/tuple of dicts with ``role`` and ``content`` keys."""
    return (
        isinstance(item, (list, tuple))
        and len(item) > 0
        and all(isinstance(m, Mapping) and "role" in m and "content" in m for m in item)
    )


def _check_messages(item: Any, what: str) -> Conversation:
    if not is_conversational(item):
        raise TypeError(
            f"{what} must be a string or a non-empty list of {{'role': ..., 'content': ...}} messages, "
            f"got {type(item).__name__}: {str(item)[:80]!r}"
        )
    for j, message in enumerate(item):
        if not isinstance(message["content"], str):
            raise TypeError(
                f"{what}, message {j}: 'content' must be a string (multimodal content parts are not supported), "
                f"got {type(message['content']).__name__}"
            )
    return item


def last_user_message(prompt: TextOrChat, what: str = "prompt") -> str:
    """The question a prompt asks: the string itself, or for a chat the content of its *last user* message.

    The last user message is the question being answered; system messages (e.g. MO-ODPO's weight
    instructions) and earlier turns are deliberately not part of it. Reward functions that compare a
    completion with the question use this. Use a chat-aware input format
    (``HFRewardModel(input_format="chat_template" or "hh")``) when the whole conversation matters, and
    :func:`joined_prompt_text` for all of a prompt's text.
    """
    if isinstance(prompt, str):
        return prompt
    messages = _check_messages(prompt, what)
    user = [m["content"] for m in messages if m["role"] == "user"]
    if not user:
        raise ValueError(f"{what} is a chat without a 'user' message; roles: {[m['role'] for m in messages]}")
    return user[-1]


def _joined_contents(item: TextOrChat, what: str) -> str:
    """The string itself, or the contents of all chat messages joined by newlines (roles dropped)."""
    if isinstance(item, str):
        return item
    return "\n".join(m["content"] for m in _check_messages(item, what))


def joined_prompt_text(prompt: TextOrChat, what: str = "prompt") -> str:
    """All of a prompt's text: the string itself, or every message's content (system, user, assistant) joined by newlines.

    For uses that need the whole conversation as one plain text, e.g. embedding prompts to cluster them;
    :func:`last_user_message` is the question alone.
    """
    return _joined_contents(prompt, what)


def completion_text(completion: TextOrChat, what: str = "completion") -> str:
    """The text of a completion: the string itself, or the contents of a chat completion joined by newlines.

    TRL represents a conversational completion as ``[{"role": "assistant", "content": "..."}]``.
    """
    return _joined_contents(completion, what)


# --------------------------------------------------------------------------- validation


def _as_float(value: Any) -> float | None:
    """``value`` as a Python float if it is a real number (incl. numpy/torch scalars), else ``None``."""
    if isinstance(value, str) or value is None:
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # 0-d numpy array / torch tensor
        item = value.item()
        return float(item) if isinstance(item, numbers.Real) else None
    return None


class InvalidScoreError(ValueError):
    """A reward function returned a score that is not a finite number.

    ``reward`` (the function's name), ``index`` (the position in its output) and ``value`` (the bad
    score) are kept as attributes, so that callers can report the problem in their own terms (the data
    recipes name the dataset row and column) without parsing the message.
    """

    problem = "non-finite"

    def __init__(self, reward: str, index: int, value: Any) -> None:
        self.reward, self.index, self.value = reward, index, value
        super().__init__(self._message())

    def _message(self) -> str:
        return (f"reward function '{self.reward}' returned a non-finite score at index {self.index}: {self.value}; "
                "expected a finite float")

    def shifted(self, offset: int) -> InvalidScoreError:
        """The same error with ``index`` moved by ``offset`` (a batch's position in the whole list)."""
        return type(self)(self.reward, self.index + offset, self.value)

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.reward, self.index, self.value)


class NonNumericScoreError(InvalidScoreError, TypeError):
    """A reward function returned a score that is not a number at all (a string, ``None``, ...)."""

    problem = "non-numeric"

    def _message(self) -> str:
        return (f"reward function '{self.reward}' returned a non-numeric score at index {self.index}: "
                f"{self.value!r} ({type(self.value).__name__}); expected a finite float")


def validate_scores(scores: Any, expected_length: int, name: str) -> list[float]:
    """Check a reward function's output: a sequence of ``expected_length`` finite real numbers.

    Raises ``ValueError``/``TypeError`` naming the reward function; a bad score raises
    :class:`InvalidScoreError` / :class:`NonNumericScoreError` with its index and value.
    Returns the scores as a list of Python floats (a numeric conversion, not a coercion of bad values).
    """
    if isinstance(scores, (str, bytes, Mapping)) or not hasattr(scores, "__len__"):
        raise TypeError(
            f"reward function '{name}' must return a list of floats, got {type(scores).__name__}"
        )
    if hasattr(scores, "ndim") and scores.ndim != 1:
        raise ValueError(
            f"reward function '{name}' must return a 1-D sequence of scores, got shape {tuple(scores.shape)}"
        )
    if len(scores) != expected_length:
        raise ValueError(
            f"reward function '{name}' returned {len(scores)} scores for {expected_length} completions; "
            "expected exactly one score per (prompt, completion) pair"
        )
    out: list[float] = []
    for i, value in enumerate(scores):
        as_float = _as_float(value)
        if as_float is None:
            raise NonNumericScoreError(name, i, value)
        if not math.isfinite(as_float):
            raise InvalidScoreError(name, i, as_float)
        out.append(as_float)
    return out


# --------------------------------------------------------------------------- interface


class RewardFunction(ABC):
    """A reward: ``(prompts, completions) -> list[float]``, one finite score per pair (higher is better).

    Subclasses implement :meth:`score`; callers use the instance as a function. ``__call__``
    checks that ``prompts`` and ``completions`` have the same length, calls :meth:`score`,
    and validates its output (length, finiteness), naming ``self.name`` and the index on error.

    The call signature matches TRL's ``reward_funcs`` convention (keyword ``prompts=``,
    ``completions=``, extra keyword columns ignored), so an instance can be passed to
    ``trl.GRPOTrainer(reward_funcs=[...])`` directly; ``__name__`` is set to ``name``
    for TRL's logging.
    """

    name: str

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a reward function needs a non-empty string name, got {name!r}")
        self.name = name
        self.__name__ = name  # trl.trainer.utils.get_callable_name reads __name__

    @abstractmethod
    def score(self, prompts: list[TextOrChat], completions: list[TextOrChat]) -> Sequence[float]:
        """Score each (prompt, completion) pair; inputs are already length-checked lists."""

    def __call__(
        self,
        prompts: Sequence[TextOrChat] | None = None,
        completions: Sequence[TextOrChat] | None = None,
        **kwargs: Any,
    ) -> list[float]:
        if prompts is None or completions is None:
            raise TypeError(f"reward function '{self.name}' needs both prompts and completions")
        prompts, completions = list(prompts), list(completions)
        if len(prompts) != len(completions):
            raise ValueError(
                f"reward function '{self.name}' got {len(prompts)} prompts but {len(completions)} completions; "
                "they must pair up one to one"
            )
        if not prompts:
            return []
        return validate_scores(self._score_with_kwargs(prompts, completions, kwargs), len(prompts), self.name)

    def _score_with_kwargs(self, prompts: list[TextOrChat], completions: list[TextOrChat], kwargs: dict) -> Any:
        """Hook for wrappers that forward TRL's extra keyword columns; the default ignores them."""
        return self.score(prompts, completions)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class CallableReward(RewardFunction):
    """Wrap a plain Python callable as a :class:`RewardFunction`.

    Two calling conventions are supported:

    - ``"keyword"`` -- TRL's ``reward_funcs`` style: ``fn(prompts=..., completions=..., **kwargs)``
      (TRL 1.x ``GRPOTrainer._calculate_rewards`` passes ``prompts``, ``completions``,
      ``completion_ids`` and the dataset's other columns as keywords). Extra keyword arguments
      given to this wrapper's ``__call__`` are forwarded in this mode.
    - ``"positional"`` -- ``fn(prompts, completions)``.

    ``"auto"`` (default) inspects the signature: keyword style when ``fn`` takes ``**kwargs``
    or has parameters named ``prompts``/``completions``; positional otherwise (also when the
    signature cannot be inspected). The name defaults to ``fn.__name__`` (as TRL names it).
    """

    def __init__(self, fn: Callable[..., Sequence[float]], name: str | None = None, convention: str = "auto") -> None:
        if not callable(fn):
            raise TypeError(f"CallableReward needs a callable, got {type(fn).__name__}")
        if convention not in ("auto", "keyword", "positional"):
            raise ValueError(f"convention must be 'auto', 'keyword' or 'positional', got {convention!r}")
        if name is None:
            inner = fn
            while hasattr(inner, "func"):  # functools.partial
                inner = inner.func
            name = getattr(inner, "__name__", type(inner).__name__)
        super().__init__(name)
        self.fn = fn
        self.convention = self._detect(fn) if convention == "auto" else convention

    @staticmethod
    def _detect(fn: Callable[..., Any]) -> str:
        try:
            params = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):
            return "positional"
        names = {p.name for p in params}
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params) or {"prompts", "completions"} & names:
            return "keyword"
        return "positional"

    def _score_with_kwargs(self, prompts: list[TextOrChat], completions: list[TextOrChat], kwargs: dict) -> Any:
        if self.convention == "keyword":
            return self.fn(prompts=prompts, completions=completions, **kwargs)
        return self.fn(prompts, completions)

    def score(self, prompts: list[TextOrChat], completions: list[TextOrChat]) -> Sequence[float]:
        return self._score_with_kwargs(prompts, completions, {})


# --------------------------------------------------------------------------- normalisation


class RewardNormalizer:
    """Per-objective affine normalisation of reward scores, fitted on data.

    - ``method="zscore"``: ``(s - mean) / std`` with the population std (ddof=0, as ``np.std``;
      the MOPO/RiC recipe of normalising by the offline dataset's mean and standard deviation).
    - ``method="minmax"``: ``(s - min) / (max - min)``; the fitted data map onto [0, 1], new data
      outside the fitted range map outside [0, 1] (nothing is clipped).

    Scores are arrays of shape ``(n,)`` for one objective or ``(n, K)`` for K objectives.
    ``objectives`` names the columns (used in error messages and saved with the statistics).
    Transforming with unfitted statistics raises. The statistics are those of
    :func:`moalign.core.normalization.fit_normalization`;
    an objective whose scores are all equal raises, naming it (``zero_spread='raise'``, offline data), or gets
    range 1 (``zero_spread='unit'``, the online methods' first-batch fit).
    """

    METHODS = NORMALIZATION_METHODS

    def __init__(self, method: str = "zscore", objectives: Sequence[str] | None = None) -> None:
        if method not in self.METHODS:
            raise ValueError(f"normalisation method must be one of {self.METHODS}, got {method!r}")
        self.method = method
        self.objectives: list[str] | None = list(objectives) if objectives is not None else None
        self.shift: np.ndarray | None = None  # mean or min
        self.scale: np.ndarray | None = None  # std or (max - min)
        self.count: int | None = None

    @property
    def is_fitted(self) -> bool:
        return self.shift is not None

    def _as_matrix(self, scores: Any, what: str) -> tuple[np.ndarray, bool]:
        arr = np.asarray(scores, dtype=float)
        one_d = arr.ndim == 1
        if one_d:
            arr = arr[:, None]
        if arr.ndim != 2:
            raise ValueError(f"{what}: scores must have shape (n,) or (n, K), got {arr.shape}")
        if arr.shape[0] == 0:
            raise ValueError(f"{what}: scores are empty")
        if not np.all(np.isfinite(arr)):
            row, col = np.argwhere(~np.isfinite(arr))[0]
            raise ValueError(
                f"{what}: non-finite score {arr[row, col]} at row {row}, objective {self._objective_name(col)!r}"
            )
        return arr, one_d

    def _objective_name(self, k: int) -> str:
        if self.objectives is not None and k < len(self.objectives):
            return self.objectives[k]
        return f"objective {k}"

    def fit(self, scores: Any, zero_spread: str = "raise") -> RewardNormalizer:
        """Fit the statistics on ``scores`` (shape ``(n,)`` or ``(n, K)``); returns ``self``.

        ``zero_spread``: what a constant objective gets (:mod:`moalign.core.normalization`): ``'raise'`` (offline
        data: an error naming the objective) or ``'unit'`` (range 1, shift only: the online first-batch fits).
        """
        arr, _ = self._as_matrix(scores, "RewardNormalizer.fit")
        n_objectives = arr.shape[1]
        if self.objectives is not None and len(self.objectives) != n_objectives:
            raise ValueError(
                f"RewardNormalizer.fit: scores have {n_objectives} objective column(s) but objectives are "
                f"{self.objectives}"
            )
        names = [self._objective_name(k) for k in range(n_objectives)]
        self.shift, self.scale = fit_normalization(arr, self.method, zero_spread, names, "RewardNormalizer.fit")
        self.count = int(arr.shape[0])
        return self

    def _check_fitted(self, arr: np.ndarray, what: str) -> None:
        if not self.is_fitted:
            raise RuntimeError(f"RewardNormalizer.{what}: statistics are not fitted; call fit() or load() first")
        if arr.shape[1] != self.shift.shape[0]:
            raise ValueError(
                f"RewardNormalizer.{what}: scores have {arr.shape[1]} objective column(s), statistics were fitted "
                f"on {self.shift.shape[0]}"
            )

    def transform(self, scores: Any) -> np.ndarray:
        """Normalised scores, same shape as the input."""
        arr, one_d = self._as_matrix(scores, "RewardNormalizer.transform")
        self._check_fitted(arr, "transform")
        out = normalize(arr, self.shift, self.scale)
        return out[:, 0] if one_d else out

    def fit_transform(self, scores: Any) -> np.ndarray:
        return self.fit(scores).transform(scores)

    def inverse_transform(self, scores: Any) -> np.ndarray:
        """Map normalised scores back to the raw scale."""
        arr, one_d = self._as_matrix(scores, "RewardNormalizer.inverse_transform")
        self._check_fitted(arr, "inverse_transform")
        out = arr * self.scale + self.shift
        return out[:, 0] if one_d else out

    def to_dict(self) -> dict[str, Any]:
        if not self.is_fitted:
            raise RuntimeError("RewardNormalizer.to_dict: statistics are not fitted; nothing to save")
        names = ("mean", "std") if self.method == "zscore" else ("min", "range")
        return {
            "method": self.method,
            "objectives": self.objectives,
            "count": self.count,
            names[0]: self.shift.tolist(),
            names[1]: self.scale.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "dict") -> RewardNormalizer:
        method = data.get("method")
        if method not in cls.METHODS:
            raise ValueError(f"{source}: 'method' must be one of {cls.METHODS}, got {method!r}")
        keys = ("mean", "std") if method == "zscore" else ("min", "range")
        for key in keys:
            if key not in data:
                raise ValueError(f"{source}: missing key {key!r} for method {method!r}")
        shift = np.asarray(data[keys[0]], dtype=float)
        scale = np.asarray(data[keys[1]], dtype=float)
        if shift.ndim != 1 or shift.shape != scale.shape:
            raise ValueError(f"{source}: {keys[0]!r} and {keys[1]!r} must be equally long lists of floats")
        if not (np.all(np.isfinite(shift)) and np.all(np.isfinite(scale)) and np.all(scale > 0)):
            raise ValueError(f"{source}: statistics must be finite with positive {keys[1]!r}")
        norm = cls(method, data.get("objectives"))
        if norm.objectives is not None and len(norm.objectives) != shift.shape[0]:
            raise ValueError(f"{source}: {len(norm.objectives)} objectives but {shift.shape[0]} statistics")
        norm.shift, norm.scale, norm.count = shift, scale, data.get("count")
        return norm

    def save(self, path: str | Path) -> Path:
        """Write the fitted statistics as JSON; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> RewardNormalizer:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from err
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object with normaliser statistics")
        return cls.from_dict(data, source=str(path))

    def __repr__(self) -> str:
        state = f"fitted on {self.count}" if self.is_fitted else "unfitted"
        return f"RewardNormalizer(method={self.method!r}, objectives={self.objectives}, {state})"
