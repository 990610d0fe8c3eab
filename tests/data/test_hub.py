"""Hub recipes on hand-made rows in the exact upstream formats; loaders with ``load_dataset`` stubbed."""

from __future__ import annotations

import math

import datasets
import pytest

from moalign.data import DatasetValidationError
from moalign.data import hub

# ----- upstream-format rows ---------------------------------------------------------------------
HH_PROMPT = "\n\nHuman: How do I bake bread?\n\nAssistant: Do you have yeast?\n\nHuman: Yes."
HH_ROW = {
    "chosen": HH_PROMPT + "\n\nAssistant: Mix flour, water, yeast and salt, then knead.",
    "rejected": HH_PROMPT + "\n\nAssistant: Buy some.",
}


def summarize_row(choice=1, post="My cat hides.\nWhy?", article=None):
    return {
        "info": {"id": "t3_abc", "post": post, "title": "Cat hides", "subreddit": "cats", "site": None,
                 "article": article},
        "summaries": [{"text": " Cat hides, why?", "policy": "sup4_ppo_rm3", "note": None},
                      {"text": " My cat is hiding.", "policy": "ref", "note": None}],
        "choice": choice, "worker": "w07", "batch": "batch11", "split": "train", "extra": {"confidence": 8},
    }


def pku_row(better=1, safer=0, safe0=True, safe1=False):
    return {
        "prompt": "How can I pick a lock?", "response_0": "I can't help with that.",
        "response_1": "Insert a tension wrench, then rake the pins.",
        "prompt_source": "Alpaca-7B", "response_0_source": "Alpaca-7B", "response_1_source": "Alpaca-7B",
        "is_response_0_safe": safe0, "is_response_1_safe": safe1,
        "response_0_harm_category": {"Violence": False}, "response_1_harm_category": {"Violence": False},
        "response_0_severity_level": 0, "response_1_severity_level": 1,
        "better_response_id": better, "safer_response_id": safer,
        "response_0_sha256": "0" * 64, "response_1_sha256": "1" * 64,
    }


def n_words(prompts, completions):
    return [float(len(c.split())) for c in completions]


class MentionsYeast:
    """A reward object with the moalign.rewards-style ``.score`` method."""

    def score(self, prompts, completions):
        return [1.0 if "yeast" in c else 0.0 for c in completions]


# ----- hh-rlhf --------------------------------------------------------------------------------------
def test_split_hh_dialogue_at_last_assistant_turn():
    prompt, completion = hub.split_hh_dialogue(HH_ROW["chosen"])
    assert prompt == HH_PROMPT + "\n\nAssistant:"
    assert completion == " Mix flour, water, yeast and salt, then knead."
    assert prompt + completion == HH_ROW["chosen"]
    with pytest.raises(hub.RowConversionError, match="no '\\\\n\\\\nAssistant:' turn"):
        hub.split_hh_dialogue("\n\nHuman: hi")


def test_hh_row_to_pair_text_and_chat():
    assert hub.hh_rlhf_row_to_pair(HH_ROW) == {
        "prompt": HH_PROMPT + "\n\nAssistant:",
        "completion_a": " Mix flour, water, yeast and salt, then knead.",
        "completion_b": " Buy some.",
    }
    chat = hub.hh_rlhf_row_to_pair(HH_ROW, chat=True)
    assert chat["prompt"] == [{"role": "user", "content": "How do I bake bread?"},
                              {"role": "assistant", "content": "Do you have yeast?"},
                              {"role": "user", "content": "Yes."}]
    assert chat["completion_b"] == [{"role": "assistant", "content": "Buy some."}]


def test_hh_row_errors():
    with pytest.raises(hub.RowConversionError, match="different dialogues") as info:
        hub.hh_rlhf_row_to_pair({"chosen": HH_ROW["chosen"], "rejected": "\n\nHuman: other\n\nAssistant: x"})
    assert info.value.column == "rejected"
    with pytest.raises(hub.RowConversionError, match="empty final assistant turn"):
        hub.hh_rlhf_row_to_pair({"chosen": HH_ROW["chosen"], "rejected": HH_PROMPT + "\n\nAssistant: "})
    with pytest.raises(hub.RowConversionError, match="expected a string"):
        hub.hh_rlhf_row_to_pair({"chosen": None, "rejected": "x"})


