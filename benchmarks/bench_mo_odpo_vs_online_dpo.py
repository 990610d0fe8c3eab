"""Benchmark: MO-ODPO time per training step against TRL's ``OnlineDPOTrainer``; generation tokens/s.

Issue "MO-ODPO ... with its baselines", benchmarks item; results in docs/benchmarks.md. In ONE process, on the
same model (SmolLM2-135M-Instruct, float32, CPU), the same LoRA (r = 16, alpha 32, same target modules), the
same prompts (chat template applied by both), batch, sampling (2 samples per prompt, temperature, top-k off,
``max_new_tokens``), beta, optimizer and learning rate:

* ``online_dpo``: ``trl.experimental.online_dpo.OnlineDPOTrainer`` (TRL 1.16; experimental) with the same two
  offline reward functions as ``reward_funcs`` and ``reward_weights = w = (0.5, 0.5)``: the weighted reward
  w^T r, but on **raw** scores (TRL has no per-objective normaliser) and with a fixed w;
* ``mo_odpo``: :class:`~moalign.methods.mo_odpo.trainer.MOODPOTrainer` as trained (Dirichlet weights, the
  conditioning block in the prompt: ~20 more prompt tokens per sequence);
* ``mo_odpo_fixed``: MO-ODPO with ``fixed_weights = (0.5, 0.5)`` and ``condition_prompt = false``: the
  like-for-like configuration of TRL's (same prompts, same weighted label; still min-max normalised).

Each trainer runs one untimed step, then ``--steps`` timed steps per round for ``--rounds`` rounds in
alternating order (a step is timed from ``on_step_begin`` to ``on_step_end``). Generation tokens/s inside each
trainer (TRL: its ``_generate`` wrapped with a timer; MO-ODPO: its logged ``generation/*``) is compared with
plain ``model.generate`` on the same plain chat prompts (left-padded, 2 samples each, same settings), twice: of
the base model, and, after the timed rounds, of each trainer's own adapted model (the same LoRA, unmerged), which
is the peer of "generation inside the trainer" (MO-ODPO as trained puts ~20 more conditioning tokens in each
prompt; ``mo_odpo_fixed`` samples from the same plain prompts).
Remaining differences: MO-ODPO's model is a ``MultiHeadCausalLM`` with one low-rank head (rank 8), and TRL
completions stop at EOS the same way, but the samples (hence lengths) differ; tokens/s normalises that.

Usage::

    .venv/bin/python -u benchmarks/bench_mo_odpo_vs_online_dpo.py          # SmolLM2, ~5-10 minutes (shared CPU)
    .venv/bin/python benchmarks/bench_mo_odpo_vs_online_dpo.py --tiny      # smoke run
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(__file__))
from bench_harness import StepTimer, Variant, new_tokens  # noqa: E402
from moalign.precision import precision_autocast  # noqa: E402

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PROMPTS = ["How can I stop procrastinating on small chores?", "What's a simple way to keep my desk tidy?",
           "Give me a tip for sleeping better.", "How do I start running as a beginner?",
           "What should I cook for a quick dinner?", "How can I save a bit of money each month?",
           "What is a good way to learn new words?", "How do I keep my plants alive?"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tiny", action="store_true", help="Tiny random Llama instead of SmolLM2 (smoke run).")
    p.add_argument("--batch", type=int, default=4, help="Prompts per step (each gives 2 samples).")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--steps", type=int, default=1, help="Timed steps per trainer per round.")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None, help="Write the summary here.")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="Compute precision of both trainers (TRL's bf16 flag; moalign's precision setting) and of "
                        "the plain generate() it is compared with.")
    return p.parse_args(argv)


def load(cli: argparse.Namespace) -> tuple[Any, Any]:
    if cli.tiny:
        from moalign.models.testing import make_tiny_llama_and_tokenizer

        return make_tiny_llama_and_tokenizer(hidden_size=64, intermediate_size=128, num_layers=2)
    from moalign.models import load_smollm2

    return load_smollm2()


def rewards() -> list[Any]:
    from moalign.rewards.registry import resolve_reward_functions

    return resolve_reward_functions(["positivity", "conciseness"])


def build_online_dpo(cli: argparse.Namespace, base: Any, tokenizer: Any, out: str) -> Any:
    from datasets import Dataset
    from peft import LoraConfig
    from trl.experimental.online_dpo import OnlineDPOConfig, OnlineDPOTrainer

    args = OnlineDPOConfig(output_dir=out, per_device_train_batch_size=cli.batch, learning_rate=1e-5,
                           max_new_tokens=cli.max_new_tokens, temperature=cli.temperature, top_k=0, beta=[0.1],
                           reward_weights=[0.5, 0.5], report_to=[], use_cpu=True, logging_steps=1000,
                           save_strategy="no", disable_tqdm=True, seed=0, lr_scheduler_type="constant",
                           max_length=512, gradient_checkpointing=False, bf16=cli.precision == "bf16")
    # OnlineDPOConfig defaults to gradient_checkpointing=True (which turns the KV cache off in its generate) and
    # bf16=True; with those defaults one SmolLM2 step took 535 s on the shared 2-core CPU. Both off = our trainer.
    data = Dataset.from_dict({"prompt": [[{"role": "user", "content": p}] for p in PROMPTS * 50]})
    trainer = OnlineDPOTrainer(model=base, reward_funcs=rewards(), args=args, train_dataset=data,
                               processing_class=tokenizer,
                               peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=TARGETS,
                                                      task_type="CAUSAL_LM"))
    trainer.gen_seconds, trainer.gen_tokens = [], []
    original = trainer._generate

    def timed(model: Any, prompts: Any, images: Any = None) -> Any:
        start = time.perf_counter()
        out = original(model, prompts, images)
        trainer.gen_seconds.append(time.perf_counter() - start)
        trainer.gen_tokens.append(int(out[3].sum()))  # completion_mask
        return out

    trainer._generate = timed
    return trainer


def build_mo_odpo(cli: argparse.Namespace, base: Any, tokenizer: Any, out: str, fixed: bool) -> Any:
    from datasets import Dataset
    from peft import LoraConfig

    from moalign.models import MultiHeadCausalLM, MultiHeadConfig
    from moalign.methods.mo_odpo.config import MOODPOConfig
    from moalign.methods.mo_odpo.trainer import MOODPOTrainer

    extra = dict(fixed_weights=[0.5, 0.5], condition_prompt=False) if fixed else {}
    args = MOODPOConfig(output_dir=out, per_device_train_batch_size=cli.batch, learning_rate=1e-5,
                        max_completion_length=cli.max_new_tokens, max_prompt_length=256, temperature=cli.temperature,
                        top_k=0, beta=0.1, reward_functions=["positivity", "conciseness"], report_to=[], use_cpu=True,
                        logging_steps=1000, save_strategy="no", disable_tqdm=True, seed=0,
                        lr_scheduler_type="constant", precision=cli.precision, **extra)
    model = MultiHeadCausalLM(base, MultiHeadConfig(num_heads=1, head_names=["policy"], head_rank=8),
                              lora_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=TARGETS))
    trainer = MOODPOTrainer(model=model, args=args, train_dataset=Dataset.from_dict({"prompt": PROMPTS * 50}),
                            processing_class=tokenizer, reward_funcs=rewards())
    trainer.gen_seconds, trainer.gen_tokens = [], []
    original = trainer.generate_pairs

    def timed(model: Any, prompt_ids: Any) -> Any:
        start = time.perf_counter()
        pairs, info = original(model, prompt_ids)
        trainer.gen_seconds.append(time.perf_counter() - start)
        trainer.gen_tokens.append(sum(len(p) for p in pairs))
        return pairs, info

    trainer.generate_pairs = timed
    return trainer


@torch.no_grad()
def plain_generate(cli: argparse.Namespace, base: Any, tokenizer: Any, repeats: int = 3) -> list[float]:
    """Tokens/s of ``base.generate`` (any causal LM: the base model, a PEFT model) on the batch's chat prompts,
    2 samples each, as the trainers sample; eval mode, the training flag restored afterwards."""
    from moalign.eval.generate import model_device, render_prompts, stop_token_ids

    device = model_device(base)
    texts, templated = render_prompts(tokenizer, PROMPTS[: cli.batch])
    enc = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left",
                    add_special_tokens=not templated).to(device)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stop = stop_token_ids(base, tokenizer).to(device)
    rates = []
    was_training = base.training
    base.eval()
    for _ in range(repeats):
        start = time.perf_counter()
        with precision_autocast(cli.precision, "cpu"):
            out = base.generate(**enc, do_sample=True, temperature=cli.temperature, top_k=0,
                                max_new_tokens=cli.max_new_tokens, num_return_sequences=2, pad_token_id=pad)
        seconds = time.perf_counter() - start
        rates.append(new_tokens(out, enc["input_ids"].shape[1], stop) / seconds)
    base.train(was_training)
    return rates


def own_model(trainer: Any) -> Any:
    """The model a trainer samples from: TRL's PEFT model, MO-ODPO's multi-head model (its generate() is the backbone's)."""
    from moalign.trainers.base_trainer import unwrap_multihead

    return unwrap_multihead(trainer.model)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    cli = parse_args(argv)
    torch.set_num_threads(cli.threads)
    warnings.filterwarnings("ignore")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    base, tokenizer = load(cli)
    with tempfile.TemporaryDirectory() as tmp:
        plain_rates = plain_generate(cli, base, tokenizer)
        variants = {}
        for name, build in (("online_dpo", lambda b: build_online_dpo(cli, b, tokenizer, os.path.join(tmp, "o"))),
                            ("mo_odpo", lambda b: build_mo_odpo(cli, b, tokenizer, os.path.join(tmp, "m"), False)),
                            ("mo_odpo_fixed", lambda b: build_mo_odpo(cli, b, tokenizer, os.path.join(tmp, "f"),
                                                                      True))):
            trainer = build(copy.deepcopy(base))
            timer = StepTimer()
            trainer.add_callback(timer)
            variants[name] = Variant(name, trainer, timer)
        for variant in variants.values():  # untimed warm-up step
            variant.run(1, record=False)
        for name in variants:
            variants[name].trainer.gen_seconds.clear()
            variants[name].trainer.gen_tokens.clear()
        for r in range(cli.rounds):
            order = list(variants) if r % 2 == 0 else list(reversed(variants))
            for name in order:
                variants[name].run(cli.steps)
        own_rates = {name: plain_generate(cli, own_model(v.trainer), tokenizer) for name, v in variants.items()}
    summary: dict[str, Any] = {"plain_generate_tokens_per_s": plain_rates, "variants": {}}
    ref = statistics.median(variants["online_dpo"].wall)
    for name, v in variants.items():
        entry = {"wall_s": v.wall, "median_s": statistics.median(v.wall), "min_s": min(v.wall), "max_s": max(v.wall),
                 "ratio_to_online_dpo": statistics.median(v.wall) / ref, "cpu_s": v.cpu,
                 "cpu_ratio_to_online_dpo": statistics.median(v.cpu) / statistics.median(variants["online_dpo"].cpu)}
        t = v.trainer
        entry["gen_tokens_per_s"] = sum(t.gen_tokens) / sum(t.gen_seconds)
        entry["gen_share"] = sum(t.gen_seconds) / sum(v.wall)
        entry["tokens_per_step"] = sum(t.gen_tokens) / len(t.gen_tokens)
        entry["own_model_plain_tokens_per_s"] = own_rates[name]
        entry["gen_ratio_to_own_model_plain"] = entry["gen_tokens_per_s"] / statistics.median(own_rates[name])
        summary["variants"][name] = entry
    print(f"plain model.generate: {statistics.median(plain_rates):.1f} tokens/s (runs {[round(x, 1) for x in plain_rates]})")
    print("| trainer | median s/step | min-max | x OnlineDPO (wall) | x OnlineDPO (CPU) | gen tokens/s in trainer "
          "| own model plain tokens/s (ratio) | gen share | tokens/step |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, e in summary["variants"].items():
        print(f"| {name} | {e['median_s']:.2f} | {e['min_s']:.2f}-{e['max_s']:.2f} | {e['ratio_to_online_dpo']:.2f} | "
              f"{e['cpu_ratio_to_online_dpo']:.2f} | "
              f"{e['gen_tokens_per_s']:.1f} | {statistics.median(e['own_model_plain_tokens_per_s']):.1f} "
              f"({e['gen_ratio_to_own_model_plain']:.2f}) | {e['gen_share']:.2f} | {e['tokens_per_step']:.0f} |")
    if cli.json:
        with open(cli.json, "w") as handle:
            json.dump(summary, handle, indent=2)
    return summary


if __name__ == "__main__":
    main()
