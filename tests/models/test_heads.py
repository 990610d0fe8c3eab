"""Policy heads: initialisation, parameter counts, snapshots, output-module state."""

import pytest
import torch
from torch import nn

from moalign.models.heads import FullHead, LowRankHead, MultiHeadOutput

V, D = 23, 7


def _base_layer(bias: bool = False, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(D, V, bias=bias)


def test_low_rank_heads_start_equal_to_the_base_layer():
    base = _base_layer(bias=True)
    output = MultiHeadOutput(base, num_heads=3, head_type="low_rank", rank=2)
    hidden = torch.randn(4, 5, D)
    expected = hidden @ base.weight.T + base.bias
    for k in range(3):
        torch.testing.assert_close(output.head_logits(hidden, k), expected)
        assert torch.count_nonzero(output.heads[k].B) == 0
        assert torch.count_nonzero(output.heads[k].A) > 0


def test_low_rank_logits_equal_explicit_delta_matrix():
    base = _base_layer()
    head = LowRankHead(V, D, rank=3, alpha=6.0)
    with torch.no_grad():
        head.B.normal_()
    hidden = torch.randn(5, D)
    explicit = base.weight + 2.0 * head.A @ head.B  # scaling alpha / r = 2
    torch.testing.assert_close(head.logits(hidden, base.weight, None), hidden @ explicit.T)


def test_full_heads_are_untied_copies_of_the_base_layer():
    base = _base_layer(bias=True)
    output = MultiHeadOutput(base, num_heads=2, head_type="full")
    for head in output.heads:
        assert isinstance(head, FullHead)
        torch.testing.assert_close(head.weight, base.weight, rtol=0, atol=0)
        assert head.weight.data_ptr() != base.weight.data_ptr()
        assert head.bias.data_ptr() != base.bias.data_ptr()
    with torch.no_grad():
        output.heads[0].weight.add_(1.0)
    torch.testing.assert_close(output.base_weight, base.weight, rtol=0, atol=0)
    assert not torch.equal(output.heads[0].weight, base.weight)


def test_parameter_counts_of_k_heads():
    base = _base_layer()
    for k in (1, 3):
        low = MultiHeadOutput(base, num_heads=k, head_type="low_rank", rank=4)
        assert sum(p.numel() for p in low.heads.parameters()) == k * 4 * (V + D)
        full = MultiHeadOutput(base, num_heads=k, head_type="full")
        assert sum(p.numel() for p in full.heads.parameters()) == k * V * D


def test_base_layer_is_frozen_and_shared():
    base = _base_layer()
    output = MultiHeadOutput(base, num_heads=2)
    assert output.base_weight is base.weight
    assert not output.base_weight.requires_grad


def test_snapshot_is_a_frozen_copy():
    output = MultiHeadOutput(_base_layer(), num_heads=2, head_type="low_rank", rank=2)
    with torch.no_grad():
        output.heads[1].B.normal_()
    output.snapshot()
    hidden = torch.randn(3, D)
    before = output.head_logits(hidden, 1).detach().clone()
    with torch.no_grad():
        output.heads[1].B.mul_(3.0)
        output.heads[1].A.add_(0.5)
    assert not torch.allclose(output.head_logits(hidden, 1), before)
    torch.testing.assert_close(output.head_logits(hidden, 1, source="snapshot"), before, rtol=0, atol=0)
    # snapshot buffers are not part of the state dict (training state only)
    assert not any(key.startswith("heads.1.snapshot") for key in output.state_dict())


def test_output_state_validation():
    output = MultiHeadOutput(_base_layer(), num_heads=2)
    with pytest.raises(RuntimeError):
        output.set_source("snapshot")  # no snapshot yet
    with pytest.raises(ValueError):
        output.set_source("other")
    with pytest.raises(ValueError):
        output.check_head(2)
    with pytest.raises(ValueError):
        output.set_steering([1.0], "reverse_kl")
    with pytest.raises(TypeError):
        MultiHeadOutput(nn.Embedding(V, D), num_heads=2)
    with pytest.raises(ValueError):
        MultiHeadOutput(_base_layer(), num_heads=2, head_type="medium")


def test_reference_source_ignores_heads_and_steering():
    base = _base_layer()
    output = MultiHeadOutput(base, num_heads=2, rank=2)
    with torch.no_grad():
        for head in output.heads:
            head.B.normal_()
    hidden = torch.randn(2, D)
    output.set_steering([0.3, 0.7])
    output.set_source("reference")
    torch.testing.assert_close(output(hidden), hidden @ base.weight.T)
