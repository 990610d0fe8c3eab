"""A method defined outside moalign plugs into ``moalign train`` with a config and a short trainer, nothing else."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
import torch

from moalign.cli.main import main
from moalign.trainers.base_config import MultiObjectiveConfig
from moalign.trainers.base_trainer import MultiObjectiveTrainer
from moalign.methods.registry import TrainingMethod, available_methods, get_method, register_method, unregister_method
from tests.cli_setup import save_tiny_model, write_config, write_jsonl
from tests.trainers.test_mopo_trainer import OBJECTIVES, make_rows


# ---------------------------------------------------------------- the plug-in: config + trainer
@dataclass
class PreferredBCConfig(MultiObjectiveConfig):
    """Behaviour cloning of the preferred completion of objective `objective_weight`-mixed labels."""

    objective_weight: float = field(default=0.5, metadata={"help": "Weight of the first objective's label."})


class PreferredBCTrainer(MultiObjectiveTrainer):
    """Each head clones completions in proportion to a fixed mix of the labels; state: a step counter."""

    method_name = "preferred_bc"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.batches_seen = 0

    def method_loss(self, model, inputs, mode):
        w = self.args.objective_weight
        weights = w * inputs["preference"][:, 0] + (1 - w) * inputs["preference"][:, 1]  # (2B,)
        logps = self.policy_logps(model, inputs)  # (H, 2B)
        loss = -(weights.to(logps) * logps).mean()
        if mode == "train":
            self.batches_seen += 1
        self.record("mean_weight", float(weights.mean()), mode)
        return loss

    def method_state(self):
        return {"batches_seen": self.batches_seen}

    def load_method_state(self, state):
        self.batches_seen = state["batches_seen"]


# ---------------------------------------------------------------- tests
@pytest.fixture
def registered():
    method = register_method(TrainingMethod("preferred_bc", "test plug-in", PreferredBCConfig, PreferredBCTrainer))
    yield method
    unregister_method("preferred_bc")


@pytest.fixture
def files(tmp_path):
    config = write_config(tmp_path / "config.yaml", model_name_or_path=save_tiny_model(tmp_path / "tiny"),
                          dataset_path=write_jsonl(tmp_path / "pairs.jsonl", make_rows(8)), objectives=OBJECTIVES,
                          output_dir=tmp_path / "out", max_steps=3, save_steps=2, per_device_train_batch_size=4)
    return tmp_path, config


def test_mopo_is_registered_by_default():
    method = get_method("mopo")
    assert method.trainer_class.__name__ == "MOPOTrainer" and method.config_class.__name__ == "MOPOConfig"
    with pytest.raises(ValueError, match="known methods: .*mopo"):
        get_method("no_such_method")
    with pytest.raises(ValueError, match="already registered"):
        register_method(TrainingMethod("mopo", "again", PreferredBCConfig, PreferredBCTrainer))


def test_moalign_train_lists_the_methods(registered, capsys):
    assert main(["train"]) == 2
    err = capsys.readouterr().err
    assert "mopo" in err and "preferred_bc" in err and "test plug-in" in err
    assert main(["train", "nope"]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err


def test_plugged_method_trains_saves_and_resumes_through_the_cli(registered, files):
    tmp_path, config = files
    assert "preferred_bc" in available_methods()
    assert main(["train", "preferred_bc", "--config", str(config), "--objective_weight", "0.8"]) == 0
    out = tmp_path / "out"
    assert (out / "multihead_config.json").is_file()
    state = torch.load(out / "preferred_bc_state.pt", weights_only=False)
    assert state == {"method": "preferred_bc", "objectives": OBJECTIVES, "precision": "fp32", "batches_seen": 3}
    heads = json.loads((out / "multihead_config.json").read_text())["multihead"]["head_names"]
    assert heads == OBJECTIVES  # default: one head per objective
    # resume from the step-2 checkpoint: the method state comes back, and training ends at step 3 again
    from moalign.cli.main import parse_config
    from moalign.trainers.run import train_method

    checkpoint = out / "checkpoint-2"
    assert torch.load(checkpoint / "preferred_bc_state.pt", weights_only=False)["batches_seen"] == 2
    args = parse_config(PreferredBCConfig, ["--config", str(config), "--resume_from_checkpoint", str(checkpoint)],
                        "test")
    trainer = train_method("preferred_bc", args)
    assert trainer.state.global_step == 3 and trainer.batches_seen == 3
    logged = [h for h in trainer.state.log_history if "mean_weight" in h]
    assert logged and all(0.0 <= h["mean_weight"] <= 1.0 for h in logged)
