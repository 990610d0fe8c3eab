"""Conversions between pointwise scores, pairwise multi-objective labels and TRL preference datasets.

(a) :func:`scores_to_pairwise` -- pointwise rows grouped by prompt -> pairs with
    labels from scores (hard 1 / 0 / 0.5, or Bradley-Terry probabilities).
(b) :func:`pairwise_from_trl` -- one single-objective TRL ``prompt/chosen/rejected``
    dataset per objective -> one pairwise multi-objective dataset.
(c) :func:`pairwise_to_trl` -- pairwise multi-objective -> TRL ``prompt/chosen/rejected``
    for one objective (DPO baselines).
(d) :func:`pairwise_to_pointwise` -- pairwise rows with ``scores_a``/``scores_b`` -> pointwise.
(e) :func:`conflicting_pairs` -- the pairwise rows on which two objectives name different winners.

Functions that may leave rows out return ``(result, ConversionReport)``; the
report counts every row left out and why, and is also logged. Nothing is left
out unless a policy argument says so (``missing="drop"``, ``ties="drop"``...);
the defaults raise.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import datasets

from moalign.data.io import dataset_from_columns
from moalign.data.schema import MultiObjectiveDataset, is_chat, validation_error
from moalign.rewards.labelling import pair_preference

logger = logging.getLogger("moalign.data")


@dataclass
class ConversionReport:
    """What a conversion did: rows in/out, and every row left out counted by reason (never silent)."""

    operation: str
    rows_in: int = 0
    rows_out: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def drop(self, reason: str, count: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + count

    @property
    def num_dropped(self) -> int:
        return sum(self.dropped.values())

    def absorb(self, other: ConversionReport, prefix: str = "") -> None:
        """Add another report's drops and notes (e.g. of an earlier stage) to this one."""
        for reason, count in other.dropped.items():
            self.drop(f"{prefix}{reason}", count)
        self.notes.extend(f"{prefix}{note}" for note in other.notes)

    def __str__(self) -> str:
        text = f"{self.operation}: {self.rows_in} rows in, {self.rows_out} rows out"
        if self.dropped:
            text += "; left out: " + ", ".join(f"{n} ({reason})" for reason, n in self.dropped.items())
        if self.notes:
            text += "; notes: " + "; ".join(self.notes)
        return text

    def log(self) -> ConversionReport:
        (logger.warning if self.dropped else logger.info)("%s", self)
        return self


def text_key(value: Any) -> str:
    """A hashable identity of a prompt/completion (text, or chat messages with null fields ignored)."""
    if isinstance(value, str):
        return "t:" + value
    messages = [{k: v for k, v in dict(m).items() if v is not None} for m in value]
    return "c:" + json.dumps(messages, sort_keys=True, ensure_ascii=False)


def _columns(mo: MultiObjectiveDataset) -> dict[str, list[Any]]:
    plain = mo.dataset.with_format(None)
    return plain[:] if len(plain) else {c: [] for c in plain.column_names}


def _extra_columns(mo: MultiObjectiveDataset, kept: Sequence[str]) -> list[str]:
    return [c for c in mo.dataset.column_names if c not in kept]


