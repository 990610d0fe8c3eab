"""HaM and SCA trainers on a tiny random Llama: hand-computed F (eq. 9/4), HV ascent, SCA = reward-weighted SFT."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from datasets import Dataset
from peft import LoraConfig

from moalign.core.ham import inclusion_exclusion_hypervolume
from moalign.models import MultiHeadCausalLM, MultiHeadConfig
from moalign.models.testing import make_tiny_llama_and_tokenizer
from moalign.trainers.collator import PointwiseCollator
from moalign.methods.ham.config import HaMConfig
from moalign.methods.ham.trainer import HaMTrainer
from moalign.methods.sca.config import SCAConfig, parse_weight_vectors
from moalign.methods.sca.trainer import SCATrainer

WORDS = ["the", "cat", "dog", "good", "bad", "yes", "no", "happy", "sad", "sun"]
OBJECTIVES = ["helpful", "harmless"]


def make_pointwise_rows(n: int = 16, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [{"prompt": "hello " + " ".join(rng.choice(WORDS) for _ in range(2)),
             "completion": " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 4))),
             "scores": [rng.uniform(-2.0, 3.0), rng.uniform(0.0, 10.0)]} for _ in range(n)]


def make_trainer(tmp_path, config_class=HaMConfig, trainer_class=HaMTrainer, head_type="low_rank", lora=True,
                 eval_rows=None, **overrides):
    torch.manual_seed(0)
    base, tokenizer = make_tiny_llama_and_tokenizer()
    settings = dict(output_dir=str(tmp_path / "run"), per_device_train_batch_size=4, max_steps=4, logging_steps=1,
                    save_steps=2, report_to=[], learning_rate=1e-2, use_cpu=True, disable_tqdm=True, seed=0,
                    data_seed=0, use_chat_template=False, head_type=head_type)
    settings.update(overrides)
    args = config_class(**settings)
    names = trainer_class.head_names_for(args, OBJECTIVES)
    model = MultiHeadCausalLM(base, MultiHeadConfig(num_heads=len(names), head_names=names, head_type=head_type,
                                                    head_rank=4), lora_config=LoraConfig(r=4, lora_dropout=0.0)
                              if lora else None)
    eval_dataset = Dataset.from_list(eval_rows) if eval_rows is not None else None
    return trainer_class(model=model, args=args, train_dataset=Dataset.from_list(make_pointwise_rows()),
                         objectives=OBJECTIVES, processing_class=tokenizer, eval_dataset=eval_dataset)


def first_batch(trainer, n=4):
    return trainer.data_collator([trainer.train_dataset[i] for i in range(n)])


def hand_rewards(trainer, batch) -> np.ndarray:
    """Min-max on all 16 training rows' scores, clipped to [0, 1] (the documented rule)."""
    scores = np.array(trainer.train_dataset["scores"])
    low, high = scores.min(0), scores.max(0)
    return np.clip((batch["scores"].numpy() - low) / (high - low), 0, 1)


def test_pointwise_collator_shapes_and_truncation():
    _, tokenizer = make_tiny_llama_and_tokenizer()
    rows = make_pointwise_rows(3)
    rows[1]["truncated"] = True
    batch = PointwiseCollator(tokenizer)(rows)
    assert batch["input_ids"].shape[0] == 3 and batch["scores"].shape == (3, 2)
    assert torch.allclose(batch["scores"], torch.tensor([r["scores"] for r in rows]))
    last = batch["completion_mask"].cumsum(1).argmax(1)
    ends = batch["input_ids"][torch.arange(3), last]
    assert ends[0] == tokenizer.eos_token_id and ends[1] != tokenizer.eos_token_id  # truncated: no EOS
    rows[0]["truncated"] = "yes"
    with pytest.raises(ValueError, match="'truncated' must be true or false"):
        PointwiseCollator(tokenizer)(rows)


def test_F_and_loss_match_hand_computation(tmp_path):
    """F_kj = mean_i r_ij log p_k(y_i|x_i) (eq. 9), F_bar = max((F+z)/z, 0) (eq. 4), loss = -HV (eq. 6)."""
    z = 30.0
    trainer = make_trainer(tmp_path, num_policies=3, z=z)
    batch = first_batch(trainer)
    with torch.no_grad():
        logps = trainer.model.sequence_logps(batch["input_ids"], batch["attention_mask"],
                                             batch["completion_mask"]).double().numpy()  # (K, B)
        loss = trainer.compute_loss(trainer.model, batch).item()
    rewards = hand_rewards(trainer, batch)
    f = np.array([[np.mean(rewards[:, j] * logps[k]) for j in range(2)] for k in range(3)])
    f_bar = np.maximum((f + z) / z, 0)
    logged = {k: v[-1] for k, v in trainer._metrics["train"].items()}
    for k in range(3):
        for j, name in enumerate(OBJECTIVES):
            assert logged[f"F/policy_{k}/{name}"] == pytest.approx(f_bar[k, j], rel=1e-5)
    hv = inclusion_exclusion_hypervolume(torch.tensor(f_bar), torch.zeros(2)).item()
    assert loss == pytest.approx(-hv, rel=1e-5) and logged["hv"] == pytest.approx(hv, rel=1e-5)


