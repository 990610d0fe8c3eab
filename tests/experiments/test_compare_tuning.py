"""``moalign compare --task demo --tune``: the same trials for every method, scored on validation prompts only,
the argmax of the validation HV chosen, and the comparison reading the chosen settings."""

from __future__ import annotations

import json
from pathlib import Path

import moocore
import numpy as np
import pytest
import torch

from moalign.experiments import compare_demo, compare_tuning
from moalign.experiments.compare import CompareConfig, run_compare
from moalign.experiments.compare_prompts import DemoPromptSource
from moalign.methods.registry import get_method
from tests.cli_setup import save_tiny_model

REWARDS = ["charsum=py:tests.trainers.mo_odpo_rewards:CharSum", "length=py:tests.trainers.mo_odpo_rewards:Length"]


class SplitTouched(AssertionError):
    pass


class RecordingSource(DemoPromptSource):
    """The comparison's split, recording which splits are read; reading the test split fails the test."""

    def __init__(self, config: CompareConfig) -> None:
        super().__init__(config)
        self.read: list[str] = []

    def train(self) -> list[str]:
        self.read.append("train")
        return super().train()

    def validation(self) -> list[str]:
        self.read.append("validation")
        return super().validation()

    def test(self) -> list[str]:
        raise SplitTouched("tuning read the test prompts")


def _config(tiny: Path, out: Path, **kw) -> CompareConfig:
    base = dict(task="demo", out=str(out), methods=["mopo", "sca"], model_name_or_path=str(tiny),
                reward_functions=REWARDS, num_train_prompts=6, num_validation_prompts=3, num_test_prompts=4,
                responses_per_prompt=2, sample_max_new_tokens=4, eval_max_new_tokens=4, steering_steps=2,
                budget=600, bootstrap_samples=50, batch_size=2, lora_r=4, use_chat_template=False, progress=False,
                tune_trials=2, tune_fraction=0.5, curve_fractions=[])
    return CompareConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tune") / "tiny")


def test_every_method_has_a_grid_of_the_same_size():
    DEMO_METHODS = compare_demo.compared_methods(CompareConfig(task="demo"))
    assert len(DEMO_METHODS) >= 9
    sizes = {m: int(np.prod([len(v) for _, v in get_method(m).tuning_grid])) for m in DEMO_METHODS}
    assert len(set(sizes.values())) == 1 and min(sizes.values()) >= 4, sizes
    for m in DEMO_METHODS:  # every grid names config fields of the method, the learning rate among them
        fields = {n for n, _ in get_method(m).tuning_grid}
        assert "learning_rate" in fields and fields <= set(get_method(m).config_class.__dataclass_fields__), m
    assert compare_tuning.trial_settings("mopo", 4) == [
        dict(zip(["learning_rate", "tau"], v)) for v in [(3e-4, 0.04), (3e-4, 0.08), (1e-3, 0.04), (1e-3, 0.08)]]
    two = compare_tuning.trial_settings("mopo", 2, seed=1)
    assert len(two) == 2 and two == compare_tuning.trial_settings("mopo", 2, seed=1)
    with pytest.raises(ValueError, match="fewer than"):
        compare_tuning.trial_settings("mopo", 5)


def test_tuning_reads_no_test_prompt_and_compare_uses_the_choice(tiny, tmp_path, monkeypatch):
    config = _config(tiny, tmp_path)
    evaluated: list[list[str]] = []
    real_eval = compare_demo.evaluate_method

    def recording_eval(groups, tokenizer, prompts, *args, **kwargs):
        evaluated.append(list(prompts))
        return real_eval(groups, tokenizer, prompts, *args, **kwargs)

    monkeypatch.setattr(compare_demo, "evaluate_method", recording_eval)
    source = RecordingSource(config)
    result = compare_tuning.run_tuning(config, tmp_path, source=source)
    assert set(source.read) == {"train", "validation"}
    validation = DemoPromptSource(config).validation()
    test = DemoPromptSource(config).test()
    assert len(evaluated) == 2 * 2 and all(p == validation for p in evaluated)  # 2 methods x 2 trials
    assert not set(validation) & set(test)
    written = json.loads((tmp_path / compare_tuning.TUNED_FILE).read_text())
    assert written["protocol"]["trials_per_method"] == 2 and written["protocol"]["validation_prompts"] == 3
    for method, m in written["methods"].items():
        assert len(m["trials"]) == 2
        for i, trial in enumerate(m["trials"]):  # the recorded points are the trial's validation means
            scores = np.load(tmp_path / "tuning" / method / f"trial{i}" / "validation_scores.npy")
            np.testing.assert_allclose(trial["points"], scores.mean(1))
        hvs = [moocore.hypervolume(np.asarray(t["points"]), ref=m["reference_point"], maximise=True)
               for t in m["trials"]]
        assert m["settings"] == m["trials"][int(np.argmax(hvs))]["settings"]
        assert m["validation_hv"] == pytest.approx(max(hvs))
    assert result["methods"].keys() == written["methods"].keys()

    monkeypatch.setattr(compare_demo, "evaluate_method", real_eval)
    compared = run_compare(config)  # reads out/tuned_settings.json
    for method in ("mopo", "sca"):
        chosen = written["methods"][method]["settings"]
        assert compared["methods"][method]["settings"] == chosen
        args = torch.load(Path(compared["methods"][method]["models"][0]) / "training_args.bin", weights_only=False)
        assert args.learning_rate == chosen["learning_rate"]
    assert compared["methods"]["mopo"]["settings"]["tau"] in (0.04, 0.08)
    assert "## Settings per method" in (tmp_path / "report.md").read_text()


