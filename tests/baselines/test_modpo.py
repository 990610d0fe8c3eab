"""MODPO: the loss against a hand computation; the trainer's batch loss against the loss on its own log-probs;
``moalign train modpo --config`` end to end on a tiny saved model."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch
from datasets import Dataset
from peft import LoraConfig

from moalign.cli.main import main
from moalign.core.losses import dpo_loss, modpo_loss
from moalign.models import MultiHeadCausalLM, MultiHeadConfig
from moalign.models.testing import make_tiny_llama_and_tokenizer
from moalign.methods.modpo.config import MODPOConfig
from moalign.methods.modpo.trainer import MODPOTrainer
from tests.cli_setup import save_tiny_model, write_config, write_jsonl

OBJECTIVES = ["helpful", "short"]
WORDS = "good bad happy sad kind rude funny boring short long".split()


def make_scored_rows(n: int = 8, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [{"prompt": "hello " + rng.choice(WORDS),
             "completion_a": " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3))),
             "completion_b": " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3))),
             "preference": [rng.choice([0.0, 1.0, 0.75]), rng.choice([0.0, 1.0])],
             "scores_a": [rng.uniform(-1, 1), rng.uniform(-2, 2)],
             "scores_b": [rng.uniform(-1, 1), rng.uniform(-2, 2)]} for _ in range(n)]


def test_modpo_loss_hand_computed():
    # K = 3, target k = 0, w = (0.5, 0.3, 0.2), beta = 0.5
    pc, pr = torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -1.0])
    rc, rr = torch.tensor([-2.0, -2.0]), torch.tensor([-2.0, -2.0])
    mc, mr = torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    losses, chosen, rejected = modpo_loss(pc, pr, rc, rr, mc, mr, 0.5, torch.tensor([0.3, 0.2]), beta=0.5)
    # row 1: chosen (0.5*1 - 0.3)/0.5 = 0.4, rejected (0.5*-1 - 0)/0.5 = -1  -> logits 1.4
    # row 2: chosen (0.5*0 - 0.4)/0.5 = -0.8, rejected (0.5*1 - 0.5)/0.5 = 0 -> logits -0.8
    assert chosen.tolist() == pytest.approx([0.4, -0.8]) and rejected.tolist() == pytest.approx([-1.0, 0.0])
    assert losses.tolist() == pytest.approx([math.log1p(math.exp(-1.4)), math.log1p(math.exp(0.8))])


def test_modpo_without_other_objectives_is_dpo_and_zero_weight_is_rejected():
    g = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (torch.randn(5, generator=g) for _ in range(4))
    empty = torch.zeros(5, 0)
    losses, _, _ = modpo_loss(pc, pr, rc, rr, empty, empty, 1.0, torch.zeros(0), beta=0.3)
    assert torch.allclose(losses, dpo_loss(pc, pr, rc, rr, beta=0.3)[0])
    with pytest.raises(ValueError, match="positive weight"):
        modpo_loss(pc, pr, rc, rr, empty, empty, 0.0, torch.zeros(0))
    with pytest.raises(ValueError, match="margin rewards"):
        modpo_loss(pc, pr, rc, rr, torch.zeros(5, 2), torch.zeros(5, 2), 0.5, torch.tensor([0.5]))


def _trainer(tmp_path, **overrides) -> MODPOTrainer:
    torch.manual_seed(0)
    base, tokenizer = make_tiny_llama_and_tokenizer()
    settings = dict(output_dir=str(tmp_path), weights=[0.6, 0.4], beta=0.5, per_device_train_batch_size=4,
                    max_steps=1, report_to=[], use_cpu=True, use_chat_template=False, disable_tqdm=True)
    settings.update(overrides)
    config = MODPOConfig(**settings)
    model = MultiHeadCausalLM(base, MultiHeadConfig(num_heads=1, head_names=MODPOTrainer.head_names_for(config, OBJECTIVES)),
                              lora_config=LoraConfig(r=4, lora_dropout=0.0))
    return MODPOTrainer(model=model, args=config, train_dataset=Dataset.from_list(make_scored_rows()),
                        objectives=OBJECTIVES, processing_class=tokenizer)


def test_trainer_batch_loss_is_the_label_weighted_modpo_loss(tmp_path):
    trainer = _trainer(tmp_path, target_objective="short", margin_normalization="minmax")
    rows = make_scored_rows()[:4]
    batch = trainer.data_collator(rows)
    model = trainer.model.eval()
    with torch.no_grad():
        loss = trainer.method_loss(model, batch, "eval")
        pol = model.sequence_logps(batch["input_ids"], batch["attention_mask"], batch["completion_mask"])[0]
        ref = trainer.reference_logps(model, batch)
    # by hand: target "short" (w_k = 0.4), margin = "helpful" scores mapped to [0, 1] over the 16 training scores
    all_helpful = [r["scores_a"][0] for r in make_scored_rows()] + [r["scores_b"][0] for r in make_scored_rows()]
    lo, hi = min(all_helpful), max(all_helpful)
    expected = []
    for i, r in enumerate(rows):
        ha, hb = (r["scores_a"][0] - lo) / (hi - lo), (r["scores_b"][0] - lo) / (hi - lo)
        z = (0.5 * ((pol[i] - ref[i]) - (pol[i + 4] - ref[i + 4])) - 0.6 * (ha - hb)) / 0.4
        p = r["preference"][1]
        expected.append(p * -torch.nn.functional.logsigmoid(z) + (1 - p) * -torch.nn.functional.logsigmoid(-z))
    assert float(loss) == pytest.approx(float(torch.stack(expected).mean()), rel=1e-5)
    assert trainer.method_state()["normalizer"]["method"] == "minmax"


def test_config_and_trainer_reject_bad_weights(tmp_path):
    with pytest.raises(ValueError, match="sum to 1"):
        MODPOConfig(output_dir=str(tmp_path), weights=[0.5, 0.6])
    with pytest.raises(ValueError, match="one weight per objective"):
        _trainer(tmp_path, weights=None)
    with pytest.raises(ValueError, match="weight 0"):  # the named target has w_k = 0
        _trainer(tmp_path, weights=[0.0, 1.0], target_objective="helpful")
    with pytest.raises(ValueError, match="3 entries"):
        _trainer(tmp_path, weights=[0.2, 0.3, 0.5])


def test_train_modpo_through_the_cli(tmp_path):
    config = write_config(tmp_path / "config.yaml", model_name_or_path=save_tiny_model(tmp_path / "tiny"),
                          dataset_path=write_jsonl(tmp_path / "pairs.jsonl", make_scored_rows()),
                          objectives=OBJECTIVES, output_dir=tmp_path / "out", weights=[0.7, 0.3], max_steps=2,
                          per_device_train_batch_size=4, lora_r=4, head_rank=4)
    assert main(["train", "modpo", "--config", str(config)]) == 0
    saved = json.loads((tmp_path / "out" / "multihead_config.json").read_text())["multihead"]["head_names"]
    assert saved == ["modpo_w_0.7_0.3"]
    state = torch.load(tmp_path / "out" / "modpo_state.pt", weights_only=False)
    assert state["method"] == "modpo" and state["objectives"] == OBJECTIVES


@pytest.mark.parametrize("weights, named, expected", [
    ([0.6, 0.4], None, 0), ([0.3, 0.7], None, 1), ([0.5, 0.5], None, 0), ([0.0, 1.0], None, 1),
    ([0.3, 0.7], "helpful", 0),
])
def test_trainer_and_toy_choose_the_same_target(tmp_path, weights, named, expected):
    """One rule (core.losses.modpo_target): the named objective, else the largest weight, ties to the first."""
    from moalign.methods.modpo.toy import modpo_terms

    trainer = _trainer(tmp_path, weights=weights, target_objective=named)
    assert trainer.target == expected and trainer.others == [1 - expected]
    assert trainer.target_weight == weights[expected]
    if named is None:  # the toy never names one: its rule is the trainer's default
        target, tw, mw = modpo_terms(np.array([weights]))
        assert (int(target[0]), float(tw[0]), float(mw[0])) == (expected, weights[expected], weights[1 - expected])
