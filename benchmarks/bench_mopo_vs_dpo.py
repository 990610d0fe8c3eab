"""Benchmark: seconds per preference pair of MOPOTrainer (K = 2, 3 heads) against TRL's DPOTrainer, and memory.

Issue "MOPO for language models", item 9; method and results in docs/benchmarks.md. In ONE
process, on the same model (SmolLM2-135M-Instruct, float32, CPU), LoRA configuration (same
explicit target modules), optimizer, batch and sequence lengths (synthetic pairs of fixed
token lengths, checked identical after collation), every variant -- DPO with/without
precomputed reference log-probs; MOPO with K = 2, 3 low-rank heads and K = 2 full heads,
before the first lag update and with the lagged reference active -- runs one untimed step,
then ``--steps`` timed steps per round for ``--rounds`` rounds in alternating order. A step
is timed from ``on_step_begin`` to ``on_step_end`` (forward passes, backward, clip,
optimizer, scheduler) as wall time and as process CPU time (steadier on a shared machine);
medians per pair and ratios to DPO are printed. The memory part runs one MOPO step (lagged
reference active) under ``moalign.models.testing.TensorMemoryTracker`` with 1 vs 3 low-rank
heads (and 2 full heads). ``--breakdown`` times the phases of a step (each pass split into
backbone and heads, dual step, backward, optimizer). The shared timing harness (rows, arguments, LoRA, timer,
variants, process and model) is ``bench_harness.py``.

Usage::

    .venv/bin/python benchmarks/bench_mopo_vs_dpo.py                 # SmolLM2 (~7-10 minutes)
    .venv/bin/python benchmarks/bench_mopo_vs_dpo.py --tiny          # tiny random Llama, smoke run (~20 s)
    .venv/bin/python benchmarks/bench_mopo_vs_dpo.py --rounds 0 --no-memory \\
        --variants dpo --breakdown dpo mopo_k2 mopo_k2_lag mopo_k3_lag   # phases only
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import random
import statistics
import tempfile
import time
from typing import Any

import torch

from bench_harness import (  # sibling modules (benchmarks/ is the script's folder)
    TARGET_MODULES,
    StepTimer,
    Variant,
    attach_timer,
    build_trl,
    check_token_lengths,
    common_args,
    load_model,
    lora_config,
    make_pairs,
    setup_process,
)
from step_phases import PhaseTimer, format_breakdown

ALL_VARIANTS = ("dpo", "dpo_precompute", "mopo_k2", "mopo_k2_lag", "mopo_k2_lag_precompute", "mopo_k3",
                "mopo_k3_lag", "mopo_k2_full", "mopo_k2_full_lag", "mopo_k2_heads_lag_3pass", "mopo_k2_heads_lag")
#: variant -> the variant its ratio is taken against (DPO; the heads-only run against its three-pass twin)
BASELINE = {name: ("dpo_precompute" if name.endswith("precompute") else "dpo") for name in ALL_VARIANTS}
BASELINE["mopo_k2_heads_lag"] = "mopo_k2_heads_lag_3pass"
DESCRIPTIONS = {
    "dpo": "TRL DPOTrainer (reference pass: adapters disabled)",
    "dpo_precompute": "TRL DPOTrainer, precompute_ref_log_probs",
    "mopo_k2": "MOPO K=2 low-rank heads, before the first lag update",
    "mopo_k2_lag": "MOPO K=2 low-rank heads, lagged reference active",
    "mopo_k2_lag_precompute": "MOPO K=2 low-rank, lagged ref active, precompute_ref_log_probs",
    "mopo_k3": "MOPO K=3 low-rank heads, before the first lag update",
    "mopo_k3_lag": "MOPO K=3 low-rank heads, lagged reference active",
    "mopo_k2_full": "MOPO K=2 full heads, before the first lag update",
    "mopo_k2_full_lag": "MOPO K=2 full heads, lagged reference active",
    "mopo_k2_heads_lag_3pass": "MOPO K=2 full heads only (no LoRA), lagged ref active, 3 backbone passes",
    "mopo_k2_heads_lag": "MOPO K=2 full heads only (no LoRA), lagged ref active, 1 shared backbone pass",
}
#: lag_steps of the timed "lagged reference active" runs: the snapshot exists and no new one is taken in the window
LAG_ACTIVE_NO_UPDATE = 10**9


# ---------------------------------------------------------------------------- trainers
def build_dpo(cli: argparse.Namespace, base: Any, tokenizer: Any, rows: list[dict[str, Any]], output_dir: str,
              precompute: bool) -> tuple[Any, StepTimer]:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    data = Dataset.from_list([{"prompt": r["prompt"], "chosen": r["completion_a"], "rejected": r["completion_b"]}
                              for r in rows])
    return build_trl(DPOTrainer, DPOConfig, cli, base, tokenizer, data, output_dir, disable_dropout=False,
                     precompute_ref_log_probs=precompute)


def build_mopo(cli: argparse.Namespace, base: Any, tokenizer: Any, rows: list[dict[str, Any]], output_dir: str,
               num_heads: int, head_type: str, precompute: bool, lora: bool = True,
               reuse_frozen_backbone: bool = True) -> tuple[Any, StepTimer]:
    """A MOPOTrainer whose model is built as ``moalign.trainers.run.build_multihead_model`` builds it
    (``lora=False``: heads only, the backbone frozen)."""
    from datasets import Dataset

    from moalign.models import MultiHeadCausalLM, MultiHeadConfig
    from moalign.methods.mopo.config import MOPOConfig
    from moalign.methods.mopo.trainer import MOPOTrainer

    objectives = [f"objective_{k}" for k in range(len(rows[0]["preference"]))]
    args = MOPOConfig(**common_args(cli, output_dir), max_prompt_length=cli.prompt_tokens,
                      max_completion_length=cli.completion_tokens, use_chat_template=False, head_type=head_type,
                      lora_r=cli.lora_r, lora_alpha=cli.lora_alpha, lora_dropout=cli.lora_dropout,
                      lora_target_modules=list(cli.target_modules), lag_steps=0, precompute_ref_log_probs=precompute,
                      use_lora=lora, reuse_frozen_backbone=reuse_frozen_backbone, precision=cli.precision)
    heads = MultiHeadConfig(num_heads=num_heads, head_names=objectives[:num_heads], head_type=args.head_type,
                            head_rank=args.head_rank, seed=args.seed)
    model = MultiHeadCausalLM(copy.deepcopy(base), heads, lora_config=lora_config(cli) if lora else None)
    return attach_timer(MOPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                                     objectives=objectives, processing_class=tokenizer))


def activate_lagged_reference(trainer: Any) -> None:
    """What ``MOPOTrainer`` does at a lag update (Alg. 1 line 11): snapshot the policy, use it as lagged reference.

    The timed "lag active" runs then use ``lag_steps = LAG_ACTIVE_NO_UPDATE``: the lagged pass runs every step and
    no snapshot is copied inside the window (real runs copy one every t0 = 500 steps).
    """
    from moalign.trainers.base_trainer import unwrap_multihead

    unwrap_multihead(trainer.model).take_snapshot()
    trainer.lag_active = True


def check_same_batches(dpo: Any, mopo: Any) -> dict[str, int]:
    """Both trainers' first batch: same shape, same attended tokens, same completion tokens."""
    dpo_batch = next(iter(dpo.get_train_dataloader()))
    mopo_batch = next(iter(mopo.get_train_dataloader()))
    shapes = tuple(dpo_batch["input_ids"].shape), tuple(mopo_batch["input_ids"].shape)
    completion = int(dpo_batch["completion_mask"].sum()), int(mopo_batch["completion_mask"].sum())
    attended = int(dpo_batch["attention_mask"].sum()), int(mopo_batch["attention_mask"].sum())
    if shapes[0] != shapes[1] or completion[0] != completion[1] or attended[0] != attended[1]:
        raise RuntimeError(f"DPO and MOPO batches differ: input_ids {shapes}, completion tokens {completion}, "
                           f"attended tokens {attended}")
    return {"sequences": shapes[0][0], "sequence_length": shapes[0][1], "completion_tokens": completion[0]}