# ----------------------------------------------------------------------------------------------
# (a) pointwise scores -> pairwise labels
# ----------------------------------------------------------------------------------------------
def scores_to_pairwise(
    mo: MultiObjectiveDataset,
    temperature: float | Sequence[float] | None = None,
    max_pairs_per_prompt: int | None = None,
    seed: int = 0,
    duplicates: Literal["error", "merge"] = "error",
) -> tuple[MultiObjectiveDataset, ConversionReport]:
    """Pair the completions of each prompt and label the pairs from their scores.

    Rows are grouped by prompt (text, or chat messages compared as values);
    within a group every unordered pair (i < j, in row order: ``completion_a``
    is the earlier row) becomes one pairwise row with
    ``preference = pair_preference(scores_i, scores_j, temperature)`` (:mod:`moalign.rewards.labelling`) and
    ``scores_a``/``scores_b`` kept. ``max_pairs_per_prompt`` keeps a seeded
    random subset of each group's pairs (in row order). Prompts with a single
    completion yield no pair (counted in the report). A completion repeated
    under one prompt is an error, or with ``duplicates="merge"`` is counted once
    when its scores agree (differing scores are always an error).
    """
    if mo.kind != "pointwise":
        raise ValueError(f"scores_to_pairwise needs a pointwise dataset, got {mo.kind}")
    if max_pairs_per_prompt is not None and max_pairs_per_prompt < 1:
        raise ValueError(f"max_pairs_per_prompt must be >= 1 or None, got {max_pairs_per_prompt}")
    if duplicates not in ("error", "merge"):
        raise ValueError(f"duplicates must be 'error' or 'merge', got {duplicates!r}")
    cols = _columns(mo)
    not_sampled = 0
    report = ConversionReport("scores_to_pairwise", rows_in=len(mo))
    groups: dict[str, list[int]] = {}
    for i, prompt in enumerate(cols["prompt"]):
        groups.setdefault(text_key(prompt), []).append(i)
    rng = random.Random(seed)
    flagged = "truncated" in cols  # per-completion truncation flags become truncated_a / truncated_b
    out: dict[str, list[Any]] = {c: [] for c in ("prompt", "completion_a", "completion_b", "preference",
                                                  "scores_a", "scores_b")}
    if flagged:
        out.update(truncated_a=[], truncated_b=[])
    for rows in groups.values():
        unique: dict[str, int] = {}
        for i in rows:
            key = text_key(cols["completion"][i])
            if key in unique:
                first = unique[key]
                differ = cols["scores"][i] != cols["scores"][first]
                if duplicates == "error" or differ:
                    why = (f"differing scores {cols['scores'][first]} vs {cols['scores'][i]}" if differ
                           else "pass duplicates='merge' to count it once")
                    raise validation_error(mo.source, f"repeats the completion of row {first} for the same prompt "
                                                      f"({why})", row=i, column="completion")
                report.drop("duplicate completion merged")
                continue
            unique[key] = i
        members = list(unique.values())
        if len(members) < 2:
            report.drop("prompt with a single completion (no pair)", len(members))
            continue
        pairs = list(itertools.combinations(members, 2))
        if max_pairs_per_prompt is not None and len(pairs) > max_pairs_per_prompt:
            not_sampled += len(pairs) - max_pairs_per_prompt
            pairs = sorted(rng.sample(pairs, max_pairs_per_prompt))
        for i, j in pairs:
            out["prompt"].append(cols["prompt"][i])
            out["completion_a"].append(cols["completion"][i])
            out["completion_b"].append(cols["completion"][j])
            out["scores_a"].append(cols["scores"][i])
            out["scores_b"].append(cols["scores"][j])
            out["preference"].append(pair_preference(cols["scores"][i], cols["scores"][j], temperature))
            if flagged:
                out["truncated_a"].append(bool(cols["truncated"][i]))
                out["truncated_b"].append(bool(cols["truncated"][j]))
    if not_sampled:
        report.notes.append(f"{not_sampled} pairs not sampled (max_pairs_per_prompt={max_pairs_per_prompt})")
    extra = _extra_columns(mo, ("prompt", "completion", "scores", "truncated"))
    if extra:
        report.notes.append(f"per-completion columns {extra} are not carried into pairs")
    result = dataset_from_columns(out, mo.objectives, "pairwise", mo.source)
    report.rows_out = len(result)
    return result, report.log()


# ----------------------------------------------------------------------------------------------
# (b) single-objective TRL datasets -> one pairwise multi-objective dataset
# ----------------------------------------------------------------------------------------------
def _is_prefix(short: Any, long: Any) -> bool:
    return len(short) <= len(long) and long[: len(short)] == short


