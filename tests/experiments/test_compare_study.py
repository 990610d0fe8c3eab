"""``python -m moalign.experiments.compare_study``: variants trained on the budget, evaluated on the validation
prompts only, one data folder per recipe, finished variants reused, an interrupted one resumed."""

from __future__ import annotations

import json
from pathlib import Path

import moocore
import numpy as np
import pytest
import torch

from moalign.experiments import compare_demo, compare_study
from moalign.experiments.compare import CompareConfig
from moalign.experiments.compare_demo import demo_config
from moalign.experiments.compare_prompts import DemoPromptSource
from moalign.experiments.demo import split_prompts
from tests.cli_setup import save_tiny_model
from tests.experiments.test_compare_tuning import REWARDS, RecordingSource

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "studies"

BASE = dict(model_name_or_path=None, reward_functions=REWARDS, num_train_prompts=6, num_validation_prompts=3,
            num_test_prompts=4, responses_per_prompt=2, sample_max_new_tokens=4, eval_max_new_tokens=4,
            steering_steps=2, budget=600, bootstrap_samples=50, batch_size=2, lora_r=4, use_chat_template=False,
            progress=False, curve_fractions=[0.5])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("study") / "tiny")


def _spec(tiny: Path, *variants: dict) -> dict:
    return {"description": "test study", "base": {**BASE, "model_name_or_path": str(tiny)}, "variants": list(variants)}


V1 = {"name": "mopo-6x2", "method": "mopo"}
V2 = {"name": "mopo-8x2-T1", "method": "mopo", "compare": {"num_train_prompts": 8, "sample_temperature": 1.0},
      "method_settings": {"tau": 0.04}, "note": "more prompts, hotter samples"}


class Interrupted(RuntimeError):
    pass


def test_study_runs_resumes_and_reads_only_validation_prompts(tiny, tmp_path, monkeypatch):
    out = tmp_path / "study"
    trained: list[str] = []
    evaluated: list[list[str]] = []
    real_train, real_eval = compare_demo.train_method_on_budget, compare_demo.evaluate_method

    def counting_train(method, config, paths, mdir, budget, overrides=None):
        trained.append(Path(mdir).parent.name)
        return real_train(method, config, paths, mdir, budget, overrides=overrides)

    def failing_eval(groups, tokenizer, prompts, *args, **kwargs):  # the first variant's evaluation is cut off
        raise Interrupted

    def recording_eval(groups, tokenizer, prompts, *args, **kwargs):
        evaluated.append(list(prompts))
        return real_eval(groups, tokenizer, prompts, *args, **kwargs)

    monkeypatch.setattr(compare_demo, "train_method_on_budget", counting_train)
    monkeypatch.setattr(compare_demo, "evaluate_method", failing_eval)
    with pytest.raises(Interrupted):
        compare_study.run_study(_spec(tiny, V1, V2), out, source=RecordingSource)
    assert trained == ["mopo-6x2"] and not (out / "variants" / "mopo-6x2" / "done.json").exists()

    monkeypatch.setattr(compare_demo, "evaluate_method", recording_eval)
    result = compare_study.run_study(_spec(tiny, V1, V2), out, source=RecordingSource)
    assert trained == ["mopo-6x2", "mopo-8x2-T1"]  # the interrupted variant's finished training was reused
    validation = DemoPromptSource(compare_study.base_config(_spec(tiny)["base"], out)).validation()
    assert evaluated and all(p == validation for p in evaluated)  # finals and checkpoints: validation only
    assert len(evaluated) == 4  # two variants x (final model + the 50 % checkpoint)

    assert (out / "study.json").is_file() and (out / "learning_curves.png").is_file()
    written = json.loads((out / "study.json").read_text())
    assert list(written["variants"]) == ["mopo-6x2", "mopo-8x2-T1"] and written["validation_prompts"] == validation
    ref = written["reference_point"]
    for name, v in written["variants"].items():
        scores = np.load(out / "variants" / name / "scores.npy")
        np.testing.assert_allclose(v["points"], scores.mean(1))
        assert v["hv"]["hv"] == pytest.approx(moocore.hypervolume(scores.mean(1), ref=ref, maximise=True))
        assert set(v["steerability"]["spearman"]) == {"charsum", "length"}
        assert 0 <= v["degenerate_share"] <= v["max_policy_degenerate_share"] <= 1
        assert v["policies_above_base"] == sum(bool(p["beats_base_on"]) for p in v["policies"])
        assert v["budget"]["tokens"] > 0 and v["train_seconds"] > 0
        assert [r["fraction"] for r in written["learning_curves"]["methods"][name]] == [0.5, 1.0]
    assert np.all(np.asarray(ref) < np.asarray(written["base"]["mean"]))
    # one data folder per recipe, each made from its own train prompts
    recipes = {v["recipe"] for v in written["variants"].values()}
    assert len(recipes) == 2 and {p.name for p in (out / "recipes").iterdir()} == recipes
    data = {name: v["data"] for name, v in written["variants"].items()}
    assert (data["mopo-6x2"]["num_train_prompts"], data["mopo-8x2-T1"]["num_train_prompts"]) == (6, 8)
    assert written["variants"]["mopo-8x2-T1"]["data_recipe"]["sample_temperature"] == 1.0
    args = torch.load(Path(result["variants"]["mopo-8x2-T1"]["budget"]["per_run"][0]["output_dir"])
                      / "training_args.bin", weights_only=False)
    assert args.tau == 0.04
    md = (out / "study.md").read_text()
    assert "| mopo-8x2-T1 | mopo | 8x2 T 1 | tau = 0.04 |" in md and "## Learning curves" in md

    # a second call trains and evaluates nothing; a new variant with an existing recipe shares its data folder
    trained.clear()
    evaluated.clear()
    again = compare_study.run_study(_spec(tiny, V1, V2), out, source=RecordingSource)
    assert trained == [] and evaluated == []
    assert again["variants"]["mopo-6x2"]["hv"] == written["variants"]["mopo-6x2"]["hv"]
    v3 = {"name": "mopo-6x2-tau", "method": "mopo", "method_settings": {"tau": 0.04}}
    third = compare_study.run_study(_spec(tiny, V1, V2, v3), out, source=RecordingSource)
    assert trained == ["mopo-6x2-tau"]
    assert third["variants"]["mopo-6x2-tau"]["recipe"] == third["variants"]["mopo-6x2"]["recipe"]
    assert len(list((out / "recipes").iterdir())) == 2

    # a variant whose settings changed restarts from scratch
    trained.clear()
    changed = {**V2, "method_settings": {"tau": 0.08}}
    compare_study.run_study(_spec(tiny, V1, changed), out, source=RecordingSource)
    assert trained == ["mopo-8x2-T1"]


