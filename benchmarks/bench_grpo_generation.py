"""Benchmark: where a GRPO baseline's training step goes, and what batching its sampling buys.

P-MORL (TRL's ``GRPOTrainer`` on ``w^T r``) is trained for ``--steps`` optimizer steps with the settings of
``moalign compare --task demo`` (SmolLM2-135M-Instruct, LoRA r16, 4 completions per step = 2 prompts x 2
generations, 33 new tokens, answer_relevance and brevity), once per ``--steps-per-generation`` value, in one
process. Timed by wrapping GRPOTrainer's methods (wall seconds): sampling (``_generate_single_turn``), reward
calls, every log-prob pass (the no-grad reference / old-policy passes and the loss's forward), all of
``_prepare_inputs`` and the whole ``training_step``. Its peer for sampling speed is plain ``generate`` of the
same PEFT model (eval mode, same sampling settings) on the same number of rows per call: the in-trainer
tokens/s over the plain tokens/s is the ratio printed.

    .venv/bin/python benchmarks/bench_grpo_generation.py                      # 8 steps, 1 and 4 steps/generation,
                                                                              # LoRA merged while sampling or not
    .venv/bin/python benchmarks/bench_grpo_generation.py --steps 4 --steps-per-generation 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(__file__))
from bench_harness import new_tokens, setup_process  # noqa: E402

from moalign.precision import MERGE_LORA_ENV  # noqa: E402

PHASES = {"_generate_single_turn": "sampling", "_calculate_rewards": "rewards",
          "_get_per_token_logps_and_entropies": "log-prob passes", "_prepare_inputs": "prepare_inputs (all)",
          "training_step": "training_step (all)"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=8, help="Optimizer steps per run (a multiple of every s).")
    p.add_argument("--steps-per-generation", type=int, nargs="+", default=[1, 4])
    p.add_argument("--merge-lora", nargs="+", default=["off", "on"], choices=["off", "on"],
                   help="Generation's LoRA merging (MOALIGN_MERGE_LORA) per run; the plain peer never merges.")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tiny", action="store_true", help="A tiny random model (smoke run; no SmolLM2).")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    return p.parse_args(argv)


class PhaseClock:
    """Wall seconds per GRPOTrainer method, and the tokens and rows its sampling produced."""

    def __init__(self) -> None:
        from trl import GRPOTrainer

        self.seconds: dict[str, float] = {}
        self.sampled_tokens = 0
        self.sampling_rows: list[int] = []
        self.trainer: Any = None
        self._originals = {name: getattr(GRPOTrainer, name) for name in [*PHASES, "__init__"]}
        clock = self

        def timed(name: str) -> Any:
            original = self._originals[name]

            def run(trainer: Any, *args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter()
                try:
                    out = original(trainer, *args, **kwargs)
                finally:
                    key = PHASES[name]
                    clock.seconds[key] = clock.seconds.get(key, 0.0) + time.perf_counter() - start
                if name == "_generate_single_turn":
                    completion_ids = out[0]
                    clock.sampled_tokens += sum(len(c) for c in completion_ids)
                    clock.sampling_rows.append(len(completion_ids))
                return out
            return run

        def init(trainer: Any, *args: Any, **kwargs: Any) -> None:
            self._originals["__init__"](trainer, *args, **kwargs)
            clock.trainer = trainer

        for name in PHASES:
            setattr(GRPOTrainer, name, timed(name))
        GRPOTrainer.__init__ = init

    def restore(self) -> None:
        from trl import GRPOTrainer

        for name, original in self._originals.items():
            setattr(GRPOTrainer, name, original)


def plain_tokens_per_s(model: Any, tokenizer: Any, prompts: list[str], rows: int, max_new_tokens: int,
                       precision: str, rounds: int = 2) -> float:
    """Plain ``generate`` of the PEFT model in eval mode, ``rows`` completions per call, sampled at T = 1; the
    LoRA layers computed by PEFT (never merged), so the peer is the same for every run."""
    from moalign.eval.generate import model_device, render_prompts, stop_token_ids
    from moalign.precision import generation_autocast

    device = model_device(model)
    texts, templated = render_prompts(tokenizer, prompts[:rows])
    enc = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=not templated)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stop = stop_token_ids(model, tokenizer).to(device)
    was_training = model.training
    model.eval()
    best = 0.0
    try:
        with torch.no_grad(), generation_autocast(precision, model, device, merge_lora=False):
            for _ in range(rounds):
                start = time.perf_counter()
                out = model.generate(**enc.to(device), do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                                     max_new_tokens=max_new_tokens, pad_token_id=pad)
                # a completion ends at its first stop token, as in training
                best = max(best, new_tokens(out, enc["input_ids"].shape[1], stop) / (time.perf_counter() - start))
    finally:
        model.train(was_training)
    return best


def run_once(cli: argparse.Namespace, steps_per_generation: int, merge: str, workdir: Path, index: int
             ) -> dict[str, Any]:
    from moalign.experiments.compare import CompareConfig
    from moalign.experiments.compare_demo import method_args
    from moalign.experiments.compare_prompts import DemoPromptSource
    from moalign.precision import resolve_precision
    from moalign.trainers.run import train_method

    model = "smollm2"
    if cli.tiny:
        from moalign.models.testing import make_tiny_llama_and_tokenizer

        base, tokenizer = make_tiny_llama_and_tokenizer()
        base.save_pretrained(workdir / "tiny")
        tokenizer.save_pretrained(workdir / "tiny")
        model = str(workdir / "tiny")
    config = CompareConfig(task="demo", model_name_or_path=model, precision=cli.precision)
    prompts = DemoPromptSource(config).train()
    prompt_file = workdir / "prompts.jsonl"
    prompt_file.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    args = method_args("p_morl", config, {"prompts": str(prompt_file)},
                       workdir / f"run{index}_spg{steps_per_generation}_{merge}")  # a fresh run, never resumed
    args.max_steps = cli.steps
    args.steps_per_generation = steps_per_generation
    clock = PhaseClock()
    os.environ[MERGE_LORA_ENV] = "1" if merge == "on" else "0"
    try:
        start = time.perf_counter()
        train_method("p_morl", args)
        total = time.perf_counter() - start
    finally:
        clock.restore()
        del os.environ[MERGE_LORA_ENV]
    trainer = clock.trainer
    rows = max(clock.sampling_rows)
    sampling_s = clock.seconds["sampling"]
    in_trainer = clock.sampled_tokens / sampling_s
    plain = plain_tokens_per_s(trainer.model, trainer.processing_class, prompts, rows, args.max_completion_length,
                               resolve_precision(cli.precision, torch.device("cpu")))
    return {"steps_per_generation": steps_per_generation, "merge_lora": merge, "steps": cli.steps, "run_s": total,
            "per_step_s": clock.seconds["training_step (all)"] / cli.steps,
            "phases_s": dict(clock.seconds), "rows_per_generate": rows, "sampled_tokens": clock.sampled_tokens,
            "in_trainer_tok_s": in_trainer, "plain_tok_s": plain, "sampling_vs_plain": in_trainer / plain}


def main(argv: list[str] | None = None) -> int:
    cli = parse_args(argv)
    setup_process(cli)
    if any(cli.steps % s for s in cli.steps_per_generation):
        raise SystemExit(f"--steps {cli.steps} must be a multiple of every --steps-per-generation value")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for s in cli.steps_per_generation:
            for merge in cli.merge_lora:
                results.append(run_once(cli, s, merge, Path(tmp), len(results)))
    first = results[0]
    print(f"{'steps/gen':>9} {'merge':>5} {'rows/gen':>8} {'s/step':>7} {'vs first':>8} {'sampling s':>10} {'log-prob s':>10} "
          f"{'in-trainer tok/s':>16} {'plain tok/s':>11} {'ratio':>6}")
    for r in results:
        print(f"{r['steps_per_generation']:>9} {r['merge_lora']:>5} {r['rows_per_generate']:>8} {r['per_step_s']:>7.2f} "
              f"{first['per_step_s'] / r['per_step_s']:>7.2f}x {r['phases_s']['sampling']:>10.1f} "
              f"{r['phases_s']['log-prob passes']:>10.1f} {r['in_trainer_tok_s']:>16.1f} {r['plain_tok_s']:>11.1f} "
              f"{r['sampling_vs_plain']:>5.2f}x")
    if cli.json:
        Path(cli.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