def test_chosen_setting_is_the_argmax_of_validation_hv(tiny, tmp_path, monkeypatch):
    """Scripted trial scores: the trial whose validation front is largest wins, not the first or the last."""
    config = _config(tiny, tmp_path, methods=["sca"], tune_trials=4)
    spans = [0.2, 0.9, 0.5, 0.1]  # trial 1's points dominate every other trial's

    def scripted(method, index, overrides, cfg, paths, tdir, budget, evaluate, k):
        tdir.mkdir(parents=True, exist_ok=True)  # as a finished trial records its times (the last: made before
        seconds = {"train_seconds": 10.0 * (index + 1)}  # validation times were recorded)
        if index < 3:
            seconds["eval_seconds"] = 1.5
        (tdir / "trial.json").write_text(json.dumps(seconds))
        return np.full((2, 3, k), spans[index]) + np.array([[[0.0, 0.1]], [[0.1, 0.0]]])

    monkeypatch.setattr(compare_tuning, "_trial", scripted)
    result = compare_tuning.run_tuning(config, tmp_path, source=RecordingSource(config))
    m = result["methods"]["sca"]
    assert m["settings"] == compare_tuning.trial_settings("sca", 4)[1]
    # the tuning's cost is the trials' own times, whichever invocation ran them
    assert result["trial_seconds"] == {"train": 100.0, "eval": 4.5, "total": 104.5, "eval_unrecorded_trials": 1}
    assert [t["seconds"] for t in m["trials"]][3] == {"train": 40.0, "eval": None}
    assert [t["validation_hv"] for t in m["trials"]] == pytest.approx(
        [moocore.hypervolume(np.asarray(t["points"]), ref=m["reference_point"], maximise=True) for t in m["trials"]])


def test_tuned_settings_for_other_objectives_are_refused(tiny, tmp_path):
    (tmp_path / "t.json").write_text(json.dumps({"task": "demo", "objectives": ["a", "b"], "methods": {}}))
    config = _config(tiny, tmp_path / "out", tuned_settings=str(tmp_path / "t.json"))
    with pytest.raises(ValueError, match="tuned for task"):
        compare_tuning.tuned_overrides(config)


def test_the_packaged_settings_serve_their_objectives_and_none_reads_no_file(tiny, tmp_path):
    """The packaged file of the demo task is read by a comparison of its objectives, never by one of others, and
    ``--tuned_settings none`` keeps every method's shared settings."""
    packaged = compare_tuning.PACKAGED_DIR / "tuned_settings_demo.json"
    data = json.loads(packaged.read_text())
    every_method = CompareConfig(task="demo", out=str(tmp_path / "all"))
    assert data["task"] == "demo" and set(data["methods"]) == set(compare_demo.compared_methods(every_method))
    assert data["protocol"]["trials_per_method"] == 4 and all(len(m["trials"]) == 4 for m in data["methods"].values())
    for method, entry in data["methods"].items():  # the choice is the trial of the largest validation HV
        best = max(range(4), key=lambda i: entry["trials"][i]["validation_hv"])
        assert entry["settings"] == entry["trials"][best]["settings"], method
    config = _config(tiny, tmp_path / "out")
    config.reward_functions = list(data["reward_functions"])
    assert compare_tuning.settings_path(config) == packaged
    assert compare_tuning.tuned_overrides(config) == {m: v["settings"] for m, v in data["methods"].items()}
    config.tuned_settings = "none"
    assert compare_tuning.settings_path(config) is None and compare_tuning.tuned_overrides(config) == {}
    other = _config(tiny, tmp_path / "other")  # the tests' own scorers: the packaged file is not theirs
    assert compare_tuning.tuned_overrides(other) == {}
