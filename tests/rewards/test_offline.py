"""Offline scorers against the third-party libraries called directly, and the conflict measurement."""

from __future__ import annotations

import math

import numpy as np
import pytest

from moalign.rewards.offline import (
    CleanlinessReward,
    ConcisenessReward,
    PositivityReward,
    RelevanceReward,
    SimplicityReward,
    find_minilm_path,
    offline_reward_functions,
)

TEXTS = [
    "I absolutely love this, it is wonderful!",
    "This is terrible and I hate it.",
    "The meeting is at noon.",
    "Photosynthesis converts electromagnetic radiation into chemical energy through complicated biochemical pathways.",
]
PROMPTS = ["q"] * len(TEXTS)


def test_positivity_is_vader_compound():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    scores = PositivityReward()(PROMPTS, TEXTS)
    assert scores == [analyzer.polarity_scores(t)["compound"] for t in TEXTS]
    assert scores[0] > 0.5 and scores[1] < -0.5 and scores[2] == 0.0
    assert all(-1.0 <= s <= 1.0 for s in scores)


def test_simplicity_is_flesch_reading_ease():
    import textstat

    scores = SimplicityReward()(PROMPTS, TEXTS)
    assert scores == [textstat.flesch_reading_ease(t) for t in TEXTS]
    # closed form for one one-syllable word: 206.835 - 1.015 * 1 - 84.6 * 1
    assert SimplicityReward()(["q"], ["Yes."])[0] == pytest.approx(206.835 - 1.015 - 84.6, abs=0.01)
    assert scores[2] > scores[3]


def test_conciseness_counts_words_and_characters():
    completions = ["one two  three", "", "  a\nb\tc d "]
    assert ConcisenessReward()(["q"] * 3, completions) == [-3.0, -0.0, -4.0]
    assert ConcisenessReward(unit="characters")(["q"] * 3, completions) == [-14.0, -0.0, -10.0]
    with pytest.raises(ValueError, match="unit"):
        ConcisenessReward(unit="tokens")


def test_conciseness_words_are_runs_of_letters_not_whitespace_chunks():
    # hand-counted: punctuation glued between letters separates words; a lone dash is no word;
    # an apostrophe inside a word keeps it whole
    completions = ["S.S.S.S.S", "Sm.L.M-is-here", "don't - stop", "e.g. this"]
    assert ConcisenessReward()(["q"] * 4, completions) == [-5.0, -5.0, -2.0, -3.0]
    # the token soup that beat the whitespace count now lands below the floor's optimum like any long answer
    assert ConcisenessReward(floor=10)(["q"], [".".join(["S"] * 30)]) == [-30.0]


def _words(n: int) -> str:
    return " ".join(["word"] * n)


def test_conciseness_with_a_floor_against_hand_computed_values():
    # floor 10: n >= 10 scores -n; n < 10 scores -(10 + 2 * (10 - n))
    reward = ConcisenessReward(floor=10)
    completions = ["", _words(1), _words(9), _words(10), _words(12), _words(40)]
    assert reward(["q"] * 6, completions) == [-30.0, -28.0, -12.0, -10.0, -12.0, -40.0]
    # characters, floor 5: "abc" misses 2 -> -(5 + 4); "abcdef" is above -> -6; "abcde" is the optimum
    chars = ConcisenessReward(unit="characters", floor=5)
    assert chars(["q"] * 4, ["abc", "abcde", "abcdef", ""]) == [-9.0, -5.0, -6.0, -15.0]
    # floor 0 is plain conciseness
    texts = ["", _words(1), _words(7)]
    assert ConcisenessReward(floor=0)(["q"] * 3, texts) == ConcisenessReward()(["q"] * 3, texts) == [-0.0, -1.0, -7.0]
    with pytest.raises(ValueError, match="floor"):
        ConcisenessReward(floor=-1)


def test_brevity_is_conciseness_with_the_ten_word_floor():
    from moalign.rewards.offline import BREVITY_FLOOR_WORDS
    from moalign.rewards.registry import OFFLINE_NAMES, resolve_reward_functions

    assert BREVITY_FLOOR_WORDS == 10 and "brevity" in OFFLINE_NAMES
    (brevity,) = resolve_reward_functions(["brevity"])
    assert isinstance(brevity, ConcisenessReward)
    assert (brevity.name, brevity.floor, brevity.unit) == ("brevity", 10, "words")
    assert brevity(["q"] * 4, ["", _words(1), _words(10), _words(12)]) == [-30.0, -28.0, -10.0, -12.0]
    (short,) = resolve_reward_functions(["short=brevity"])
    assert (short.name, short.floor) == ("short", 10)
    assert [f.name for f in offline_reward_functions(["brevity", "conciseness"])] == ["brevity", "conciseness"]
    assert offline_reward_functions(["conciseness"])[0].floor == 0


