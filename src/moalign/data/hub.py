"""Recipes for the preference datasets used by the papers (MOPO paper §4.2, App. A.6 Table 2).

Each recipe = a pure per-row function on the exact upstream row format
(tested on hand-made rows; the hub is not reachable in CI) + a ``load_*``
function that calls ``datasets.load_dataset`` and converts. Loaders return
``(MultiObjectiveDataset, ConversionReport)``; a row that cannot be converted
raises :class:`~moalign.data.schema.DatasetValidationError` naming the row,
unless ``on_invalid="drop"``, which leaves it out and counts it by reason.

- ``Anthropic/hh-rlhf``: ``{"chosen": "\\n\\nHuman: ...\\n\\nAssistant: ...", "rejected": ...}``.
  The prompt is the dialogue up to and including the last ``"\\n\\nAssistant:"``;
  the completion is the rest, verbatim (usually starting with a space), so
  ``prompt + completion`` is the original text. ``completion_a`` = chosen.
  Labels come from K reward functions and/or the human label (objective named
  by ``human_objective``, always 1.0 since a = chosen). ``chat=True`` turns the
  dialogue into TRL chat messages (turn contents stripped).
  The ``helpful-base`` / ``harmless-base`` subsets each carry one human label;
  :func:`load_hh_rlhf_helpful_harmless` joins them with conversion (b). They
  were collected on different prompts (helpfulness vs red-teaming
  conversations), so almost no pair occurs in both: with ``missing="drop"``
  the result is (nearly) empty -- the report says how many pairs were dropped.
- ``openai/summarize_from_feedback`` (config ``comparisons``): rows
  ``{"info": {"id", "post", "title", "subreddit", "site", "article"},
  "summaries": [{"text", "policy", "note"}, {...}], "choice": 0|1, "worker",
  "batch", "split", "extra": {"confidence"}}``. Prompt: the paper's instruction
  "Generate a one-sentence summary of this post." in the RiC format
  ``"### Instruction: {instruction} ### Input: {post} ### Response: "`` (post
  newlines flattened to spaces, as RiC does); ``completion_a/_b`` =
  ``summaries[0/1]["text"]``; human objective ("pref") = 1 if ``choice == 0``.
  Rows without a Reddit post (the CNN/DailyMail rows with ``info.article``, in
  the validation split) are invalid rows (``on_invalid="drop"`` counts them).
- ``PKU-Alignment/PKU-SafeRLHF``: rows ``{"prompt", "response_0", "response_1",
  "is_response_0_safe", "is_response_1_safe", "better_response_id",
  "safer_response_id", ...}`` -> objectives ``["helpful", "harmless"]`` with
  labels ``[better_response_id == 0, safer_response_id == 0]``; the safety
  flags are kept as columns ``safe_a``/``safe_b``.

Reward functions: a mapping ``{objective name: function}``; a function is any
callable ``score(prompts, completions) -> list[float]``, an object with such a
``.score`` method, or a :class:`moalign.rewards.RewardFunction`. They are run by
:func:`moalign.rewards.score_completions` (``batch_size`` pairs per call) and
labels from scores follow :func:`moalign.rewards.pair_preference` (hard, or BT
with ``temperature``). ``scores_a``/``scores_b`` are stored when every objective is
a reward function (with a human objective there is no score for it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import datasets
import numpy as np
from tqdm.auto import tqdm

from moalign.data.convert import ConversionReport, pairwise_from_trl
from moalign.data.io import dataset_from_columns
from moalign.data.schema import MultiObjectiveDataset, check_objectives, validation_error
from moalign.rewards.base import InvalidScoreError
from moalign.rewards.labelling import pair_preference, score_completions

HH_RLHF = "Anthropic/hh-rlhf"
SUMMARIZE_FROM_FEEDBACK = "openai/summarize_from_feedback"
PKU_SAFERLHF = "PKU-Alignment/PKU-SafeRLHF"

HH_HUMAN_MARKER = "\n\nHuman:"
HH_ASSISTANT_MARKER = "\n\nAssistant:"
SUMMARY_INSTRUCTION = "Generate a one-sentence summary of this post."
SUMMARY_PROMPT_TEMPLATE = "### Instruction: " + SUMMARY_INSTRUCTION + " ### Input: {post} ### Response: "
PKU_OBJECTIVES = ("helpful", "harmless")

OnInvalid = Literal["error", "drop"]


class RowConversionError(ValueError):
    """An upstream row that does not have the expected format; ``reason`` is a short category for reports."""

    def __init__(self, message: str, reason: str, column: str | None = None):
        super().__init__(message)
        self.reason = reason
        self.column = column


def _require_str(row: Mapping[str, Any], column: str) -> str:
    value = row.get(column)
    if not isinstance(value, str):
        raise RowConversionError(f"expected a string, got {type(value).__name__}", f"bad '{column}'", column)
    return value


def _require_id(row: Mapping[str, Any], column: str) -> int:
    value = row.get(column)
    if isinstance(value, bool) or value not in (0, 1):
        raise RowConversionError(f"expected 0 or 1, got {value!r}", f"bad '{column}'", column)
    return int(value)


# ----------------------------------------------------------------------------------------------
# Anthropic/hh-rlhf
# ----------------------------------------------------------------------------------------------
def split_hh_dialogue(text: str) -> tuple[str, str]:
    """(prompt up to and including the last ``"\\n\\nAssistant:"``, the completion after it)."""
    index = text.rfind(HH_ASSISTANT_MARKER)
    if index < 0:
        raise RowConversionError("no '\\n\\nAssistant:' turn in the dialogue", "no assistant turn")
    cut = index + len(HH_ASSISTANT_MARKER)
    return text[:cut], text[cut:]


def hh_dialogue_to_messages(prompt: str) -> list[dict[str, str]]:
    """TRL chat messages of an hh-rlhf prompt (ending in ``"\\n\\nAssistant:"``, which is dropped)."""
    if not prompt.endswith(HH_ASSISTANT_MARKER):
        raise RowConversionError("prompt does not end with '\\n\\nAssistant:'", "no assistant turn")
    pieces = re.split(r"\n\n(Human|Assistant):", prompt[: -len(HH_ASSISTANT_MARKER)])
    if pieces[0].strip():
        raise RowConversionError(f"dialogue does not start with '\\n\\nHuman:' (starts {pieces[0][:40]!r})",
                                 "no human turn")
    roles = {"Human": "user", "Assistant": "assistant"}
    return [{"role": roles[pieces[i]], "content": pieces[i + 1].strip()} for i in range(1, len(pieces), 2)]


def hh_rlhf_row_to_pair(row: Mapping[str, Any], chat: bool = False) -> dict[str, Any]:
    """``{"prompt", "completion_a" (chosen), "completion_b" (rejected)}`` of one hh-rlhf row."""
    chosen, rejected = _require_str(row, "chosen"), _require_str(row, "rejected")
    try:
        prompt, completion_a = split_hh_dialogue(chosen)
        prompt_b, completion_b = split_hh_dialogue(rejected)
    except RowConversionError as err:
        column = "chosen" if HH_ASSISTANT_MARKER not in chosen else "rejected"
        raise RowConversionError(str(err), err.reason, column) from None
    if prompt != prompt_b:
        raise RowConversionError("chosen and rejected have different dialogues before the last assistant turn",
                                 "chosen/rejected prompts differ", "rejected")
    for column, completion in (("chosen", completion_a), ("rejected", completion_b)):
        if not completion.strip():
            raise RowConversionError("empty final assistant turn", "empty completion", column)
    if chat:
        messages = hh_dialogue_to_messages(prompt)
        return {"prompt": messages, "completion_a": [{"role": "assistant", "content": completion_a.strip()}],
                "completion_b": [{"role": "assistant", "content": completion_b.strip()}]}
    return {"prompt": prompt, "completion_a": completion_a, "completion_b": completion_b}


# ----------------------------------------------------------------------------------------------
# openai/summarize_from_feedback (comparisons)
# ----------------------------------------------------------------------------------------------
def summarize_prompt(post: str, template: str = SUMMARY_PROMPT_TEMPLATE, flatten_newlines: bool = True) -> str:
    """The paper's summarisation prompt for a Reddit post (App. A.6 Table 2, RiC format)."""
    return template.format(post=post.replace("\n", " ") if flatten_newlines else post)


