"""Benchmark: a steered evaluation with each prompt batch read once (``SharedPromptCache``) against reading the
prompts again at every steering weight, on the demo's trained MOPO (run ``moalign demo --out runs/demo_s5`` first).

    .venv/bin/python benchmarks/bench_prompt_cache.py [--rounds 2] [--model-dir runs/demo_s5] [--weights 6]

Both sides run the same policies on the demo's 80 test prompts (greedy, 32 new tokens, batch 64, precision
``auto``), interleaved round by round. Prints each round's seconds, the ratio of the fastest rounds (without /
with the shared cache) and how many greedy answers are identical (they agree to rounding, not bit for bit).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model-dir", default="runs/demo_s5", help="A finished `moalign demo` output folder.")
    parser.add_argument("--weights", type=int, default=6, help="Steering weights evaluated (of the 11-point grid).")
    parser.add_argument("--threads", type=int, default=2)
    cli = parser.parse_args(argv)

    import torch
    from peft import LoraConfig

    from moalign.eval.generate import GenerationSettings, generate_completions
    from moalign.eval.policies import steering_policies
    from moalign.eval.prompt_cache import SharedPromptCache
    from moalign.experiments.demo import DemoConfig, split_prompts
    from moalign.models import MultiHeadCausalLM, MultiHeadConfig, load_smollm2

    torch.set_num_threads(cli.threads)
    demo = DemoConfig(out=cli.model_dir)
    base, tokenizer = load_smollm2()
    model = MultiHeadCausalLM(base, MultiHeadConfig(num_heads=len(demo.objectives), head_names=demo.objectives,
                                                    head_type=demo.head_type, seed=demo.seed),
                              lora_config=LoraConfig(r=demo.lora_rank, lora_alpha=2 * demo.lora_rank))
    model.load_trainable_state(Path(cli.model_dir) / "model")
    model.eval()
    prompts = split_prompts(demo)["test"]
    grid = steering_policies(len(demo.objectives), steps=10, divergence=demo.steering_divergence)
    policies = [grid[round(i * (len(grid) - 1) / max(cli.weights - 1, 1))] for i in range(cli.weights)]
    settings = GenerationSettings(max_new_tokens=demo.eval_max_new_tokens, batch_size=demo.generation_batch_size,
                                  precision=demo.precision, progress=False)
    generate_completions(model, tokenizer, prompts[:8], policies[0], settings)  # warm-up: the merged LoRA weights
    seconds: dict[str, list[float]] = {"plain": [], "shared": []}
    answers: dict[str, list[list[str]]] = {}
    print(f"load average {os.getloadavg()[0]:.1f} at start; {len(policies)} weights x {len(prompts)} prompts")
    for round_index in range(cli.rounds):
        for mode in ("plain", "shared"):
            cache = SharedPromptCache() if mode == "shared" else None
            start = time.perf_counter()
            answers[mode] = [generate_completions(model, tokenizer, prompts, p, settings, prompt_cache=cache)
                             for p in policies]
            seconds[mode].append(time.perf_counter() - start)
            print(f"round {round_index}: {mode:6s} {seconds[mode][-1]:6.1f} s", flush=True)
    same = sum(a == b for plain, shared in zip(answers["plain"], answers["shared"]) for a, b in zip(plain, shared))
    ratio = min(seconds["plain"]) / min(seconds["shared"])
    print(f"plain / shared time {ratio:.2f}x; identical greedy answers {same} of {len(policies) * len(prompts)}; "
          f"load average {os.getloadavg()[0]:.1f} at end")
    return {"seconds": seconds, "ratio": ratio, "identical": same}


if __name__ == "__main__":
    main()
