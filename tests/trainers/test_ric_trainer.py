"""Rewards-in-Context: prompt rendering round trip, rejected targets, preference mapping, the SFT loss by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from datasets import Dataset

from moalign.data.ric import parse_reward_prompt, preference_to_targets, render_reward_prompt
from moalign.models import MultiHeadCausalLM, MultiHeadConfig
from moalign.models.testing import make_tiny_llama_and_tokenizer
from moalign.trainers.collator import PointwiseCollator
from moalign.methods.ric.config import RiCConfig
from moalign.methods.ric.trainer import RewardConditioner, RiCTrainer
from tests.trainers.test_ham_trainer import OBJECTIVES, make_pointwise_rows


@pytest.mark.parametrize("prompt", ["What is up?", "\n\nHuman: hi there\n\nAssistant:",
                                    [{"role": "system", "content": "be nice"}, {"role": "user", "content": "hi"}]])
@pytest.mark.parametrize("targets", [[0.7, -0.3], [1.2, 0.0, -2.5], [-0.0, 3.1]])
def test_render_parse_round_trip(prompt, targets):
    text = render_reward_prompt(prompt, targets)
    original, parsed = parse_reward_prompt(text, num_objectives=len(targets))
    assert parsed == targets and original == prompt


def test_render_format_and_rounding():
    assert render_reward_prompt("Q?", [0.73, -0.2]) == "Q? <rm1_score> 0.7 <rm2_score> -0.2"
    assert render_reward_prompt("\n\nHuman: Q\n\nAssistant:", [1, 2]) == (
        "\n\nHuman: Q <rm1_score> 1.0 <rm2_score> 2.0\n\nAssistant:")
    assert parse_reward_prompt(render_reward_prompt("Q", [0.734, 0.2], decimals=2))[1] == [0.73, 0.2]


@pytest.mark.parametrize("targets, match", [([0.1], "expected one per objective"),
                                            ([0.1, float("nan")], "non-finite"),
                                            ([0.1, math.inf], "non-finite"),
                                            ([0.1, 5.0], "outside the range")])
def test_bad_targets_are_rejected(targets, match):
    with pytest.raises(ValueError, match=match):
        render_reward_prompt("Q", targets, bounds=[(-1.0, 1.0), (-1.0, 1.0)])


def test_parse_errors():
    with pytest.raises(ValueError, match="no reward tags"):
        parse_reward_prompt("plain prompt")
    with pytest.raises(ValueError, match="expected 3"):
        parse_reward_prompt("Q <rm1_score> 0.1 <rm2_score> 0.2", num_objectives=3)
    with pytest.raises(ValueError, match="out of order"):
        parse_reward_prompt("Q <rm2_score> 0.1 <rm1_score> 0.2")
    with pytest.raises(ValueError, match="already holds reward tags"):
        render_reward_prompt("Q <rm1_score> 0.1", [0.1])


def test_preference_mapping_is_the_papers_formula():
    bounds = [(-2.0, 1.0), (-1.0, 3.0)]
    assert preference_to_targets([0.5, 0.5], bounds) == [1.0, 3.0]  # w_j >= 1/J: r_max
    assert preference_to_targets([0.2, 0.8], bounds, decimals=None) == pytest.approx([2 * 0.2 * 3 - 2, 3.0])
    assert preference_to_targets([1.0, 0.0], bounds) == [1.0, -1.0]  # w_j = 0: r_min
    with pytest.raises(ValueError, match="sum to 1"):
        preference_to_targets([0.5, 0.6], bounds)
    with pytest.raises(ValueError, match="expected one per objective"):
        preference_to_targets([1.0], bounds)


def make_ric_trainer(tmp_path, **overrides):
    torch.manual_seed(0)
    base, tokenizer = make_tiny_llama_and_tokenizer()
    model = MultiHeadCausalLM(base, MultiHeadConfig(num_heads=1, head_names=["ric"], head_rank=4))
    settings = dict(output_dir=str(tmp_path / "run"), per_device_train_batch_size=4, max_steps=2, report_to=[],
                    use_cpu=True, disable_tqdm=True, use_chat_template=False, use_lora=False)
    settings.update(overrides)
    return RiCTrainer(model=model, args=RiCConfig(**settings), train_dataset=Dataset.from_list(make_pointwise_rows()),
                      objectives=OBJECTIVES, processing_class=tokenizer)


def test_ric_loss_is_completion_token_mean_nll_on_conditioned_prompts(tmp_path):
    trainer = make_ric_trainer(tmp_path)
    rows = [trainer.train_dataset[i] for i in range(4)]
    scores = np.array(trainer.train_dataset["scores"])
    mean, std = scores.mean(0), scores.std(0)
    conditioned = [{**r, "prompt": render_reward_prompt(r["prompt"], list(np.round((np.array(r["scores"]) - mean)
                                                                                     / std, 1)))} for r in rows]
    plain = PointwiseCollator(trainer.processing_class)(conditioned)  # the plain collator on x'
    batch = trainer.data_collator(rows)
    assert torch.equal(batch["input_ids"], plain["input_ids"])
    with torch.no_grad():
        logps = trainer.model.sequence_logps(plain["input_ids"], plain["attention_mask"], plain["completion_mask"])
        loss = trainer.compute_loss(trainer.model, batch).item()
    assert loss == pytest.approx(-logps.sum().item() / plain["completion_mask"].sum().item(), rel=1e-6)


def test_conditioner_preference_prompt_and_save(tmp_path):
    trainer = make_ric_trainer(tmp_path)
    conditioner = trainer.conditioner
    (low1, high1), (low2, high2) = conditioner.bounds
    text = conditioner.prompt_for_preference("Q", [1.0, 0.0])
    assert parse_reward_prompt(text, 2)[1] == [high1, low2]
    with pytest.raises(ValueError, match="outside the range"):
        conditioner.prompt_for_targets("Q", [high1 + 1, low2])
    trainer.train()
    trainer.save_model(str(tmp_path / "run"))
    loaded = RewardConditioner.load(tmp_path / "run")
    assert loaded.to_dict() == conditioner.to_dict()
