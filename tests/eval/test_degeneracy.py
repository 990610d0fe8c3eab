"""Degenerate answers and distinct-n against examples counted by hand (words, punctuation, whitespace, case)."""

from __future__ import annotations

import pytest

from moalign.eval.degeneracy import degeneracy_summary, distinct_n, is_degenerate, words


@pytest.mark.parametrize("text, expected_words", [
    ("", []),
    ("  \n\t ", []),
    ("...!!! ??", []),
    ("Great!!  great.", ["great", "great"]),
    ("Don't STOP", ["don't", "stop"]),
    ("well-known 42", ["well", "known", "42"]),
])
def test_words_split_on_punctuation_and_whitespace_lowercased(text, expected_words):
    assert words(text) == expected_words


@pytest.mark.parametrize("text, degenerate, why", [
    ("", True, "empty"),
    ("   \n ", True, "whitespace only: 0 words"),
    ("?!.", True, "punctuation only: 0 words"),
    ("Yes.", True, "1 word"),
    ("Sure, thanks!", True, "2 words"),
    ("I am here", False, "3 words, one 3-gram"),
    ("Great!!  great. GREAT", False, "3 words: a single 3-gram cannot repeat"),
    ("no no no no", True, "3-grams (no no no) x 2, overlapping"),
    ("I like it. I LIKE IT!", True, "(i like it) twice, across punctuation and case"),
    ("don't stop, don't stop now", False, "3-grams: don't stop don't / stop don't stop / don't stop now: all distinct"),
    ("a b c a b d", False, "2-gram (a b) repeats, but no 3-gram does"),
])
def test_is_degenerate_hand_counted(text, degenerate, why):
    assert is_degenerate(text) is degenerate, why


def test_distinct_n_hand_counted():
    texts = ["The cat sat.", "the cat ran", "Dog!"]
    # 2-grams: (the cat) (cat sat) | (the cat) (cat ran) | none -> 3 distinct of 4
    assert distinct_n(texts, 2) == pytest.approx(3 / 4)
    # 1-grams: the cat sat the cat ran dog -> 5 distinct of 7
    assert distinct_n(texts, 1) == pytest.approx(5 / 7)
    # n-grams do not cross answers: (a b) (a b) -> 1 of 2 (across answers (b a) would add a third)
    assert distinct_n(["a b", "a b"], 2) == pytest.approx(1 / 2)
    assert distinct_n(["Hello World", "hello,   world!"], 2) == pytest.approx(1 / 2)  # case and punctuation
    assert distinct_n([], 2) == 0.0 and distinct_n(["hi", ""], 2) == 0.0  # no 2-gram at all
    with pytest.raises(ValueError):
        distinct_n(["a b"], 0)


def test_degeneracy_summary_counts():
    texts = ["ok", "I am here now", "no no no no", "fine"]  # degenerate: ok, no no no no, fine -> 3 of 4
    summary = degeneracy_summary(texts)
    # 2-grams: (i am) (am here) (here now) (no no) x3 -> 4 distinct of 6
    assert summary == {"degenerate_share": 0.75, "num_degenerate": 3, "num_answers": 4,
                       "distinct_2": pytest.approx(4 / 6)}
    with pytest.raises(ValueError):
        degeneracy_summary([])
