"""Tokenisation of multi-objective rows into one batch of sequences.

:class:`PairwiseCollator`: a batch of B rows (prompt, completion_a, completion_b, preference) becomes
2B sequences ``[a_1 .. a_B, b_1 .. b_B]`` sharing their prompt, right-padded,
with a ``completion_mask`` marking completion tokens, and the preference
labels of the symmetric augmentation (§3.1): ``preference = [I; 1 - I]`` so
that row i of the 2B sequences is "first" with label ``preference[i]``. The key
is not ``labels``: transformers reads ``labels`` as token ids.

:class:`PointwiseCollator`: a batch of B rows (prompt, completion, scores)
becomes B sequences with ``scores`` (B, K) (HaM, SCA, RiC). Both share the
tokenisation (:meth:`SequenceCollator.encode`) and the padding
(:meth:`SequenceCollator.pad`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from moalign.data.prompts import render_prompt
from moalign.rewards.base import completion_text


@dataclass
class SequenceCollator:
    """Tokenisation and right padding of (prompt, completion) sequences, shared by the collators below."""

    tokenizer: Any
    max_prompt_length: int = 256
    max_completion_length: int = 128
    use_chat_template: bool = False

    def encode(self, prompt: str | list[dict], completion: str | list[dict],
               truncated: bool = False) -> tuple[list[int], list[int]]:
        """Token ids of prompt and completion (completion ends with EOS unless ``truncated``), truncated as configured.

        As in TRL, every completion is taken to be a whole response and gets an EOS. A completion cut off
        by a generation budget is not one: trained with an EOS, the policy learns to stop where the budget
        ran out. Mark such completions ``truncated`` (dataset columns ``truncated_a``/``truncated_b``) to
        train them as prefixes without EOS, or cut them back to a natural end first.
        """
        prompt_ids = self.tokenizer(render_prompt(self.tokenizer, prompt, self.use_chat_template),
                                    add_special_tokens=False)["input_ids"]
        completion_ids = self.tokenizer(completion_text(completion), add_special_tokens=False)["input_ids"]
        if self.tokenizer.eos_token_id is not None and not truncated:
            completion_ids = completion_ids + [self.tokenizer.eos_token_id]
        return prompt_ids[-self.max_prompt_length:], completion_ids[: self.max_completion_length]

    def pad(self, sequences: list[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
        """Right-padded ``input_ids``, ``attention_mask`` and ``completion_mask`` of (prompt, completion) ids."""
        length = max(len(p) + len(c) for p, c in sequences)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        input_ids = torch.full((len(sequences), length), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), length), dtype=torch.long)
        completion_mask = torch.zeros((len(sequences), length), dtype=torch.long)
        for i, (p, c) in enumerate(sequences):
            input_ids[i, : len(p) + len(c)] = torch.tensor(p + c)
            attention_mask[i, : len(p) + len(c)] = 1
            completion_mask[i, len(p): len(p) + len(c)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "completion_mask": completion_mask}


@dataclass
class PairwiseCollator(SequenceCollator):
    """Collate pairwise rows into ``input_ids``, ``attention_mask``, ``completion_mask``, ``preference``."""

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        pairs = [self.encode(r["prompt"], r["completion_a"], _truncation_flag(r, "truncated_a")) for r in rows]
        pairs += [self.encode(r["prompt"], r["completion_b"], _truncation_flag(r, "truncated_b")) for r in rows]
        batch = self.pad(pairs)
        preference = torch.tensor([r["preference"] for r in rows], dtype=torch.float32)
        batch["preference"] = torch.cat([preference, 1.0 - preference], dim=0)
        if "ref_logps_a" in rows[0]:
            batch["ref_logps"] = torch.tensor([r["ref_logps_a"] for r in rows] + [r["ref_logps_b"] for r in rows])
        return batch


@dataclass
class PointwiseCollator(SequenceCollator):
    """Collate pointwise rows (prompt, completion, scores) into B sequences plus ``scores`` (B, K), float32.

    Scores are passed on as they are (raw); the method maps them to [0, 1] (HaM, SCA: the trainer's fitted
    normaliser). ``truncated`` marks a completion cut by a generation budget (no EOS, as in the pairwise case).
    """

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        batch = self.pad([self.encode(r["prompt"], r["completion"], _truncation_flag(r, "truncated")) for r in rows])
        batch["scores"] = torch.tensor([list(r["scores"]) for r in rows], dtype=torch.float32)
        return batch


@dataclass
class PromptCollator:
    """Prompt-only rows (online methods such as MO-ODPO) passed through: ``prompt`` (a list of text or chat
    prompts, untokenised: the method conditions and samples them itself) and ``index`` (``arange(B)``, a tensor
    that shows the Trainer the batch size)."""

    def __call__(self, rows: list[dict]) -> dict[str, Any]:
        if not rows or any("prompt" not in r for r in rows):
            raise ValueError("prompt rows need a 'prompt' column")
        return {"prompt": [r["prompt"] for r in rows], "index": torch.arange(len(rows))}


def _truncation_flag(row: dict, column: str) -> bool:
    """``row[column]`` (False when absent); anything but a boolean is an error, never read as truthy."""
    value = row.get(column, False)
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"column '{column}' must be true or false (was the completion cut at a length limit?), "
                         f"got {value!r} ({type(value).__name__}); rows of a MultiObjectiveDataset are checked "
                         "for this when it is built")
    return bool(value)