def summarize_comparison_to_pair(row: Mapping[str, Any], template: str = SUMMARY_PROMPT_TEMPLATE,
                                 flatten_newlines: bool = True) -> dict[str, Any]:
    """``{"prompt", "completion_a", "completion_b", "human"}`` of one comparisons row (human = 1 if choice 0)."""
    info = row.get("info")
    if not isinstance(info, Mapping):
        raise RowConversionError(f"expected a dict, got {type(info).__name__}", "bad 'info'", "info")
    post = info.get("post")
    if not isinstance(post, str) or not post.strip():
        raise RowConversionError("no Reddit post in info.post (CNN/DailyMail rows carry info.article instead)",
                                 "no Reddit post", "info")
    summaries = row.get("summaries")
    if not isinstance(summaries, Sequence) or len(summaries) != 2:
        raise RowConversionError(f"expected 2 summaries, got {summaries!r:.80}", "bad 'summaries'", "summaries")
    texts = []
    for j, summary in enumerate(summaries):
        text = summary.get("text") if isinstance(summary, Mapping) else None
        if not isinstance(text, str) or not text.strip():
            raise RowConversionError(f"summary #{j} has no text", "empty summary", "summaries")
        texts.append(text)
    choice = _require_id(row, "choice")
    return {"prompt": summarize_prompt(post, template, flatten_newlines), "completion_a": texts[0],
            "completion_b": texts[1], "human": 1.0 if choice == 0 else 0.0}


