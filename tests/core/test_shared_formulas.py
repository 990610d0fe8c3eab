"""The formulas the trainers and the synthetic benchmarks share, checked against hand computations.

core.thresholds.next_threshold (MOPO Alg. 1 line 10), core.cloning (MOPO eq. 13) and core.pairs (MO-ODPO eqs.
1-2). The trainer-vs-toy agreement on the same inputs is in tests/experiments/test_shared_formulas.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from moalign.core.cloning import behaviour_cloning_logit_gradient, behaviour_cloning_loss
from moalign.core.pairs import weighted_pair_labels
from moalign.core.thresholds import ALL_THRESHOLD_RULES, next_threshold

REFERENCE = {"estimate": torch.tensor([0.7, 0.4]), "lower_bound": torch.tensor([0.6, 0.3]),
             "primary_estimate": torch.tensor([0.55, 0.55])}


@pytest.mark.parametrize("rule, phase, expected_source", [
    ("attained", torch.tensor([0.2, 0.5]), None),  # the phase mean itself, no reference evaluated
    ("attained", None, "lower_bound"),  # b^(0): no phase yet
    ("paper", torch.tensor([0.2, 0.5]), "estimate"),
    ("lower_bound", torch.tensor([0.2, 0.5]), "lower_bound"),
    ("primary_winrate", torch.tensor([0.2, 0.5]), "primary_estimate"),
])
def test_next_threshold_scales_what_the_rule_names(rule, phase, expected_source):
    beta, calls = 0.9, []

    def reference_value(source):
        calls.append(source)
        return REFERENCE[source]

    b = next_threshold(rule, beta, phase, reference_value)
    expected = phase if expected_source is None else REFERENCE[expected_source]
    torch.testing.assert_close(b, torch.tensor([beta * float(v) for v in expected]))
    assert calls == ([] if expected_source is None else [expected_source])  # lazily, at most once


def test_next_threshold_errors():
    assert set(ALL_THRESHOLD_RULES) == {"attained", "paper", "lower_bound", "primary_winrate"}
    with pytest.raises(ValueError, match="threshold rule must be one of"):
        next_threshold("fixed", 0.9, torch.zeros(1))
    with pytest.raises(ValueError, match="needs reference_value"):
        next_threshold("paper", 0.9, torch.zeros(1))


def test_behaviour_cloning_loss_by_hand():
    log_probs = torch.log(torch.tensor([0.5, 0.25, 0.25]))
    w = torch.tensor([2.0, 0.5, 0.5])
    # eq. 13 over three equally likely rows: -(1/3) * (2 log .5 + .5 log .25 + .5 log .25) = (2/3) * 2 log 2
    by_hand = 4.0 / 3.0 * float(np.log(2.0))
    assert float(behaviour_cloning_loss(log_probs, w, "mean")) == pytest.approx(by_hand, rel=1e-6)
    assert float(behaviour_cloning_loss(log_probs, w / 3, "sum")) == pytest.approx(by_hand, rel=1e-6)
    with pytest.raises(ValueError, match="reduction"):
        behaviour_cloning_loss(log_probs, w, "none")


def test_logit_gradient_is_the_gradient_of_the_loss():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    target = torch.softmax(torch.randn(4, 3, generator=gen, dtype=torch.float64), -1)  # rows sum to 1
    behaviour_cloning_loss(torch.log_softmax(logits, -1), target).backward()
    torch.testing.assert_close(behaviour_cloning_logit_gradient(logits.detach(), target), logits.grad)


def test_weighted_pair_labels_by_hand_for_torch_and_numpy():
    r1 = [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.2, 0.9]]
    r2 = [[0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [0.3, 0.3]]
    w = [[0.7, 0.3], [0.7, 0.3], [0.5, 0.5], [0.0, 1.0]]
    # s1 = .7, .3, .5, .9 ; s2 = .3, .7, .5, .3 -> y1 wins rows 0 and 3, row 2 ties
    for to in (torch.tensor, np.array):
        wins, used, s1, s2 = weighted_pair_labels(to(r1), to(r2), to(w))
        assert list(map(bool, wins)) == [True, False, False, True]
        assert list(map(bool, used)) == [True, True, False, True]
        np.testing.assert_allclose(np.asarray(s1, float), [0.7, 0.3, 0.5, 0.9], rtol=1e-6)
        np.testing.assert_allclose(np.asarray(s2, float), [0.3, 0.7, 0.5, 0.3], rtol=1e-6)
        wins, used, _, _ = weighted_pair_labels(to(r1), to(r2), to(w), tie_rule="second")  # eq. 2: tie to y_2
        assert list(map(bool, wins)) == [True, False, False, True] and all(map(bool, used))
    with pytest.raises(ValueError, match="tie_rule"):
        weighted_pair_labels(np.zeros((1, 2)), np.zeros((1, 2)), np.ones((1, 2)), tie_rule="first")