def trl_row_with_prompt(row: Mapping[str, Any]) -> dict[str, Any]:
    """``prompt/chosen/rejected`` of a TRL preference row, extracting an implicit prompt as TRL does.

    Follows ``trl.data_utils.maybe_extract_prompt``: an explicit ``prompt`` of
    the completions' format (both chat or both text) is kept; otherwise the
    prompt is ``trl.data_utils.extract_prompt``'s longest common prefix of
    chosen and rejected (characters for text, whole messages for chat). Raises
    ``ValueError`` where that extraction is undefined or wrong: chosen equal to
    rejected, one a prefix of the other, or text mixed with chat.
    trl is imported only for implicit prompts (it pulls in torch/transformers).
    """
    for col in ("chosen", "rejected"):
        if col not in row:
            raise ValueError(f"missing column '{col}'; a TRL preference row has chosen/rejected (and prompt)")
    chosen, rejected = row["chosen"], row["rejected"]
    for col, value in (("chosen", chosen), ("rejected", rejected)):
        if not isinstance(value, (str, list)):
            raise ValueError(f"column '{col}' is {type(value).__name__}; expected text or chat messages")
    if "prompt" in row and is_chat(row["prompt"]) == is_chat(chosen):
        return {"prompt": row["prompt"], "chosen": chosen, "rejected": rejected}
    if is_chat(chosen) != is_chat(rejected):
        raise ValueError("chosen and rejected mix text and chat messages")
    if chosen == rejected:
        raise ValueError("chosen equals rejected: no implicit prompt to extract and no preference")
    if _is_prefix(chosen, rejected) or _is_prefix(rejected, chosen):
        raise ValueError("one of chosen/rejected is a prefix of the other: the implicit prompt is ambiguous")
    from trl.data_utils import extract_prompt

    extracted = extract_prompt({"chosen": chosen, "rejected": rejected})
    return {"prompt": extracted["prompt"], "chosen": extracted["chosen"], "rejected": extracted["rejected"]}


def pairwise_from_trl(
    per_objective: Mapping[str, datasets.Dataset | Sequence[Mapping[str, Any]]],
    missing: Literal["error", "drop"] = "error",
    duplicates: Literal["error", "mean"] = "error",
) -> tuple[MultiObjectiveDataset, ConversionReport]:
    """One pairwise multi-objective dataset from one TRL preference dataset per objective.

    ``per_objective`` maps objective name -> dataset (``prompt/chosen/rejected``,
    or implicit-prompt ``chosen/rejected``, text or chat); its order is the
    objective order. Rows are matched by (prompt, {chosen, rejected} as an
    unordered pair). The output follows the first objective's row order with
    ``completion_a``/``completion_b`` = its chosen/rejected; the label on
    objective k is 1 if objective k's dataset prefers ``completion_a``, else 0.

    Policies (explicit, never silent):
        missing: a pair present for some objectives but not others -> "error"
            (default; the message counts them per objective) or "drop" (kept
            only pairs present in every objective; counts in the report).
        duplicates: the same pair twice within one objective -> "error"
            (default) or "mean" (label = fraction of its rows preferring a).
    Other columns are not carried (noted in the report).
    """
    if missing not in ("error", "drop"):
        raise ValueError(f"missing must be 'error' or 'drop', got {missing!r}")
    if duplicates not in ("error", "mean"):
        raise ValueError(f"duplicates must be 'error' or 'mean', got {duplicates!r}")
    if not per_objective:
        raise ValueError("per_objective is empty: give one TRL dataset per objective")
    objectives = list(per_objective)
    report = ConversionReport("pairwise_from_trl")
    # key -> (prompt, chosen, rejected) of its first row, and per objective key -> list of chosen keys
    first_seen: dict[tuple[str, frozenset[str]], tuple[Any, Any, Any]] = {}
    order: list[tuple[str, frozenset[str]]] = []
    votes: dict[str, dict[tuple[str, frozenset[str]], list[str]]] = {}
    for name, data in per_objective.items():
        source = f"objective '{name}' dataset"
        rows = data.with_format(None).to_list() if isinstance(data, datasets.Dataset) else list(data)
        report.rows_in += len(rows)
        extra = sorted({c for r in rows[:1] for c in r} - {"prompt", "chosen", "rejected"})
        if extra:
            report.notes.append(f"columns {extra} of {source} are not carried")
        objective_votes: dict[tuple[str, frozenset[str]], list[str]] = {}
        for i, row in enumerate(rows):
            try:
                trl_row = trl_row_with_prompt(row)
            except ValueError as err:
                raise validation_error(source, str(err), row=i) from None
            chosen_key, rejected_key = text_key(trl_row["chosen"]), text_key(trl_row["rejected"])
            if chosen_key == rejected_key:
                raise validation_error(source, "chosen equals rejected", row=i, column="chosen")
            key = (text_key(trl_row["prompt"]), frozenset((chosen_key, rejected_key)))
            if key in objective_votes and duplicates == "error":
                raise validation_error(source, "repeats an earlier (prompt, {chosen, rejected}) pair; pass "
                                               "duplicates='mean' to average their labels", row=i)
            objective_votes.setdefault(key, []).append(chosen_key)
            if key not in first_seen:
                first_seen[key] = (trl_row["prompt"], trl_row["chosen"], trl_row["rejected"])
                order.append(key)
        votes[name] = objective_votes
    absent = {name: sum(1 for key in order if key not in votes[name]) for name in objectives}
    if any(absent.values()) and missing == "error":
        counts = ", ".join(f"'{n}': {c}" for n, c in absent.items() if c)
        incomplete = sum(1 for key in order if any(key not in votes[n] for n in objectives))
        raise validation_error("pairwise_from_trl", f"{incomplete} of {len(order)} pairs are missing from some "
                                                    f"objectives (absent per objective: {counts}); pass "
                                                    "missing='drop' to keep only pairs present in all objectives")
    for name, count in absent.items():
        if count:
            report.drop(f"pair absent from objective '{name}'", count)
    out: dict[str, list[Any]] = {"prompt": [], "completion_a": [], "completion_b": [], "preference": []}
    for key in order:
        if any(key not in votes[n] for n in objectives):
            continue
        prompt, completion_a, completion_b = first_seen[key]
        a_key = text_key(completion_a)
        out["prompt"].append(prompt)
        out["completion_a"].append(completion_a)
        out["completion_b"].append(completion_b)
        out["preference"].append([sum(v == a_key for v in votes[n][key]) / len(votes[n][key]) for n in objectives])
    if report.dropped:
        report.notes.append(f"{len(order) - len(out['prompt'])} distinct pairs dropped (a pair absent from several "
                            "objectives is counted once per objective above)")
    result = dataset_from_columns(out, objectives, "pairwise", "pairwise_from_trl")
    report.rows_out = len(result)
    return result, report.log()