def test_budget_factor_and_the_variants_config(tiny, tmp_path):
    cfg = compare_study.base_config({**BASE, "model_name_or_path": str(tiny)}, tmp_path)
    double = compare_study.variant_config(cfg, compare_study.Variant("x", "mopo", budget_factor=2))
    assert double.budget == 1200 and cfg.budget == 600
    quick = compare_study.base_config({"quick": True}, tmp_path)
    assert quick.budget == 4000 and quick.num_train_prompts == 24 and not quick.quick
    mine = compare_study.variant_config(quick, compare_study.Variant("y", "mopo", compare={"num_train_prompts": 32}))
    assert mine.num_train_prompts == 32 and mine.budget == 4000
    assert compare_study.recipe_of(mine)[0].startswith("32x2_T1_")


def test_spec_errors_are_refused(tiny, tmp_path):
    spec = _spec(tiny, {"name": "a", "method": "mopo", "compare": {"num_validation_prompts": 5}})
    with pytest.raises(ValueError, match="may not set"):
        compare_study.load_spec(spec)
    with pytest.raises(ValueError, match="not fields of"):
        compare_study.load_spec(_spec(tiny, {"name": "a", "method": "mopo", "method_settings": {"nope": 1}}))
    with pytest.raises(ValueError, match="unique names"):
        compare_study.load_spec(_spec(tiny, V1, V1))
    with pytest.raises(ValueError, match="not CompareConfig fields"):
        compare_study.load_spec({"base": {"tune": True}, "variants": [V1]})
    zero = {"name": "z", "method": "mo_odpo", "method_settings": {"weight_decimals": 0}}
    with pytest.raises(ValueError, match="steering_steps must divide 1"):  # refused before any training
        compare_study.run_study(_spec(tiny, zero), tmp_path / "z", source=RecordingSource)
    bad = {"name": "b", "method": "mo_odpo", "method_settings": {"anchor_prompt": "none"}}
    with pytest.raises(ValueError, match="anchor_prompt"):  # a bad value: before the first variant trains
        compare_study.run_study(_spec(tiny, V1, bad), tmp_path / "b", source=RecordingSource)
    assert not (tmp_path / "b" / "variants").exists()
    assert compare_study.command_line_base([]) == {}
    assert compare_study.command_line_base(["--budget", "300", "--sample_temperature", "1.0"]) == {
        "budget": 300, "sample_temperature": 1.0}


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.json")))
def test_example_specs_load_and_fit_the_prompt_set(name):
    spec = json.loads((EXAMPLES / name).read_text())
    base, variants = compare_study.load_spec(spec)
    assert variants  # load_spec itself refuses duplicate names (tested in test_spec_errors_are_refused)
    cfg = compare_study.base_config(base, Path("unused"))
    validation = None
    for v in variants:
        vcfg = compare_study.variant_config(cfg, v)
        compare_demo.check_weight_grid(v.method, vcfg.steering_steps, v.method_settings.get("weight_decimals"))
        splits = split_prompts(demo_config(vcfg))  # raises when train + validation + test exceed the prompt set
        assert len(splits["train"]) == vcfg.num_train_prompts
        assert validation in (None, splits["validation"][: vcfg.num_validation_prompts])
        validation = splits["validation"][: vcfg.num_validation_prompts]
        assert not set(validation) & set(splits["train"])


def test_default_sampling_temperature_is_the_data_studys_choice():
    assert demo_config(CompareConfig(task="demo")).sample_temperature == 1.0
    assert demo_config(CompareConfig(task="demo", sample_temperature=1.0)).sample_temperature == 1.0
