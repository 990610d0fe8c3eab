"""``moalign train rewarded_soups --config`` end to end on a tiny saved model with scripted rewards: two GRPO
specialists, a loadable soup, a rerun that retrains nothing, and a rerun that retrains only a missing one."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from moalign.cli.main import parse_config
from moalign.models.soups import SoupModel
from moalign.models.testing import make_tiny_llama_and_tokenizer
from moalign.methods.rewarded_soups.config import RewardedSoupsConfig
from moalign.trainers.run import train_method
from tests.cli_setup import save_tiny_model, write_config, write_jsonl

REWARDS = ["good=py:tests.baselines.scripted_rewards:count_good", "short=py:tests.baselines.scripted_rewards:brevity"]
PROMPTS = ["hello you", "tell a story", "a cat"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("rs")
    config = write_config(tmp_path / "config.yaml", model_name_or_path=save_tiny_model(tmp_path / "tiny"),
                          dataset_path=write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": p} for p in PROMPTS]),
                          reward_functions=REWARDS, output_dir=tmp_path / "out", max_steps=1,
                          per_device_train_batch_size=2, num_generations=2, max_completion_length=4, lora_r=4,
                          lora_alpha=8, save_steps=100, seed=0)
    return tmp_path, config


def test_rewarded_soups_end_to_end_and_resume(setup):
    from moalign.cli.main import main

    tmp_path, config = setup
    assert main(["train", "rewarded_soups", "--config", str(config)]) == 0
    out = tmp_path / "out"
    soup_config = json.loads((out / "soup_config.json").read_text())
    assert soup_config["objectives"] == ["good", "short"] and soup_config["interpolation"] == "linear"
    assert all((out / "specialists" / n / "adapter_config.json").is_file() for n in ("good", "short"))

    base, tokenizer = make_tiny_llama_and_tokenizer()
    soup = SoupModel.from_pretrained(out, base_model=base)
    ids = tokenizer("hello you", return_tensors="pt")
    with soup.weighted_policy([0.5, 0.5]):
        generated = soup.generate(**ids, max_new_tokens=3, do_sample=False)
    assert generated.shape[1] <= ids["input_ids"].shape[1] + 3

    args = parse_config(RewardedSoupsConfig, ["--config", str(config)], "t")
    rerun = train_method("rewarded_soups", args)
    assert rerun.trained == [] and rerun.skipped == ["good", "short"]
    shutil.rmtree(out / "specialists" / "short")
    rerun = train_method("rewarded_soups", args)
    assert rerun.trained == ["short"] and rerun.skipped == ["good"]


def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match="K >= 2"):
        RewardedSoupsConfig(output_dir=str(tmp_path), reward_functions=REWARDS[:1])
    from moalign.methods.rewarded_soups.trainer import RewardedSoupsTrainer

    with pytest.raises(ValueError, match="set reward_functions"):
        RewardedSoupsTrainer(args=RewardedSoupsConfig(output_dir=str(tmp_path)), train_dataset=[],
                             processing_class=object())
    with pytest.raises(ValueError, match="num_generations"):
        RewardedSoupsConfig(output_dir=str(tmp_path), reward_functions=REWARDS, num_generations=1)
    with pytest.raises(ValueError, match="interpolation"):
        RewardedSoupsConfig(output_dir=str(tmp_path), reward_functions=REWARDS, interpolation="svd")
