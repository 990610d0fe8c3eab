"""MO-ODPO (MO-ODPO paper, arXiv 2503.00295): labels, loss vs TRL, one step, rendering, evaluation, state."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset
from peft import LoraConfig

from moalign.core.losses import dpo_loss
from moalign.data.prompts import render_prompt
from moalign.models import MultiHeadCausalLM, MultiHeadConfig
from moalign.models.testing import make_tiny_llama_and_tokenizer
from moalign.methods.mo_odpo.config import MOODPOConfig
from moalign.rewards.registry import reward_spec_names
from moalign.methods.mo_odpo.trainer import MOODPOTrainer, label_pairs
from tests.core.test_losses import _trl_compute_loss
from tests.trainers.mo_odpo_rewards import CharSum, Length, PromptEcho

PROMPTS = ["hello tell me a story", "write a poem about the sun", "why is the sky blue ?", "say thanks please",
           "what is a cat", "tell a joke about a dog"]


def make_trainer(tmp_path, reward_funcs=None, prompts=PROMPTS, eval_prompts=None, **overrides):
    torch.manual_seed(0)
    base, tokenizer = make_tiny_llama_and_tokenizer()
    settings = dict(output_dir=str(tmp_path / "run"), per_device_train_batch_size=3, max_steps=2, logging_steps=1,
                    save_steps=10, report_to=[], learning_rate=1e-2, use_cpu=True, disable_tqdm=True, seed=0,
                    data_seed=0, use_chat_template=False, max_completion_length=6, head_rank=4)
    settings.update(overrides)
    args = MOODPOConfig(**settings)
    model = MultiHeadCausalLM(base, MultiHeadConfig(num_heads=1, head_names=["policy"], head_rank=4),
                              lora_config=LoraConfig(r=4, lora_dropout=0.0))
    eval_dataset = Dataset.from_dict({"prompt": eval_prompts}) if eval_prompts else None
    return MOODPOTrainer(model=model, args=args, train_dataset=Dataset.from_dict({"prompt": list(prompts)}),
                         eval_dataset=eval_dataset, processing_class=tokenizer,
                         reward_funcs=reward_funcs or [CharSum(), Length()])


def test_pair_label_by_hand():
    r1 = torch.tensor([[0.2, 0.9], [0.5, 0.5], [1.0, 0.0], [0.3, 0.3]])
    r2 = torch.tensor([[0.6, 0.1], [0.5, 0.5], [0.0, 1.0], [0.3, 0.4]])
    w = torch.tensor([[0.5, 0.5], [0.3, 0.7], [0.5, 0.5], [1.0, 0.0]])
    # s1 = 0.55, 0.5, 0.5, 0.3 ; s2 = 0.35, 0.5, 0.5, 0.3 -> y1 wins, tie, tie, tie (w puts nothing on obj. 2)
    wins, used, s1, s2 = label_pairs(r1, r2, w)
    assert torch.allclose(s1, torch.tensor([0.55, 0.5, 0.5, 0.3])) and torch.allclose(s2, torch.tensor([0.35, 0.5, 0.5, 0.3]))
    assert wins.tolist() == [True, False, False, False] and used.tolist() == [True, False, False, False]
    wins, used, _, _ = label_pairs(r1, r2, w, tie_rule="second")  # eq. 2 literally: ties go to y_2
    assert wins.tolist() == [True, False, False, False] and used.all()
    wins, used, _, _ = label_pairs(r1, r2, torch.tensor([[0.0, 1.0]] * 4), tie_tolerance=0.05)
    assert wins.tolist() == [True, False, False, False] and used.tolist() == [True, False, True, True]


@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_dpo_loss_equals_trls_on_the_same_log_probs(beta):
    g = torch.Generator().manual_seed(7)
    pc, pr, rc, rr = (-(torch.rand(5, generator=g, dtype=torch.float64) * 30 + 1) for _ in range(4))
    losses, _, _ = dpo_loss(pc, pr, rc, rr, beta)
    trl_loss, _ = _trl_compute_loss(pc, pr, rc, rr, beta)
    assert losses.mean().item() == pytest.approx(trl_loss.item(), rel=1e-12)


def test_objective_names_of_specs():
    assert reward_spec_names(["positivity", "help=hf:org/rm", "hf:org/rm-2", "x=py:m.n:F", "py:m.n:Length"]) == \
        ["positivity", "help", "rm-2", "x", "Length"]


def test_one_step_moves_the_chosen_log_ratio_up(tmp_path):
    """One SGD step on eq. 3: every used pair's chosen log-ratio log pi/pi_0 goes up, the margin too."""
    trainer = make_trainer(tmp_path, per_device_train_batch_size=1, reward_normalization="none")
    model = trainer.model
    model.train()
    torch.manual_seed(3)
    pairs = trainer.build_pairs(model, PROMPTS[:1], "train")
    assert pairs.used.all(), "the scripted rewards should not tie on this seed"
    loss, parts = trainer.pair_loss(model, pairs)
    wins = pairs.first_wins

    def chosen_log_ratio(p):
        r = (p["logps"] - p["ref"]).detach()
        return torch.where(wins, r[:1], r[1:]), torch.where(wins, r[1:], r[:1])

    before_c, before_r = chosen_log_ratio(parts)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05)
    loss.backward()
    optimizer.step()
    _, after = trainer.pair_loss(model, pairs)
    after_c, after_r = chosen_log_ratio(after)
    assert (after_c > before_c + 1e-6).all()
    assert ((after_c - after_r) > (before_c - before_r)).all()