# ----------------------------------------------------------------------------------------------
# PKU-Alignment/PKU-SafeRLHF
# ----------------------------------------------------------------------------------------------
def pku_saferlhf_row_to_pair(row: Mapping[str, Any]) -> dict[str, Any]:
    """``{"prompt", "completion_a", "completion_b", "helpful", "harmless", "safe_a", "safe_b"}`` of one row."""
    prompt = _require_str(row, "prompt")
    response_0, response_1 = _require_str(row, "response_0"), _require_str(row, "response_1")
    for column, value in (("prompt", prompt), ("response_0", response_0), ("response_1", response_1)):
        if not value.strip():
            raise RowConversionError("empty text", "empty text", column)
    better, safer = _require_id(row, "better_response_id"), _require_id(row, "safer_response_id")
    safe = []
    for column in ("is_response_0_safe", "is_response_1_safe"):
        if not isinstance(row.get(column), bool):
            raise RowConversionError(f"expected true/false, got {row.get(column)!r}", f"bad '{column}'", column)
        safe.append(row[column])
    return {"prompt": prompt, "completion_a": response_0, "completion_b": response_1,
            "helpful": 1.0 if better == 0 else 0.0, "harmless": 1.0 if safer == 0 else 0.0,
            "safe_a": safe[0], "safe_b": safe[1]}


# ----------------------------------------------------------------------------------------------
# shared machinery
# ----------------------------------------------------------------------------------------------
def _score_column(prompts: list[Any], completions: list[Any], reward_functions: Mapping[str, Any],
                  batch_size: int, source: str | None, column: str) -> np.ndarray:
    """:func:`moalign.rewards.score_completions` on one completion column; a bad score names its row."""
    try:
        return score_completions(prompts, completions, reward_functions, batch_size=batch_size,
                                 show_progress=len(prompts) > batch_size)
    except InvalidScoreError as err:
        raise validation_error(source, f"reward function '{err.reward}' returned {err.value!r}; expected a finite "
                                       "number", row=err.index, column=column) from None


