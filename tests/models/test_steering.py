"""Steering combinations against hand computations in probability space."""

import math

import pytest
import torch

from moalign.models.steering import (
    Divergence,
    combine_head_log_probs,
    parse_divergence,
    steered_log_probs,
    validate_steering_weights,
)


def _random_logits(num_heads: int = 3, shape: tuple = (2, 5, 11), seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn((num_heads, *shape), generator=generator, dtype=torch.float64) * 2.0


def test_parse_divergence_names_and_aliases():
    assert parse_divergence("reverse_kl") == Divergence("reverse_kl")
    assert parse_divergence("jsd") == Divergence("reverse_kl")
    assert parse_divergence("reverse_kld") == Divergence("reverse_kl")
    assert parse_divergence("forward_kl") == Divergence("alpha", 1.0)
    assert parse_divergence("forward_kld") == Divergence("alpha", 1.0)
    assert parse_divergence("0.5-divergence") == Divergence("alpha", 0.5)
    assert parse_divergence("2-divergence").name == "2.0-divergence"
    for bad in ("kl", "0-divergence", "-1-divergence", "abc-divergence", "nan-divergence"):
        with pytest.raises(ValueError):
            parse_divergence(bad)


def test_validate_steering_weights_rejects_bad_vectors():
    assert validate_steering_weights(torch.tensor([0.25, 0.75]), 2) == [0.25, 0.75]
    for bad in ([0.5], [0.5, -0.1], [0.0, 0.0], [float("nan"), 1.0], [float("inf"), 1.0]):
        with pytest.raises(ValueError):
            validate_steering_weights(bad, 2)


def test_steering_weights_off_the_simplex_only_when_asked():
    # evaluation policies are points of the simplex (the default); the steering computation accepts any scale
    assert validate_steering_weights([0.5, 0.6], 2, on_simplex=False) == [0.5, 0.6]
    with pytest.raises(ValueError, match="sum to"):
        validate_steering_weights([0.5, 0.6], 2)
    assert validate_steering_weights([0.25, 0.75]) == [0.25, 0.75]  # no head count to check against
    for bad, message in (([], "non-empty"), ([[0.5, 0.5]], "sequence of numbers"), ("ab", "sequence of numbers"),
                         ([1.2, -0.2], "negative entry at position 1"), ([0.0, 0.0], "at least one")):
        with pytest.raises(ValueError, match=message):
            validate_steering_weights(bad, on_simplex=False)


def test_reverse_kl_is_normalised_weighted_geometric_mean():
    logits = _random_logits()
    weights = [0.2, 0.5, 0.3]
    probs = torch.softmax(logits, dim=-1)
    geometric = probs[0] ** 0.2 * probs[1] ** 0.5 * probs[2] ** 0.3
    expected = torch.log(geometric / geometric.sum(-1, keepdim=True))
    torch.testing.assert_close(steered_log_probs(logits, weights, "reverse_kl"), expected)
    # the unnormalised score is the plain weighted sum of log-probs
    log_probs = torch.log(probs)
    raw = combine_head_log_probs(log_probs, weights, "reverse_kl")
    torch.testing.assert_close(raw, 0.2 * log_probs[0] + 0.5 * log_probs[1] + 0.3 * log_probs[2])


def test_forward_kl_is_normalised_weighted_harmonic_mean():
    logits = _random_logits(seed=1)
    weights = [0.6, 0.0, 0.4]
    probs = torch.softmax(logits, dim=-1)
    harmonic = 1.0 / (0.6 / probs[0] + 0.4 / probs[2])
    expected = torch.log(harmonic / harmonic.sum(-1, keepdim=True))
    torch.testing.assert_close(steered_log_probs(logits, weights, "forward_kl"), expected)


def test_alpha_divergence_follows_the_paper_formula():
    logits = _random_logits(seed=2)
    weights = [0.3, 0.7, 0.0]
    alpha = 0.5
    probs = torch.softmax(logits, dim=-1)
    # paper's code: s = -logsumexp(-alpha log p_k + log w_k)  =>  exp(s) = 1 / sum_k w_k p_k^-alpha
    score = 1.0 / (0.3 * probs[0] ** -alpha + 0.7 * probs[1] ** -alpha)
    raw = combine_head_log_probs(torch.log(probs), weights, f"{alpha}-divergence")
    torch.testing.assert_close(raw, torch.log(score))
    expected = torch.log(score / score.sum(-1, keepdim=True))
    torch.testing.assert_close(steered_log_probs(logits, weights, "0.5-divergence"), expected)


@pytest.mark.parametrize("divergence", ["reverse_kl", "forward_kl", "jsd"])
@pytest.mark.parametrize("head", [0, 1, 2])
def test_one_hot_weights_reproduce_the_head(divergence, head):
    logits = _random_logits(seed=3)
    weights = [0.0, 0.0, 0.0]
    weights[head] = 1.0
    expected = torch.log_softmax(logits[head], dim=-1)
    torch.testing.assert_close(steered_log_probs(logits, weights, divergence), expected, rtol=0, atol=1e-12)


def test_zero_weight_heads_with_minus_infinity_do_not_produce_nan():
    logits = _random_logits(seed=4)
    logits[1, ..., 0] = -math.inf  # head 1 forbids token 0
    for divergence in ("reverse_kl", "forward_kl"):
        out = steered_log_probs(logits, [0.5, 0.0, 0.5], divergence)
        assert torch.isfinite(out).all()


def test_combined_log_probs_list_input_equals_stacked_input():
    log_probs = torch.log_softmax(_random_logits(seed=5), dim=-1)
    weights = [0.1, 0.2, 0.7]
    for divergence in ("reverse_kl", "forward_kl", "2-divergence"):
        torch.testing.assert_close(
            combine_head_log_probs(list(log_probs), weights, divergence),
            combine_head_log_probs(log_probs, weights, divergence),
        )
