"""``moalign compare``: shared reference and HV equal moocore's on the written points, the HaM domination
relation on hand-made fronts, the equal token budget, and a demo-task comparison on a tiny saved model with
scripted rewards end to end, resumed after an interruption with the same result as an uninterrupted run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import moocore
import numpy as np
import pytest

from moalign.experiments import compare_demo
from moalign.experiments.compare import CompareConfig, run_compare
from moalign.experiments.compare_report import front_relation, hypervolume_ci, shared_reference, steerability
from tests.cli_setup import save_tiny_model

REWARDS = ["charsum=py:tests.trainers.mo_odpo_rewards:CharSum", "length=py:tests.trainers.mo_odpo_rewards:Length"]
METHODS = ["mopo", "sca", "modpo"]


def test_front_relation_on_hand_made_fronts():
    a = [[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]]
    inner = [[0.5, 2.5], [1.5, 1.5], [2.5, 0.5]]
    assert front_relation(a, inner)["relation"] == "dominates"
    assert front_relation(inner, a)["relation"] == "dominated"
    assert front_relation(a, a)["relation"] == "equal"
    crossing = [[0.0, 4.0], [4.0, 0.0]]
    r = front_relation(a, crossing)
    assert r["relation"] == "incomparable" and r["a_dominates_fraction_of_b"] == 0.0
    # a weakly covering front with one point on the other's: still dominates (one strictly better point suffices)
    assert front_relation([[1.0, 3.0], [2.5, 2.5]], [[1.0, 3.0], [2.0, 2.0]])["relation"] == "dominates"


def test_shared_reference_and_bootstrap_hv():
    pts = [np.array([[1.0, 2.0], [2.0, 1.0]]), np.array([[0.0, 0.5]])]
    ref = shared_reference(pts, margin=0.1)
    np.testing.assert_allclose(ref, [0.0 - 0.2, 0.5 - 0.15])
    scores = np.random.default_rng(0).random((3, 20, 2))
    hv = hypervolume_ci(scores, ref - 1, num_samples=50)
    expected = moocore.hypervolume(scores.mean(1), ref=ref - 1, maximise=True)
    assert hv["hv"] == pytest.approx(expected) and hv["ci_low"] <= hv["hv"] <= hv["ci_high"]
    st = steerability([[0, 1], [0.5, 0.5], [1, 0]], [[0.1, 0.9], [0.5, 0.5], [0.8, 0.2]], ["a", "b"])
    assert st["steerable"] and st["spearman"] == {"a": pytest.approx(1.0), "b": pytest.approx(1.0)}
    assert not steerability([None, None], [[0, 0], [1, 1]], ["a", "b"])["steerable"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("compare") / "tiny")


def _config(tiny: Path, out: Path, methods: list[str]) -> CompareConfig:
    return CompareConfig(task="demo", out=str(out), methods=methods, model_name_or_path=str(tiny),
                         reward_functions=REWARDS, num_train_prompts=6, num_validation_prompts=2, num_test_prompts=4,
                         responses_per_prompt=2, sample_max_new_tokens=4, eval_max_new_tokens=4, steering_steps=2,
                         budget=600, bootstrap_samples=50, modpo_weights=[0.8, 0.2], batch_size=2, lora_r=4,
                         use_chat_template=False, progress=False)


def _comparable(result: dict) -> dict:
    """What must not depend on an interruption: every policy's rewards, HV, spend (not times or memory)."""
    return {m: {"points": r["points"], "hv": r["hv"], "tokens": r["budget"]["tokens"],
                "completions": [p["completions"] for p in r["policies"]]} for m, r in result["methods"].items()}


