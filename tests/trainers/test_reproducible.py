"""``moalign train <method> --seed S`` twice with the same data and flags gives bit-identical saved folders.

Every registered method is trained twice for a step or two on the tiny saved model, into the same output
folder (so that even the saved training arguments match); the two folders must hold the same files with the
same contents: every tensor of every ``.safetensors``/``.pt`` file equal bit for bit, every JSON file equal
(wall-clock fields of ``trainer_state.json`` aside), every other file byte-identical. The independent truth
is the first run itself: nothing here restates a number of the code.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from moalign.cli.main import main
from moalign.methods.registry import available_methods, get_method
from tests.baselines.test_modpo import OBJECTIVES as SCORED_OBJECTIVES
from tests.baselines.test_modpo import make_scored_rows
from tests.cli_setup import save_tiny_model, write_config, write_jsonl
from tests.trainers.test_ham_trainer import OBJECTIVES as POINTWISE_OBJECTIVES
from tests.trainers.test_ham_trainer import make_pointwise_rows

PROMPTS = ["hello you", "tell a story", "a cat", "the sun is good"]
REWARDS = ["good=py:tests.baselines.scripted_rewards:count_good", "short=py:tests.baselines.scripted_rewards:brevity"]

#: fields by the method's data kind: the data file and its objectives or reward functions
DATA_FIELDS: dict[str, dict[str, Any]] = {
    "pairwise": {"objectives": SCORED_OBJECTIVES, "per_device_train_batch_size": 4},
    "pointwise": {"objectives": POINTWISE_OBJECTIVES, "per_device_train_batch_size": 4},
    "prompts": {"reward_functions": REWARDS, "per_device_train_batch_size": 2, "max_completion_length": 4},
}
#: the fields a method needs beyond its data kind's (a tiny budget; the smallest settings its config accepts)
METHOD_FIELDS: dict[str, dict[str, Any]] = {
    "modpo": {"weights": [0.7, 0.3]},
    "rewarded_soups": {"num_generations": 2, "max_steps": 1},
    "odpo_soups": {"max_steps": 1},
    "p_morl": {"num_generations": 2, "weights_per_prompt": 2, "normalization_prompts": 2, "max_steps": 1},
}
#: logged fields that measure wall-clock time, not training (Trainer's summary, MO-ODPO's sampling time,
#: TRL GRPO's step time)
WALL_CLOCK_FIELDS = {"train_runtime", "train_samples_per_second", "train_steps_per_second", "total_flos",
                     "generation/seconds", "generation/tokens_per_s", "step_time"}


def _data_kind(method: str) -> str:
    trainer_class = get_method(method).trainer_class
    return getattr(trainer_class, "data_kind", "prompts")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    tmp_path = tmp_path_factory.mktemp("reproducible")
    return {"model": save_tiny_model(tmp_path / "tiny"),
            "pairwise": write_jsonl(tmp_path / "pairs.jsonl", make_scored_rows(8)),
            "pointwise": write_jsonl(tmp_path / "points.jsonl", make_pointwise_rows(8)),
            "prompts": write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": p} for p in PROMPTS])}


def _without_wall_clock(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_wall_clock(v) for k, v in value.items() if k not in WALL_CLOCK_FIELDS}
    if isinstance(value, list):
        return [_without_wall_clock(v) for v in value]
    return value


def _assert_same(a: Any, b: Any, where: str) -> None:
    """``a == b`` for nested containers of tensors, arrays and plain values; tensors bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), f"{where}: max |diff| {float((a.double() - b.double()).abs().max())}"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    elif hasattr(a, "__array__") and not isinstance(a, (int, float, str)):
        import numpy as np

        assert np.array_equal(np.asarray(a), np.asarray(b)), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_folders(first: Path, second: Path) -> None:
    """The two folders hold the same files with the same contents (see the module docstring)."""
    names = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for name in names:
        a, b = first / name, second / name
        if name.suffix == ".safetensors":
            _assert_same(load_file(a), load_file(b), str(name))
        elif name.suffix in {".pt", ".pth", ".bin"}:
            _assert_same(torch.load(a, weights_only=False), torch.load(b, weights_only=False), str(name))
        elif name.suffix == ".json":
            _assert_same(_without_wall_clock(json.loads(a.read_text())),
                         _without_wall_clock(json.loads(b.read_text())), str(name))
        else:
            assert a.read_bytes() == b.read_bytes(), str(name)


@pytest.mark.parametrize("method", sorted(available_methods()))
def test_same_seed_gives_identical_saved_folders(files, tmp_path, method):
    kind = _data_kind(method)
    heads = {} if method in ("rewarded_soups", "p_morl") else {"head_rank": 2}  # GRPO runs have no heads
    fields = {"max_steps": 2, "save_steps": 1, "learning_rate": 0.05, "lora_r": 4, **heads,
              **DATA_FIELDS[kind], **METHOD_FIELDS.get(method, {})}
    config = write_config(tmp_path / "config.yaml", model_name_or_path=files["model"], dataset_path=files[kind],
                          output_dir=tmp_path / "out", **fields)
    runs = []
    for run in range(2):
        assert main(["train", method, "--config", str(config), "--seed", "3"]) == 0
        runs.append(shutil.move(tmp_path / "out", tmp_path / f"run{run}"))
    assert_same_folders(Path(runs[0]), Path(runs[1]))
