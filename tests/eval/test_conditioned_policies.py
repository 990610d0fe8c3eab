"""Evaluation of policies indexed by a weight vector: ``conditioned`` (weights in the prompt) and ``weighted``
(the model's own ``weighted_policy(w)`` context, e.g. a soup), through evaluate_policies."""

from __future__ import annotations

import contextlib

import pytest

from moalign.data.conditioning import ConditioningSpec
from moalign.eval.evaluate import EvalConfig, evaluate_policies
from moalign.eval.generate import policy_prompts, render_prompts
from moalign.eval.policies import Policy, conditioned_policies, weighted_policies
from tests.eval.conftest import StandInMultiHead

PROMPTS = ["hello there", "how are you today?", "what is 2+2", "tell me a joke please", "hi", "ok so"]
SPEC = ConditioningSpec(("count_a", "count_b"))


def _config(**kw) -> EvalConfig:
    return EvalConfig(**{**dict(max_new_tokens=8, batch_size=3, num_clusters=1, bootstrap_samples=50, seed=0,
                                do_sample=True, progress=False), **kw})


def test_policy_fields_round_trip_and_checks():
    p = Policy.conditioned([0.3, 0.7], SPEC)
    assert p.kind == "conditioned" and p.name == "cond[0.3,0.7]"
    assert Policy.from_dict(p.to_dict()) == p
    w = Policy.weighted([1.0, 0.0])
    assert w.to_dict() == {"name": "weighted[1,0]", "kind": "weighted", "head": None, "weights": [1.0, 0.0],
                           "divergence": None}
    assert Policy.from_dict(w.to_dict()) == w
    assert "conditioning" not in Policy.steered([0.5, 0.5]).to_dict()  # other kinds serialise as before
    with pytest.raises(ValueError, match="grid"):
        Policy.conditioned([0.25, 0.75], SPEC)
    with pytest.raises(ValueError, match="ConditioningSpec"):
        Policy(name="c", kind="conditioned", weights=(0.5, 0.5))
    with pytest.raises(ValueError, match="must not set a conditioning"):
        Policy(name="h", kind="weighted", weights=(0.5, 0.5), conditioning=SPEC)
    assert [p.weights for p in conditioned_policies(SPEC, steps=2)] == [(0.0, 1.0), (0.5, 0.5), (1.0, 0.0)]


def test_conditioned_generates_from_x_prime_and_scores_on_x(standin_model, char_tokenizer):
    seen: list[str] = []

    def count_a(prompts, completions):
        seen.extend(prompts)
        return [float(c.count("a")) for c in completions]

    policies = conditioned_policies(SPEC, steps=2)
    result = evaluate_policies(standin_model, char_tokenizer, PROMPTS, {"count_a": count_a, "len": lambda p, c: [
        float(len(x)) for x in c]}, policies, _config(use_chat_template=False), reference_model=None,
        cluster_labels=[0] * len(PROMPTS))
    assert seen and all(p in PROMPTS for p in seen)  # rewards never see the block
    conditioned_calls = [ids for mode, ids in standin_model.calls if mode == ("model",)]
    assert len(conditioned_calls) == 3 * 2  # three policies, two batches each
    # the char tokenizer knows lowercase only: the block's words decode as "egin ystem nstruction"
    texts = char_tokenizer.batch_decode(conditioned_calls[0], skip_special_tokens=True)
    assert texts and all("nstruction" in t for t in texts), texts
    assert result.report["steering_spearman"][0]["n"] == 3


class SoupStandIn(StandInMultiHead):
    """A model providing ``weighted_policy(w)`` (as the soup model does): here, steering of its bias heads."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.entered: list[tuple[float, ...]] = []

    @contextlib.contextmanager
    def weighted_policy(self, weights):
        self.entered.append(tuple(weights))
        with self._set(("steer", tuple(weights))):
            yield None  # nothing yielded: evaluation calls the model itself


def test_weighted_policies_use_the_models_context_and_steer(standin_model, char_tokenizer):
    soup = SoupStandIn(standin_model.base, standin_model.biases, head_names=["count_a", "count_b"])
    policies = weighted_policies(2, steps=4)
    rewards = {"count_a": lambda p, c: [float(x.count("a")) for x in c],
               "count_b": lambda p, c: [float(x.count("b")) for x in c]}
    result = evaluate_policies(soup, char_tokenizer, PROMPTS, rewards, policies,
                               _config(use_chat_template=False, max_new_tokens=12), cluster_labels=[0] * len(PROMPTS))
    assert soup.entered == [p.weights for p in policies]
    assert soup.mode == ("model",)  # the context was left
    spearman = {e["objective"]: e for e in result.report["steering_spearman"]}
    assert spearman["count_a"]["n"] == 5 and spearman["count_a"]["rho"] > 0.8 and spearman["count_b"]["rho"] > 0.8


def test_weighted_needs_the_context(standin_model, char_tokenizer):
    with pytest.raises(ValueError, match="weighted_policy"):
        evaluate_policies(standin_model, char_tokenizer, PROMPTS[:2], {"a": lambda p, c: [0.0] * len(c)},
                          [Policy.weighted([0.5, 0.5])], _config(use_chat_template=False),
                          cluster_labels=[0, 0])


@pytest.mark.parametrize("chat", [False, True])
def test_training_and_evaluation_render_identically(tmp_path, chat):
    from tests.trainers.test_mo_odpo_trainer import make_trainer

    trainer = make_trainer(tmp_path, use_chat_template=chat)
    tokenizer = trainer.processing_class
    weights = trainer.sample_weights(4, __import__("numpy").random.default_rng(0))
    prompts = ["hello tell me a story", "what is a cat", "say thanks please", "why ?"]
    trained = trainer.prompt_ids(trainer.conditioned_prompts(prompts, weights))
    for prompt, w, ids in zip(prompts, weights.tolist(), trained):
        policy = Policy.conditioned(w, trainer.conditioning)
        texts, templated = render_prompts(tokenizer, policy_prompts([prompt], policy), use_chat_template=chat)
        assert templated == chat
        assert tokenizer(texts[0], add_special_tokens=False)["input_ids"] == ids
