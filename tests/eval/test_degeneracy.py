"""Degenerate answers and distinct-n against examples counted by hand (words, punctuation, whitespace, case)."""

from __future__ import annotations

import pytest

from moalign.eval.degeneracy import ECHO_SHARE, degeneracy_summary, distinct_n, is_degenerate, is_echo, words


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


SOLAR = "Are solar panels worth it?"  # 2-grams: (are solar)(solar panels)(panels worth)(worth it)


@pytest.mark.parametrize("text, echo, why", [
    (SOLAR, True, "the prompt itself: 4 of 4"),
    ("are SOLAR panels, worth it", True, "the prompt, case and punctuation aside"),
    ("Are solar panels cheap now?", True, "(are solar)(solar panels) of 4: exactly one half, the threshold"),
    ("Are solar panels cheap now and later?", False, "2 of 6"),
    ("Solar panels save money on bills.", False, "(solar panels) of 5"),
])
def test_is_echo_hand_counted(text, echo, why):
    assert ECHO_SHARE == 0.5
    assert is_echo(text, SOLAR) is echo, why
    # without the prompt none of these is degenerate (5+ words, no repeated 3-gram); with it, exactly the echoes
    assert is_degenerate(text) is False, why
    assert is_degenerate(text, SOLAR) is echo, why


def test_is_degenerate_with_a_prompt_keeps_the_other_rules():
    assert is_degenerate("Sure.", SOLAR) and is_degenerate("", SOLAR)  # length
    assert is_degenerate("I love it. I love it.", SOLAR)  # a repeated 3-gram, nothing copied
    assert not is_echo("Solar.", "Solar")  # one word has no 2-gram: never an echo (the length rule covers it)
    assert is_echo("Are solar", SOLAR) and is_degenerate("Are solar")  # both rules at once


def test_degeneracy_summary_with_prompts_counts_echoes():
    question = "What is a good name for a cat?"  # 2-grams: (what is)(is a)(a good)(good name)(name for)(for a)(a cat)
    texts = [question, "Call it Tom, a classic name for a cat.", "ok", "no no no no"]
    # answer 2 copies (name for)(for a)(a cat) of its 8 2-grams: 3/8 < 1/2, not an echo; degenerate: the echo,
    # ok (1 word), no no no no (repeats) -> 3 of 4, of which 1 echo
    summary = degeneracy_summary(texts, [question] * 4)
    # 2-grams over the answers: 7 + 8 (5 new) + 0 + 3 (no no, 1 distinct) -> 13 distinct of 18
    assert summary == {"degenerate_share": 0.75, "num_degenerate": 3, "num_answers": 4,
                       "distinct_2": pytest.approx(13 / 18), "echo_share": 0.25}
    # without prompts: the rule and the keys of before (the echo is a fine 8-word answer)
    assert degeneracy_summary(texts) == {"degenerate_share": 0.5, "num_degenerate": 2, "num_answers": 4,
                                         "distinct_2": pytest.approx(13 / 18)}
    # one prompt per answer: each answer is compared with its own prompt
    own = degeneracy_summary(texts[:2], [question, "Call it Tom, a classic name for a cat!"])
    assert (own["num_degenerate"], own["echo_share"]) == (2, 1.0)
    with pytest.raises(ValueError, match="3 prompts for 4 answers"):
        degeneracy_summary(texts, [question] * 3)


def test_a_chat_prompt_is_compared_through_its_last_user_message():
    # the system instruction and the earlier turn are not the question: copying them is no echo
    chat = [{"role": "system", "content": "Answer the question about solar panels kindly."},
            {"role": "user", "content": "Hello there, friend of mine."},
            {"role": "assistant", "content": "Hi!"},
            {"role": "user", "content": SOLAR}]
    assert is_echo("Are solar panels worth it? Maybe.", chat)
    assert not is_echo("Hello there, friend of mine, hello.", chat)
    assert is_degenerate("Are solar panels worth it?", chat)
    summary = degeneracy_summary(["Are solar panels worth it?", "They pay back in about eight years."], [chat, chat])
    assert (summary["num_degenerate"], summary["echo_share"]) == (1, 0.5)
