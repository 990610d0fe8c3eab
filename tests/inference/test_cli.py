"""``moalign generate`` and ``moalign export`` end to end on a folder trained by ``moalign train mopo`` (2 steps)."""

from __future__ import annotations

import json
import random

import pytest
from transformers import AutoModelForCausalLM

from moalign.cli.main import main
from moalign.inference import load_policy
from tests.cli_setup import save_tiny_model, write_config, write_jsonl

OBJECTIVES = ["helpful", "short"]
WORDS = ["good", "bad", "happy", "sad", "kind", "rude", "yes", "no"]


def scored_pairs(n: int = 8, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [{"prompt": "hello " + rng.choice(WORDS),
             "completion_a": " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3))),
             "completion_b": " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3))),
             "preference": [rng.choice([0.0, 1.0]), rng.choice([0.0, 1.0])]} for _ in range(n)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trained_mopo")
    data = write_jsonl(tmp / "pairs.jsonl", scored_pairs())
    config = write_config(tmp / "config.yaml", model_name_or_path=save_tiny_model(tmp / "tiny"), dataset_path=data,
                          objectives=OBJECTIVES, output_dir=tmp / "out", max_steps=2, per_device_train_batch_size=4,
                          lora_r=4, head_rank=4, learning_rate=0.05)
    assert main(["train", "mopo", "--config", str(config)]) == 0
    return tmp / "out", data


def test_load_policy_reads_the_trained_folder(trained):
    policy = load_policy(trained[0])
    assert (policy.method, policy.objectives, policy.kind) == ("mopo", OBJECTIVES, "heads")
    assert policy.weight_names == OBJECTIVES
    # trained with use_chat_template: false -> prompts are continued as raw text, as in training
    assert policy.prompt_texts(["hello you"], [0.7, 0.3]) == ["hello you"]


def test_generate_one_prompt_prints_the_completion(trained, capsys):
    out, _ = trained
    assert main(["generate", "--model", str(out), "--weights", "0.7,0.3", "--prompt", "hello you",
                 "--max_new_tokens", "5"]) == 0
    expected = load_policy(out).generate(["hello you"], [0.7, 0.3], max_new_tokens=5)[0]
    captured = capsys.readouterr()
    assert captured.out == expected + "\n"
    assert "mopo heads steered: 0.7 x helpful, 0.3 x short" in captured.err


def test_generate_prompt_file_writes_jsonl(trained, tmp_path):
    out, _ = trained
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "hello you"}, {"prompt": "tell a story"}])
    result = tmp_path / "completions.jsonl"
    assert main(["generate", "--model", str(out), "--weights", "1,0", "--prompts", str(prompts),
                 "--max_new_tokens", "4", "--out", str(result)]) == 0
    rows = [json.loads(line) for line in result.read_text().splitlines()]
    expected = load_policy(out).generate(["hello you", "tell a story"], [1.0, 0.0], max_new_tokens=4)
    assert [r["completion"] for r in rows] == expected
    assert [r["prompt"] for r in rows] == ["hello you", "tell a story"] and rows[0]["weights"] == [1.0, 0.0]


def test_sampling_is_seeded(trained):
    policy = load_policy(trained[0])
    first = policy.generate(["hello you"] * 3, [0.5, 0.5], max_new_tokens=6, temperature=1.0, seed=3)
    assert first == policy.generate(["hello you"] * 3, [0.5, 0.5], max_new_tokens=6, temperature=1.0, seed=3)


@pytest.mark.parametrize("weights, message", [("0.7,0.4", "sum to 1.1"), ("1", "needs 2"), ("1.2,-0.2", "negative"),
                                              ("0.7,x", "not a comma-separated list")])
def test_generate_bad_weights_is_a_user_error(trained, capsys, weights, message):
    assert main(["generate", "--model", str(trained[0]), "--weights", weights, "--prompt", "hi"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("moalign generate: error:") and message in err and "Traceback" not in err


def test_generate_needs_one_prompt_source(trained, capsys):
    assert main(["generate", "--model", str(trained[0]), "--weights", "0.5,0.5"]) == 2
    assert "exactly one of --prompt" in capsys.readouterr().err


def test_export_command_writes_a_loadable_folder_with_a_card(trained, tmp_path, capsys):
    out, data = trained
    target = tmp_path / "exported"
    assert main(["export", "--model", str(out), "--weights", "0.6,0.4", "--out", str(target)]) == 0
    assert "wrote" in capsys.readouterr().out
    model = AutoModelForCausalLM.from_pretrained(target)
    assert type(model).__name__ == "LlamaForCausalLM"
    card = (target / "README.md").read_text()
    assert str(data) in card and "helpful = 0.6, short = 0.4" in card
    # a second export to the same folder needs --overwrite
    assert main(["export", "--model", str(out), "--weights", "0.6,0.4", "--out", str(target)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["export", "--model", str(out), "--weights", "0.6,0.4", "--out", str(target), "--overwrite",
                 "true"]) == 0


def test_export_refuses_forward_kl_steering(trained, tmp_path, capsys):
    assert main(["export", "--model", str(trained[0]), "--weights", "0.6,0.4", "--out", str(tmp_path / "x"),
                 "--divergence", "forward_kl"]) == 2
    err = capsys.readouterr().err
    assert "not a linear function of the logits" in err and "reverse_kl" in err
    assert not (tmp_path / "x").exists()
