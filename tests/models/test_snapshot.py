"""The model's snapshot of its trainable state: saved and restored, also from checkpoints of the older naming."""

from __future__ import annotations

import pytest
import torch

from moalign.models.snapshot import SNAPSHOT_ADAPTER
from tests.models.test_multihead import _batch, _randomise, _wrap, tokenizer  # noqa: F401 (fixture)


@pytest.mark.parametrize("head_type", ["low_rank", "full"])
def test_snapshot_state_dict_round_trip_and_legacy_names(tokenizer, head_type):
    batch = _batch(tokenizer)
    source = _wrap(head_type, lora=True)
    _randomise(source)
    source.take_snapshot()
    _randomise(source, seed=2)  # training moves on: current state != snapshot
    state = source.snapshot_state_dict()
    assert any(f".{SNAPSHOT_ADAPTER}." in key for key in state if key.startswith("adapter."))
    assert any(key.split(".")[-1].startswith(f"{SNAPSHOT_ADAPTER}_") for key in state if key.startswith("heads."))
    with torch.no_grad(), source.snapshot_context():
        expected = source.sequence_logps(*batch)
    # checkpoints written before the rename used 'lagged' for the adapter and the head buffers
    legacy = {}
    for key, value in state.items():
        kind, name = key.split(".", 1)
        parts = name.split(".")
        if kind == "adapter":
            parts = ["lagged" if p == SNAPSHOT_ADAPTER else p for p in parts]
        else:
            parts[-1] = parts[-1].replace(f"{SNAPSHOT_ADAPTER}_", "lagged_", 1)
        legacy[f"{kind}.{'.'.join(parts)}"] = value
    assert legacy.keys() != state.keys()
    with torch.no_grad():
        assert (source.sequence_logps(*batch) - expected).abs().max() > 1e-2
    for restored_from in (state, legacy):
        target = _wrap(head_type, lora=True)
        _randomise(target)
        _randomise(target, seed=2)  # the source's current state, not its snapshot
        target.load_snapshot_state_dict(restored_from)
        with torch.no_grad(), target.snapshot_context():
            torch.testing.assert_close(target.sequence_logps(*batch), expected, rtol=0, atol=1e-6)


def test_unknown_snapshot_entry_is_an_error(tokenizer):
    model = _wrap("low_rank", lora=True)
    with pytest.raises(KeyError, match="does not match the model"):
        model.load_snapshot_state_dict({"heads.0.snapshot_nonexistent": torch.zeros(1)})
