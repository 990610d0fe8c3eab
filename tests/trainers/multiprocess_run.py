"""Train MOPO or HaM on a tiny model for a few steps; run by tests/trainers/test_multiprocess.py.

Launched either as one process (``python multiprocess_run.py OUT 8 [METHOD]``) or as two CPU processes
(``torchrun --standalone --nproc_per_node 2 multiprocess_run.py OUT 4 [METHOD]``); the second argument is the
per-process batch size, so both runs see the same global batch; METHOD is ``mopo`` (default) or ``ham``. Each
rank writes its method state and trainable parameters to ``OUT/rank<r>.pt``.
"""

from __future__ import annotations

import os
import sys

import torch
from datasets import Dataset
from peft import LoraConfig

from moalign.models import MultiHeadCausalLM, MultiHeadConfig
from moalign.models.testing import make_tiny_llama_and_tokenizer
from moalign.methods.mopo.config import MOPOConfig
from moalign.methods.mopo.trainer import MOPOTrainer
from moalign.trainers.run import end_distributed

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
from tests.trainers.test_ham_trainer import make_pointwise_rows  # noqa: E402
from tests.trainers.test_mopo_trainer import OBJECTIVES, make_rows  # noqa: E402

NUM_ROWS = 8  # = the global batch: every step sees every row, whatever the sampler's order


def ddp_backend() -> str | None:
    return "gloo" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None


def run_ham(out: str, per_device_batch: int) -> None:
    """HaM, K = 3 heads, exact HV: the loss is -HV of the *global* batch's F (not a mean of local HVs)."""
    from moalign.methods.ham.config import HaMConfig
    from moalign.methods.ham.trainer import HaMTrainer

    torch.manual_seed(0)
    base, tokenizer = make_tiny_llama_and_tokenizer()
    args = HaMConfig(output_dir=os.path.join(out, "run"), per_device_train_batch_size=per_device_batch, max_steps=4,
                     num_policies=3, learning_rate=1e-2, use_cpu=True, report_to=[], save_strategy="no",
                     logging_steps=1, disable_tqdm=True, seed=0, data_seed=0, use_chat_template=False,
                     precision="fp32", ddp_backend=ddp_backend())
    names = HaMTrainer.head_names_for(args, OBJECTIVES)
    model = MultiHeadCausalLM(base, MultiHeadConfig(num_heads=len(names), head_names=names, head_rank=4),
                              lora_config=LoraConfig(r=4, lora_dropout=0.0))
    trainer = HaMTrainer(model=model, args=args, train_dataset=Dataset.from_list(make_pointwise_rows(NUM_ROWS)),
                         objectives=OBJECTIVES, processing_class=tokenizer)
    trainer.train()
    torch.save({
        "world_size": trainer.accelerator.num_processes,
        "global_step": trainer.state.global_step,
        "z": trainer.z,
        "hv": trainer.state.log_history[-2].get("hv") if len(trainer.state.log_history) > 1 else None,
        "params": {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad},
    }, os.path.join(out, f"rank{trainer.accelerator.process_index}.pt"))


def main(out: str, per_device_batch: int, lower_bound_eps: float) -> None:
    torch.manual_seed(0)
    base, tokenizer = make_tiny_llama_and_tokenizer()
    model = MultiHeadCausalLM(base, MultiHeadConfig(num_heads=2, head_names=OBJECTIVES),
                              lora_config=LoraConfig(r=4, lora_dropout=0.0))
    args = MOPOConfig(output_dir=os.path.join(out, "run"), per_device_train_batch_size=per_device_batch, max_steps=4,
                      lag_steps=2, lower_bound_eps=lower_bound_eps, learning_rate=1e-2, use_cpu=True, report_to=[],
                      save_strategy="no", logging_steps=1, disable_tqdm=True, seed=0, data_seed=0,
                      use_chat_template=False, precompute_ref_log_probs=True, precision="fp32",
                      thresholds=[0.9, 0.9],  # b^(0) above the reference: lambda moves (issue 10 defaults)
                      ddp_backend=ddp_backend())
    trainer = MOPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(make_rows(NUM_ROWS)),
                          objectives=OBJECTIVES, processing_class=tokenizer)
    trainer.train()
    rank = trainer.accelerator.process_index
    torch.save({
        "world_size": trainer.accelerator.num_processes,
        "global_step": trainer.state.global_step,
        "duals": [d.state_dict() for d in trainer.duals],
        "lag_active": trainer.lag_active,
        "params": {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad},
        "snapshot": model.snapshot_state_dict(),
    }, os.path.join(out, f"rank{rank}.pt"))


if __name__ == "__main__":
    method = sys.argv[3] if len(sys.argv) > 3 else "mopo"
    if method == "ham":
        run_ham(sys.argv[1], int(sys.argv[2]))
    else:
        main(sys.argv[1], int(sys.argv[2]), 0.1)
    end_distributed()