def convert_rows(rows: Iterable[Mapping[str, Any]], row_fn: Callable[[Mapping[str, Any]], dict[str, Any]],
                 on_invalid: OnInvalid, source: str, report: ConversionReport) -> list[dict[str, Any]]:
    """Apply a per-row recipe; invalid rows raise (naming the row) or are counted in ``report``."""
    if on_invalid not in ("error", "drop"):
        raise ValueError(f"on_invalid must be 'error' or 'drop', got {on_invalid!r}")
    if isinstance(rows, datasets.Dataset):
        rows = rows.with_format(None)
    pairs = []
    for i, row in enumerate(tqdm(rows, desc=f"converting {source}", disable=None, mininterval=5)):
        report.rows_in += 1
        try:
            pairs.append(row_fn(row))
        except RowConversionError as err:
            if on_invalid == "error":
                raise validation_error(source, f"{err} (pass on_invalid='drop' to leave such rows out; they are "
                                               "counted in the report)", row=i, column=err.column) from None
            report.drop(err.reason)
    return pairs


def assemble_pairwise(pairs: Sequence[Mapping[str, Any]], label_keys: Mapping[str, str],
                      reward_functions: Mapping[str, Any] | None = None,
                      temperature: float | Sequence[float] | None = None, batch_size: int = 64,
                      extra_columns: Sequence[str] = (), source: str | None = None) -> MultiObjectiveDataset:
    """A pairwise dataset from converted pairs: labels read from the pairs, then reward-function objectives.

    ``label_keys`` maps objective name -> key of each pair holding its label in
    [0, 1]. Objective order: ``label_keys`` then ``reward_functions``.
    """
    reward_functions = dict(reward_functions or {})
    label_objectives = list(label_keys)
    objectives = check_objectives(label_objectives + list(reward_functions), source)
    prompts = [p["prompt"] for p in pairs]
    columns: dict[str, list[Any]] = {"prompt": prompts, "completion_a": [p["completion_a"] for p in pairs],
                                     "completion_b": [p["completion_b"] for p in pairs]}
    columns["preference"] = [[p[key] for key in label_keys.values()] for p in pairs]
    if reward_functions:
        scores_a = _score_column(prompts, columns["completion_a"], reward_functions, batch_size, source,
                                 "completion_a").tolist()
        scores_b = _score_column(prompts, columns["completion_b"], reward_functions, batch_size, source,
                                 "completion_b").tolist()
        for row, s_a, s_b in zip(columns["preference"], scores_a, scores_b, strict=True):
            row.extend(pair_preference(s_a, s_b, temperature))
        if not label_objectives:
            columns["scores_a"], columns["scores_b"] = scores_a, scores_b
    for name in extra_columns:
        columns[name] = [p[name] for p in pairs]
    return dataset_from_columns(columns, objectives, "pairwise", source)


def _finish(pairs: list[dict[str, Any]], label_keys: Mapping[str, str], reward_functions: Mapping[str, Any] | None,
            temperature: float | Sequence[float] | None, batch_size: int, extra_columns: Sequence[str],
            source: str, report: ConversionReport) -> tuple[MultiObjectiveDataset, ConversionReport]:
    if not label_keys and not reward_functions:
        raise ValueError(f"{source}: no objectives: give reward_functions and/or a human objective")
    if reward_functions and label_keys:
        report.notes.append("scores_a/scores_b not stored: the human objective(s) have no scores")
    mo = assemble_pairwise(pairs, label_keys, reward_functions, temperature, batch_size, extra_columns, source)
    report.rows_out = len(mo)
    return mo, report.log()


