"""Quantised Dirichlet weights and the MO-ODPO conditioning block (MO-ODPO paper §3.2, §3.3)."""

from __future__ import annotations

import numpy as np
import pytest

from moalign.data.conditioning import (
    ConditioningTemplate,
    parse_conditioned_prompt,
    quantize_weights,
    render_conditioned_prompt,
    sample_quantized_dirichlet,
)

OBJ = ["Helpfulness", "Harmlessness"]


@pytest.mark.parametrize("alpha", [[1.0, 1.0], [2.0, 1.0], [0.3, 0.3, 0.3], [1.0, 2.0, 3.0, 0.5]])
def test_quantised_dirichlet_on_grid_sums_to_one_and_mean_matches(alpha):
    """Grid and exact sum on every draw; Monte Carlo mean within 0.01 of alpha/sum(alpha).

    Tolerance: with n = 20000 draws the standard error of each coordinate's mean is below 0.0035, and the
    largest-remainder rounding moves a coordinate by < 0.1 with a bias measured at ~0.002 (alpha=(2,1),
    2e5 draws); 0.01 is about 3 standard errors plus that bias.
    """
    w = sample_quantized_dirichlet(alpha, 20000, seed=3)
    counts = np.round(w * 10)
    assert np.array_equal(w, counts / 10)  # exactly the grid floats
    assert np.all(counts.astype(int).sum(axis=1) == 10) and np.all(w >= 0)
    assert np.allclose(w.sum(axis=1), 1.0, atol=1e-12)
    target = np.asarray(alpha) / np.sum(alpha)
    assert np.max(np.abs(w.mean(axis=0) - target)) < 0.01


def test_generator_is_advanced_and_reproducible():
    g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
    a = sample_quantized_dirichlet([1, 1], 4, generator=g1)
    b = sample_quantized_dirichlet([1, 1], 4, generator=g2)
    assert np.array_equal(a, b)
    assert not np.array_equal(sample_quantized_dirichlet([1, 1], 50, generator=g1),
                              sample_quantized_dirichlet([1, 1], 50, seed=5))


def test_largest_remainder_rule_by_hand():
    # 10w = (1.5, 1.5, 7): floors (1, 1, 7), one unit missing, equal remainders -> the lower index
    assert quantize_weights([0.15, 0.15, 0.7]).tolist() == [0.2, 0.1, 0.7]
    # 10w = (3.34, 3.33, 3.33): floors 3, 3, 3 -> the largest remainder gets the unit
    assert quantize_weights([0.334, 0.333, 0.333]).tolist() == [0.4, 0.3, 0.3]
    assert quantize_weights([0.26, 0.74]).tolist() == [0.3, 0.7]


def test_bad_alpha_and_weights_are_errors():
    with pytest.raises(ValueError, match="K >= 2"):
        sample_quantized_dirichlet([1.0], 3, seed=0)
    with pytest.raises(ValueError, match="> 0"):
        sample_quantized_dirichlet([1.0, 0.0], 3, seed=0)
    with pytest.raises(ValueError, match="num_objectives"):
        sample_quantized_dirichlet(1.0, 3, seed=0)
    with pytest.raises(ValueError, match="grid"):
        render_conditioned_prompt("x", [0.25, 0.75], OBJ)
    with pytest.raises(ValueError, match="sum to 1"):
        render_conditioned_prompt("x", [0.3, 0.3], OBJ)
    with pytest.raises(ValueError, match="2 weights"):
        render_conditioned_prompt("x", [0.3, 0.7], OBJ + ["c"])


def test_render_is_the_papers_block():
    text = render_conditioned_prompt("How do I bake bread?", [0.3, 0.7], OBJ)
    assert text == ("[Begin System Instruction]\nHelpfulness: 0.3, Harmlessness: 0.7\n[End System Instruction]\n"
                    "How do I bake bread?")


@pytest.mark.parametrize("prompt", ["Hello?", "line one\n\nline two\n", [{"role": "user", "content": "q"}],
                                    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "q"}]])
@pytest.mark.parametrize("weights", [(0.0, 1.0), (0.3, 0.7), (1.0, 0.0)])
def test_round_trip(prompt, weights):
    rendered = render_conditioned_prompt(prompt, weights, OBJ)
    assert parse_conditioned_prompt(rendered) == (prompt, weights)
    assert parse_conditioned_prompt(rendered, return_objectives=True)[2] == tuple(OBJ)


def test_round_trip_of_every_sampled_weight_and_custom_wording():
    template = ConditioningTemplate(begin="<prefs>", end="</prefs>", item="{name}={weight}", item_separator="; ",
                                    decimals=1)
    names = ["a", "b", "c"]
    for w in sample_quantized_dirichlet(0.7, 200, seed=1, num_objectives=3):
        rendered = render_conditioned_prompt("p", w, names, template)
        assert rendered.startswith("<prefs>\n") and "a=" in rendered
        assert parse_conditioned_prompt(rendered, template) == ("p", tuple(w))


def test_as_chat_is_a_system_message():
    chat = render_conditioned_prompt("q", [0.5, 0.5], OBJ, as_chat=True)
    assert chat[0]["role"] == "system" and chat[0]["content"].startswith("[Begin System Instruction]")
    assert chat[1] == {"role": "user", "content": "q"}
    assert parse_conditioned_prompt(chat) == ([{"role": "user", "content": "q"}], (0.5, 0.5))


def test_double_conditioning_and_missing_block_are_errors():
    once = render_conditioned_prompt("q", [0.5, 0.5], OBJ)
    with pytest.raises(ValueError, match="already"):
        render_conditioned_prompt(once, [0.5, 0.5], OBJ)
    with pytest.raises(ValueError, match="no conditioning block"):
        parse_conditioned_prompt("q")
