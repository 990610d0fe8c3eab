"""Degenerate answers and diversity of a policy's responses.

A front can be won by a reward hack: a conciseness scorer rewards one-word answers, a positivity scorer a
repeated "great great great". Hypervolume cannot tell; these two measures can, and the evaluation reports
them next to every policy's rewards.

**Words.** A text's words are its maximal runs of letters, digits and underscores (an apostrophe between
two such runs stays inside the word: ``don't`` is one word), lower-cased; punctuation and whitespace only
separate words. So ``"Great!!  great."`` has the words ``great, great``.

**Degenerate answer** (:func:`is_degenerate`, defined in :mod:`moalign.rewards.degenerate` so that the
``answer_brevity`` scorer applies the same rule): at most 2 words (the empty answer included), a word 3-gram
occurring at least twice, or -- when the prompt is given -- an **echo** of it (half or more of the answer's
word 2-grams occur in the prompt). The echo rule exists because a relevance scorer (prompt-answer similarity)
is maximised by repeating the question: a policy trained on it learnt to.

**distinct-n** (:func:`distinct_n`, Li et al. 2016, "A Diversity-Promoting Objective Function for Neural
Conversation Models"): over all of a policy's answers, the number of distinct word n-grams divided by the
number of word n-grams (n-grams never cross answers). 0 when no answer has n words: no diversity is
measurable, and a policy answering in single words is reported as having none.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from moalign.rewards.degenerate import DEGENERATE_MAX_WORDS, ECHO_SHARE, REPEATED_NGRAM, is_degenerate, is_echo
from moalign.rewards.text_overlap import word_ngrams, words

__all__ = ["DEGENERATE_MAX_WORDS", "REPEATED_NGRAM", "ECHO_SHARE", "DEGENERACY_RULE", "words", "is_degenerate",
           "is_echo", "distinct_n", "degeneracy_summary"]

#: the rule in one sentence, as reports state it
DEGENERACY_RULE = (f"degenerate answer: empty, <= {DEGENERATE_MAX_WORDS} words, a word {REPEATED_NGRAM}-gram "
                   f"occurring twice, or an echo of the prompt (>= {ECHO_SHARE:.0%} of its word 2-grams in the prompt); "
                   "distinct-2: distinct word 2-grams / all word 2-grams over the policy's answers "
                   "(moalign.eval.degeneracy)")


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct word n-grams / all word n-grams over ``texts`` (0.0 when there are none; module docstring)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    grams = [g for text in texts for g in word_ngrams(words(text), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def degeneracy_summary(texts: Sequence[str], prompts: Sequence[TextOrChat] | None = None) -> dict[str, Any]:
    """One policy's answers: ``degenerate_share`` (fraction of degenerate answers), ``num_degenerate``,
    ``num_answers`` and ``distinct_2``; with ``prompts`` (one per answer) echoes count as degenerate and
    ``echo_share`` is their fraction."""
    if not texts:
        raise ValueError("no answers to measure")
    if prompts is not None and len(prompts) != len(texts):
        raise ValueError(f"{len(prompts)} prompts for {len(texts)} answers")
    echoes = [is_echo(t, p) for t, p in zip(texts, prompts)] if prompts is not None else [False] * len(texts)
    flags = [echo or is_degenerate(t) for t, echo in zip(texts, echoes)]  # each answer's echo test made once
    summary = {"degenerate_share": sum(flags) / len(flags), "num_degenerate": int(sum(flags)),
               "num_answers": len(flags), "distinct_2": distinct_n(texts, 2)}
    if prompts is not None:
        summary["echo_share"] = sum(echoes) / len(texts)
    return summary
