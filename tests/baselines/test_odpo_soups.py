"""``moalign train odpo_soups --config``: two MO-ODPO specialists (one-hot, unconditioned) and a loadable soup."""

from __future__ import annotations

import json

import pytest

from moalign.models.soups import SoupModel
from moalign.models.testing import make_tiny_llama_and_tokenizer, make_tiny_tokenizer
from moalign.methods.registry import available_methods
from tests.baselines.test_rewarded_soups import PROMPTS, REWARDS
from tests.cli_setup import save_tiny_model, write_config, write_jsonl

pytestmark = pytest.mark.skipif("mo_odpo" not in available_methods(), reason="mo_odpo is not registered")


def test_odpo_soups_end_to_end(tmp_path):
    from moalign.cli.main import main

    config = write_config(tmp_path / "config.yaml", without=["logging_steps"],
                          model_name_or_path=save_tiny_model(tmp_path / "tiny"),
                          dataset_path=write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": p} for p in PROMPTS]),
                          reward_functions=REWARDS, output_dir=tmp_path / "out", max_steps=1,
                          per_device_train_batch_size=2, max_completion_length=4, lora_r=4, head_rank=2,
                          save_steps=100, reward_normalization="none")
    assert main(["train", "odpo_soups", "--config", str(config)]) == 0
    out = tmp_path / "out"
    for k, name in enumerate(["good", "short"]):
        saved = json.loads((out / "specialists" / name / "mo_odpo_conditioning.json").read_text())
        assert saved["fixed_weights"] == [float(k == 0), float(k == 1)] and saved["condition_prompt"] is False
    soup = SoupModel.from_pretrained(out, base_model=make_tiny_llama_and_tokenizer()[0])
    assert soup.head_type is not None and soup.objectives == ["good", "short"]
    with soup.weighted_policy([0.3, 0.7]):
        soup.generate(**make_tiny_tokenizer()("hello you", return_tensors="pt"), max_new_tokens=2, do_sample=False)


def test_trainer_gets_the_runner_instead_of_importing_it(tmp_path):
    """No upward import: odpo_soups_trainer does not import moalign.trainers.run (which imports the registry)."""
    import ast
    import inspect

    from moalign.methods.odpo_soups import trainer as odpo_soups_trainer
    from moalign.methods.odpo_soups.config import ODPOSoupsConfig
    from moalign.methods.odpo_soups.trainer import ODPOSoupsTrainer

    tree = ast.parse(inspect.getsource(odpo_soups_trainer))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "moalign.trainers.run" not in imported and "moalign.methods.registry" not in imported
    config = ODPOSoupsConfig(output_dir=str(tmp_path), reward_functions=REWARDS, use_cpu=True, report_to=[])
    with pytest.raises(ValueError, match="needs the runner"):
        ODPOSoupsTrainer(args=config, processing_class=make_tiny_tokenizer())
    calls = []
    trainer = ODPOSoupsTrainer(args=config, processing_class=make_tiny_tokenizer(),
                               train_method=lambda name, cfg: calls.append((name, cfg.fixed_weights)))
    trainer.train_specialist(1, tmp_path / "specialists" / "b")
    assert calls == [("mo_odpo", [0.0, 1.0])]
