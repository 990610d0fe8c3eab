"""MOPOTrainer on a tiny random Llama: hand-computed weights, resume, end to end."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import TrainerCallback

from moalign.models import MultiHeadCausalLM, MultiHeadConfig
from moalign.models.testing import make_tiny_llama_and_tokenizer
from moalign.methods.mopo.config import MOPOConfig
from moalign.methods.mopo.trainer import MOPOTrainer

WORDS = ["the", "cat", "dog", "good", "bad", "yes", "no", "happy", "sad", "sun"]
OBJECTIVES = ["helpful", "harmless"]


class StopAtStep(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True
        return control


def make_rows(n: int = 16, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        rows.append({
            "prompt": "hello " + " ".join(rng.choice(WORDS) for _ in range(2)),
            "completion_a": " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 4))),
            "completion_b": " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 4))),
            "preference": [float(rng.random() < 0.5), rng.choice([0.0, 0.25, 1.0])],
        })
    return rows


def make_trainer(tmp_path, lora_dropout: float = 0.0, lora: bool = True, head_type: str = "low_rank",
                 **overrides) -> MOPOTrainer:
    torch.manual_seed(0)
    base, tokenizer = make_tiny_llama_and_tokenizer()
    model = MultiHeadCausalLM(base, MultiHeadConfig(num_heads=2, head_names=OBJECTIVES, head_type=head_type),
                              lora_config=LoraConfig(r=4, lora_dropout=lora_dropout) if lora else None)
    settings = dict(output_dir=str(tmp_path / "run"), per_device_train_batch_size=4, max_steps=6, lag_steps=2,
                    logging_steps=2, save_steps=3, report_to=[], learning_rate=1e-2, use_cpu=True,
                    lower_bound_eps=0.1, disable_tqdm=True, seed=0, data_seed=0, use_chat_template=False)
    eval_dataset = overrides.pop("eval_dataset", None)
    settings.update(overrides)
    args = MOPOConfig(**settings)
    return MOPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(make_rows()),
                       objectives=OBJECTIVES, processing_class=tokenizer, eval_dataset=eval_dataset)


def test_loss_and_dual_step_match_hand_computation(tmp_path):
    """One batch: weights exp((I_p + lam I_q)/tau - 1) normalised to mean 1 (eq. 11), the BC loss (eq. 13) and
    lam <- [lam - lr (G - b)]_+ with eps = 0, all recomputed here with numpy from the labels."""
    tau, lam0, lr, b = 0.5, 0.3, 0.2, 0.6
    trainer = make_trainer(tmp_path, tau=tau, initial_lambda=lam0, lambda_learning_rate=lr, lower_bound_eps=0.0,
                           thresholds=[b, b], threshold_mode="fixed", lag_steps=0,
                           constraint_estimator="row")  # the hand computation is of the printed per-row estimate
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    model = trainer.model
    with torch.no_grad():
        logps = model.sequence_logps(batch["input_ids"], batch["attention_mask"], batch["completion_mask"]).numpy()
        loss = trainer.compute_loss(model, batch).item()
    labels = batch["preference"].numpy().astype(float)  # (2B, K): rows then swapped rows with 1 - I
    pref = np.array([trainer.train_dataset[i]["preference"] for i in range(4)])
    assert np.allclose(labels, np.concatenate([pref, 1 - pref]))
    expected_loss = 0.0
    for head, (p, q) in enumerate([(0, 1), (1, 0)]):
        w_old = np.exp((labels[:, p] + lam0 * labels[:, q]) / tau - 1)
        w_old = w_old / w_old.mean()
        g = np.mean(w_old * labels[:, q])
        lam1 = max(lam0 - lr * (g - b), 0.0)
        assert trainer.duals[head].lam.item() == pytest.approx(lam1, abs=1e-6)
        w_new = np.exp((labels[:, p] + lam1 * labels[:, q]) / tau - 1)
        w_new = w_new / w_new.mean()
        expected_loss += -np.mean(w_new * logps[head])
    assert loss == pytest.approx(expected_loss, rel=1e-5)


def test_lower_bound_is_logged_below_estimate(tmp_path):
    trainer = make_trainer(tmp_path, max_steps=2, lower_bound_eps=0.2)
    trainer.train()
    history = [h for h in trainer.state.log_history if "lower_bound/helpful/harmless" in h]
    assert history, "per-objective metrics must reach the Trainer's log history"
    entry = history[-1]
    assert entry["lower_bound/helpful/harmless"] <= entry["estimate/helpful/harmless"] + 1e-6
    assert {"lambda/harmless/helpful", "threshold/helpful/harmless"} <= set(entry)


def test_resume_restores_dual_state_and_lagged_adapter(tmp_path):
    """Stopping at step 3 and resuming ends in the same lambda, chi, b, lagged snapshot and heads as one run."""
    straight = make_trainer(tmp_path / "a")
    straight.train()
    interrupted = make_trainer(tmp_path / "b")
    interrupted.add_callback(StopAtStep(3))  # a crash right after the step-3 checkpoint
    interrupted.train()
    assert interrupted.state.global_step == 3
    checkpoint = tmp_path / "b" / "run" / "checkpoint-3"
    assert (checkpoint / "mopo_state.pt").is_file()
    saved = torch.load(checkpoint / "mopo_state.pt", weights_only=False)
    assert saved["lag_active"] and saved["lagged_snapshot"]

    resumed = make_trainer(tmp_path / "b")  # fresh model and trainer, as after a crash
    resumed.train(resume_from_checkpoint=str(checkpoint))
    for d1, d2 in zip(straight.duals, resumed.duals):
        assert torch.allclose(d1.lam, d2.lam, atol=1e-5)
        assert torch.allclose(d1.chi, d2.chi, rtol=1e-4)
        assert torch.allclose(d1.threshold, d2.threshold, atol=1e-6)
    lag1, lag2 = straight.model.snapshot_state_dict(), resumed.model.snapshot_state_dict()
    assert lag1.keys() == lag2.keys() and len(lag1) > 0
    for key in lag1:
        assert torch.allclose(lag1[key], lag2[key], atol=1e-5), key
    for (n1, p1), (_, p2) in zip(straight.model.output.heads.named_parameters(),
                                 resumed.model.output.heads.named_parameters()):
        assert torch.allclose(p1, p2, atol=1e-5), n1


def test_lagged_log_probs_are_deterministic_under_lora_dropout(tmp_path):
    """The lagged pass runs without dropout (eval mode) even while the model trains with LoRA dropout 0.5."""
    trainer = make_trainer(tmp_path, lora_dropout=0.5)
    model = trainer.model
    with torch.no_grad():  # non-zero LoRA B so that dropout on the LoRA inputs changes the output
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(1))
    model.eval()
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    args = (batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    with torch.no_grad():
        expected = model.sequence_logps(*args)  # the policy without dropout at the snapshot
    model.take_snapshot()
    model.train()
    with torch.no_grad():
        noisy = [model.sequence_logps(*args) for _ in range(2)]
    assert (noisy[0] - noisy[1]).abs().max() > 1e-3  # dropout is active in train mode
    lagged = [trainer.snapshot_logps(model, batch) for _ in range(2)]
    assert model.training  # the train/eval mode is restored
    torch.testing.assert_close(lagged[0], lagged[1], rtol=0, atol=0)
    torch.testing.assert_close(lagged[0], expected, rtol=1e-6, atol=1e-6)


def test_train_save_load_generate_evaluate(tmp_path):
    from moalign.eval import EvalConfig, evaluate_policies
    from moalign.rewards import CallableReward

    trainer = make_trainer(tmp_path, max_steps=4)
    trainer.train()
    out = tmp_path / "final"
    trainer.save_model(str(out))
    base, tokenizer = make_tiny_llama_and_tokenizer()
    loaded = MultiHeadCausalLM.from_pretrained(out, base_model=base).eval()
    ids = tokenizer("hello the cat", return_tensors="pt")
    with torch.no_grad():
        for k in range(2):
            with trainer.model.head(k):
                expected = trainer.model.eval()(**ids).logits
            with loaded.head(k):
                assert torch.allclose(loaded(**ids).logits, expected, atol=1e-5)
    rewards = [CallableReward(lambda prompts, completions: [float(c.count("good")) for c in completions], name="good"),
               CallableReward(lambda prompts, completions: [-float(len(c.split())) for c in completions],
                              name="short")]
    config = EvalConfig(max_new_tokens=4, batch_size=4, num_clusters=1, bootstrap_samples=50,
                        output_dir=str(tmp_path / "eval"), do_sample=False)
    result = evaluate_policies(loaded, tokenizer, ["hello the cat", "hello a dog", "tell me a story"], rewards,
                               config=config, prompt_embeddings=np.eye(3))
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["base_policy"] in [p["name"] if isinstance(p, dict) else p for p in report["policies"]] \
        or report["base_policy"] in report["policies"]
    assert result.scores.shape[1:] == (3, 2)


def test_bad_dataset_file_names_row_and_column(tmp_path):
    from moalign.data import DatasetValidationError
    from moalign.trainers.run import train_mopo

    path = tmp_path / "bad.jsonl"
    rows = make_rows(3)
    rows[1]["preference"] = [0.5, 1.7]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    args = MOPOConfig(output_dir=str(tmp_path / "o"), dataset_path=str(path), model_name_or_path="unused",
                      objectives=OBJECTIVES,
                      report_to=[], use_cpu=True)
    with pytest.raises(DatasetValidationError) as err:
        train_mopo(args)
    message = str(err.value)
    assert "preference" in message and "row 1" in message and "bad.jsonl" in message, message


def test_config_rejects_bad_values(tmp_path):
    with pytest.raises(ValueError, match="threshold_mode"):
        MOPOConfig(output_dir=str(tmp_path), threshold_mode="sometimes", report_to=[])
    with pytest.raises(ValueError, match="needs `thresholds`"):
        MOPOConfig(output_dir=str(tmp_path), threshold_mode="fixed", report_to=[])
    with pytest.raises(ValueError, match="tau"):
        MOPOConfig(output_dir=str(tmp_path), tau=0.0, report_to=[])
    with pytest.raises(ValueError, match="head_learning_rate"):
        MOPOConfig(output_dir=str(tmp_path), head_learning_rate=0.0, report_to=[])


def test_head_learning_rate_moves_heads_and_adapter_by_their_own_rates(tmp_path):
    """Adam's first update of a parameter is lr * g / (|g| + eps), i.e. ~lr for every entry with a gradient:
    after one step the heads move by head_learning_rate and the LoRA adapter by learning_rate."""
    head_lr, lora_lr = 1e-2, 1e-4
    trainer = make_trainer(tmp_path, max_steps=1, lag_steps=0, learning_rate=lora_lr, head_learning_rate=head_lr,
                           lr_scheduler_type="constant", weight_decay=0.0, save_strategy="no")
    model = trainer.model
    head_ids = {id(p) for p in model.output.parameters()}
    before = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    trainer.train()
    head_moves, lora_moves = [], []
    for name, p in model.named_parameters():
        if name in before:
            (head_moves if id(p) in head_ids else lora_moves).append((p.detach() - before[name]).abs().max().item())
    assert head_moves and lora_moves
    assert max(head_moves) == pytest.approx(head_lr, rel=1e-3)
    assert max(lora_moves) == pytest.approx(lora_lr, rel=1e-3)
    lrs = sorted({group["lr"] for group in trainer.optimizer.param_groups})
    assert lrs == [lora_lr, head_lr]


def test_without_head_learning_rate_heads_share_the_rate(tmp_path):
    trainer = make_trainer(tmp_path, max_steps=1, lag_steps=0, learning_rate=1e-3, lr_scheduler_type="constant",
                           save_strategy="no")
    trainer.train()
    assert {group["lr"] for group in trainer.optimizer.param_groups} == {1e-3}


class CountCalls:
    """Forward hook counting the backbone's passes."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, module, args, output) -> None:
        self.calls += 1


