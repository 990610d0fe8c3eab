"""`moalign train mo_odpo --config` end to end on a tiny saved model; resume restores the method state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from moalign.cli.main import main, parse_config
from moalign.data.conditioning import load_conditioning
from moalign.methods.mo_odpo.config import MOODPOConfig
from moalign.trainers.run import train_method
from tests.cli_setup import save_tiny_model, write_config, write_jsonl
from tests.trainers.test_mo_odpo_trainer import PROMPTS

EXAMPLES = Path(__file__).parents[2] / "examples" / "configs"
REWARDS = ["charsum=py:tests.trainers.mo_odpo_rewards:CharSum", "length=py:tests.trainers.mo_odpo_rewards:Length"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("mo_odpo_cli")
    data = write_jsonl(tmp_path / "prompts.jsonl", ({"prompt": p, "id": i} for i, p in enumerate(PROMPTS)))
    config = write_config(tmp_path / "config.yaml", model_name_or_path=save_tiny_model(tmp_path / "tiny"),
                          dataset_path=data, reward_functions=REWARDS, max_steps=3, save_steps=2,
                          per_device_train_batch_size=2, learning_rate=0.01, head_rank=4, lora_r=4,
                          max_completion_length=5, seed=0)
    return tmp_path, config


def test_train_through_the_cli(files):
    tmp_path, config = files
    out = tmp_path / "out"
    assert main(["train", "mo_odpo", "--config", str(config), "--output_dir", str(out)]) == 0
    assert json.loads((out / "multihead_config.json").read_text())["multihead"]["head_names"] == ["policy"]
    state = torch.load(out / "mo_odpo_state.pt", weights_only=False)
    assert state["method"] == "mo_odpo" and state["objectives"] == ["charsum", "length"]
    assert state["normalizer"]["method"] == "minmax"
    spec = load_conditioning(out, "mo_odpo")
    assert spec.objectives == ("charsum", "length") and spec.template.begin == "[Begin System Instruction]"
    assert (out / "checkpoint-2" / "mo_odpo_conditioning.json").is_file()


def test_resume_restores_the_normaliser_and_the_weight_stream(files):
    tmp_path, config = files
    out = tmp_path / "out_full"
    args = parse_config(MOODPOConfig, ["--config", str(config), "--output_dir", str(out)], "t")
    full = train_method("mo_odpo", args)
    saved = torch.load(out / "checkpoint-2" / "mo_odpo_state.pt", weights_only=False)
    assert saved["normalizer"] == full.normalizer.to_dict()  # fitted on the first batch, then frozen
    args = parse_config(MOODPOConfig, ["--config", str(config), "--output_dir", str(tmp_path / "out_resumed"),
                                       "--resume_from_checkpoint", str(out / "checkpoint-2")], "t")
    resumed = train_method("mo_odpo", args)
    assert resumed.state.global_step == 3
    assert resumed.normalizer.to_dict() == saved["normalizer"]
    # step 3 drew the same weights as in the uninterrupted run: the sampler's state continued from the checkpoint
    assert resumed.weight_rng.bit_generator.state == full.weight_rng.bit_generator.state
    last = [h for h in resumed.state.log_history if "weights/mean/charsum" in h][-1]
    last_full = [h for h in full.state.log_history if "weights/mean/charsum" in h][-1]
    assert last["weights/mean/charsum"] == last_full["weights/mean/charsum"]


@pytest.mark.parametrize("name", ["mo_odpo_local_smollm2.yaml", "mo_odpo_hh_rlhf.yaml"])
def test_example_configs_parse(name):
    config = parse_config(MOODPOConfig, ["--config", str(EXAMPLES / name), "--max_steps", "3", "--bf16", "false",
                                         "--use_cpu", "true"], "t")
    assert config.max_steps == 3 and len(config.reward_functions) == 2 and config.model_name_or_path
