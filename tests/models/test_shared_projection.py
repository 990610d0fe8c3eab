"""The shared-base-projection low-rank head log-probs against plain autograd on explicit logits."""

import pytest
import torch
from torch.nn import functional as F

from moalign.models.shared_projection import low_rank_token_logps


def _naive(hidden, targets, weight, bias, factors, scalings):
    """Each head's full logits W0 h + s A B h, log-softmax, gather: autograd does the rest."""
    out = []
    for (a, b), s in zip(factors, scalings):
        logits = F.linear(hidden, weight, bias) + s * (hidden @ b.T) @ a.T
        out.append(torch.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1))
    return torch.stack(out)


@pytest.mark.parametrize("num_heads", [1, 3])
@pytest.mark.parametrize("with_bias", [False, True])
def test_values_and_gradients_equal_plain_autograd(num_heads, with_bias):
    g = torch.Generator().manual_seed(0)
    n, d, v, r = 11, 6, 23, 2
    hidden = torch.randn(n, d, generator=g, dtype=torch.float64)
    targets = torch.randint(0, v, (n,), generator=g)
    weight = torch.randn(v, d, generator=g, dtype=torch.float64)
    bias = torch.randn(v, generator=g, dtype=torch.float64) if with_bias else None
    factors = [(torch.randn(v, r, generator=g, dtype=torch.float64), torch.randn(r, d, generator=g, dtype=torch.float64))
               for _ in range(num_heads)]
    scalings = [0.5 + k for k in range(num_heads)]
    upstream = torch.randn(num_heads, n, generator=g, dtype=torch.float64)

    def run(fn):
        h = hidden.clone().requires_grad_(True)
        fs = [(a.clone().requires_grad_(True), b.clone().requires_grad_(True)) for a, b in factors]
        out = fn(h, targets, weight, bias, fs, scalings)
        (out * upstream).sum().backward()
        return out.detach(), [h.grad] + [t.grad for pair in fs for t in pair]

    got, got_grads = run(low_rank_token_logps)
    want, want_grads = run(_naive)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert len(got_grads) == len(want_grads) == 1 + 2 * num_heads
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_frozen_factors_get_no_gradient_and_base_must_be_frozen():
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(4, 3, generator=g, requires_grad=True)
    targets = torch.tensor([0, 1, 2, 3])
    weight = torch.randn(5, 3, generator=g)
    a, b = torch.randn(5, 2, generator=g), torch.randn(2, 3, generator=g)  # e.g. a lagged snapshot
    low_rank_token_logps(hidden, targets, weight, None, [(a, b)], [1.0]).sum().backward()
    assert hidden.grad is not None and a.grad is None and b.grad is None
    with pytest.raises(ValueError, match="frozen"):
        low_rank_token_logps(hidden, targets, weight.requires_grad_(True), None, [(a, b)], [1.0])
    with pytest.raises(ValueError, match="one scaling per head"):
        low_rank_token_logps(hidden, targets, weight.detach(), None, [(a, b)], [1.0, 2.0])