# ----------------------------------------------------------------------------------------------
# converters (pure, on rows) and loaders (hub)
# ----------------------------------------------------------------------------------------------
def convert_hh_rlhf(rows: Iterable[Mapping[str, Any]], reward_functions: Mapping[str, Any] | None = None,
                    human_objective: str | None = None, chat: bool = False,
                    temperature: float | Sequence[float] | None = None, on_invalid: OnInvalid = "error",
                    batch_size: int = 64, source: str = HH_RLHF) -> tuple[MultiObjectiveDataset, ConversionReport]:
    """Pairwise hh-rlhf: objectives ``[human_objective] + list(reward_functions)`` (see module docstring)."""
    report = ConversionReport(f"convert {source}")
    pairs = convert_rows(rows, lambda r: hh_rlhf_row_to_pair(r, chat), on_invalid, source, report)
    for pair in pairs:
        pair["human"] = 1.0  # completion_a is the human-chosen response
    labels = {human_objective: "human"} if human_objective is not None else {}
    return _finish(pairs, labels, reward_functions, temperature, batch_size, (), source, report)


def load_hh_rlhf(split: str = "train", data_dir: str | None = None, **convert_kwargs: Any
                 ) -> tuple[MultiObjectiveDataset, ConversionReport]:
    """``load_dataset("Anthropic/hh-rlhf", data_dir=..., split=...)`` then :func:`convert_hh_rlhf`."""
    raw = datasets.load_dataset(HH_RLHF, data_dir=data_dir, split=split)
    source = f"{HH_RLHF}" + (f"/{data_dir}" if data_dir else "") + f" [{split}]"
    return convert_hh_rlhf(raw, source=source, **convert_kwargs)


def hh_rows_to_trl(rows: Iterable[Mapping[str, Any]], chat: bool = False, on_invalid: OnInvalid = "error",
                   source: str = HH_RLHF) -> tuple[list[dict[str, Any]], ConversionReport]:
    """hh-rlhf rows as TRL ``prompt/chosen/rejected`` rows (explicit prompt, split as in :func:`split_hh_dialogue`)."""
    report = ConversionReport(f"hh-rlhf -> TRL {source}")
    pairs = convert_rows(rows, lambda r: hh_rlhf_row_to_pair(r, chat), on_invalid, source, report)
    report.rows_out = len(pairs)
    return [{"prompt": p["prompt"], "chosen": p["completion_a"], "rejected": p["completion_b"]} for p in pairs], report


def load_hh_rlhf_helpful_harmless(split: str = "train", missing: Literal["error", "drop"] = "drop",
                                  chat: bool = False, on_invalid: OnInvalid = "error",
                                  subsets: Mapping[str, str] | None = None,
                                  ) -> tuple[MultiObjectiveDataset, ConversionReport]:
    """Two human-labelled objectives from the hh-rlhf subsets (default helpful-base / harmless-base).

    Joined by conversion (b) on identical (prompt, {chosen, rejected}); the
    subsets barely overlap, so expect few rows (see module docstring).
    """
    subsets = dict(subsets or {"helpful": "helpful-base", "harmless": "harmless-base"})
    per_objective, stage_reports = {}, []
    for name, data_dir in subsets.items():
        raw = datasets.load_dataset(HH_RLHF, data_dir=data_dir, split=split)
        per_objective[name], rep = hh_rows_to_trl(raw, chat, on_invalid, f"{HH_RLHF}/{data_dir} [{split}]")
        stage_reports.append((name, rep))
    mo, report = pairwise_from_trl(per_objective, missing=missing)
    for name, rep in stage_reports:
        report.absorb(rep, prefix=f"{name}: ")
    return mo, report


