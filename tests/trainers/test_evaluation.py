"""Evaluation during training: the loss on held-out pairs, and no training state touched."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset

from tests.trainers.test_mopo_trainer import make_rows, make_trainer


def _state(trainer) -> dict:
    """Every piece of MOPO state that evaluation must leave alone, as tensors/values."""
    state = {
        "duals": [{k: v.clone() for k, v in d.state_dict().items()} for d in trainer.duals],
        "lag_active": trainer.lag_active,
        "last_lag_step": trainer.last_lag_step,
        "lagged_estimate_sum": trainer._lagged_estimate_sum.clone(),
        "lagged_estimate_count": trainer._lagged_estimate_count,
        "snapshot": trainer.model.snapshot_state_dict() if trainer.model.has_snapshot else {},
        "params": {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad},
        "global_step": trainer.state.global_step,
    }
    return state


def _assert_identical(a: dict, b: dict) -> None:
    for da, db in zip(a["duals"], b["duals"]):
        for key in da:
            assert torch.equal(da[key], db[key]) or (torch.isnan(da[key]).all() and torch.isnan(db[key]).all()), key
    for key in ("lag_active", "last_lag_step", "lagged_estimate_count", "global_step"):
        assert a[key] == b[key], key
    assert torch.equal(a["lagged_estimate_sum"], b["lagged_estimate_sum"])
    assert a["snapshot"].keys() == b["snapshot"].keys()
    for key in a["snapshot"]:
        assert torch.equal(a["snapshot"][key], b["snapshot"][key]), key
    for key in a["params"]:
        assert torch.equal(a["params"][key], b["params"][key]), key


def test_evaluate_leaves_dual_state_thresholds_and_snapshot_bit_identical(tmp_path):
    trainer = make_trainer(tmp_path, max_steps=5, lag_steps=2, eval_dataset=Dataset.from_list(make_rows(8, seed=1)),
                           per_device_eval_batch_size=4)
    trainer.train()
    assert trainer.lag_active and trainer._lagged_estimate_count > 0  # there is state to disturb
    before = _state(trainer)
    metrics = trainer.evaluate()
    _assert_identical(before, _state(trainer))
    assert np.isfinite(metrics["eval_loss"])
    assert "eval_lower_bound/helpful/harmless" in metrics and "eval_lambda/harmless/helpful" in metrics
    assert metrics["eval_lower_bound/helpful/harmless"] <= metrics["eval_estimate/helpful/harmless"] + 1e-6


def test_eval_strategy_steps_runs_during_training_and_logs_eval_apart(tmp_path):
    """The crash of HF's prediction_step (preference floats read as token labels) is gone."""
    trainer = make_trainer(tmp_path, max_steps=4, lag_steps=2, eval_strategy="steps", eval_steps=2,
                           eval_dataset=Dataset.from_list(make_rows(8, seed=1)), per_device_eval_batch_size=4)
    trainer.train()
    evals = [h for h in trainer.state.log_history if "eval_loss" in h]
    trains = [h for h in trainer.state.log_history if "loss" in h and "eval_loss" not in h]
    assert [h["step"] for h in evals] == [2, 4]
    assert all("eval_estimate/helpful/harmless" in h for h in evals)
    assert trains and not any(key.startswith("eval_") for h in trains for key in h)


def test_eval_loss_matches_hand_computation_at_the_current_lambda(tmp_path):
    """Eval loss = sum over heads of -mean(w * log pi_h) with w = exp((I_p + lam I_q)/tau - 1) normalised to
    mean 1 at the *current* lambda (no dual step), recomputed with numpy."""
    tau, lam0 = 0.5, 0.4
    rows = make_rows(4, seed=2)
    trainer = make_trainer(tmp_path, tau=tau, initial_lambda=lam0, lower_bound_eps=0.1, thresholds=[0.6, 0.6],
                           threshold_mode="fixed", lag_steps=0, eval_dataset=Dataset.from_list(rows),
                           per_device_eval_batch_size=4)
    model = trainer.model.eval()
    batch = trainer.data_collator(rows)
    with torch.no_grad():
        logps = model.sequence_logps(batch["input_ids"], batch["attention_mask"], batch["completion_mask"]).numpy()
    pref = np.array([r["preference"] for r in rows], dtype=float)
    labels = np.concatenate([pref, 1 - pref])
    expected = 0.0
    for head, (p, q) in enumerate([(0, 1), (1, 0)]):
        w = np.exp((labels[:, p] + lam0 * labels[:, q]) / tau - 1)
        expected += -np.mean(w / w.mean() * logps[head])
    metrics = trainer.evaluate()
    assert metrics["eval_loss"] == pytest.approx(expected, rel=1e-5)
    for dual in trainer.duals:
        assert dual.lam.item() == pytest.approx(lam0)  # no dual step in evaluation
    assert metrics["eval_lambda/helpful/harmless"] == pytest.approx(lam0)


def test_eval_dataset_with_other_objectives_is_refused(tmp_path):
    from moalign.data import from_rows

    other = from_rows(make_rows(4), objectives=["a", "b"], kind="pairwise")
    with pytest.raises(ValueError, match="objectives"):
        make_trainer(tmp_path, eval_dataset=other)
