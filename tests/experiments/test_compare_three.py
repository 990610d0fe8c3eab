"""``moalign compare --task demo`` with three objectives on the tiny model end to end, and its learning curves.

Three scripted objectives; a method of each family whose evaluation differs (MOPO's steering grid, SCA's weight
heads, MODPO's per-weight models, ODPO Soups' interpolated specialists). The 3-D hypervolume is recomputed with
moocore on the written points; every curve point read from a checkpoint equals a direct evaluation of that
checkpoint with :func:`moalign.eval.evaluate.evaluate_policies`.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import moocore
import numpy as np
import pytest

from moalign.experiments.compare import CompareConfig, run_compare
from moalign.methods.modpo import weight_vector as modpo_weight_vector
from moalign.experiments.compare_report import shared_reference
from tests.cli_setup import save_tiny_model

REWARDS = ["charsum=py:tests.trainers.mo_odpo_rewards:CharSum", "length=py:tests.trainers.mo_odpo_rewards:Length",
           "vowels=py:tests.experiments.compare_rewards:Vowels"]
METHODS = ["mopo", "sca", "modpo", "odpo_soups"]


def _config(tiny: Path, out: Path, methods: list[str]) -> CompareConfig:
    return CompareConfig(task="demo", out=str(out), methods=methods, model_name_or_path=str(tiny),
                         reward_functions=REWARDS, num_train_prompts=6, num_validation_prompts=2, num_test_prompts=4,
                         responses_per_prompt=2, sample_max_new_tokens=4, eval_max_new_tokens=4, steering_steps=2,
                         budget=900, bootstrap_samples=50, modpo_weights=[0.8, 0.2], batch_size=2, lora_r=4,
                         use_chat_template=False, progress=False, curve_fractions=[0.5],
                         curve_steering_steps=1)  # the curves on the grid's corners: a coarser grid than the final


@pytest.fixture(scope="module")
def three(tmp_path_factory) -> tuple[dict, Path, Path]:
    tiny = save_tiny_model(tmp_path_factory.mktemp("three") / "tiny")
    out = tmp_path_factory.mktemp("three_out")
    return run_compare(_config(tiny, out, METHODS)), out, tiny


def test_three_objective_compare_hv_is_moocore_3d(three):
    result, out, _ = three
    written = json.loads((out / "compare.json").read_text())
    assert written["objectives"] == ["charsum", "length", "vowels"]
    ref = np.asarray(written["reference_point"])
    assert ref.shape == (3,)
    points = [np.asarray(m["points"]) for m in written["methods"].values()] + [np.asarray([written["base"]["mean"]])]
    np.testing.assert_allclose(ref, shared_reference(points, margin=0.1))
    for name, m in written["methods"].items():
        pts = np.asarray(m["points"])
        assert pts.shape[1] == 3, name
        assert m["hv"]["hv"] == pytest.approx(moocore.hypervolume(pts, ref=ref, maximise=True)), name
    # K-objective grids: the 3-objective simplex at step 1/2 has 6 points, for the steering and the soup
    grid = {tuple(w) for w in itertools.product([0, 0.5, 1], repeat=3) if sum(w) == 1}
    for name in ("mopo", "odpo_soups"):
        assert {tuple(p["weights"]) for p in written["methods"][name]["policies"]} == grid, name
        assert set(written["methods"][name]["steerability"]["spearman"]) == set(written["objectives"])
    assert all(len(p["weights"]) == 3 for p in written["methods"]["sca"]["policies"])
    modpo = written["methods"]["modpo"]
    assert modpo["job_weights"] == [modpo_weight_vector(w, 3) for w in (0.8, 0.2)]
    assert [p["name"] for p in modpo["policies"]] == ["modpo[0.8,0.1,0.1]", "modpo[0.2,0.4,0.4]"]
    assert written["methods"]["odpo_soups"]["budget"]["runs"] == 3  # one specialist per objective
    assert set(written["conflict"]["spearman"]) == {"charsum~length", "charsum~vowels", "length~vowels"}
    assert (out / "fronts.png").read_bytes()[:4] == b"\x89PNG"


def test_learning_curves_at_every_fraction(three):
    result, out, _ = three
    written = json.loads((out / "compare.json").read_text())
    curves = written["learning_curves"]
    corners = {(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)}
    for name, rows in curves["methods"].items():
        assert [r["fraction"] for r in rows] == [0.5, 1.0], name
        final = written["methods"][name]
        # on the curves' grid: the grid's methods keep their corner weights, the others all their policies
        kept = [i for i, p in enumerate(final["policies"])
                if name not in ("mopo", "odpo_soups") or tuple(p["weights"]) in corners]
        assert len(kept) == (3 if name in ("mopo", "odpo_soups") else len(final["policies"])), name
        assert rows[0]["policies"] == rows[-1]["policies"] == len(kept), name
        # fraction 1 is the final model's evaluation of those policies
        np.testing.assert_allclose(rows[-1]["points"], np.asarray(final["points"])[kept])
        assert rows[-1]["tokens"] == final["budget"]["tokens"] and rows[0]["tokens"] < rows[-1]["tokens"]
        above = sum(bool(final["policies"][i]["beats_base_on"]) for i in kept)
        assert rows[-1]["policies_above_base"] == above
        ref = np.asarray(curves["reference_point"])
        for r in rows:
            assert r["hv"] == pytest.approx(moocore.hypervolume(np.asarray(r["points"]), ref=ref, maximise=True))
    assert (out / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "## Learning curves" in (out / "report.md").read_text()


def _direct(model, policies, prompts, tiny: Path) -> np.ndarray:
    """Scores of ``policies`` on ``prompts`` by moalign's evaluation API (not the comparison's code)."""
    from moalign.eval.evaluate import EvalConfig, evaluate_policies
    from moalign.models import load_tokenizer
    from moalign.rewards.registry import resolve_rewards

    config = EvalConfig(max_new_tokens=4, do_sample=False, batch_size=64, use_chat_template=False, progress=False,
                        bootstrap_samples=10, num_clusters=1)
    res = evaluate_policies(model, load_tokenizer(str(tiny)), prompts, resolve_rewards(REWARDS), policies, config,
                            cluster_labels=[0] * len(prompts))
    return res.scores[[i for i, p in enumerate(res.policies) if p.kind != "base"]]


def test_checkpoint_curve_equals_direct_evaluation_of_the_checkpoint(three):
    """MOPO's and ODPO Soups' curve points at 50 %: the saved checkpoint folders loaded by hand and evaluated."""
    from moalign.eval.policies import Policy
    from moalign.experiments.demo import DemoConfig
    from moalign.models import MultiHeadCausalLM, load_base_model
    from moalign.models.soups import SoupModel

    _, out, tiny = three
    written = json.loads((out / "compare.json").read_text())
    prompts = written["test_prompts"]
    curve = {n: np.load(out / "methods" / n / "curve" / "f0.5" / "scores.npy") for n in ("mopo", "odpo_soups")}
    curve_weights = {n: [p["weights"] for p in json.loads((out / "methods" / n / "curve" / "f0.5" /
                                                            "policies.json").read_text())["policies"]]
                     for n in curve}
    assert sorted(map(tuple, curve_weights["mopo"])) == [(0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0)]

    [run] = written["methods"]["mopo"]["budget"]["per_run"]
    checkpoint = run["checkpoints"]["0.5"]["path"]
    assert Path(checkpoint).name.startswith("checkpoint-") and run["checkpoints"]["0.5"]["step"] < run["steps"]
    weights = curve_weights["mopo"]
    model = MultiHeadCausalLM.from_pretrained(checkpoint, base_model=load_base_model(str(tiny)), is_trainable=False)
    divergence = DemoConfig().steering_divergence
    direct = _direct(model, [Policy.steered(w, divergence=divergence) for w in weights], prompts, tiny)
    np.testing.assert_allclose(curve["mopo"], direct)

    runs = written["methods"]["odpo_soups"]["budget"]["per_run"]
    specialists = [r["checkpoints"]["0.5"]["path"] for r in runs]  # in objective order, as trained
    soup = SoupModel(load_base_model(str(tiny)), specialists, objectives=written["objectives"])
    weights = curve_weights["odpo_soups"]
    direct = _direct(soup, [Policy.weighted(w) for w in weights], prompts, tiny)
    np.testing.assert_allclose(curve["odpo_soups"], direct)
    # the checkpoint is mid-training, not the final model: its adapter weights differ from the final ones
    from safetensors.torch import load_file

    final = load_file(Path(written["methods"]["mopo"]["models"][0]) / "adapter" / "adapter_model.safetensors")
    half = load_file(Path(checkpoint) / "adapter" / "adapter_model.safetensors")
    assert final.keys() == half.keys() and any(not np.allclose(final[k], half[k]) for k in final)


@pytest.mark.slow  # every method with three objectives: a few minutes on the shared CPU
def test_every_method_runs_three_objectives(tmp_path):
    from moalign.experiments.compare_demo import compared_methods

    tiny = save_tiny_model(tmp_path / "tiny")
    DEMO_METHODS = compared_methods(_config(tiny, tmp_path / "out", []))
    config = _config(tiny, tmp_path / "out", list(DEMO_METHODS))
    config.curve_fractions = []
    result = run_compare(config)
    assert set(result["methods"]) == set(DEMO_METHODS)
    ref = np.asarray(result["reference_point"])
    for name, m in result["methods"].items():
        assert np.asarray(m["points"]).shape[1] == 3, name
        assert m["hv"]["hv"] == pytest.approx(moocore.hypervolume(np.asarray(m["points"]), ref=ref, maximise=True))


def test_curves_read_a_finer_cached_checkpoint_evaluation_on_their_grid_without_evaluating(three):
    """A cached checkpoint evaluation on a finer grid (here rewritten as if made on the final grid: 2 steps, 6
    policies, distinct scores by row) is read on the curves' grid (the corners) by policy name; the evaluation is
    never called."""
    from moalign.experiments.compare_curves import checkpoint_scores

    _, out, tiny = three
    written = json.loads((out / "compare.json").read_text())
    record = written["methods"]["mopo"]
    folder = out / "methods" / "mopo" / "curve" / "f0.5"
    fine_rows = [{"name": p["name"], "weights": p["weights"]} for p in record["policies"]]  # the 6-weight grid
    fine_scores = np.arange(len(fine_rows) * 4 * 3, dtype=float).reshape(len(fine_rows), 4, 3)
    saved = (folder / "policies.json").read_text(), np.load(folder / "scores.npy")
    try:
        (folder / "policies.json").write_text(json.dumps({"settings": {"steering_steps": 2, "eval_max_new_tokens": 4},
                                                          "policies": fine_rows}))
        np.save(folder / "scores.npy", fine_scores)

        def never(groups):
            raise AssertionError("evaluated although a finer cached evaluation covers the grid")

        rows, scores = checkpoint_scores("mopo", _config(tiny, out, ["mopo"]), record, 0.5, 3,
                                         out / "methods" / "mopo", never)
        picked = [i for i, r in enumerate(fine_rows) if max(r["weights"]) == 1.0]
        assert [r["name"] for r in rows] == [fine_rows[i]["name"] for i in picked]
        np.testing.assert_array_equal(scores, fine_scores[picked])
    finally:
        (folder / "policies.json").write_text(saved[0])
        np.save(folder / "scores.npy", saved[1])


def test_curve_grid_must_divide_the_steering_grid_and_defaults_to_half_an_even_grid(tmp_path):
    with pytest.raises(ValueError, match="curve_steering_steps must divide steering_steps"):
        CompareConfig(task="demo", out=str(tmp_path), steering_steps=10, curve_steering_steps=3)
    grids = {steps: CompareConfig(task="demo", out=str(tmp_path), steering_steps=steps).resolved_curve_steering_steps()
             for steps in (1, 2, 3, 4, 10)}
    assert grids == {1: 1, 2: 2, 3: 3, 4: 2, 10: 5}
    assert CompareConfig(task="demo", out=str(tmp_path), curve_steering_steps=10).resolved_curve_steering_steps() == 10