def convert_summarize_from_feedback(rows: Iterable[Mapping[str, Any]],
                                    reward_functions: Mapping[str, Any] | None = None,
                                    human_objective: str | None = "pref", template: str = SUMMARY_PROMPT_TEMPLATE,
                                    flatten_newlines: bool = True, temperature: float | Sequence[float] | None = None,
                                    on_invalid: OnInvalid = "error", batch_size: int = 64,
                                    source: str = SUMMARIZE_FROM_FEEDBACK,
                                    ) -> tuple[MultiObjectiveDataset, ConversionReport]:
    """Pairwise Reddit TL;DR comparisons: objectives ``[human_objective] + list(reward_functions)``."""
    report = ConversionReport(f"convert {source}")
    pairs = convert_rows(rows, lambda r: summarize_comparison_to_pair(r, template, flatten_newlines), on_invalid,
                         source, report)
    labels = {human_objective: "human"} if human_objective is not None else {}
    return _finish(pairs, labels, reward_functions, temperature, batch_size, (), source, report)


def load_summarize_from_feedback(split: str = "train", revision: str | None = None, **convert_kwargs: Any
                                 ) -> tuple[MultiObjectiveDataset, ConversionReport]:
    """``load_dataset("openai/summarize_from_feedback", "comparisons", split=...)`` then convert.

    The upstream repository is script-based; ``datasets`` >= 4 refuses scripts,
    so on that error this retries on the hub's Parquet export
    (``revision="refs/convert/parquet"``, ``data_dir="comparisons"``).
    """
    try:
        raw = datasets.load_dataset(SUMMARIZE_FROM_FEEDBACK, "comparisons", split=split, revision=revision)
    except RuntimeError as err:
        if "scripts are no longer supported" not in str(err):
            raise
        raw = datasets.load_dataset(SUMMARIZE_FROM_FEEDBACK, data_dir="comparisons", split=split,
                                    revision="refs/convert/parquet")
    return convert_summarize_from_feedback(raw, source=f"{SUMMARIZE_FROM_FEEDBACK}/comparisons [{split}]",
                                           **convert_kwargs)


def convert_pku_saferlhf(rows: Iterable[Mapping[str, Any]], reward_functions: Mapping[str, Any] | None = None,
                         temperature: float | Sequence[float] | None = None, on_invalid: OnInvalid = "error",
                         batch_size: int = 64, source: str = PKU_SAFERLHF,
                         ) -> tuple[MultiObjectiveDataset, ConversionReport]:
    """Pairwise PKU-SafeRLHF: objectives ``["helpful", "harmless"] + list(reward_functions)``."""
    report = ConversionReport(f"convert {source}")
    pairs = convert_rows(rows, pku_saferlhf_row_to_pair, on_invalid, source, report)
    labels = {name: name for name in PKU_OBJECTIVES}
    return _finish(pairs, labels, reward_functions, temperature, batch_size, ("safe_a", "safe_b"), source, report)


def load_pku_saferlhf(split: str = "train", name: str | None = None, **convert_kwargs: Any
                      ) -> tuple[MultiObjectiveDataset, ConversionReport]:
    """``load_dataset("PKU-Alignment/PKU-SafeRLHF", name, split=...)`` (name: e.g. "alpaca-7b") then convert."""
    raw = datasets.load_dataset(PKU_SAFERLHF, name, split=split)
    source = f"{PKU_SAFERLHF}" + (f"/{name}" if name else "") + f" [{split}]"
    return convert_pku_saferlhf(raw, source=source, **convert_kwargs)


RECIPES: dict[str, Callable[..., tuple[MultiObjectiveDataset, ConversionReport]]] = {
    "hh-rlhf": load_hh_rlhf, "summarize_from_feedback": load_summarize_from_feedback, "pku-saferlhf": load_pku_saferlhf}
"""The hub recipes by the name a config's ``dataset_recipe`` gives."""


def load_recipe(name: str, split: str = "train", **convert_kwargs: Any
                ) -> tuple[MultiObjectiveDataset, ConversionReport]:
    """The recipe ``name`` of :data:`RECIPES` on ``split``; an unknown name is a ValueError listing the known."""
    if name not in RECIPES:
        raise ValueError(f"unknown dataset_recipe {name!r}; known: {sorted(RECIPES)}")
    return RECIPES[name](split, **convert_kwargs)
