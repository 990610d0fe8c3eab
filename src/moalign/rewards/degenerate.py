"""The degenerate-answer rule: what counts as no answer at all.

A front can be won by a reward hack: a length scorer rewards a one-word reply, a relevance scorer an echo of
the question, and a policy trained on them learns exactly those (docs/text_comparison.md). The rule lives here,
beside the scorers, because two places must apply the same one: the evaluation reports the share of degenerate
answers of every policy (:mod:`moalign.eval.degeneracy`), and the ``answer_brevity`` scorer
(:class:`moalign.rewards.offline.ConcisenessReward` with ``degenerate_as_empty``) scores a degenerate answer as
no answer.

**Degenerate answer** (:func:`is_degenerate`): at most 2 words (the empty answer included), or some word
3-gram occurring at least twice in the answer (overlapping occurrences count, so ``"no no no no"`` repeats
``no no no``), or -- when the prompt is given -- an **echo**: half or more of the answer's word 2-grams occur
in the prompt (:func:`moalign.rewards.text_overlap.copied_share`). Words as
:func:`moalign.rewards.text_overlap.words` defines them.
"""

from __future__ import annotations

from collections import Counter

from moalign.rewards.base import TextOrChat, last_user_message
from moalign.rewards.text_overlap import copied_share, word_ngrams, words

__all__ = ["DEGENERATE_MAX_WORDS", "REPEATED_NGRAM", "ECHO_SHARE", "is_echo", "is_degenerate"]

#: answers with at most this many words are degenerate
DEGENERATE_MAX_WORDS = 2
#: an answer repeating a word n-gram of this length is degenerate
REPEATED_NGRAM = 3
#: an answer with at least this share of its word 2-grams found in the prompt is an echo (degenerate)
ECHO_SHARE = 0.5


def is_echo(text: str, prompt: TextOrChat) -> bool:
    """Whether ``text`` copies its prompt: at least :data:`ECHO_SHARE` of its word 2-grams occur in ``prompt``
    (for a chat, its last user message: the question answered, as the relevance scorers read it)."""
    return copied_share(text, last_user_message(prompt), 2) >= ECHO_SHARE


def is_degenerate(text: str, prompt: TextOrChat | None = None) -> bool:
    """Whether ``text`` is empty, has at most 2 words, repeats a word 3-gram, or (``prompt`` given) echoes the
    prompt (module docstring)."""
    tokens = words(text)
    if len(tokens) <= DEGENERATE_MAX_WORDS:
        return True
    counts = Counter(word_ngrams(tokens, REPEATED_NGRAM))
    return any(c > 1 for c in counts.values()) or (prompt is not None and is_echo(text, prompt))
