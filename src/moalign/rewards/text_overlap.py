"""Words, word n-grams and how much of an answer is copied from its prompt.

Shared by the copy-aware relevance scorer (:class:`moalign.rewards.offline.RelevanceReward` with
``copy_penalty``) and the degenerate-answer rule of the evaluation (:mod:`moalign.eval.degeneracy`), so that
the scorer penalises exactly what the evaluation reports.

**Words**: maximal runs of letters, digits and underscores (an apostrophe between two such runs stays inside
the word: ``don't`` is one word), lower-cased; punctuation and whitespace only separate words.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["words", "word_ngrams", "copied_share"]

_WORD = re.compile(r"\w+(?:'\w+)*")


def words(text: str) -> list[str]:
    """The lower-cased words of ``text`` (module docstring)."""
    return _WORD.findall(str(text).lower())


def word_ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    """The consecutive n-grams of ``tokens``, in order (none when there are fewer than ``n`` tokens)."""
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def copied_share(answer: str, prompt: str, n: int = 2) -> float:
    """Share of the answer's word n-grams that also occur in the prompt, in [0, 1].

    An answer that repeats the question scores 1; one that only reuses a term of it ("solar panels") a small
    share. 0.0 when the answer has fewer than ``n`` words (nothing to compare; such answers are degenerate by
    length anyway).
    """
    grams = word_ngrams(words(answer), n)
    if not grams:
        return 0.0
    in_prompt = set(word_ngrams(words(prompt), n))
    return sum(g in in_prompt for g in grams) / len(grams)
