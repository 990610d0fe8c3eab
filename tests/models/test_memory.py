"""Memory of K low-rank heads versus one during a forward+backward of ``sequence_logps``.

Target (issue "MOPO for language models"): K = 3 low-rank heads need at most
1.1x the peak memory of one head.  Peak = parameters + the high-water mark of
tensors allocated during the step (activations, logits, gradients), measured
with :class:`~moalign.models.testing.TensorMemoryTracker`.
"""

import pytest
import torch
from peft import LoraConfig

from moalign.models import MultiHeadCausalLM
from moalign.models.testing import TensorMemoryTracker, make_tiny_llama


def _batch(vocab_size, batch=4, length=32, prompt=8):
    input_ids = torch.randint(4, vocab_size, (batch, length), generator=torch.Generator().manual_seed(0))
    completion = torch.zeros_like(input_ids)
    completion[:, prompt:] = 1
    return input_ids, torch.ones_like(input_ids), completion


def _step_peak(model, batch):
    """(parameter bytes, tensor bytes allocated at the peak of forward+backward)."""
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    with TensorMemoryTracker() as tracker:
        (-model.sequence_logps(*batch).sum()).backward()
    return params, tracker.peak_bytes


def test_three_low_rank_heads_stay_close_to_one():
    """Low-rank heads share one base projection, recomputed in backward: peak within 1.1x of one head."""
    vocab = 4000  # logits dominate the activations, as for a real LLM vocabulary
    batch = _batch(vocab)
    peaks = {}
    for k in (1, 3):
        model = MultiHeadCausalLM(make_tiny_llama(vocab_size=vocab), num_heads=k, lora_config=LoraConfig(r=4))
        peaks[k] = _step_peak(model, batch)[1]
    assert peaks[3] <= 1.1 * peaks[1]


def test_full_head_checkpointing_keeps_logits_out_of_memory():
    vocab = 4000
    batch = _batch(vocab)
    peaks = {}
    for checkpoint_heads in (True, False):
        model = MultiHeadCausalLM(make_tiny_llama(vocab_size=vocab), num_heads=3, head_type="full",
                                  lora_config=LoraConfig(r=4), checkpoint_heads=checkpoint_heads)
        peaks[checkpoint_heads] = _step_peak(model, batch)[1]
    # without checkpointing the heads' (N, V) logits stay alive until backward: at least one more such buffer
    n = int(batch[2][:, 1:].sum())
    assert peaks[False] - peaks[True] >= n * vocab * 4


@pytest.mark.slow
def test_smollm2_three_low_rank_heads_within_ten_percent_of_one():
    from moalign.models import load_smollm2

    torch.set_num_threads(2)
    batch = _batch(49000, batch=4, length=128, prompt=32)
    totals = {}
    for k in (1, 3):
        model, _ = load_smollm2()
        multi = MultiHeadCausalLM(model, num_heads=k, head_rank=8, lora_config=LoraConfig(r=8, lora_alpha=16))
        multi.train()
        params, peak = _step_peak(multi, batch)
        totals[k] = params + peak
        print(
            f"\nSmolLM2 K={k}: params {params / 2**20:.1f} MiB, step tensors {peak / 2**20:.1f} MiB, "
            f"total {(params + peak) / 2**20:.1f} MiB"
        )
    print(f"ratio K=3 / K=1: {totals[3] / totals[1]:.4f}")
    assert totals[3] <= 1.1 * totals[1]
