"""P-MORL: the reward reads each row's weights and scores the unconditioned prompt (hand computation); the
conditioned dataset renders as MO-ODPO; ``moalign train p_morl --config`` end to end on a tiny saved model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from moalign.data.conditioning import load_conditioning, parse_conditioned_prompt
from moalign.models.testing import make_tiny_tokenizer
from moalign.rewards.base import CallableReward, RewardNormalizer
from moalign.methods.p_morl.trainer import WeightedSumReward
from tests.baselines.scripted_rewards import brevity, count_good
from tests.baselines.test_rewarded_soups import REWARDS
from tests.cli_setup import save_tiny_model, write_config, write_jsonl


def test_weighted_reward_reads_the_weights_of_each_row():
    seen = []

    def prompt_length(prompts, completions):
        seen.extend(prompts)
        return [float(len(p.split())) for p in prompts]

    normalizer = RewardNormalizer("minmax", ["good", "len"])
    normalizer.shift, normalizer.scale = np.array([0.0, 1.0]), np.array([2.0, 4.0])
    reward = WeightedSumReward([CallableReward(count_good, "good"), CallableReward(prompt_length, "len")], normalizer)
    out = reward(prompts=["[Begin System Instruction]..."] * 3, completions=["good good", "bad", "good x"],
                 weights=[[0.3, 0.7], [1.0, 0.0], [0.0, 1.0]], original_prompt=["a b c", "a", "a b c d e"])
    # row 1: good 2 -> (2-0)/2 = 1, len 3 -> (3-1)/4 = 0.5: 0.3*1 + 0.7*0.5 = 0.65
    # row 2: good 0 -> 0, weight (1, 0): 0;  row 3: len 5 -> 1, weight (0, 1): 1
    assert out == pytest.approx([0.65, 0.0, 1.0])
    assert seen == ["a b c", "a", "a b c d e"]  # rewards see the unconditioned prompt
    with pytest.raises(ValueError, match="weights"):
        reward(prompts=["x"], completions=["y"], original_prompt=["x"])
    raw = WeightedSumReward([CallableReward(brevity, "short")])
    assert raw(prompts=["p"], completions=["a b c"], weights=[[1.0]], original_prompt=["p"]) == [-3.0]


def test_train_p_morl_through_the_cli(tmp_path):
    from moalign.cli.main import main

    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": p} for p in ["hello you", "tell a story"]])
    config = write_config(tmp_path / "config.yaml", model_name_or_path=save_tiny_model(tmp_path / "tiny"),
                          dataset_path=prompts, reward_functions=REWARDS, output_dir=tmp_path / "out", max_steps=1,
                          per_device_train_batch_size=2, num_generations=2, max_completion_length=4,
                          weights_per_prompt=2, normalization_prompts=2, lora_r=4, save_steps=100)
    assert main(["train", "p_morl", "--config", str(config)]) == 0
    out = tmp_path / "out"
    assert (out / "adapter_config.json").is_file()
    spec = load_conditioning(out, "p_morl")
    assert spec.objectives == ("good", "short")
    saved = json.loads((out / "p_morl_conditioning.json").read_text())
    assert saved["normalizer"]["method"] == "minmax"
    # the trainer's prompts are MO-ODPO's rendering: they parse back to (prompt, weights on the 0.1 grid)
    from moalign.methods.p_morl.config import PMORLConfig
    from moalign.methods.p_morl.trainer import PMORLTrainer
    from moalign.trainers.run import load_training_data

    args = PMORLConfig(output_dir=str(tmp_path / "x"), reward_functions=REWARDS, dataset_path=str(prompts),
                       weights_per_prompt=2, use_chat_template=False, use_cpu=True, report_to=[])
    trainer = PMORLTrainer(args=args, train_dataset=load_training_data(args, "prompts"),
                           processing_class=make_tiny_tokenizer())
    for row in trainer.dataset:
        original, weights = parse_conditioned_prompt(row["prompt"])
        assert original == row["original_prompt"] and weights == pytest.approx(row["weights"])
        assert sum(row["weights"]) == pytest.approx(1) and all(round(w * 10) == w * 10 for w in row["weights"])


def test_normalizer_is_the_min_max_of_the_initial_policys_samples(tmp_path):
    """fit_normalizer against samples drawn one prompt at a time by plain ``generate``: at a temperature this low
    sampling is greedy, so both draw the same completions; the statistics are their rewards' min and range."""
    import torch

    from moalign.methods.p_morl.config import PMORLConfig
    from moalign.methods.p_morl.trainer import PMORLTrainer
    from moalign.models.loading import load_base_model
    from moalign.trainers.run import load_training_data

    tiny = save_tiny_model(tmp_path / "tiny")
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": p} for p in ["hello you", "tell a long story",
                                                                               "why"]])
    args = PMORLConfig(output_dir=str(tmp_path / "x"), model_name_or_path=str(tiny), reward_functions=REWARDS,
                       dataset_path=str(prompts), weights_per_prompt=1, normalization_prompts=3, num_generations=2,
                       max_completion_length=5, temperature=1e-4, use_chat_template=False, use_cpu=True,
                       report_to=[], precision="fp32")
    tokenizer = make_tiny_tokenizer()
    trainer = PMORLTrainer(args=args, train_dataset=load_training_data(args, "prompts"), processing_class=tokenizer)
    normalizer = trainer.fit_normalizer()

    model = load_base_model(str(tiny)).eval()
    originals, completions = [], []
    for row in trainer.dataset:
        ids = tokenizer(row["prompt"], return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**ids, do_sample=False, max_new_tokens=5, pad_token_id=tokenizer.eos_token_id)
        text = tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
        originals += [row["original_prompt"]] * 2
        completions += [text] * 2
    raw = np.array([[r(prompts=[p], completions=[c])[0] for r in trainer.rewards]
                    for p, c in zip(originals, completions)])
    low, spread = raw.min(0), raw.max(0) - raw.min(0)
    expected = np.where(spread > 0, spread, 1.0)
    np.testing.assert_allclose(normalizer.transform(raw), (raw - low) / expected)