# ----------------------------------------------------------------------------------------------
# (c) pairwise multi-objective -> TRL prompt/chosen/rejected for one objective
# ----------------------------------------------------------------------------------------------
def pairwise_to_trl(
    mo: MultiObjectiveDataset,
    objective: str,
    ties: Literal["error", "drop", "both"] = "error",
) -> tuple[datasets.Dataset, ConversionReport]:
    """A TRL ``prompt/chosen/rejected`` dataset for one objective (DPO baselines).

    With p the row's preference on ``objective``: p > 0.5 -> chosen =
    ``completion_a``; p < 0.5 -> chosen = ``completion_b``; p == 0.5 (a tie) ->
    ``ties="error"`` (default) raises, ``"drop"`` leaves the row out (counted),
    ``"both"`` emits the pair in both orders (an unbiased 0.5 label for DPO).
    Soft labels (0 < p < 1, p ≠ 0.5) become hard choices; their count is noted.
    """
    if mo.kind != "pairwise":
        raise ValueError(f"pairwise_to_trl needs a pairwise dataset, got {mo.kind}")
    if ties not in ("error", "drop", "both"):
        raise ValueError(f"ties must be 'error', 'drop' or 'both', got {ties!r}")
    k = mo.objective_index(objective)
    cols = _columns(mo)
    report = ConversionReport(f"pairwise_to_trl[{objective}]", rows_in=len(mo))
    out: dict[str, list[Any]] = {"prompt": [], "chosen": [], "rejected": []}

    def emit(i: int, chosen: str, rejected: str) -> None:
        out["prompt"].append(cols["prompt"][i])
        out["chosen"].append(cols[chosen][i])
        out["rejected"].append(cols[rejected][i])

    soft = 0
    for i, pref in enumerate(cols["preference"]):
        p = pref[k]
        soft += 0.0 < p < 1.0 and p != 0.5
        if p > 0.5:
            emit(i, "completion_a", "completion_b")
        elif p < 0.5:
            emit(i, "completion_b", "completion_a")
        elif ties == "error":
            raise validation_error(mo.source, f"tie (0.5) on objective '{objective}'; pass ties='drop' or "
                                              "ties='both'", row=i, column="preference")
        elif ties == "drop":
            report.drop("tie (preference 0.5)")
        else:
            emit(i, "completion_a", "completion_b")
            emit(i, "completion_b", "completion_a")
    if soft:
        report.notes.append(f"{soft} soft labels (0 < p < 1, p != 0.5) turned into hard choices")
    extra = _extra_columns(mo, ("prompt", "completion_a", "completion_b", "preference"))
    if extra:
        report.notes.append(f"columns {extra} are not carried")
    if out["prompt"]:
        result = datasets.Dataset.from_dict(out)
    else:
        result = datasets.Dataset.from_dict(out, features=datasets.Features(
            {c: datasets.Value("string") for c in out}))
    report.rows_out = len(result)
    return result, report.log()