@pytest.fixture(scope="module")
def uninterrupted(tiny, tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("full")
    return run_compare(_config(tiny, out, METHODS)), out


def test_demo_compare_end_to_end(uninterrupted):
    result, out = uninterrupted
    assert {p.name for p in out.iterdir()} >= {"compare.json", "report.md", "fronts.png", "state.json", "data"}
    written = json.loads((out / "compare.json").read_text())
    ref = np.asarray(written["reference_point"])
    all_points = [m["points"] for m in written["methods"].values()] + [[written["base"]["mean"]]]
    np.testing.assert_allclose(ref, shared_reference([np.asarray(p) for p in all_points], margin=0.1))
    for name, m in written["methods"].items():  # HV of the written points against the written reference
        assert m["hv"]["hv"] == pytest.approx(moocore.hypervolume(np.asarray(m["points"]), ref=ref, maximise=True))
    assert len(written["methods"]["mopo"]["policies"]) == 3  # the 3-point steering grid
    assert len(written["methods"]["sca"]["policies"]) == 5 and written["methods"]["sca"]["steerability"]["steerable"]
    assert len(written["methods"]["modpo"]["policies"]) == 2 and len(written["methods"]["modpo"]["models"]) == 2
    report = (out / "report.md").read_text()
    assert "| method |" in report and "HaM relation" in report and "- base [95% CI]" in report
    from moalign.experiments.compare_demo import demo_config
    from moalign.experiments.demo import split_prompts

    assert written["test_prompts"] == split_prompts(demo_config(_config(Path("x"), out, METHODS)))["test"]


def test_demo_compare_difference_to_base_is_paired(uninterrupted):
    """Each policy's difference to the base model: the mean of per-prompt differences, and the CI flag."""
    result, out = uninterrupted
    base = np.asarray(json.loads((out / "base_eval.json").read_text())["scores"])
    written = json.loads((out / "compare.json").read_text())
    for name, m in written["methods"].items():
        scores = np.load(out / "methods" / name / "scores.npy")
        for p, s in zip(m["policies"], scores):
            np.testing.assert_allclose(p["minus_base"]["mean"], (s - base).mean(0), atol=1e-9)
            low = np.asarray(p["minus_base"]["ci_low"])
            assert p["beats_base_on"] == [o for o, lo in zip(written["objectives"], low) if lo > 0]
            assert np.all(low <= np.asarray(p["minus_base"]["mean"]) + 1e-12)


def test_equal_budget_within_tolerance(uninterrupted):
    result, _ = uninterrupted
    tol = result["budget"]["tolerance"]
    for name, m in result["methods"].items():
        b = m["budget"]
        assert b["budget"] == 600 and abs(b["tokens"] / 600 - 1) <= tol and b["within_tolerance"], (name, b)
        assert all(run["stopped_by_budget"] for run in b["per_run"]), name
    assert result["methods"]["modpo"]["budget"]["runs"] == 2  # 300 tokens per weight


def test_resume_after_interruption_equals_uninterrupted(tiny, tmp_path, uninterrupted, monkeypatch):
    full, _ = uninterrupted
    real = compare_demo.train_method_on_budget

    def interrupted(method, *args, **kwargs):
        if method == "modpo":
            raise KeyboardInterrupt
        return real(method, *args, **kwargs)

    monkeypatch.setattr(compare_demo, "train_method_on_budget", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_compare(_config(tiny, tmp_path, METHODS))
    monkeypatch.setattr(compare_demo, "train_method_on_budget", real)
    done = json.loads((tmp_path / "state.json").read_text())["methods"]
    assert list(done) == ["mopo", "sca"]
    trained = []
    monkeypatch.setattr(compare_demo, "train_method_on_budget",
                        lambda method, *a, **k: trained.append(method) or real(method, *a, **k))
    resumed = run_compare(_config(tiny, tmp_path, METHODS))
    assert trained == ["modpo"]  # mopo and sca, finished before the interruption, are not retrained
    assert _comparable(resumed) == _comparable(full)


def test_settings_change_refused(tiny, tmp_path, uninterrupted):
    _, out = uninterrupted
    config = _config(tiny, out, METHODS)
    config.budget = 700
    with pytest.raises(ValueError, match="other settings"):
        run_compare(config)


def test_data_scored_for_other_objectives_is_refused(tiny, uninterrupted, tmp_path):
    """A tuning (which writes no state.json) resumed with other scorers would train on the old labels."""
    from moalign.experiments.compare_demo import prepare_data

    _, out = uninterrupted
    other = ["brevity", "answer_brevity"]
    config = _config(tiny, out, METHODS)
    config.reward_functions = other
    with pytest.raises(ValueError, match=r"scored with .* this run asks for \['brevity', 'answer_brevity'\]"):
        prepare_data(config, out, [], other)
    # the same scorers read the data back
    assert prepare_data(_config(tiny, out, METHODS), out, [], list(REWARDS))["info"]["reward_functions"] == REWARDS
    # data written before the specs were recorded is checked by the objective names of its pairs
    old = tmp_path / "old"
    shutil.copytree(out / "data", old / "data")
    info = json.loads((old / "data" / "done.json").read_text())
    del info["reward_functions"]
    (old / "data" / "done.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match="scored with"):
        prepare_data(config, old, [], other)


@pytest.mark.slow  # ~15 s: the toy's true front and data
def test_toy_compare_shared_reference_and_hv_ratio(tmp_path):
    config = CompareConfig(task="toy-B", out=str(tmp_path), methods=["cop", "mopo"], quick=True, budget=20,
                           progress=False)
    result = run_compare(config)
    written = json.loads((tmp_path / "compare.json").read_text())
    ref = np.asarray(written["reference_point"])
    front_hv = written["true_front"]["hypervolume"]
    for name, row in written["rows"].items():
        hv = moocore.hypervolume(np.asarray(row["points"]), ref=ref, maximise=True) / front_hv
        assert hv == pytest.approx(row["hv_ratio_per_seed"][0], abs=1e-9), name  # the toy's own ratio, same ref
    assert set(result["rows"]) >= {"MOPO", "COP"} and (tmp_path / "fronts.png").is_file()
    toy_json = json.loads((tmp_path / "toy" / "mopo" / "toy_B.json").read_text())
    assert toy_json["config"]["mopo_steps"] == 20 and toy_json["config"]["dpo_steps"] == 20  # the equal budget


def test_evaluation_change_and_interrupted_evaluation_do_not_retrain(tiny, tmp_path, monkeypatch):
    """An evaluation interrupted after training resumes from the saved model; changing only the steering grid on
    a finished comparison re-evaluates every method from its saved model (no training call either time)."""
    real_eval = compare_demo.evaluate_method
    calls = {"eval": 0}

    def eval_then_stop(*args, **kwargs):
        calls["eval"] += 1
        if calls["eval"] == 2:  # sca: trained, then interrupted while evaluating
            raise KeyboardInterrupt
        return real_eval(*args, **kwargs)

    monkeypatch.setattr(compare_demo, "evaluate_method", eval_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run_compare(_config(tiny, tmp_path, ["mopo", "sca"]))
    monkeypatch.setattr(compare_demo, "evaluate_method", real_eval)
    assert (tmp_path / "methods" / "sca" / compare_demo.TRAIN_RECORD).is_file()

    def no_training(method, *a, **k):
        raise AssertionError(f"{method} was retrained")

    monkeypatch.setattr(compare_demo, "train_method_on_budget", no_training)
    first = run_compare(_config(tiny, tmp_path, ["mopo", "sca"]))
    assert len(first["methods"]["mopo"]["policies"]) == 3 and len(first["methods"]["sca"]["policies"]) == 5
    config = _config(tiny, tmp_path, ["mopo", "sca"])
    config.steering_steps = 1  # evaluation only: 2 steering weights instead of 3
    second = run_compare(config)
    assert len(second["methods"]["mopo"]["policies"]) == 2
    assert second["methods"]["sca"]["points"] == first["methods"]["sca"]["points"]  # same model, same greedy eval
    assert second["methods"]["mopo"]["budget"] == first["methods"]["mopo"]["budget"]


def test_conditioned_methods_need_a_one_decimal_grid(tiny, tmp_path):
    config = _config(tiny, tmp_path, ["mo_odpo"])
    config.steering_steps = 4  # 0.25 cannot be written with one decimal
    with pytest.raises(ValueError, match="must divide 10"):
        run_compare(config)
    assert not (tmp_path / "data").exists()  # refused before any work


def test_demo_compare_reports_degeneracy_and_conflict(uninterrupted):
    """Every policy's degeneracy is that of its own written answers; the conflict is the Spearman correlation of
    the objectives over the base model's samples (the offline data), recomputed here from the scored points."""
    from scipy import stats

    from moalign.eval.degeneracy import degeneracy_summary

    result, out = uninterrupted
    written = json.loads((out / "compare.json").read_text())
    for name, m in written["methods"].items():
        for p in m["policies"]:
            assert p["degeneracy"] == pytest.approx(degeneracy_summary(p["completions"], written["test_prompts"])), \
                (name, p["name"])
    base = json.loads((out / "base_eval.json").read_text())["completions"]
    assert written["degeneracy"]["base"] == pytest.approx(degeneracy_summary(base, written["test_prompts"]))
    best = max(written["methods"], key=lambda m: written["methods"][m]["hv"]["hv"])
    assert written["degeneracy"]["largest_hv_front"]["method"] == best
    points = [json.loads(line) for line in (out / "data" / "points.jsonl").read_text().splitlines() if line.strip()]
    scores = np.array([row["scores"] for row in points], float)
    rho = stats.spearmanr(scores[:, 0], scores[:, 1]).statistic
    [(pair, value)] = written["conflict"]["spearman"].items()
    assert pair == "~".join(written["objectives"]) and value == pytest.approx(rho)
    report = (out / "report.md").read_text()
    assert "## Conflict between the objectives" in report and "## Degenerate answers and diversity" in report