def test_rewards_see_the_unconditioned_prompt_and_training_renders_the_block(tmp_path):
    trainer = make_trainer(tmp_path, reward_funcs=[PromptEcho(), Length()])
    pairs = trainer.build_pairs(trainer.model, PROMPTS[:3], "eval")
    assert (pairs.raw_scores[:, 0] == 0).all()  # the scorer never saw the block
    for x_cond, x, w in zip(pairs.prompts, PROMPTS[:3], pairs.weights.tolist()):
        assert x_cond == f"[Begin System Instruction]\necho: {w[0]:.1f}, length: {w[1]:.1f}\n[End System Instruction]\n{x}"


def test_fixed_weights_without_conditioning_is_an_odpo_soups_specialist(tmp_path):
    trainer = make_trainer(tmp_path, fixed_weights=[1.0, 0.0], condition_prompt=False)
    pairs = trainer.build_pairs(trainer.model, PROMPTS[:3], "train")
    assert pairs.prompts == PROMPTS[:3] and pairs.weights.tolist() == [[1.0, 0.0]] * 3
    s = pairs.rewards[:, 0]  # the label is objective 1's alone
    assert torch.equal(pairs.first_wins, (s[:3] > s[3:]) & pairs.used)


def test_unconditioned_anchor_uses_the_plain_prompt(tmp_path):
    trainer = make_trainer(tmp_path, anchor_prompt="unconditioned")
    pairs = trainer.build_pairs(trainer.model, PROMPTS[:2], "eval")
    tokenizer = trainer.processing_class
    plain = tokenizer(render_prompt(tokenizer, PROMPTS[0], False), add_special_tokens=False)["input_ids"]
    assert pairs.anchor_batch["input_ids"][0, : len(plain)].tolist() == plain
    assert pairs.batch["input_ids"].shape[1] > pairs.anchor_batch["input_ids"].shape[1]


def test_train_logs_and_evaluate_changes_no_state(tmp_path):
    trainer = make_trainer(tmp_path, eval_prompts=PROMPTS[:3], per_device_eval_batch_size=3)
    trainer.train()
    logged = {k for h in trainer.state.log_history for k in h}
    for key in ("loss", "dpo_accuracy", "reward_margin", "kl_to_anchor", "weights/std/charsum", "pairs/ties",
                "rewards/chosen/length", "rewards/rejected/charsum", "generation/tokens_per_s"):
        assert key in logged, key
    params = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    rng_state, torch_state = trainer.weight_rng.bit_generator.state, torch.random.get_rng_state()
    normalizer = trainer.normalizer.to_dict()
    with torch.no_grad():  # the method itself leaves the global torch RNG alone in eval ...
        trainer.method_loss(trainer.model.eval(), {"prompt": PROMPTS[:3]}, "eval")
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    first = trainer.evaluate()  # ... (the Trainer's DataLoader iterator draws its base seed from it)
    second = trainer.evaluate()
    assert first["eval_loss"] == second["eval_loss"] and "eval_dpo_accuracy" in first
    assert trainer.weight_rng.bit_generator.state == rng_state
    assert trainer.normalizer.to_dict() == normalizer
    assert all(torch.equal(p, params[n]) for n, p in trainer.model.named_parameters())


def test_weights_spread_follows_alpha(tmp_path):
    trainer = make_trainer(tmp_path, dirichlet_alpha=[0.2])
    w = trainer.sample_weights(4000, np.random.default_rng(0))
    assert np.mean((w == 0) | (w == 1)) > 0.5  # alpha < 1: mostly corners (§3.2)