def test_cleanliness_matches_better_profanity():
    from better_profanity import profanity

    texts = ["What a lovely day.", "This is shit."]
    profanity.load_censor_words()
    expected = [0.0 if profanity.contains_profanity(t) else 1.0 for t in texts]
    assert CleanlinessReward()(["q", "q"], texts) == expected == [1.0, 0.0]


def test_chat_completions_are_scored_on_their_text():
    chat = [[{"role": "assistant", "content": t}] for t in TEXTS]
    prompts = [[{"role": "system", "content": "w=0.5"}, {"role": "user", "content": "q"}]] * len(TEXTS)
    assert ConcisenessReward()(prompts, chat) == ConcisenessReward()(PROMPTS, TEXTS)
    assert PositivityReward()(prompts, chat) == PositivityReward()(PROMPTS, TEXTS)


def test_relevance_is_cosine_of_embeddings():
    table = {"p": [1.0, 0.0], "same": [2.0, 0.0], "orth": [0.0, 3.0], "diag": [1.0, 1.0], "opp": [-1.0, 0.0]}
    encoder = lambda texts: np.array([table[t] for t in texts])  # noqa: E731
    reward = RelevanceReward(encoder=encoder)
    scores = reward(["p"] * 4, ["same", "orth", "diag", "opp"])
    assert scores == pytest.approx([1.0, 0.0, 1 / math.sqrt(2), -1.0], abs=1e-12)
    # chat prompt: the last user message is what is compared
    chat = [{"role": "system", "content": "opp"}, {"role": "user", "content": "p"}]
    assert reward([chat], ["diag"]) == pytest.approx([1 / math.sqrt(2)])
    zero = RelevanceReward(encoder=lambda texts: np.zeros((len(texts), 2)))
    with pytest.raises(ValueError, match="zero embedding"):
        zero(["p"], ["x"])


def test_answer_relevance_against_hand_computed_values():
    """score = cos - c * (cos + 1), c the share of the answer's word 2-grams found in the prompt (the last user
    message); the fake encoder fixes every cosine against the prompt [1, 0]."""
    prompt = "How do solar panels work"  # 2-grams: (how do)(do solar)(solar panels)(panels work)
    table = {prompt: [1.0, 0.0],
             "How do solar panels work?": [0.6, 0.8],            # an echo (c = 1), cos 0.6
             "They turn sunlight into electricity.": [0.6, 0.8],  # c = 0 of 4 2-grams, cos 0.6
             "Solar panels work by photons.": [4.0, 3.0],         # (solar panels)(panels work) of 4: c = 1/2, cos 0.8
             "Photons hit the solar panels.": [0.0, 1.0]}         # (solar panels) of 4: c = 1/4, cos 0
    encoder = lambda texts: np.array([table[t] for t in texts])  # noqa: E731
    answers = list(table)
    penalised = RelevanceReward(name="answer_relevance", encoder=encoder, copy_penalty=True)
    expected = [1 - 1 * 2, 0.6 - 1 * 1.6, 0.6, 0.8 - 0.5 * 1.8, 0 - 0.25 * 1]  # = -1, -1, 0.6, -0.1, -0.25
    assert penalised([prompt] * 5, answers) == pytest.approx(expected, abs=1e-12)
    # plain relevance is the cosine: the echoes score highest
    assert RelevanceReward(encoder=encoder)([prompt] * 5, answers) == pytest.approx([1, 0.6, 0.6, 0.8, 0], abs=1e-12)
    # chat prompt: copying is measured against the last user message only, not the system message
    chat = [{"role": "system", "content": "They turn sunlight into electricity."}, {"role": "user", "content": prompt}]
    assert penalised([chat] * 2, answers[1:3]) == pytest.approx([-1.0, 0.6], abs=1e-12)


def test_answer_relevance_by_name_penalises_copying():
    from moalign.rewards.registry import OFFLINE_NAMES, resolve_reward_functions

    assert "answer_relevance" in OFFLINE_NAMES
    (answer,) = resolve_reward_functions(["answer_relevance"])
    assert isinstance(answer, RelevanceReward) and (answer.name, answer.copy_penalty) == ("answer_relevance", True)
    (plain,) = resolve_reward_functions(["relevance"])
    assert (plain.name, plain.copy_penalty) == ("relevance", False)
    (built,) = offline_reward_functions(["answer_relevance"])
    assert built.copy_penalty and built.name == "answer_relevance"