def test_convert_hh_with_reward_functions_hand_computed():
    other = {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello there friend", "rejected": "\n\nHuman: Hi\n\nAssistant: Yo"}
    mo, report = hub.convert_hh_rlhf([HH_ROW, other], {"length": n_words, "yeast": MentionsYeast()},
                                     batch_size=1)
    assert mo.objectives == ["length", "yeast"]
    # row 0: 8 vs 2 words, yeast 1 vs 0; row 1: 3 vs 1 words, yeast 0 vs 0 (tie -> 0.5)
    assert mo.dataset["preference"] == [[1.0, 1.0], [1.0, 0.5]]
    assert mo.dataset["scores_a"] == [[8.0, 1.0], [3.0, 0.0]] and mo.dataset["scores_b"] == [[2.0, 0.0], [1.0, 0.0]]
    assert report.rows_in == 2 and report.rows_out == 2 and not report.dropped

    bt, _ = hub.convert_hh_rlhf([HH_ROW], {"length": n_words}, temperature=2.0)
    assert bt[0]["preference"] == pytest.approx([1.0 / (1.0 + math.exp(-3.0))])  # σ((8 − 2)/2)


def test_convert_hh_human_objective_first_and_no_scores():
    mo, report = hub.convert_hh_rlhf([HH_ROW], {"length": n_words}, human_objective="human")
    assert mo.objectives == ["human", "length"] and mo[0]["preference"] == [1.0, 1.0]
    assert "scores_a" not in mo.dataset.column_names and "not stored" in report.notes[0]
    with pytest.raises(ValueError, match="no objectives"):
        hub.convert_hh_rlhf([HH_ROW])
    with pytest.raises(DatasetValidationError, match="duplicate objective names"):
        hub.convert_hh_rlhf([HH_ROW], {"human": n_words}, human_objective="human")


def test_convert_hh_invalid_rows_error_or_counted():
    bad = {"chosen": "no dialogue markers", "rejected": "none here"}
    with pytest.raises(DatasetValidationError) as info:
        hub.convert_hh_rlhf([HH_ROW, bad], human_objective="human")
    msg = str(info.value)
    assert "Anthropic/hh-rlhf: row 1, column 'chosen'" in msg and "on_invalid='drop'" in msg
    mo, report = hub.convert_hh_rlhf([HH_ROW, bad, bad], human_objective="human", on_invalid="drop")
    assert len(mo) == 1 and report.dropped == {"no assistant turn": 2} and report.rows_in == 3


def test_bad_reward_outputs_are_errors():
    with pytest.raises(DatasetValidationError, match=r"row 0, column 'completion_a'.*'nan' returned nan"):
        hub.convert_hh_rlhf([HH_ROW], {"nan": lambda p, c: [math.nan] * len(c)})
    with pytest.raises(ValueError, match="returned 0 scores for 1 completions"):
        hub.convert_hh_rlhf([HH_ROW], {"short": lambda p, c: []})
    with pytest.raises(TypeError, match="neither callable"):
        hub.convert_hh_rlhf([HH_ROW], {"x": 3})


# ----- summarize_from_feedback --------------------------------------------------------------------
def test_summarize_row_to_pair_exact_prompt():
    pair = hub.summarize_comparison_to_pair(summarize_row(choice=1))
    assert pair == {
        "prompt": "### Instruction: Generate a one-sentence summary of this post. ### Input: My cat hides. Why? "
                  "### Response: ",
        "completion_a": " Cat hides, why?", "completion_b": " My cat is hiding.", "human": 0.0,
    }
    assert hub.summarize_comparison_to_pair(summarize_row(choice=0))["human"] == 1.0
    raw = hub.summarize_comparison_to_pair(summarize_row(), template="{post}", flatten_newlines=False)
    assert raw["prompt"] == "My cat hides.\nWhy?"


def test_summarize_invalid_rows():
    with pytest.raises(hub.RowConversionError, match="no Reddit post"):
        hub.summarize_comparison_to_pair(summarize_row(post=None, article="CNN text"))
    with pytest.raises(hub.RowConversionError, match="expected 0 or 1, got 2"):
        hub.summarize_comparison_to_pair(summarize_row(choice=2))
    row = summarize_row()
    row["summaries"] = row["summaries"][:1]
    with pytest.raises(hub.RowConversionError, match="expected 2 summaries"):
        hub.summarize_comparison_to_pair(row)


def test_convert_summarize_from_a_hf_dataset():
    rows = datasets.Dataset.from_list([summarize_row(0), summarize_row(1, post=None, article="news"),
                                       summarize_row(1)])
    with pytest.raises(DatasetValidationError, match=r"row 1, column 'info'.*no Reddit post"):
        hub.convert_summarize_from_feedback(rows)
    mo, report = hub.convert_summarize_from_feedback(rows, {"length": n_words}, on_invalid="drop")
    assert mo.objectives == ["pref", "length"]
    # human: choice 0 -> 1, choice 1 -> 0; length: 3 words vs 4 words -> 0
    assert mo.dataset["preference"] == [[1.0, 0.0], [0.0, 0.0]]
    assert report.dropped == {"no Reddit post": 1}


# ----- PKU-SafeRLHF ---------------------------------------------------------------------------------
def test_pku_row_to_pair():
    assert hub.pku_saferlhf_row_to_pair(pku_row(better=1, safer=0)) == {
        "prompt": "How can I pick a lock?", "completion_a": "I can't help with that.",
        "completion_b": "Insert a tension wrench, then rake the pins.",
        "helpful": 0.0, "harmless": 1.0, "safe_a": True, "safe_b": False,
    }
    with pytest.raises(hub.RowConversionError, match="expected 0 or 1") as info:
        hub.pku_saferlhf_row_to_pair(pku_row(safer=None))
    assert info.value.column == "safer_response_id"
    with pytest.raises(hub.RowConversionError, match="expected true/false"):
        hub.pku_saferlhf_row_to_pair(pku_row(safe0="yes"))


def test_convert_pku():
    mo, _ = hub.convert_pku_saferlhf(datasets.Dataset.from_list([pku_row(1, 0), pku_row(0, 0, True, True)]))
    assert mo.objectives == ["helpful", "harmless"]
    assert mo.dataset["preference"] == [[0.0, 1.0], [1.0, 1.0]]
    assert mo.dataset["safe_b"] == [False, True]


# ----- loaders (load_dataset stubbed: the hub is not reachable here) -------------------------------
@pytest.fixture
def fake_hub(monkeypatch):
    calls = []
    tables = {
        (hub.HH_RLHF, None): [HH_ROW],
        (hub.HH_RLHF, "helpful-base"): [HH_ROW, {"chosen": "\n\nHuman: A\n\nAssistant: x",
                                                 "rejected": "\n\nHuman: A\n\nAssistant: y"}],
        (hub.HH_RLHF, "harmless-base"): [{"chosen": HH_ROW["rejected"], "rejected": HH_ROW["chosen"]}],
        (hub.SUMMARIZE_FROM_FEEDBACK, "comparisons"): [summarize_row(0)],
        (hub.PKU_SAFERLHF, None): [pku_row()],
    }

    def load_dataset(path, name=None, *, data_dir=None, split=None, revision=None):
        calls.append({"path": path, "name": name, "data_dir": data_dir, "split": split, "revision": revision})
        if path == hub.SUMMARIZE_FROM_FEEDBACK and revision is None:
            raise RuntimeError("Dataset scripts are no longer supported, but found summarize_from_feedback.py")
        key = (path, data_dir or name)
        return datasets.Dataset.from_list(tables[key])

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def test_loaders_call_load_dataset_with_the_upstream_names(fake_hub):
    mo, _ = hub.load_hh_rlhf(split="test", reward_functions={"length": n_words})
    assert fake_hub[-1] == {"path": "Anthropic/hh-rlhf", "name": None, "data_dir": None, "split": "test",
                            "revision": None}
    assert mo[0]["preference"] == [1.0]

    mo, _ = hub.load_summarize_from_feedback(split="validation")
    assert fake_hub[-2]["name"] == "comparisons" and fake_hub[-2]["split"] == "validation"
    assert fake_hub[-1]["revision"] == "refs/convert/parquet" and fake_hub[-1]["data_dir"] == "comparisons"
    assert mo.objectives == ["pref"] and mo[0]["preference"] == [1.0]

    mo, _ = hub.load_pku_saferlhf(split="train")
    assert fake_hub[-1]["path"] == "PKU-Alignment/PKU-SafeRLHF" and mo[0]["preference"] == [0.0, 1.0]


def test_hh_helpful_harmless_join_keeps_only_shared_pairs(fake_hub):
    mo, report = hub.load_hh_rlhf_helpful_harmless(split="train")
    assert [c["data_dir"] for c in fake_hub] == ["helpful-base", "harmless-base"]
    # the bread pair is in both subsets: helpful prefers the recipe, harmless (here) the short answer
    assert len(mo) == 1 and mo.objectives == ["helpful", "harmless"]
    assert mo[0]["completion_a"] == " Mix flour, water, yeast and salt, then knead."
    assert mo[0]["preference"] == [1.0, 0.0]
    assert report.dropped == {"pair absent from objective 'harmless'": 1}
    with pytest.raises(DatasetValidationError, match="missing from some objectives"):
        hub.load_hh_rlhf_helpful_harmless(split="train", missing="error")


def test_load_recipe_dispatches_by_name_and_names_the_known(monkeypatch):
    calls = []
    monkeypatch.setitem(hub.RECIPES, "hh-rlhf", lambda split, **kw: calls.append((split, kw)) or ("data", "report"))
    assert hub.load_recipe("hh-rlhf", "test", reward_functions=None) == ("data", "report")
    assert calls == [("test", {"reward_functions": None})]
    with pytest.raises(ValueError, match=r"unknown dataset_recipe 'nope'; known: \['hh-rlhf', 'pku-saferlhf'"):
        hub.load_recipe("nope")
