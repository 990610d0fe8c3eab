"""PairwiseCollator: EOS on whole completions, none on completions marked truncated."""

from __future__ import annotations

import pytest

from moalign.models.testing import make_tiny_llama_and_tokenizer
from moalign.trainers.collator import PairwiseCollator


def test_truncated_completions_are_trained_as_prefixes_without_eos():
    _, tokenizer = make_tiny_llama_and_tokenizer()
    collator = PairwiseCollator(tokenizer)
    rows = [{"prompt": "hello", "completion_a": "the cat", "completion_b": "the dog is", "preference": [1.0, 0.0],
             "truncated_a": False, "truncated_b": True},
            {"prompt": "hello", "completion_a": "yes", "completion_b": "no", "preference": [0.0, 1.0]}]
    batch = collator(rows)
    eos = tokenizer.eos_token_id
    ids = [tokenizer("the cat", add_special_tokens=False)["input_ids"],
           tokenizer("yes", add_special_tokens=False)["input_ids"],
           tokenizer("the dog is", add_special_tokens=False)["input_ids"],
           tokenizer("no", add_special_tokens=False)["input_ids"]]
    expected = [ids[0] + [eos], ids[1] + [eos], ids[2], ids[3] + [eos]]  # order: a_1, a_2, b_1, b_2
    for row, want in enumerate(expected):
        got = batch["input_ids"][row][batch["completion_mask"][row].bool()].tolist()
        assert got == want, row


def test_a_truncation_flag_that_is_not_a_boolean_is_an_error():
    _, tokenizer = make_tiny_llama_and_tokenizer()
    row = {"prompt": "hello", "completion_a": "yes", "completion_b": "no", "preference": [1.0, 0.0],
           "truncated_a": "false", "truncated_b": False}
    with pytest.raises(ValueError, match=r"column 'truncated_a' must be true or false.*'false' \(str\)"):
        PairwiseCollator(tokenizer)([row])
