"""A method defined in the test suite (weighted-sum DPO, :mod:`tests.methods.wsdpo`) plugs into every shared
command with one ``register_method`` call: ``moalign train``, ``load_policy``, ``moalign synthetic toy`` (and the
toy comparison's method list) and a tiny ``moalign compare --task demo``. No shared module knows its name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moalign.cli.main import main
from moalign.methods.registry import (
    BUILTIN_METHODS,
    available_methods,
    get_method,
    methods_in_order,
    register_method,
    unregister_method,
)
from tests.cli_setup import save_tiny_model, write_config, write_jsonl
from tests.methods import wsdpo
from tests.trainers.test_mopo_trainer import OBJECTIVES, make_rows

SRC = Path(__file__).resolve().parents[2] / "src" / "moalign"
REWARDS = ["charsum=py:tests.trainers.mo_odpo_rewards:CharSum", "length=py:tests.trainers.mo_odpo_rewards:Length"]


@pytest.fixture
def plugged():
    """The plug-in: the one call a method defined outside moalign needs."""
    method = register_method(wsdpo.METHOD)
    yield method
    unregister_method(method.name)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("plugin") / "tiny")


def test_no_shared_module_names_the_method():
    """The method is known by its registration only: no file of the package mentions it."""
    assert not [p for p in SRC.rglob("*.py") if "wsdpo" in p.read_text(encoding="utf-8")]


def test_registry_round_trip(plugged):
    assert get_method("wsdpo") is plugged and plugged.config_class is wsdpo.WSDPOConfig
    assert plugged.data_kind == "pairwise" and plugged.display_name == "WS-DPO"
    assert list(methods_in_order())[: len(BUILTIN_METHODS)] == list(BUILTIN_METHODS)  # built-ins first, in order
    assert list(methods_in_order())[-1] == "wsdpo"
    with pytest.raises(ValueError, match="already registered"):
        register_method(wsdpo.METHOD)
    unregister_method("wsdpo")
    assert "wsdpo" not in available_methods()
    register_method(wsdpo.METHOD)


def test_trains_through_moalign_train_and_answers_through_load_policy(plugged, tiny, tmp_path):
    config = write_config(tmp_path / "config.yaml", model_name_or_path=str(tiny),
                          dataset_path=write_jsonl(tmp_path / "pairs.jsonl", make_rows(8)), objectives=OBJECTIVES,
                          output_dir=tmp_path / "out", max_steps=2, per_device_train_batch_size=4, use_cpu=True,
                          report_to=[])
    assert main(["train", "wsdpo", "--config", str(config), "--weights", "0.7", "0.3", "--beta", "0.2"]) == 0
    out = tmp_path / "out"
    heads = json.loads((out / "multihead_config.json").read_text())["multihead"]["head_names"]
    assert heads == ["wsdpo"] and (out / "wsdpo_state.pt").is_file()

    from moalign.inference import load_policy

    policy = load_policy(out)  # the folder's family is the one the registration names
    assert policy.method == "wsdpo" and policy.kind == "fixed" and policy.weight_names == OBJECTIVES
    texts = policy.generate(["hello"], weights=[0.7, 0.3], max_new_tokens=2)
    assert len(texts) == 1 and policy.last_note is None
    policy.generate(["hello"], weights=[0.5, 0.5], max_new_tokens=2)
    assert "fixed weights [0.7, 0.3]" in policy.last_note


def test_runs_on_the_toy_problem_through_moalign_synthetic_toy(plugged, tmp_path):
    from moalign.experiments.compare import toy_methods
    from moalign.experiments.toy import default_toy_methods

    assert "wsdpo" in toy_methods() and "wsdpo" not in default_toy_methods()  # offered, opt-in
    assert main(["synthetic", "toy", "--set", "B", "--quick", "true", "--methods", "wsdpo", "--num_actions", "11",
                 "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "toy_B.json").read_text())
    summary = result["methods"]["WS-DPO"]
    assert summary["policies_per_seed"] == len(wsdpo.TOY_WEIGHTS) and 0.0 < summary["hv_ratio_mean"] <= 1.0
    # the weights steer it: more weight on r1 gives a larger expected r1 (w1 = 1 against w1 = 0)
    rewards = {tuple(p["params"]["w"]): p["expected_rewards"] for p in result["policies"] if p["method"] == "WS-DPO"}
    assert rewards[(1.0, 0.0)][0] > rewards[(0.0, 1.0)][0] and rewards[(0.0, 1.0)][1] > rewards[(1.0, 0.0)][1]


def test_appears_in_a_quick_demo_comparison(plugged, tiny, tmp_path):
    from moalign.experiments.compare import CompareConfig, run_compare

    config = CompareConfig(task="demo", out=str(tmp_path / "cmp"), methods=["wsdpo"], model_name_or_path=str(tiny),
                           reward_functions=REWARDS, num_train_prompts=6, num_validation_prompts=2,
                           num_test_prompts=4, responses_per_prompt=2, sample_max_new_tokens=4, eval_max_new_tokens=4,
                           steering_steps=2, budget=300, bootstrap_samples=50, batch_size=2, lora_r=4,
                           use_chat_template=False, progress=False, curve_fractions=[0.5])
    result = run_compare(config)
    m = result["methods"]["wsdpo"]
    assert [p["name"] for p in m["policies"]] == ["head:wsdpo"] and not m["steerability"]["steerable"]
    assert m["budget"]["within_tolerance"] and len(m["models"]) == 1
    assert [r["fraction"] for r in result["learning_curves"]["methods"]["wsdpo"]] == [0.5, 1.0]
    assert "wsdpo" in (tmp_path / "cmp" / "report.md").read_text()
