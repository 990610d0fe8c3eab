"""Prompt-only data of the online methods (MO-ODPO, P-MORL, Rewarded Soups, ODPO Soups): a ``prompt`` column.

The online methods sample their own completions and score them with reward functions, so their training data is
prompts only; the objectives are the reward functions' names (:func:`moalign.rewards.registry.reward_spec_names`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from moalign.data.encoding import check_utf8
from moalign.rewards.registry import reward_spec_names

__all__ = ["PromptDataset", "load_prompt_data"]


@dataclass
class PromptDataset:
    """Prompt-only training data (a ``datasets.Dataset`` with a ``prompt`` column) and its objectives."""

    dataset: Any
    objectives: list[str]
    kind: str = "prompts"


def load_prompt_data(config: Any, path: str | None, max_rows: int | None = None) -> PromptDataset | None:
    """Prompts of a JSONL/Parquet/CSV file or saved dataset (a ``prompt`` column; other columns are ignored).

    ``config``: a config of an online method (``dataset_recipe``, ``dataset_split``, ``reward_functions``, whose
    names are the objectives).

    Without ``path``, ``config.dataset_recipe`` (a hub recipe of :mod:`moalign.data.hub`) gives the distinct
    prompts of its rows, in order. Neither: None.
    """
    import datasets

    if path is None and config.dataset_recipe is not None:
        from moalign.data import hub

        rows, _report = hub.load_recipe(config.dataset_recipe, config.dataset_split)
        seen: dict[str, Any] = {}
        for prompt in rows.dataset["prompt"]:
            seen.setdefault(json.dumps(prompt, sort_keys=True), prompt)
        data = datasets.Dataset.from_dict({"prompt": list(seen.values())})
    elif path is None:
        return None
    elif os.path.isdir(path):
        data = datasets.load_from_disk(path)
    else:
        suffix = os.path.splitext(path)[1].lower()
        builder = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}.get(suffix)
        if builder is None:
            raise ValueError(f"{path}: prompt data must be .jsonl, .parquet, .csv or a saved dataset folder")
        if builder != "parquet":
            check_utf8(path)  # datasets' own decode error names neither the file nor the line
        data = datasets.load_dataset(builder, data_files=path, split="train")
    if "prompt" not in data.column_names:
        raise ValueError(f"{path}: prompt data needs a 'prompt' column, got {data.column_names}")
    if len(data) == 0:
        raise ValueError(f"{path}: no prompts")
    data = data.select_columns(["prompt"])
    if max_rows is not None:
        data = data.select(range(min(max_rows, len(data))))
    return PromptDataset(data, reward_spec_names(list(config.reward_functions or [])))