def build_variants(cli: argparse.Namespace, base: Any, tokenizer: Any, output_dir: str) -> tuple[dict, dict]:
    wanted = set(cli.variants or ALL_VARIANTS)
    for _ in range(2):  # baselines, and theirs (heads only -> its three-pass twin -> DPO, which checks the batches)
        wanted |= {BASELINE[name] for name in wanted}
    rows2 = make_pairs(cli.num_pairs, cli.prompt_tokens, cli.completion_tokens, 2, cli.seed)
    extra = random.Random(cli.seed + 1)
    rows3 = [dict(r, preference=r["preference"] + [extra.random()]) for r in rows2]
    check_token_lengths(tokenizer, rows2, cli.prompt_tokens, cli.completion_tokens)
    lag = LAG_ACTIVE_NO_UPDATE
    recipes = [  # (variant names, builder, lag_steps of each variant)
        (("dpo",), lambda: build_dpo(cli, base, tokenizer, rows2, output_dir, False), (None,)),
        (("dpo_precompute",), lambda: build_dpo(cli, base, tokenizer, rows2, output_dir, True), (None,)),
        (("mopo_k2", "mopo_k2_lag"),
         lambda: build_mopo(cli, base, tokenizer, rows2, output_dir, 2, "low_rank", False), (0, lag)),
        (("mopo_k2_lag_precompute",),
         lambda: build_mopo(cli, base, tokenizer, rows2, output_dir, 2, "low_rank", True), (lag,)),
        (("mopo_k3", "mopo_k3_lag"),
         lambda: build_mopo(cli, base, tokenizer, rows3, output_dir, 3, "low_rank", False), (0, lag)),
        (("mopo_k2_full", "mopo_k2_full_lag"),
         lambda: build_mopo(cli, base, tokenizer, rows2, output_dir, 2, "full", False), (0, lag)),
        (("mopo_k2_heads_lag_3pass",), lambda: build_mopo(cli, base, tokenizer, rows2, output_dir, 2, "full", False,
                                                          lora=False, reuse_frozen_backbone=False), (lag,)),
        (("mopo_k2_heads_lag",), lambda: build_mopo(cli, base, tokenizer, rows2, output_dir, 2, "full", False,
                                                    lora=False), (lag,)),
    ]
    variants: dict[str, Variant] = {}
    for names, build, lags in recipes:
        if wanted & set(names):
            trainer, timer = build()
            for name, lag_steps in zip(names, lags):
                if name in wanted:
                    variants[name] = Variant(name, trainer, timer, lag_steps)
    dpo = variants["dpo"] if "dpo" in variants else variants["dpo_precompute"]
    mopo = next((v for n, v in variants.items() if n.startswith("mopo")), None)
    batch_info = check_same_batches(dpo.trainer, mopo.trainer) if mopo is not None else {}
    return {name: variants[name] for name in ALL_VARIANTS if name in variants}, batch_info