def test_one_step_raises_the_batch_hypervolume(tmp_path):
    trainer = make_trainer(tmp_path, num_policies=3)
    batch = first_batch(trainer)
    model = trainer.model.train()
    loss = trainer.compute_loss(model, batch)  # sets z from this batch
    z = trainer.z
    params = [p for p in model.parameters() if p.requires_grad]
    torch.optim.SGD(params, lr=0.05).zero_grad()
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
    with torch.no_grad():
        for p in params:
            if p.grad is not None:
                p.sub_(0.05 * p.grad)
        after = trainer.compute_loss(model, batch)
    assert trainer.z == z
    assert -after.item() > -loss.item() + 1e-4, (loss.item(), after.item())


def test_random_scalarisation_beyond_the_exact_threshold(tmp_path):
    trainer = make_trainer(tmp_path, num_policies=3, exact_max_policies=2, num_directions=20000, z=30.0)
    assert not trainer.args.uses_exact_hypervolume
    batch = first_batch(trainer)
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch).item()
    f_bar = [[trainer._metrics["train"][f"F/policy_{k}/{o}"][-1] for o in OBJECTIVES] for k in range(3)]
    exact = inclusion_exclusion_hypervolume(torch.tensor(f_bar), torch.zeros(2)).item()
    assert -loss == pytest.approx(exact, rel=0.02)


def test_identical_full_heads_are_perturbed_once(tmp_path):
    trainer = make_trainer(tmp_path, head_type="full", num_policies=2)
    heads = trainer.unwrapped_model.output.heads
    assert not torch.equal(heads[0].weight, heads[1].weight)
    off = make_trainer(tmp_path, head_type="full", num_policies=2, full_head_init_noise=0.0)
    assert torch.equal(off.unwrapped_model.output.heads[0].weight, off.unwrapped_model.output.heads[1].weight)


def test_evaluate_changes_no_state_and_logs_eval_metrics(tmp_path):
    trainer = make_trainer(tmp_path, num_policies=2, eval_rows=make_pointwise_rows(8, seed=1))
    normalizer = trainer.normalizer.to_dict()
    weights = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    metrics = trainer.evaluate()
    assert trainer.z is None and trainer.normalizer.to_dict() == normalizer  # eval sets no z
    assert "eval_hv" in metrics and "eval_F/policy_1/harmless" in metrics
    assert all(torch.equal(p, weights[n]) for n, p in trainer.model.named_parameters() if p.requires_grad)
    trainer.train()
    z = trainer.z
    trainer.evaluate()
    assert trainer.z == z and trainer.state.log_history[-1]["eval_z"] == pytest.approx(z)


def test_eval_scores_outside_the_training_range_are_clipped(tmp_path):
    trainer = make_trainer(tmp_path, num_policies=2)
    rewards = trainer.rewards(torch.tensor([[100.0, -100.0], [-2.0, 0.0]]))
    assert rewards.min() >= 0 and rewards.max() <= 1 and rewards[0, 0] == 1 and rewards[0, 1] == 0


def test_sca_with_weight_1_0_is_reward_weighted_sft_on_objective_1(tmp_path):
    z = 25.0
    trainer = make_trainer(tmp_path, SCAConfig, SCATrainer, sca_weights=["1,0"], z=z)
    batch = first_batch(trainer)
    model = trainer.model
    loss = trainer.compute_loss(model, batch)
    rewards = torch.tensor(hand_rewards(trainer, batch)[:, 0], dtype=torch.float32)
    logps = model.sequence_logps(batch["input_ids"], batch["attention_mask"], batch["completion_mask"])[0]
    sft = -(rewards * logps).mean()  # reward-weighted SFT on objective 1
    assert loss.item() == pytest.approx(-(1 - sft.item() / z), rel=1e-5)
    params = [p for p in model.parameters() if p.requires_grad]
    g_sca = torch.autograd.grad(loss, params, allow_unused=True)
    g_sft = torch.autograd.grad(sft, params, allow_unused=True)
    for a, b in zip(g_sca, g_sft):
        if a is not None:
            assert torch.allclose(a, b / z, atol=1e-7, rtol=1e-4)


def test_sca_default_weights_and_errors():
    assert SCATrainer.head_names_for(SCAConfig(output_dir="x"), OBJECTIVES) == [
        "w_0_1", "w_0.3_0.7", "w_0.5_0.5", "w_0.7_0.3", "w_1_0"]
    assert len(parse_weight_vectors(None, 3)) == 10
    with pytest.raises(ValueError, match="sum to 1"):
        parse_weight_vectors(["0.5,0.6"], 2)
    with pytest.raises(ValueError, match="expected one per objective"):
        parse_weight_vectors(["1"], 2)
    with pytest.raises(ValueError, match="2 or 3 objectives"):
        parse_weight_vectors(None, 4)


def test_config_errors_are_named():
    with pytest.raises(ValueError, match="hv_estimator"):
        HaMConfig(output_dir="x", hv_estimator="mc")
    with pytest.raises(ValueError, match="z must be > 0"):
        HaMConfig(output_dir="x", z=0.0)
    with pytest.raises(ValueError, match="no reference model"):
        HaMConfig(output_dir="x", precompute_ref_log_probs=True)
