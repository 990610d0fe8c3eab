"""Benchmark: HaM (K = 5 low-rank heads) time per sample against TRL's SFTTrainer, memory, and HV estimators.

Issue "HaM ... with its baselines SCA and Rewards-in-Context", benchmarks item; results in
docs/benchmarks.md. Three parts, in ONE process:

1. **Time per sample.** TRL ``SFTTrainer`` (prompt/completion data, completion-only loss) and
   ``HaMTrainer`` with K = 5 (and K = 1) low-rank heads, on the same model (SmolLM2-135M-Instruct,
   float32, CPU), the same LoRA (r = 16, same target modules), optimizer, batch and token lengths
   (synthetic rows of fixed token lengths; batch shapes checked equal). Each runs one untimed step,
   then ``--steps`` timed steps per round for ``--rounds`` rounds in alternating order; a step is
   timed from ``on_step_begin`` to ``on_step_end`` (wall and process CPU time). Medians per sample and
   ratios to SFT are printed (target: HaM K = 5 <= 1.15x SFT).
2. **Memory.** One HaM step with 1 vs 5 low-rank heads under
   ``moalign.models.testing.TensorMemoryTracker`` (parameters + buffers + peak allocated; target <= 1.1x).
3. **Hypervolume estimators** (``moalign.core.ham``, no model): exact inclusion-exclusion
   (eq. 6) vs random scalarisation (eq. 10, N directions) for K = 2..12 points, J = 2, 3: time of
   value + gradient, and the random estimate's relative error (mean over seeds).

The helpers (process setup, timer, TrainingArguments, LoRA config, the TRL trainer builder, model loading, the
Variant runner) are those of ``bench_harness.py``, shared with ``bench_mopo_vs_dpo.py``.

Usage::

    .venv/bin/python benchmarks/bench_ham_vs_sft.py            # SmolLM2 (~3-5 minutes)
    .venv/bin/python benchmarks/bench_ham_vs_sft.py --tiny     # tiny random Llama, smoke run
    .venv/bin/python benchmarks/bench_ham_vs_sft.py --only-hv  # the estimator table only (seconds)
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import statistics
import tempfile
import time
from typing import Any

import torch

from bench_harness import (  # sibling module (benchmarks/ is the script's folder)
    TARGET_MODULES,
    WORDS,
    StepTimer,
    Variant,
    attach_timer,
    build_trl,
    common_args,
    load_model,
    lora_config,
    setup_process,
)

OBJECTIVES = ["objective_0", "objective_1"]


def make_points(num_rows: int, prompt_tokens: int, completion_tokens: int, seed: int) -> list[dict[str, Any]]:
    """Pointwise rows: ``prompt_tokens``-word prompts, ``completion_tokens - 1``-word completions (+ EOS), 2 scores."""
    rng = random.Random(seed)

    def words(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n))

    return [{"prompt": words(prompt_tokens), "completion": " " + words(completion_tokens - 1),
             "scores": [rng.random(), rng.random()]} for _ in range(num_rows)]


def build_sft(cli: argparse.Namespace, base: Any, tokenizer: Any, rows: list[dict[str, Any]], output_dir: str
              ) -> tuple[Any, StepTimer]:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    data = Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows])
    return build_trl(SFTTrainer, SFTConfig, cli, base, tokenizer, data, output_dir, completion_only_loss=True,
                     packing=False)


def build_ham(cli: argparse.Namespace, base: Any, tokenizer: Any, rows: list[dict[str, Any]], output_dir: str,
              num_heads: int) -> tuple[Any, StepTimer]:
    """A HaMTrainer whose model is built as ``moalign.trainers.run.build_multihead_model`` builds it."""
    from datasets import Dataset

    from moalign.models import MultiHeadCausalLM, MultiHeadConfig
    from moalign.methods.ham.config import HaMConfig
    from moalign.methods.ham.trainer import HaMTrainer

    args = HaMConfig(**common_args(cli, output_dir), max_prompt_length=cli.prompt_tokens,
                     max_completion_length=cli.completion_tokens, use_chat_template=False, head_type="low_rank",
                     lora_r=cli.lora_r, lora_alpha=cli.lora_alpha, lora_dropout=cli.lora_dropout,
                     lora_target_modules=list(cli.target_modules), num_policies=num_heads, precision=cli.precision)
    names = HaMTrainer.head_names_for(args, OBJECTIVES)
    heads = MultiHeadConfig(num_heads=num_heads, head_names=names, head_type="low_rank", head_rank=args.head_rank,
                            seed=args.seed)
    model = MultiHeadCausalLM(copy.deepcopy(base), heads, lora_config=lora_config(cli))
    return attach_timer(HaMTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                                   objectives=OBJECTIVES, processing_class=tokenizer))


def check_same_batches(sft: Any, ham: Any) -> dict[str, int]:
    """Both trainers' first batch: same shape and attended tokens; trained (completion) tokens equal up to one per
    sequence (TRL splits prompt and completion after tokenising them jointly, a boundary token can move)."""
    a, b = next(iter(sft.get_train_dataloader())), next(iter(ham.get_train_dataloader()))
    shapes = tuple(a["input_ids"].shape), tuple(b["input_ids"].shape)
    attended = int(a["attention_mask"].sum()), int(b["attention_mask"].sum())
    trained = int((a["labels"] != -100).sum()), int(b["completion_mask"].sum())
    if shapes[0] != shapes[1] or attended[0] != attended[1] or abs(trained[0] - trained[1]) > shapes[0][0]:
        raise RuntimeError(f"SFT and HaM batches differ: input_ids {shapes}, attended {attended}, trained {trained}")
    return {"sequences": shapes[0][0], "length": shapes[0][1], "trained_tokens": trained}


def time_training(cli: argparse.Namespace, base: Any, tokenizer: Any, output_dir: str) -> dict[str, Any]:
    rows = make_points(cli.batch_size * max(cli.steps, 1), cli.prompt_tokens, cli.completion_tokens, cli.seed)
    variants = {"sft": Variant("sft", *build_sft(cli, base, tokenizer, rows, output_dir)),
                "ham_k5": Variant("ham_k5", *build_ham(cli, base, tokenizer, rows, output_dir, 5)),
                "ham_k1": Variant("ham_k1", *build_ham(cli, base, tokenizer, rows, output_dir, 1))}
    batch = check_same_batches(variants["sft"].trainer, variants["ham_k5"].trainer)
    print(f"batch: {batch['sequences']} sequences x {batch['length']} tokens for SFT and HaM; trained (completion) "
          f"tokens SFT {batch['trained_tokens'][0]}, HaM {batch['trained_tokens'][1]}", flush=True)
    for variant in variants.values():
        variant.run(1, record=False)  # warm-up
    order = list(variants)
    for round_index in range(cli.rounds):
        for name in order if round_index % 2 == 0 else order[::-1]:
            wall, cpu = variants[name].run(cli.steps)
            print(f"  round {round_index + 1} {name:7s} s/step wall {' '.join(f'{t:.2f}' for t in wall)}  "
                  f"CPU {' '.join(f'{t:.2f}' for t in cpu)}", flush=True)
    out = {}
    for name, v in variants.items():
        out[name] = {"wall": statistics.median(v.wall) / cli.batch_size, "cpu": statistics.median(v.cpu) / cli.batch_size,
                     "wall_range": (min(v.wall) / cli.batch_size, max(v.wall) / cli.batch_size),
                     "cpu_range": (min(v.cpu) / cli.batch_size, max(v.cpu) / cli.batch_size)}
    for name in out:
        out[name]["wall_ratio"] = out[name]["wall"] / out["sft"]["wall"]
        out[name]["cpu_ratio"] = out[name]["cpu"] / out["sft"]["cpu"]
    return out


def measure_memory(cli: argparse.Namespace, base: Any, tokenizer: Any, output_dir: str) -> dict[int, dict[str, int]]:
    from moalign.models.testing import TensorMemoryTracker

    rows = make_points(cli.batch_size, cli.prompt_tokens, cli.completion_tokens, cli.seed + 2)
    results = {}
    for num_heads in (1, 5):
        trainer, _ = build_ham(cli, base, tokenizer, rows, output_dir, num_heads)
        model = trainer.model
        params = sum(p.numel() * p.element_size() for p in model.parameters())
        params += sum(b.numel() * b.element_size() for b in model.buffers())
        trainer.args.max_steps = 1
        with TensorMemoryTracker() as tracker:
            trainer.train()
        results[num_heads] = {"parameters": params, "peak": tracker.peak_bytes, "total": params + tracker.peak_bytes}
        del trainer, model
    return results


def time_hypervolume(max_points: int, num_directions: int, seeds: int, repeats: int) -> list[dict[str, Any]]:
    from moalign.core.ham import inclusion_exclusion_hypervolume, random_hypervolume_scalarization

    def timed(fn: Any, points: torch.Tensor) -> float:
        times = []
        for _ in range(repeats):
            p = points.clone().requires_grad_()
            start = time.perf_counter()
            fn(p).backward()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    rows = []
    for j in (2, 3):
        ref = torch.zeros(j)
        for k in range(2, max_points + 1):
            gen = torch.Generator().manual_seed(100 * j + k)
            points = 0.1 + 0.9 * torch.rand(k, j, generator=gen)
            exact = float(inclusion_exclusion_hypervolume(points.double(), ref.double()))
            errors = [abs(float(random_hypervolume_scalarization(points, ref, num_directions, seed=s)) - exact) / exact
                      for s in range(seeds)]
            rows.append({"J": j, "K": k, "exact_ms": 1e3 * timed(lambda p: inclusion_exclusion_hypervolume(p, ref),
                                                                  points),
                         "random_ms": 1e3 * timed(lambda p: random_hypervolume_scalarization(p, ref, num_directions,
                                                                                             seed=0), points),
                         "random_rel_error": statistics.mean(errors)})
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="Tiny random Llama instead of SmolLM2 (smoke run).")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (1 on the shared machine).")
    parser.add_argument("--batch-size", type=int, default=8, help="Rows (sequences) per optimizer step.")
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--completion-tokens", type=int, default=32, help="Tokens per completion, EOS included.")
    parser.add_argument("--steps", type=int, default=1, help="Timed optimizer steps per variant and round.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--lora-alpha", type=int, default=32)
    parser.add_argument("--lora-dropout", type=float, default=0.05)
    parser.add_argument("--target-modules", nargs="+", default=TARGET_MODULES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="Compute precision of both sides: TRL's bf16 flag and moalign's precision setting.")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--json", default=None, help="Also write the training timings to this JSON file.")
    parser.add_argument("--only-hv", action="store_true", help="Only the hypervolume estimator table.")
    parser.add_argument("--hv-max-points", type=int, default=12)
    parser.add_argument("--hv-directions", type=int, default=1024)
    parser.add_argument("--hv-seeds", type=int, default=20)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    cli = parse_args(argv)
    setup_process(cli)
    print(f"load average at start {' '.join(f'{x:.1f}' for x in os.getloadavg())}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s)", flush=True)
    if not cli.only_hv:
        import datasets

        datasets.disable_progress_bars()
        base, tokenizer, model_name = load_model(cli)
        with tempfile.TemporaryDirectory() as output_dir:
            timing = time_training(cli, base, tokenizer, output_dir)
            memory = None if cli.no_memory else measure_memory(cli, base, tokenizer, output_dir)
        print(f"\n{model_name}; batch {cli.batch_size} rows, prompt {cli.prompt_tokens} + completion "
              f"{cli.completion_tokens} tokens; LoRA r={cli.lora_r} on {','.join(cli.target_modules)}; "
              f"{cli.rounds} rounds x {cli.steps} step(s)\n")
        print("| variant | wall s/sample (median, min-max) | CPU s/sample (median, min-max) | wall vs SFT | CPU vs SFT |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for name, t in timing.items():
            print(f"| {name} | {t['wall']:.3f} ({t['wall_range'][0]:.3f}-{t['wall_range'][1]:.3f}) | {t['cpu']:.3f} "
                  f"({t['cpu_range'][0]:.3f}-{t['cpu_range'][1]:.3f}) | {t['wall_ratio']:.2f}x | {t['cpu_ratio']:.2f}x |")
        print(f"\ntarget HaM K=5 <= 1.15x SFT: wall {timing['ham_k5']['wall_ratio']:.2f}x, "
              f"CPU {timing['ham_k5']['cpu_ratio']:.2f}x")
        if cli.json:
            with open(cli.json, "w") as handle:
                json.dump({"model": model_name, "settings": vars(cli), "timing": timing}, handle, indent=2)
        if memory is not None:
            ratio = memory[5]["total"] / memory[1]["total"]
            print(f"memory: 1 head {memory[1]['total'] / 2**20:.1f} MiB (parameters {memory[1]['parameters'] / 2**20:.1f} "
                  f"+ peak {memory[1]['peak'] / 2**20:.1f}), 5 heads {memory[5]['total'] / 2**20:.1f} MiB (parameters "
                  f"{memory[5]['parameters'] / 2**20:.1f} + peak {memory[5]['peak'] / 2**20:.1f}); ratio {ratio:.3f}x "
                  f"(target <= 1.1x); peak alone {memory[5]['peak'] / memory[1]['peak']:.3f}x")
    rows = time_hypervolume(cli.hv_max_points, cli.hv_directions, cli.hv_seeds, repeats=5)
    print(f"\nhypervolume value + gradient, exact (eq. 6) vs random scalarisation (eq. 10, N = {cli.hv_directions}); "
          f"relative error = mean over {cli.hv_seeds} seeds\n")
    print("| J | K | exact ms | random ms | random rel. error |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['J']} | {r['K']} | {r['exact_ms']:.2f} | {r['random_ms']:.2f} | {r['random_rel_error']:.4f} |")


if __name__ == "__main__":
    main()