def warm_up(variants: dict[str, Variant], steps: int) -> None:
    """``steps`` untimed steps per trainer; MOPO trainers then get their lagged snapshot."""
    done = set()
    for variant in variants.values():
        if id(variant.trainer) in done:
            continue
        done.add(id(variant.trainer))
        if steps > 0:
            lag_steps, variant.lag_steps = variant.lag_steps, (0 if variant.lag_steps is not None else None)
            variant.run(steps, record=False)
            variant.lag_steps = lag_steps
        if hasattr(variant.trainer.args, "lag_steps"):
            activate_lagged_reference(variant.trainer)


# ---------------------------------------------------------------------------- memory
def measure_memory(cli: argparse.Namespace, base: Any, tokenizer: Any, output_dir: str) -> list[dict[str, Any]]:
    """Parameters + peak allocated tensor memory of one MOPO step, lagged reference active: 1 vs 3 low-rank heads."""
    from moalign.models.testing import TensorMemoryTracker

    rows = make_pairs(cli.batch_size, cli.prompt_tokens, cli.completion_tokens, 3, cli.seed + 2)
    results = []
    for num_heads, head_type in ((1, "low_rank"), (3, "low_rank"), (2, "full")):
        trainer, _ = build_mopo(cli, base, tokenizer, rows, output_dir, num_heads, head_type, precompute=False)
        activate_lagged_reference(trainer)
        trainer.args.lag_steps = LAG_ACTIVE_NO_UPDATE
        model = trainer.model
        param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        param_bytes += sum(b.numel() * b.element_size() for b in model.buffers())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        with TensorMemoryTracker() as tracker:
            trainer.train()
        results.append({"heads": num_heads, "head_type": head_type, "trainable_parameters": trainable,
                        "parameter_bytes": param_bytes, "peak_allocated_bytes": tracker.peak_bytes,
                        "total_bytes": param_bytes + tracker.peak_bytes})
        print(f"  memory: {num_heads} {head_type} head(s): parameters {param_bytes / 2**20:.1f} MiB, "
              f"peak allocated during the step {tracker.peak_bytes / 2**20:.1f} MiB", flush=True)
        del trainer, model
    one = results[0]
    for m in results:
        m["total_ratio"] = m["total_bytes"] / one["total_bytes"]
        m["allocated_ratio"] = m["peak_allocated_bytes"] / one["peak_allocated_bytes"]
    return results


