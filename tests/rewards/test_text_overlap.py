"""Words, word n-grams and the copied share of an answer, against examples counted by hand."""

from __future__ import annotations

import pytest

from moalign.rewards.text_overlap import copied_share, word_ngrams, words


def test_word_ngrams_in_order_and_none_when_too_short():
    assert word_ngrams(["a", "b", "c"], 2) == [("a", "b"), ("b", "c")]
    assert word_ngrams(["a", "b", "c"], 3) == [("a", "b", "c")]
    assert word_ngrams(["a"], 2) == [] and word_ngrams([], 1) == []


def test_degeneracy_uses_the_same_words():
    from moalign.eval import degeneracy

    assert degeneracy.words is words
    assert words("Don't STOP, well-known!") == ["don't", "stop", "well", "known"]


PROMPT = "What should I check before buying a used car?"


@pytest.mark.parametrize("answer, prompt, expected, why", [
    (PROMPT, PROMPT, 1.0, "an echo: all 8 of its 2-grams are the prompt's"),
    ("Solar panels save money on bills.", "Are solar panels worth it?", 1 / 5,
     "(solar panels) of (solar panels)(panels save)(save money)(money on)(on bills)"),
    ("Check the brakes before buying a used car.", PROMPT, 4 / 7,
     "(before buying)(buying a)(a used)(used car) of 7: (check the)(the brakes)(brakes before) are new"),
    ("the cat the cat sat", "the cat", 2 / 4,
     "occurrences count, not distinct 2-grams: (the cat) x2 of (the cat)(cat the)(the cat)(cat sat)"),
    ("used car", "car used", 0.0, "a 2-gram keeps its word order"),
    ("a used car", "used, car", 1 / 2, "punctuation only separates words: (used car) of (a used)(used car)"),
    ("Yes.", "Yes", 0.0, "one word: no 2-gram to compare"),
    ("", PROMPT, 0.0, "empty"),
    ("...!!", "...!!", 0.0, "punctuation only: no words"),
    ("WHAT, should I... CHECK?!", "what should i check", 1.0, "case and punctuation are ignored"),
    ("Don't stop now", "don't stop", 1 / 2, "don't is one word: (don't stop) of (don't stop)(stop now)"),
])
def test_copied_share_hand_counted(answer, prompt, expected, why):
    assert copied_share(answer, prompt) == pytest.approx(expected), why


def test_copied_share_of_other_n():
    # 3-grams (a b c)(b c d): only (a b c) occurs in the prompt
    assert copied_share("a b c d", "a b c x", n=3) == pytest.approx(1 / 2)
    # 1-grams: a b c d, of which a b c occur in the prompt
    assert copied_share("a b c d", "a b c x", n=1) == pytest.approx(3 / 4)
    assert copied_share("a b", "a b", n=3) == 0.0  # fewer than n words
