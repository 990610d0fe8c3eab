"""`moalign train ham|sca|ric --config` end to end on a tiny saved model; resume restores the method state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from moalign.cli.main import main, parse_config
from moalign.methods.ham.config import HaMConfig
from moalign.trainers.run import train_method
from tests.cli_setup import save_tiny_model, write_config, write_jsonl
from tests.trainers.test_ham_trainer import OBJECTIVES, make_pointwise_rows

EXAMPLES = Path(__file__).parents[2] / "examples" / "configs"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ham_cli")
    config = write_config(tmp_path / "config.yaml", model_name_or_path=save_tiny_model(tmp_path / "tiny"),
                          dataset_path=write_jsonl(tmp_path / "points.jsonl", make_pointwise_rows(12)),
                          objectives=OBJECTIVES, max_steps=3, save_steps=2, per_device_train_batch_size=4,
                          learning_rate=0.01, head_rank=4, lora_r=4)
    return tmp_path, config


@pytest.mark.parametrize("method, extra, heads", [
    ("ham", ["--num_policies", "3"], ["policy_0", "policy_1", "policy_2"]),
    ("sca", ["--sca_weights", "1,0", "0.5,0.5"], ["w_1_0", "w_0.5_0.5"]),
    ("ric", [], ["ric"]),
])
def test_train_through_the_cli(files, method, extra, heads):
    tmp_path, config = files
    out = tmp_path / f"out_{method}"
    assert main(["train", method, "--config", str(config), "--output_dir", str(out), *extra]) == 0
    saved = json.loads((out / "multihead_config.json").read_text())["multihead"]["head_names"]
    assert saved == heads
    state = torch.load(out / f"{method}_state.pt", weights_only=False)
    assert state["method"] == method and state["objectives"] == OBJECTIVES
    normalizer_file = "ric_conditioning.json" if method == "ric" else "reward_normalizer.json"
    assert (out / normalizer_file).is_file() and (out / "checkpoint-2" / normalizer_file).is_file()


def test_resume_restores_z_and_the_normaliser(files):
    tmp_path, config = files
    out = tmp_path / "out_resume"
    args = parse_config(HaMConfig, ["--config", str(config), "--output_dir", str(out), "--num_policies", "2"], "t")
    first = train_method("ham", args)
    saved = torch.load(out / "checkpoint-2" / "ham_state.pt", weights_only=False)
    assert saved["z"] == first.z and saved["normalizer"]["method"] == "minmax"
    args = parse_config(HaMConfig, ["--config", str(config), "--output_dir", str(tmp_path / "out_resumed"),
                                    "--num_policies", "2", "--resume_from_checkpoint", str(out / "checkpoint-2")], "t")
    resumed = train_method("ham", args)
    assert resumed.state.global_step == 3 and resumed.z == saved["z"]
    assert resumed.normalizer.to_dict() == saved["normalizer"]
    logged = [h["z"] for h in resumed.state.log_history if "z" in h]
    assert logged and all(z == pytest.approx(saved["z"]) for z in logged)


@pytest.mark.parametrize("name", ["ham_hh_rlhf_phi15.yaml", "ham_local_smollm2.yaml"])
@pytest.mark.parametrize("method", ["ham", "sca", "ric"])
def test_example_configs_parse(name, method):
    from moalign.methods.registry import get_method

    config = parse_config(get_method(method).config_class, ["--config", str(EXAMPLES / name), "--max_steps", "3",
                                                             "--bf16", "false", "--use_cpu", "true"], "t")
    assert config.max_steps == 3 and config.model_name_or_path
    if method == "ham":
        assert config.num_policies == 5 and config.uses_exact_hypervolume