def format_memory(memory: list[dict[str, Any]]) -> str:
    lines = ["| heads | trainable params | parameters + buffers MiB | peak allocated in step MiB | total MiB | "
             "total vs 1 head | allocated vs 1 head |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for m in memory:
        lines.append(f"| {m['heads']} {m['head_type']} | {m['trainable_parameters']:,} | "
                     f"{m['parameter_bytes'] / 2**20:.1f} | {m['peak_allocated_bytes'] / 2**20:.1f} | "
                     f"{m['total_bytes'] / 2**20:.1f} | {m['total_ratio']:.3f}x | {m['allocated_ratio']:.3f}x |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- report
def summarise(variants: dict[str, Variant], batch_size: int) -> dict[str, dict[str, Any]]:
    medians = {name: (statistics.median(v.wall), statistics.median(v.cpu)) for name, v in variants.items() if v.wall}
    summary = {}
    for name, (wall, cpu) in medians.items():
        base = BASELINE[name]
        ratio = (wall / medians[base][0], cpu / medians[base][1]) if base in medians else (float("nan"),) * 2
        summary[name] = {"wall_seconds_per_pair": wall / batch_size, "cpu_seconds_per_pair": cpu / batch_size,
                         "ratio_vs": base, "wall_ratio": ratio[0], "cpu_ratio": ratio[1],
                         "wall_step_times": variants[name].wall, "cpu_step_times": variants[name].cpu}
    return summary


def format_table(summary: dict[str, dict[str, Any]], batch_size: int) -> str:
    lines = ["| variant | what | wall s/pair (median) | wall min-max | CPU s/pair (median) | ratio (wall) | "
             "ratio (CPU) |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, s in summary.items():
        base = s["ratio_vs"]
        wall_range = f"{min(s['wall_step_times']) / batch_size:.2f}-{max(s['wall_step_times']) / batch_size:.2f}"
        if name == base:
            ratios = "1 (baseline)", "1 (baseline)"
        else:
            ratios = f"{s['wall_ratio']:.2f}x {base}", f"{s['cpu_ratio']:.2f}x {base}"
        lines.append(f"| {name} | {DESCRIPTIONS[name]} | {s['wall_seconds_per_pair']:.2f} | {wall_range} | "
                     f"{s['cpu_seconds_per_pair']:.2f} | {ratios[0]} | {ratios[1]} |")
    return "\n".join(lines)


def target_checks(summary: dict[str, Any], memory: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    checks = []
    for name, text in (("mopo_k2", "MOPO K=2 before the first lag update"),
                       ("mopo_k2_lag", "MOPO K=2 with the lagged reference active"),
                       ("mopo_k2_lag_precompute", "MOPO K=2 lagged ref + precomputed ref vs DPO precomputed ref")):
        if name in summary and summary[name]["ratio_vs"] in summary:
            for clock in ("wall", "cpu"):
                value = summary[name][f"{clock}_ratio"]
                checks.append({"target": f"{text} <= 1.2x DPO s/pair ({clock})", "value": value, "limit": 1.2,
                               "met": value <= 1.2})
    if memory is not None:
        three = next(m for m in memory if m["heads"] == 3)
        checks.append({"target": "K=3 low-rank heads <= 1.1x peak memory of one head (parameters + allocated)",
                       "value": three["total_ratio"], "limit": 1.1, "met": three["total_ratio"] <= 1.1})
        checks.append({"target": "(stricter) K=3 low-rank heads <= 1.1x peak allocated in the step of one head",
                       "value": three["allocated_ratio"], "limit": 1.1, "met": three["allocated_ratio"] <= 1.1})
    return checks


# ---------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="Tiny random Llama instead of SmolLM2 (smoke run).")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch.set_num_threads (default 1: on the shared 2-core machine, 2 threads ran 3-4x "
                        "slower than 1 while other jobs were running).")
    parser.add_argument("--batch-size", type=int, default=4, help="Preference pairs per optimizer step.")
    parser.add_argument("--prompt-tokens", type=int, default=32, help="Tokens per prompt.")
    parser.add_argument("--completion-tokens", type=int, default=32, help="Tokens per completion, EOS included.")
    parser.add_argument("--num-pairs", type=int, default=None,
                        help="Pairs in the synthetic dataset (default: enough for the longest train() call).")
    parser.add_argument("--warmup", type=int, default=1, help="Untimed optimizer steps per trainer before timing.")
    parser.add_argument("--steps", type=int, default=1, help="Timed optimizer steps per variant and round.")
    parser.add_argument("--rounds", type=int, default=3,
                        help="Rounds over all variants, order alternating (0: no timing, e.g. for --breakdown).")
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--lora-alpha", type=int, default=32)
    parser.add_argument("--lora-dropout", type=float, default=0.05)
    parser.add_argument("--target-modules", nargs="+", default=TARGET_MODULES)
    parser.add_argument("--variants", nargs="+", default=None, choices=ALL_VARIANTS, metavar="VARIANT",
                        help=f"Variants to build and time (default: all): {', '.join(ALL_VARIANTS)}.")
    parser.add_argument("--no-memory", action="store_true", help="Skip the memory measurement.")
    parser.add_argument("--breakdown", nargs="*", default=None, choices=ALL_VARIANTS, metavar="VARIANT",
                        help="Time the phases (passes, backward, optimizer; CPU time) of these variants.")
    parser.add_argument("--breakdown-steps", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="Compute precision of both sides: TRL's bf16 flag and moalign's precision setting.")
    parser.add_argument("--json", default=None, help="Also write the results to this JSON file.")
    cli = parser.parse_args(argv)
    if cli.variants is not None:
        cli.variants = sorted(set(cli.variants) | set(cli.breakdown or []), key=ALL_VARIANTS.index)
    longest = max(cli.steps, cli.warmup, cli.breakdown_steps, 1)
    if cli.num_pairs is None:
        cli.num_pairs = cli.batch_size * longest
    if cli.num_pairs < cli.batch_size * longest:
        parser.error(f"--num-pairs must be at least batch size x {longest} steps = {cli.batch_size * longest}")
    return cli


def main(argv: list[str] | None = None) -> dict[str, Any]:
    cli = parse_args(argv)
    setup_process(cli)
    import datasets

    datasets.disable_progress_bars()
    started = time.perf_counter()
    base, tokenizer, model_name = load_model(cli)
    machine = (f"{platform.machine()}, {os.cpu_count()} CPUs, load average "
               f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} at start; torch {torch.__version__}, "
               f"{torch.get_num_threads()} thread(s)")
    print(f"model: {model_name}; {machine}", flush=True)
    with tempfile.TemporaryDirectory() as output_dir:
        variants, batch = build_variants(cli, base, tokenizer, output_dir)
        if batch:
            print(f"batch: {cli.batch_size} pairs = {batch['sequences']} sequences x {batch['sequence_length']} "
                  f"tokens ({batch['completion_tokens']} completion tokens), the same for DPO and MOPO", flush=True)
        warm_up(variants, cli.warmup)
        print(f"built and warmed up in {time.perf_counter() - started:.0f} s", flush=True)
        order = list(variants)
        for round_index in range(cli.rounds):
            for name in order if round_index % 2 == 0 else order[::-1]:
                wall, cpu = variants[name].run(cli.steps)
                print(f"  round {round_index + 1} {name:24s} s/step wall " + " ".join(f"{t:.2f}" for t in wall)
                      + "  CPU " + " ".join(f"{t:.2f}" for t in cpu), flush=True)
        summary = summarise(variants, cli.batch_size)
        breakdowns = {name: PhaseTimer(variants[name]).run(cli.breakdown_steps) for name in cli.breakdown or []}
        memory = None if cli.no_memory else measure_memory(cli, base, tokenizer, output_dir)
    print(f"\n{model_name}; batch {cli.batch_size} pairs, prompt {cli.prompt_tokens} + completion "
          f"{cli.completion_tokens} tokens; LoRA r={cli.lora_r} alpha={cli.lora_alpha} dropout={cli.lora_dropout} on "
          f"{','.join(cli.target_modules)}; {cli.rounds} rounds x {cli.steps} timed step(s) per variant after "
          f"{cli.warmup} warm-up step(s); {machine}\n")
    if summary:
        print(format_table(summary, cli.batch_size))
    if memory is not None:
        print("\n" + format_memory(memory))
    if breakdowns:
        print(f"\nphases, mean over {cli.breakdown_steps} steps:\n{format_breakdown(breakdowns)}")
    checks = target_checks(summary, memory)
    if checks:
        print()
    for check in checks:
        print(f"target: {check['target']}: {check['value']:.3f} -> {'MET' if check['met'] else 'NOT MET'}")
    print(f"\nwall time {time.perf_counter() - started:.0f} s, load average now "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    result = {"model": model_name, "machine": machine, "settings": vars(cli), "batch": batch, "timing": summary,
              "memory": memory, "breakdowns": breakdowns, "targets": checks}
    if cli.json:
        os.makedirs(os.path.dirname(os.path.abspath(cli.json)), exist_ok=True)
        with open(cli.json, "w") as handle:
            json.dump(result, handle, indent=2)
    return result


if __name__ == "__main__":
    main()
