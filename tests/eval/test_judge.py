"""The automated judge (issue 13): both orders asked, position bias cancelled, win rates counted by hand,
the causal-LM judge against logits computed here, the matching of a compare folder by weight, and the
``moalign judge`` command on a hand-written compare.json with a tiny saved model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from moalign.cli.main import main
from moalign.eval.judge import CausalLMJudge, Judge, JudgeConfig, pairwise_win_rate
from moalign.experiments.judge_compare import demo_test_prompts, judge_compare, read_compare
from moalign.models.testing import make_tiny_llama_and_tokenizer
from tests.cli_setup import save_tiny_model

PROMPTS = ["p1", "p2", "p3", "p4", "p5"]


def always_first(prompts, firsts, seconds, objective):
    return np.ones(len(prompts))


class Shorter:
    """Prefers the shorter response (ties of equal length: 1/2) and records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[list, list, list, str]] = []

    def prefer_first(self, prompts, firsts, seconds, objective):
        self.calls.append((list(prompts), list(firsts), list(seconds), objective))
        return np.array([0.5 if len(a) == len(b) else float(len(a) < len(b)) for a, b in zip(firsts, seconds)])


def test_pure_position_bias_cancels():
    r = pairwise_win_rate(always_first, PROMPTS, ["a", "bb", "c", "d", "e"], ["x", "y", "zz", "w", "v"], "tone",
                          num_samples=200)
    assert r["win_rate"] == 0.5 and r["ci_low"] == 0.5 and r["ci_high"] == 0.5
    assert r["position_bias"] == 1.0 and r["order_consistency"] == 0.0
    assert r["ties"] == 5 and r["num_identical"] == 0


def test_shorter_judge_gives_the_hand_counted_fraction():
    xs = ["ok", "fine thanks", "short", "a much longer answer", "same"]
    ys = ["a longer one", "a longer answer here", "longer reply", "tiny", "same"]
    # by hand: x shorter on prompts 1-3 (wins), longer on 4 (loss), identical on 5 (tie 1/2) -> 3.5 / 5
    r = pairwise_win_rate(Shorter(), PROMPTS, xs, ys, "conciseness", num_samples=200)
    assert r["win_rate"] == pytest.approx(0.7)
    assert (r["wins"], r["ties"], r["losses"], r["num_identical"]) == (3, 1, 1, 1)
    assert r["per_prompt"] == [1.0, 1.0, 1.0, 0.0, 0.5]
    assert r["position_bias"] == pytest.approx(0.5) and r["order_consistency"] == 1.0
    assert r["ci_low"] <= 0.7 <= r["ci_high"] and r["ci_low"] < r["ci_high"]


def test_both_orders_are_asked_and_identical_pairs_are_not():
    judge = Shorter()
    xs, ys = ["ab", "same", "abc"], ["a", "same", "abcd"]
    pairwise_win_rate(judge, ["p1", "p2", "p3"], xs, ys, "conciseness", num_samples=10)
    assert judge.calls == [(["p1", "p3"], ["ab", "abc"], ["a", "abcd"], "conciseness"),
                           (["p1", "p3"], ["a", "abcd"], ["ab", "abc"], "conciseness")]
    with pytest.raises(ValueError, match="probabilities in"):
        pairwise_win_rate(lambda p, a, b, o: np.full(len(p), 1.5), ["p"], ["a"], ["b"], "x")


TINY_TEMPLATE = "user : {prompt} . {objective} . one : {response_a} . two : {response_b} . which ?"


def test_causal_lm_judge_equals_softmax_of_the_two_label_logits():
    model, tokenizer = make_tiny_llama_and_tokenizer(seed=3)
    config = JudgeConfig(template=TINY_TEMPLATE, label_a="yes", label_b="no", judge_batch_size=2,
                         objective_descriptions={"tone": "kind is good"}, judge_chat_template=False)
    judge = CausalLMJudge(model, tokenizer, config)
    assert isinstance(judge, Judge)
    prompts = ["tell me a joke", "hello", "why is the sun big and red and very happy"]
    firsts, seconds = ["a funny cat", "hello you", "it is"], ["no", "goodbye my dog is sad", "the sun is big"]
    p = judge.prefer_first(prompts, firsts, seconds, "tone")
    assert p.shape == (3,) and np.all((p > 0) & (p < 1)) and np.ptp(p) > 1e-3
    for i in (0, 2):  # 2: alone in its batch; 0: padded next to a longer sequence
        text = TINY_TEMPLATE.format(prompt=prompts[i], objective="kind is good", response_a=firsts[i],
                                    response_b=seconds[i])
        ids = torch.tensor([tokenizer(text)["input_ids"]])
        with torch.no_grad():
            last = model(input_ids=ids).logits[0, -1]
        yes, no = tokenizer.convert_tokens_to_ids(["yes", "no"])
        expected = torch.softmax(last[[yes, no]], dim=-1)[0].item()
        assert p[i] == pytest.approx(expected, abs=1e-5)
    chat = CausalLMJudge(model, tokenizer, JudgeConfig(template=TINY_TEMPLATE, label_a="yes", label_b="no",
                                                       objective_descriptions={"tone": "kind"}))
    assert chat.chat and chat.render("hi", "tone", "a", "b").startswith("user : user : hi")
    with pytest.raises(ValueError, match="not one known token"):  # 'A' is not in the tiny vocabulary
        CausalLMJudge(model, tokenizer, JudgeConfig()).prefer_first(["hi"], ["a"], ["b"], "positivity")
    with pytest.raises(ValueError, match="no judge description for objective 'tone'"):
        CausalLMJudge(model, tokenizer, JudgeConfig()).render("hi", "tone", "a", "b")
    with pytest.raises(ValueError, match="missing placeholder"):
        JudgeConfig(template="{prompt} {response_a}")