# ----------------------------------------------------------------------------------------------
# (d) pairwise with scores -> pointwise
# ----------------------------------------------------------------------------------------------
def pairwise_to_pointwise(
    mo: MultiObjectiveDataset,
    duplicates: Literal["merge", "error"] = "merge",
) -> tuple[MultiObjectiveDataset, ConversionReport]:
    """Pointwise rows (prompt, completion, scores) from the scored completions of a pairwise dataset.

    Each pair contributes ``completion_a`` with ``scores_a`` and ``completion_b``
    with ``scores_b``, in row order. The same (prompt, completion) seen again is
    merged when its scores agree (counted; ``duplicates="error"`` raises
    instead); disagreeing scores always raise. Pairwise labels are not used.
    """
    if mo.kind != "pairwise":
        raise ValueError(f"pairwise_to_pointwise needs a pairwise dataset, got {mo.kind}")
    if duplicates not in ("error", "merge"):
        raise ValueError(f"duplicates must be 'error' or 'merge', got {duplicates!r}")
    if not mo.has_scores:
        raise validation_error(mo.source, "pairwise_to_pointwise needs columns 'scores_a' and 'scores_b' "
                                          "(preference labels alone do not define scores)", column="scores_a")
    cols = _columns(mo)
    report = ConversionReport("pairwise_to_pointwise", rows_in=len(mo))
    out: dict[str, list[Any]] = {"prompt": [], "completion": [], "scores": []}
    seen: dict[tuple[str, str], tuple[int, str, list[float]]] = {}
    for i in range(len(mo)):
        for completion_col, scores_col in (("completion_a", "scores_a"), ("completion_b", "scores_b")):
            key = (text_key(cols["prompt"][i]), text_key(cols[completion_col][i]))
            scores = cols[scores_col][i]
            if key in seen:
                row0, col0, scores0 = seen[key]
                if scores != scores0 or duplicates == "error":
                    raise validation_error(mo.source, f"same prompt and completion as row {row0} ('{col0}') with "
                                                      f"scores {scores} vs {scores0}", row=i, column=scores_col)
                report.drop("repeated (prompt, completion) merged")
                continue
            seen[key] = (i, completion_col, scores)
            out["prompt"].append(cols["prompt"][i])
            out["completion"].append(cols[completion_col][i])
            out["scores"].append(scores)
    extra = _extra_columns(mo, ("prompt", "completion_a", "completion_b", "preference", "scores_a", "scores_b"))
    if extra:
        report.notes.append(f"per-pair columns {extra} are not carried")
    result = dataset_from_columns(out, mo.objectives, "pointwise", mo.source)
    report.rows_out = len(result)
    return result, report.log()


# ----------------------------------------------------------------------------------------------
# (e) pairwise -> the pairs on which the objectives conflict
# ----------------------------------------------------------------------------------------------
def conflicting_pairs(mo: MultiObjectiveDataset) -> tuple[MultiObjectiveDataset, ConversionReport]:
    """The pairwise rows on which the objectives disagree: some label prefers ``completion_a`` (> 0.5) and
    another prefers ``completion_b`` (< 0.5).

    A pair on which every objective prefers the same completion (or ties) asks every policy head for the
    same thing; the conflicting pairs are the ones that tell heads apart. Every row left out is counted
    in the report ("objectives agree or tie"), none silently.
    """
    if mo.kind != "pairwise":
        raise ValueError(f"conflicting_pairs needs a pairwise dataset, got {mo.kind}")
    keep = [i for i, labels in enumerate(mo.dataset["preference"])
            if any(v > 0.5 for v in labels) and any(v < 0.5 for v in labels)]
    report = ConversionReport("conflicting_pairs", rows_in=len(mo), rows_out=len(keep))
    if len(keep) < len(mo):
        report.drop("objectives agree or tie", len(mo) - len(keep))
    result = MultiObjectiveDataset._from_validated(mo.dataset.select(keep), mo.objectives, "pairwise", mo.source)
    return result, report.log()
