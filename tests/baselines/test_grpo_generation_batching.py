"""``steps_per_generation`` of the GRPO baselines: one batched generate() serves that many optimizer steps."""

from __future__ import annotations

import pytest

from moalign.methods.p_morl.config import PMORLConfig
from moalign.trainers.rl_common import grpo_arguments
from tests.baselines.test_rewarded_soups import REWARDS
from tests.cli_setup import save_tiny_model, write_config, write_jsonl


def test_steps_per_generation_reaches_grpo_config_in_micro_steps(tmp_path):
    args = PMORLConfig(output_dir=str(tmp_path), reward_functions=["positivity", "conciseness"], use_cpu=True,
                       report_to=[], steps_per_generation=3, gradient_accumulation_steps=2)
    grpo = grpo_arguments(args, tmp_path / "grpo")
    # TRL counts micro-steps (forward/backward passes); ours counts optimizer steps
    assert grpo.steps_per_generation == 6
    assert PMORLConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[]).steps_per_generation == 1
    with pytest.raises(ValueError, match="steps_per_generation"):
        PMORLConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[], steps_per_generation=0)


@pytest.mark.parametrize("steps_per_generation", [1, 2])
def test_one_generate_call_serves_steps_per_generation_steps(tmp_path, monkeypatch, steps_per_generation):
    from trl import GRPOTrainer

    from moalign.cli.main import main

    calls = []
    original = GRPOTrainer._generate_single_turn

    def counted(self, prompt_ids, *args, **kwargs):
        calls.append(len(prompt_ids))
        return original(self, prompt_ids, *args, **kwargs)

    monkeypatch.setattr(GRPOTrainer, "_generate_single_turn", counted)
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": p} for p in ["hello you", "tell a story"]])
    config = write_config(tmp_path / "config.yaml", model_name_or_path=save_tiny_model(tmp_path / "tiny"),
                          dataset_path=prompts, reward_functions=REWARDS, output_dir=tmp_path / "out", max_steps=2,
                          per_device_train_batch_size=2, num_generations=2, max_completion_length=4,
                          weights_per_prompt=2, normalization_prompts=2, lora_r=4, save_steps=100,
                          steps_per_generation=steps_per_generation)
    assert main(["train", "p_morl", "--config", str(config)]) == 0
    # 2 optimizer steps of 2 completions: 2 calls of 2, or 1 call of 4
    assert calls == [2 * steps_per_generation] * (2 // steps_per_generation)
