"""``moalign train odpo_soups --config``: two MO-ODPO specialists (one-hot, unconditioned) and a loadable soup."""

from __future__ import annotations

import json

import pytest

from moalign.models.soups import SoupModel
from moalign.models.testing import make_tiny_llama_and_tokenizer
from moalign.trainers.registry import available_methods
from tests.baselines.test_rewarded_soups import REWARDS

pytestmark = pytest.mark.skipif("mo_odpo" not in available_methods(), reason="mo_odpo is not registered")


def test_odpo_soups_end_to_end(tmp_path):
    from moalign.cli.main import main

    base, tokenizer = make_tiny_llama_and_tokenizer()
    base.save_pretrained(tmp_path / "tiny")
    tokenizer.save_pretrained(tmp_path / "tiny")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in ["hello you", "tell a story", "a cat"]))
    config = tmp_path / "config.yaml"
    config.write_text(f"model_name_or_path: {tmp_path / 'tiny'}\ndataset_path: {prompts}\n"
                      f"reward_functions: {json.dumps(REWARDS)}\noutput_dir: {tmp_path / 'out'}\nmax_steps: 1\n"
                      "per_device_train_batch_size: 2\nmax_completion_length: 4\nuse_cpu: true\nreport_to: []\n"
                      "use_chat_template: false\ndisable_tqdm: true\nlora_r: 4\nhead_rank: 2\nsave_steps: 100\n"
                      "reward_normalization: none\n")
    assert main(["train", "odpo_soups", "--config", str(config)]) == 0
    out = tmp_path / "out"
    for k, name in enumerate(["good", "short"]):
        saved = json.loads((out / "specialists" / name / "mo_odpo_conditioning.json").read_text())
        assert saved["fixed_weights"] == [float(k == 0), float(k == 1)] and saved["condition_prompt"] is False
    soup = SoupModel.from_pretrained(out, base_model=make_tiny_llama_and_tokenizer()[0])
    assert soup.head_type is not None and soup.objectives == ["good", "short"]
    with soup.weighted_policy([0.3, 0.7]):
        soup.generate(**tokenizer("hello you", return_tensors="pt"), max_new_tokens=2, do_sample=False)