def test_find_minilm_path_points_to_a_sentence_transformers_dir():
    path = find_minilm_path()
    assert (path / "modules.json").is_file() and (path / "model.safetensors").is_file()
    assert (path / "1_Pooling" / "config.json").is_file()


def test_offline_reward_functions_by_name():
    fns = offline_reward_functions(["conciseness", "positivity"])
    assert [f.name for f in fns] == ["conciseness", "positivity"]
    with pytest.raises(ValueError, match="unknown offline reward"):
        offline_reward_functions(["helpfulness"])


# ----------------------------------------------------------------------------- real MiniLM (slow)


@pytest.mark.slow
def test_minilm_relevance_prefers_on_topic_answers():
    import torch

    torch.set_num_threads(1)
    reward = RelevanceReward()
    prompts = ["How do I boil an egg?"] * 2 + ["What causes the seasons on Earth?"] * 2
    completions = [
        "Put the egg in boiling water for nine minutes, then cool it.",
        "The stock market closed higher today.",
        "The tilt of Earth's axis changes how directly sunlight reaches each hemisphere.",
        "Add two cups of flour and stir.",
    ]
    s = reward(prompts, completions)
    assert s[0] > s[1] + 0.2 and s[2] > s[3] + 0.2
    assert all(-1.0 <= x <= 1.0 for x in s)


@pytest.mark.slow
def test_hand_written_examples_show_conflicting_objectives():
    """Relevance (MiniLM) and conciseness conflict on the hand-written responses (Spearman < -0.3)."""
    import torch
    from scipy.stats import spearmanr

    from tests.rewards.examples import flat_examples

    torch.set_num_threads(1)
    prompts, completions = flat_examples()
    relevance = RelevanceReward()(prompts, completions)
    conciseness = ConcisenessReward()(prompts, completions)
    rho, p_value = spearmanr(relevance, conciseness)
    assert rho < -0.3 and p_value < 0.05


def test_answer_brevity_scores_degenerate_answers_as_the_empty_one():
    from moalign.rewards.registry import OFFLINE_NAMES, resolve_reward_functions

    assert "answer_brevity" in OFFLINE_NAMES
    (reward,) = resolve_reward_functions(["answer_brevity"])
    assert (reward.name, reward.floor, reward.degenerate_as_empty) == ("answer_brevity", 10, True)
    prompt = "How can I avoid getting seasick on a boat trip?"
    answers = [
        "Look at the horizon, eat light meals and take ginger before you board.",  # 13 words, an answer
        "Look at the horizon often.",  # 5 words, below the floor: -(10 + 2 * 5)
        "How can I avoid getting seasick on a boat trip today?",  # echo: 9 of its 10 word 2-grams in the prompt
        "Stay on the boat and stay on the boat always.",  # repeats the 3-gram "stay on the"
        "Ginger tea.",  # 2 words
        "",
    ]
    # hand-computed: only the first two are answers; every degenerate one scores as the empty answer, -3 * 10
    assert reward([prompt] * 6, answers) == [-13.0, -20.0, -30.0, -30.0, -30.0, -30.0]
    # plain brevity scores the same texts by length only
    (brevity,) = resolve_reward_functions(["brevity"])
    assert brevity([prompt] * 6, answers) == [-13.0, -20.0, -11.0, -10.0, -26.0, -30.0]


def test_answer_brevity_needs_a_floor_and_one_prompt_per_answer():
    with pytest.raises(ValueError, match="floor"):
        ConcisenessReward(degenerate_as_empty=True)
    with pytest.raises(ValueError, match="got 2 prompts but 3 completions"):
        ConcisenessReward(floor=10, degenerate_as_empty=True)(["q", "q"], ["a b c"] * 3)
    with pytest.raises(ValueError):  # called directly, score refuses unequal lengths too (strict zip)
        ConcisenessReward(floor=10, degenerate_as_empty=True).score(["q", "q"], ["a b c"] * 3)


def test_the_degenerate_rule_has_one_home():
    from moalign.eval import degeneracy
    from moalign.rewards import degenerate

    assert degeneracy.is_degenerate is degenerate.is_degenerate and degeneracy.is_echo is degenerate.is_echo
