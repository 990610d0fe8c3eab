"""The demo's data stages: the prompt split and pair labelling (the full pipeline is a slow check)."""

import numpy as np
import pytest

from moalign.experiments.demo import DemoConfig, build_pairs, split_prompts


def test_build_pairs_labels_every_distinct_pair_and_merges_repeated_responses():
    samples = [{"prompt": "p1", "completion": "short"}, {"prompt": "p1", "completion": "a longer answer"},
               {"prompt": "p1", "completion": "short"}, {"prompt": "p2", "completion": "only one"},
               {"prompt": "p3", "completion": "x"}, {"prompt": "p3", "completion": "y"}]
    scores = np.array([[0.2, -1.0], [0.9, -3.0], [0.2, -1.0], [0.5, -2.0], [0.4, -1.0], [0.4, -2.0]])
    dataset, report = build_pairs(samples, scores, ["relevance", "conciseness"])
    assert dataset.objectives == ["relevance", "conciseness"] and dataset.kind == "pairwise"
    pairs = dataset.dataset.to_list()
    assert [(p["prompt"], p["completion_a"], p["completion_b"]) for p in pairs] == [
        ("p1", "short", "a longer answer"), ("p3", "x", "y")]
    # hard labels: 1 when completion_a scores higher, 0 when lower, 0.5 on ties (relevance of p3)
    assert [p["preference"] for p in pairs] == [[0.0, 1.0], [0.5, 1.0]]
    assert pairs[0]["scores_a"] == [0.2, -1.0] and pairs[0]["scores_b"] == [0.9, -3.0]
    assert report.rows_out == 2


def test_build_pairs_rejects_a_repeated_response_with_different_scores():
    samples = [{"prompt": "p", "completion": "same"}, {"prompt": "p", "completion": "same"}]
    with pytest.raises(ValueError, match="differing scores"):
        build_pairs(samples, np.array([[0.1, 1.0], [0.2, 1.0]]), ["a", "b"])


def test_split_is_disjoint_seeded_covers_the_set_and_checks_its_size():
    from moalign.experiments.demo import demo_prompts

    config = DemoConfig(num_train_prompts=30, num_test_prompts=10, num_validation_prompts=5)
    splits = split_prompts(config)
    n = len(demo_prompts())
    assert [len(splits[k]) for k in ("train", "validation", "test")] == [30, n - 40, 10]
    assert not set(splits["train"]) & set(splits["test"])
    assert not set(splits["validation"]) & (set(splits["train"]) | set(splits["test"]))
    assert set(splits["train"]) | set(splits["validation"]) | set(splits["test"]) == {r["prompt"] for r in demo_prompts()}
    assert split_prompts(DemoConfig(num_train_prompts=30, num_test_prompts=10, num_validation_prompts=5)) == splits
    # the test block is the end of the permutation: more train prompts never move a test prompt
    assert split_prompts(DemoConfig(num_train_prompts=60, num_test_prompts=10, num_validation_prompts=5))["test"] \
        == splits["test"]
    with pytest.raises(ValueError, match="prompt set has"):
        split_prompts(DemoConfig(num_train_prompts=10_000))
    with pytest.raises(ValueError, match="eval_split"):
        DemoConfig(eval_split="train")


def test_samples_are_cut_back_to_their_last_complete_sentence():
    from moalign.experiments.demo import cut_to_last_sentence

    assert cut_to_last_sentence("Paris is the capital. It has a big") == "Paris is the capital."
    assert cut_to_last_sentence('One! Two? "Three." And then') == 'One! Two? "Three."'
    assert cut_to_last_sentence("Pi is 3.14 or so. Next") == "Pi is 3.14 or so."  # a decimal point is no end
    assert cut_to_last_sentence("no sentence end at all") == "no sentence end at all"
    assert cut_to_last_sentence("Complete.") == "Complete."


def test_a_folder_made_with_other_settings_is_not_reused(tmp_path):
    import json
    from dataclasses import asdict

    from moalign.experiments.demo import check_reusable

    earlier = DemoConfig(out=str(tmp_path))
    (tmp_path / "demo_config.json").write_text(json.dumps(asdict(earlier)))
    check_reusable(tmp_path, DemoConfig(out=str(tmp_path), max_steps=5))  # no artefact yet: nothing to protect
    (tmp_path / "samples.jsonl").write_text("")
    check_reusable(tmp_path, DemoConfig(out=str(tmp_path), max_steps=5, eval_split="validation"))  # samples fit
    with pytest.raises(ValueError, match=r"samples.jsonl was made with other settings \(responses_per_prompt=3"):
        check_reusable(tmp_path, DemoConfig(out=str(tmp_path), responses_per_prompt=4))
    (tmp_path / "model").mkdir()
    with pytest.raises(ValueError, match=r"model was made with other settings \(max_steps=60 there, 5 now\)"):
        check_reusable(tmp_path, DemoConfig(out=str(tmp_path), max_steps=5))
    check_reusable(tmp_path, DemoConfig(out=str(tmp_path), eval_split="validation", num_test_prompts=50))
    # a field an older run did not record counts as its default
    (tmp_path / "demo_config.json").write_text(json.dumps({k: v for k, v in asdict(earlier).items()
                                                           if k != "head_learning_rate"}))
    check_reusable(tmp_path, DemoConfig(out=str(tmp_path)))
    with pytest.raises(ValueError, match="head_learning_rate=None there, 0.0001 now"):
        check_reusable(tmp_path, DemoConfig(out=str(tmp_path), head_learning_rate=1e-4))
    # before sample_ends existed every run cut its samples to a sentence, whatever the default is now
    (tmp_path / "demo_config.json").write_text(json.dumps({k: v for k, v in asdict(earlier).items()
                                                           if k != "sample_ends"}))
    check_reusable(tmp_path, DemoConfig(out=str(tmp_path), sample_ends="sentence"))
    with pytest.raises(ValueError, match="sample_ends='sentence' there, 'truncated' now"):
        check_reusable(tmp_path, DemoConfig(out=str(tmp_path), sample_ends="truncated"))


def test_training_samples_are_sentence_cut_or_whole_and_flagged():
    from moalign.experiments.demo import training_samples

    samples = [{"prompt": "p", "completion": "One. Two.", "generated": "One. Two. Thr", "finished": False},
               {"prompt": "p", "completion": "Done.", "generated": "Done.", "finished": True}]
    assert training_samples(samples, "sentence") == [{"prompt": "p", "completion": "One. Two."},
                                                     {"prompt": "p", "completion": "Done."}]
    assert training_samples(samples, "truncated") == [
        {"prompt": "p", "completion": "One. Two. Thr", "truncated": True},
        {"prompt": "p", "completion": "Done.", "truncated": False}]
    old = [{"prompt": "p", "completion": "Done.", "generated": "Done."}]  # written before the flag existed
    with pytest.raises(ValueError, match="line 1: no true/false 'finished' flag"):
        training_samples(old, "truncated", "x/samples.jsonl")
    dataset, _ = build_pairs(training_samples(samples, "truncated"), np.array([[0.1, -3.0], [0.5, -1.0]]), ["a", "b"])
    assert dataset[0]["truncated_a"] is True and dataset[0]["truncated_b"] is False
    with pytest.raises(ValueError, match="sample_ends"):
        DemoConfig(sample_ends="cut")


def test_steering_divergence_is_checked_when_configured():
    assert DemoConfig(steering_divergence="0.5-divergence").steering_divergence == "0.5-divergence"
    with pytest.raises(ValueError, match="alpha"):
        DemoConfig(steering_divergence="-1-divergence")
