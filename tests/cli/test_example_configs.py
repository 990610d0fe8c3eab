"""Every CPU example config (``examples/configs/<method>_local_smollm2.yaml``) runs through ``moalign train`` for one
step on the tiny test model, on data made the way its header says (``moalign label`` of prompt/completion rows, or
a prompt file); every registered method has one, and its header says how to run it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from moalign.cli.main import main
from moalign.methods.registry import available_methods, get_method
from moalign.trainers.rl_common import RLBaselineConfig
from tests.cli_setup import save_tiny_model, write_jsonl

ROOT = Path(__file__).parents[2]
LOCAL = sorted((ROOT / "examples" / "configs").glob("*_local_*.yaml"))
REWARDS = ["positivity", "conciseness"]  # the offline scorers the configs and their headers use
ROWS = [{"prompt": p, "completion": c} for p, cs in [
    ("How do I boil an egg?", ["Boil it for nine minutes.", "Great question! Simmer it gently, enjoy!"]),
    ("Name a capital city.", ["Paris.", "Paris is a lovely, wonderful capital!", "It is Paris, in France."]),
    ("Say something kind.", ["You are doing great, keep going!", "Fine."]),
] for c in cs]


def method_of(path: Path) -> str:
    """The method a ``<method>_local_<model>.yaml`` config is for."""
    return path.name.split("_local_")[0]


def header(path: Path) -> str:
    """The config's leading comment block."""
    lines = path.read_text().splitlines()
    return "\n".join(line for line in lines[:next(i for i, line in enumerate(lines) if not line.startswith("#"))])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny model and the three kinds of data the headers make: scored points, labelled pairs, prompts."""
    tmp = tmp_path_factory.mktemp("example_configs")
    raw = write_jsonl(tmp / "mine.jsonl", ROWS)
    paths = {"pointwise": tmp / "scored.jsonl", "pairwise": tmp / "pairs.jsonl",
             "prompts": write_jsonl(tmp / "prompts.jsonl", [{"prompt": r["prompt"]} for r in ROWS[::2]])}
    assert main(["label", "--data", str(raw), "--rewards", *REWARDS, "--out", str(paths["pointwise"])]) == 0
    assert main(["label", "--data", str(raw), "--rewards", *REWARDS, "--pairs", "--out", str(paths["pairwise"])]) == 0
    return tmp, save_tiny_model(tmp / "tiny"), paths


def test_every_registered_method_has_a_cpu_example():
    builtin = {name for name in available_methods()
               if get_method(name).config_class.__module__.startswith("moalign.")}
    assert {method_of(p) for p in LOCAL} == builtin


@pytest.mark.parametrize("path", LOCAL, ids=[p.name for p in LOCAL])
def test_header_says_how_to_run_it(path):
    method, text = method_of(path), header(path)
    assert f"moalign train {method} --config examples/configs/{path.name}" in text
    config_class = get_method(method).config_class
    if get_method(method).trainer_class.data_kind == "prompts":
        assert "reward_functions" in path.read_text()
        from moalign.cli.main import parse_config

        config = parse_config(config_class, ["--config", str(path)], "t")
        assert (ROOT / config.dataset_path).is_file()  # the shipped prompt file, relative to the repository root
    else:  # offline data: the header says how to make it
        assert "moalign demo --quick" in text and "moalign label --data" in text


@pytest.mark.parametrize("path", LOCAL, ids=[p.name for p in LOCAL])
def test_runs_one_step_on_the_tiny_model(files, path):
    tmp, tiny, data = files
    method = method_of(path)
    registered = get_method(method)
    fields = {f.name for f in dataclasses.fields(registered.config_class)}
    out = tmp / f"out_{method}"
    overrides = ["--model_name_or_path", str(tiny), "--output_dir", str(out),
                 "--dataset_path", str(data[registered.trainer_class.data_kind]), "--max_steps", "1",
                 "--per_device_train_batch_size", "2", "--max_completion_length", "4", "--lora_r", "4",
                 "--lora_alpha", "8", "--use_chat_template", "false", "--disable_tqdm", "true",
                 "--save_steps", "100"]
    if not issubclass(registered.config_class, RLBaselineConfig):  # GRPO runs have no heads (and refuse head_rank)
        overrides += ["--head_rank", "2"]
    if "num_generations" in fields:
        overrides += ["--num_generations", "2"]
    assert main(["train", method, "--config", str(path), *overrides, "--debug"]) == 0
    assert out.is_dir() and any(out.iterdir())
