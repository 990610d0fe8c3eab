"""End-to-end evaluate_policies on tiny models with stub reward functions (count of a letter, length)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from moalign.eval.evaluate import (
    EvalConfig,
    default_policies,
    evaluate_policies,
    load_generations,
    rescore_generations,
)
from moalign.eval.policies import Policy, head_policies, steering_policies
from moalign.rewards import score_completions

PROMPTS = [
    "hello there", "how are you today?", "what is 2+2", "tell me a joke please", "hi", "ok so",
    "where is the sun", "why is the sky blue?", "name three cats", "count to five", "good night", "yes or no?",
]


def count_letter(letter: str):
    def fn(prompts, completions):
        return [float(c.count(letter)) for c in completions]

    return fn


def _embeddings() -> np.ndarray:
    # two well-separated groups (first six prompts / last six), injected instead of MiniLM
    rng = np.random.default_rng(0)
    return np.repeat([[5.0, 0.0], [0.0, 5.0]], 6, axis=0) + rng.normal(scale=0.01, size=(12, 2))


def _config(tmp_path, **kw) -> EvalConfig:
    base = dict(max_new_tokens=8, batch_size=4, num_clusters=2, bootstrap_samples=200, seed=0, do_sample=True,
                output_dir=str(tmp_path), progress=False)
    return EvalConfig(**{**base, **kw})


def test_end_to_end_with_stand_in_multi_head_model(standin_model, char_tokenizer, tmp_path):
    rewards = {"count_a": count_letter("a"), "count_b": count_letter("b")}
    policies = head_policies(2, standin_model.head_names) + steering_policies(2, steps=10)
    result = evaluate_policies(standin_model, char_tokenizer, PROMPTS, rewards, policies, _config(tmp_path),
                               prompt_embeddings=_embeddings())
    # the base policy was added, first
    assert [p.name for p in result.policies][:3] == ["base", "head:count_a", "head:count_b"]
    assert result.scores.shape == (14, 12, 2)
    assert result.cluster_labels.tolist() == [0] * 6 + [1] * 6
    # files with the promised content
    for name in ("report.json", "report.md", "front.png", "generations.jsonl", "eval_config.json"):
        assert (tmp_path / name).is_file(), name
    assert (tmp_path / "front.png").read_bytes()[:4] == b"\x89PNG"
    rep = json.loads((tmp_path / "report.json").read_text())
    for key in ("objectives", "num_prompts", "num_clusters", "cluster_sizes", "base_policy", "bootstrap",
                "reference_point", "policies", "front", "steering_spearman", "config", "plots", "model"):
        assert key in rep, key
    assert rep["objectives"] == ["count_a", "count_b"] and rep["cluster_sizes"] == [6, 6]
    assert rep["model"]["head_names"] == ["count_a", "count_b"]
    assert set(rep["reference_point"]) == {"value", "source", "rule"}
    row = rep["policies"][1]
    assert set(row) >= {"name", "kind", "mean", "ci_low", "ci_high", "clusters", "diff_vs_base", "on_front"}
    # the report's means are the means of the saved per-prompt scores, recomputed from the completions
    for p, pol in enumerate(result.policies):
        texts = result.completions[p]
        expected = [np.mean([t.count("a") for t in texts]), np.mean([t.count("b") for t in texts])]
        np.testing.assert_allclose(rep["policies"][p]["mean"], expected)
    # the stand-in's head 0 writes 'a' far more often than the base model
    a_head, a_base = rep["policies"][1]["mean"][0], rep["policies"][0]["mean"][0]
    assert a_head > a_base + 3
    assert rep["policies"][1]["diff_vs_base"]["significant"][0]
    # steering from (0, 1) to (1, 0) moves count_a up and count_b down
    sp = {e["objective"]: e for e in rep["steering_spearman"]}
    assert sp["count_a"]["n"] == 11 and sp["count_a"]["rho"] > 0.9 and sp["count_b"]["rho"] > 0.9
    md = (tmp_path / "report.md").read_text()
    assert "reference point" in md and "head:count_a" in md and "![front](front.png)" in md
    # every policy's degenerate share, echo share and distinct-2 are those of its own saved answers and the prompts
    from moalign.eval.degeneracy import degeneracy_summary

    for p, texts in enumerate(result.completions):
        assert rep["policies"][p]["degeneracy"] == pytest.approx(degeneracy_summary(texts, PROMPTS)), p
    assert "## Degenerate answers and diversity" in md and rep["degeneracy_rule"] in md


def test_saved_generations_reload_and_rescore(standin_model, char_tokenizer, tmp_path):
    cfg = _config(tmp_path / "first", num_clusters=1)
    first = evaluate_policies(standin_model, char_tokenizer, PROMPTS[:6], {"count_a": count_letter("a")},
                              [Policy.from_head(0), Policy.steered([0.5, 0.5])], cfg)
    loaded = load_generations(tmp_path / "first")
    assert [p.to_dict() for p in loaded.policies] == [p.to_dict() for p in first.policies]
    assert loaded.completions == first.completions and loaded.prompts == PROMPTS[:6]
    np.testing.assert_array_equal(loaded.scores, first.scores)
    # new objective, scored from the saved text only (no model)
    again = rescore_generations(tmp_path / "first" / "generations.jsonl", {"length": lambda p, c: [float(len(x)) for x in c]},
                                EvalConfig(output_dir=str(tmp_path / "second"), bootstrap_samples=50, num_clusters=1, progress=False))
    expected = np.array([[len(t) for t in texts] for texts in first.completions], dtype=float)
    np.testing.assert_array_equal(again.scores[:, :, 0], expected)
    assert json.loads((tmp_path / "second" / "report.json").read_text())["objectives"] == ["length"]


def test_bad_input_is_rejected_with_clear_errors(standin_model, char_tokenizer, tmp_path):
    cfg = _config(tmp_path, num_clusters=1)
    ok = {"count_a": count_letter("a")}
    with pytest.raises(ValueError, match="prompt list is empty"):
        evaluate_policies(standin_model, char_tokenizer, [], ok, None, cfg)
    with pytest.raises(ValueError, match="policy 'base' with reward function 'short'.*returned 2 scores for 3"):
        evaluate_policies(standin_model, char_tokenizer, PROMPTS[:3], {"short": lambda p, c: [1.0, 2.0]}, None, cfg)
    with pytest.raises(ValueError, match="'bad'.*non-finite score at index 0: nan"):
        evaluate_policies(standin_model, char_tokenizer, PROMPTS[:3], {"bad": lambda p, c: [float("nan")] * 3}, None, cfg)
    with pytest.raises(TypeError, match="'text'.*non-numeric score at index 1"):
        evaluate_policies(standin_model, char_tokenizer, PROMPTS[:3], {"text": lambda p, c: [1.0, "2.0", 3.0]}, None, cfg)
    with pytest.raises(ValueError, match="3 entries but the model has 2 heads"):
        evaluate_policies(standin_model, char_tokenizer, PROMPTS[:3], ok, [Policy.steered([0.2, 0.3, 0.5])], cfg)
    with pytest.raises(ValueError, match="sum to"):
        evaluate_policies(standin_model, char_tokenizer, PROMPTS[:3], ok, [Policy.steered([0.2, 0.3])], cfg)
    with pytest.raises(ValueError, match="cannot form 6 clusters from 3 prompts"):
        evaluate_policies(standin_model, char_tokenizer, PROMPTS[:3], ok, None, _config(tmp_path, num_clusters=6))
    with pytest.raises(ValueError, match="has no .name"):
        evaluate_policies(standin_model, char_tokenizer, PROMPTS[:3], [count_letter("a")], None, cfg)
    with pytest.raises(ValueError, match="pass the untrained model as reference_model"):
        evaluate_policies(standin_model.base, char_tokenizer, PROMPTS[:3], ok, None, cfg)
    with pytest.raises(ValueError, match="no reward functions"):
        score_completions(["x"], ["y"], {})
    assert not (tmp_path / "report.json").exists()  # nothing half-written on failure


def test_plain_model_with_reference_model(tiny_llama, char_tokenizer, tmp_path):
    # a single-policy method (the model as it is) compared with an explicitly given untrained model
    from .conftest import make_tiny_llama

    reference = make_tiny_llama(len(char_tokenizer), seed=1)
    res = evaluate_policies(tiny_llama, char_tokenizer, PROMPTS[:4], {"count_a": count_letter("a"), "len": lambda p, c: [len(x) for x in c]},
                            None, _config(tmp_path, num_clusters=1, plots=False, do_sample=False), reference_model=reference)
    assert [p.name for p in res.policies] == ["base", "model"]
    assert res.report["front"]["overall"]["hypervolume"] >= res.report["front"]["overall"]["hypervolume_base"]
    assert not (tmp_path / "front.png").exists() and (tmp_path / "report.md").exists()


def test_real_multi_head_model_steering_reproduces_heads(tmp_path):
    models = pytest.importorskip("moalign.models")
    testing = pytest.importorskip("moalign.models.testing")
    base, tok = testing.make_tiny_llama_and_tokenizer()
    model = models.MultiHeadCausalLM(base, models.MultiHeadConfig(num_heads=2, head_type="full", head_names=["x", "y"]))
    with __import__("torch").no_grad():  # make the two heads differ
        for k, head in enumerate(model.output.heads):
            for p in head.parameters():
                p.add_(__import__("torch").randn_like(p) * (0.5 + k))
    prompts = ["hello how are you", "tell me a story", "what is the sun", "why is it rain"]
    policies = head_policies(2, model.head_names) + [Policy.steered([1.0, 0.0]), Policy.steered([0.0, 1.0]), Policy.steered([0.5, 0.5])]
    res = evaluate_policies(model, tok, prompts, {"len": lambda p, c: [float(len(x)) for x in c]}, policies,
                            _config(tmp_path, num_clusters=2, do_sample=False), prompt_embeddings=np.repeat([[0.0], [9.0]], 2, axis=0))
    # reverse-KL steering with w = e_k is head k exactly (moalign.models.steering), so greedy text is identical
    assert res.completions_of("steer[1,0]") == res.completions_of("head:x")
    assert res.completions_of("steer[0,1]") == res.completions_of("head:y")
    assert res.completions_of("head:x") != res.completions_of("head:y")
    assert (tmp_path / "report.json").exists() and model.output.steering is None


def test_default_policies(standin_model, tiny_llama):
    pols = default_policies(standin_model)
    np.testing.assert_allclose([p.weights for p in pols], [(i / 10, 1 - i / 10) for i in range(11)], atol=1e-12)
    assert all(p.kind == "steer" for p in pols)
    assert default_policies(tiny_llama) == [Policy.as_is()]
    standin_model.biases = standin_model.biases + [standin_model.biases[0]]  # three heads
    assert len(default_policies(standin_model)) == 15  # simplex grid, steps 4: C(6, 2)
    assert len(default_policies(standin_model, steering_steps=10)) == 66


def test_errors_raised_inside_a_reward_function_name_the_policy():
    from moalign.rewards import CallableReward

    short = CallableReward(lambda prompts, completions: [1.0] * (len(completions) - 1), name="short")
    with pytest.raises(ValueError, match="while scoring policy 'p1' with reward function 'short'.*returned 2 scores"):
        score_completions(["a", "b", "c"], ["x", "y", "z"], [short], context="policy 'p1'")


@pytest.mark.slow
def test_untrained_heads_on_smollm2_reproduce_the_base_model(tmp_path):
    """Real model, real offline rewards, real MiniLM clusters: fresh full heads equal the base lm_head, so every
    policy generates the base model's text and every paired difference is exactly zero."""
    import torch

    from moalign.models import MultiHeadCausalLM, MultiHeadConfig, load_smollm2
    from moalign.rewards import ConcisenessReward, PositivityReward

    torch.set_num_threads(2)
    base, tok = load_smollm2()
    model = MultiHeadCausalLM(base, MultiHeadConfig(num_heads=2, head_type="full"))
    prompts = [
        "How can I stop procrastinating on small chores?", "What is a good way to keep my desk tidy?",
        "How do I bake bread at home?", "What flour is best for baking bread?",
        "How do I sort a list in Python?", "How do I remove duplicates from a Python list?",
    ]
    cfg = EvalConfig(max_new_tokens=8, batch_size=6, num_clusters=2, bootstrap_samples=200, output_dir=str(tmp_path), progress=False)
    res = evaluate_policies(model, tok, prompts, [ConcisenessReward(), PositivityReward()],
                            [Policy.from_head(1), Policy.steered([0.3, 0.7])], cfg)
    assert res.completions_of("head_1") == res.completions_of("base") == res.completions_of("steer[0.3,0.7]")
    assert all(any(ch.isalpha() for ch in c) for c in res.completions_of("base"))
    for row in res.report["policies"][1:]:
        assert row["diff_vs_base"]["mean"] == [0.0, 0.0] and row["diff_vs_base"]["significant"] == [False, False]
    assert (tmp_path / "front.png").is_file()