@pytest.mark.parametrize("head_type", ["full", "low_rank"])
def test_frozen_backbone_runs_once_per_batch_and_trains_as_three_passes(tmp_path, head_type):
    """Heads-only training: one backbone pass per batch serves the policy, lagged and reference heads, and the
    run ends in the same heads, lambda and thresholds as with three separate passes per batch."""
    runs = {}
    for reuse in (True, False):
        trainer = make_trainer(tmp_path / str(reuse), lora=False, reuse_frozen_backbone=reuse, head_type=head_type,
                               max_steps=5, lag_steps=2, save_steps=100)
        assert trainer.model.output.head_type == head_type
        assert trainer.model.backbone_is_frozen
        counter = CountCalls()
        trainer.model._decoder[0].register_forward_hook(counter)
        trainer.train()
        runs[reuse] = (trainer, counter.calls)
    (fast, fast_calls), (slow, slow_calls) = runs[True], runs[False]
    # steps 1-2 before the first lag update need the policy and (for the default constraint_estimator='policy',
    # issue 10) the reference pass; steps 3-5 need the lagged one too
    assert fast_calls == 5 and slow_calls == 2 * 2 + 3 * 3
    for d1, d2 in zip(fast.duals, slow.duals):
        torch.testing.assert_close(d1.lam, d2.lam, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(d1.threshold, d2.threshold, atol=1e-6, rtol=1e-5)
    for (name, p1), (_, p2) in zip(fast.model.output.heads.named_parameters(), slow.model.output.heads.named_parameters()):
        torch.testing.assert_close(p1, p2, atol=1e-6, rtol=1e-5, msg=name)


def test_backbone_with_lora_is_not_shared(tmp_path):
    trainer = make_trainer(tmp_path)
    assert not trainer.model.backbone_is_frozen
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    assert trainer.shared_hidden_states(trainer.model, batch) is None


class RecordLogps(TrainerCallback):
    """The policy's log-probs on a fixed batch after every optimizer step (an independent record of pi_t)."""

    def __init__(self, batch: dict) -> None:
        self.batch, self.logps = batch, {}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        with torch.no_grad():
            self.logps[state.global_step] = model.sequence_logps(
                self.batch["input_ids"], self.batch["attention_mask"], self.batch["completion_mask"]).clone()


@pytest.mark.parametrize("snapshot_time,expected_step", [("current", 4), ("lagged", 2)])
def test_snapshot_time_picks_the_policy_of_t_or_t_minus_t0(tmp_path, snapshot_time, expected_step):
    """Lag updates at steps 2 and 4 (t0 = 2, 6 steps): the reference in use afterwards is pi_4 ('current') or
    pi_2 ('lagged', Alg. 1 line 11 as printed), compared with the policy's own log-probs recorded at those steps."""
    trainer = make_trainer(tmp_path, snapshot_time=snapshot_time)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    recorder = RecordLogps(batch)
    trainer.add_callback(recorder)
    trainer.train()
    model = trainer.model
    with torch.no_grad(), model.snapshot_context():
        lagged = model.sequence_logps(batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    torch.testing.assert_close(lagged, recorder.logps[expected_step], atol=1e-5, rtol=1e-5)
    other = 2 if expected_step == 4 else 4
    assert not torch.allclose(lagged, recorder.logps[other], atol=1e-4)


def test_lagged_snapshot_time_survives_resume(tmp_path):
    """Interrupted at step 3 (after the first update, which keeps pi_ref as reference and stores pi_2), resumed:
    the reference after the step-4 update is the same pi_2 as in one uninterrupted run."""
    straight = make_trainer(tmp_path / "a", snapshot_time="lagged")
    straight.train()
    interrupted = make_trainer(tmp_path / "b", snapshot_time="lagged")
    interrupted.add_callback(StopAtStep(3))
    interrupted.train()
    saved = torch.load(tmp_path / "b" / "run" / "checkpoint-3" / "mopo_state.pt", weights_only=False)
    assert not saved["lag_active"] and saved["previous_state"]  # reference still pi_ref; pi_2 kept for step 4
    resumed = make_trainer(tmp_path / "b", snapshot_time="lagged")
    resumed.train(resume_from_checkpoint=str(tmp_path / "b" / "run" / "checkpoint-3"))
    lag1, lag2 = straight.model.snapshot_state_dict(), resumed.model.snapshot_state_dict()
    assert lag1.keys() == lag2.keys() and len(lag1) > 0
    for key in lag1:
        torch.testing.assert_close(lag1[key], lag2[key], atol=1e-5, rtol=1e-4)