COMPARE_CONFIG = {"task": "demo", "num_train_prompts": 6, "num_validation_prompts": 2, "num_test_prompts": 3,
                  "seed": 0, "quick": False}


def _policy(name, weights, completions):
    return {"name": name, "kind": "x", "weights": weights, "completions": completions, "mean": [0.0, 0.0]}


def write_fixture(folder: Path) -> Path:
    """A small compare.json + base_eval.json as `moalign compare --task demo` writes them (3 test prompts)."""
    folder.mkdir(parents=True, exist_ok=True)
    methods = {
        "mopo": {"policies": [_policy("steer[1,0]", [1.0, 0.0], ["good", "happy day", "yes"]),
                              _policy("steer[0.5,0.5]", [0.5, 0.5], ["a cat", "the dog is big", "ok"]),
                              _policy("steer[0,1]", [0.0, 1.0], ["x", "y", "z"])]},
        "modpo": {"policies": [_policy("modpo[0.8,0.2]", [0.8, 0.2], ["q", "r", "s"]),
                               _policy("modpo[0.5,0.5]", [0.5, 0.5], ["a cat is here", "dog", "ok"])]},
        "ham": {"policies": [_policy("head:positivity", None, ["a", "b", "c"]),
                             _policy("head:conciseness", None, ["d", "e", "f"])]},
        "sca": {"policies": [_policy("head:w_0.25_0.75", [0.25, 0.75], ["a", "b", "c"])]},
        "short": {"policies": [_policy("p", [0.5, 0.5], ["a", "b"])]},
    }
    compare = {"task": "demo", "objectives": ["positivity", "conciseness"], "methods": methods,
               "config": COMPARE_CONFIG}
    (folder / "compare.json").write_text(json.dumps(compare))
    (folder / "base_eval.json").write_text(json.dumps({"scores": [[0, 0]] * 3,
                                                       "completions": ["base one", "b", "base three"]}))
    return folder


def test_judge_compare_matches_weights_and_rejects_bad_input(tmp_path):
    folder = write_fixture(tmp_path / "cmp")
    prompts = demo_test_prompts(read_compare(folder))
    assert len(prompts) == 3 and all(isinstance(p, str) and p for p in prompts)
    judge = Shorter()
    r = judge_compare(folder, "mopo", "modpo", judge, num_samples=100)
    assert [(m["weights"], m["policy_x"], m["policy_y"]) for m in r["matches"]] == [
        ([0.5, 0.5], "steer[0.5,0.5]", "modpo[0.5,0.5]")]
    # by hand: "a cat" < "a cat is here" (win), "the dog is big" > "dog" (loss), "ok" == "ok" (tie) -> 1.5 / 3
    for objective in ("positivity", "conciseness"):
        assert r["matches"][0]["objectives"][objective]["win_rate"] == pytest.approx(0.5)
        assert r["matches"][0]["objectives"][objective]["per_prompt"] == [1.0, 0.0, 0.5]
    assert judge.calls[0][0] == prompts[:2]  # the recovered test prompts, in order (the third pair is identical)
    vs_base = judge_compare(folder, "base", "mopo", Shorter(), ["conciseness"], num_samples=100)
    assert [m["weights"] for m in vs_base["matches"]] == [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]
    assert vs_base["matches"][0]["policy_x"] == "base" and vs_base["objectives"] == ["conciseness"]
    json.dumps(vs_base, allow_nan=False)
    bad = [(("ham", "base"), ValueError, "method 'ham' has no weight-indexed policies"),
           (("mopo", "nope"), ValueError, "no method 'nope'; it holds mopo, modpo, ham, sca, short, base"),
           (("mopo", "sca"), ValueError, "share no weight vector"),
           (("mopo", "short"), ValueError, "method 'short', policy 'p' has 2 completions for 3 test prompts"),
           (("mopo", "mopo"), ValueError, "two different methods")]
    for (x, y), err, message in bad:
        with pytest.raises(err, match=message):
            judge_compare(folder, x, y, Shorter())
    with pytest.raises(ValueError, match="unknown objective"):
        judge_compare(folder, "mopo", "modpo", Shorter(), ["helpfulness"])
    with pytest.raises(FileNotFoundError, match="compare.json: no such file"):
        judge_compare(tmp_path / "missing", "mopo", "modpo", Shorter())


def test_cli_end_to_end_and_bad_methods(tmp_path, capsys):
    folder = write_fixture(tmp_path / "cmp")
    tiny = save_tiny_model(tmp_path / "tiny")
    out = tmp_path / "judge.json"
    common = ["--compare", str(folder), "--judge-model", str(tiny), "--label_a", "yes", "--label_b", "no",
              "--judge_chat_template", "false", "--progress", "false", "--bootstrap_samples", "50"]
    assert main(["judge", *common, "--methods", "mopo,base", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert len(result["matches"]) == 3 and result["judge"]["judge_model"] == str(tiny)
    for m in result["matches"]:
        for r in m["objectives"].values():
            assert 0 <= r["ci_low"] <= r["win_rate"] <= r["ci_high"] <= 1 and 0 < r["position_bias"] < 1
    assert "| weights | objective | mopo policy | base policy |" in capsys.readouterr().out
    assert main(["judge", *common, "--methods", "mopo,nope", "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert "moalign judge: error:" in err and "no method 'nope'" in err and not (tmp_path / "x.json").exists()
    assert main(["judge", *common, "--methods", "mopo"]) == 2
    assert "exactly two methods" in capsys.readouterr().err
