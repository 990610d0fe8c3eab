"""Benchmark: generation throughput of moalign's generating paths against plain ``model.generate``, by
precision and batch size, on SmolLM2-135M-Instruct (or ``--tiny``).

Paths, each timed on the same tokenised batch as its plain peer, interleaved round by round:

* ``eval``   — :func:`moalign.eval.generate.generate_completions` with a steered policy of an untrained
  :class:`~moalign.models.MultiHeadCausalLM` (two full heads, LoRA r16, as the demo evaluates): greedy.
  Untrained (LoRA B = 0, heads = copies of the base output layer) it writes the base model's tokens, so both
  sides generate the same number of tokens; its peer is the base model's ``generate`` (no adapter, no heads);
* ``steer``  — the same steered evaluation against the steered model's *own* ``generate`` (same adapter, same
  two heads and mixture, under plain autocast): what a user would write by hand, so the ratio isolates
  moalign's generation machinery from the cost of the second head;
* ``sample`` — ``generate_completions`` of the base model itself with sampling (the demo's and compare's
  sampling of training responses); peer: ``generate`` with the same sampling settings and seed;
* ``static`` — the plain peer with ``cache_implementation="static"`` (and ``--compile``: its forward under
  ``torch.compile``), kept only where it pays.

MO-ODPO's on-policy sampling inside its trainer is measured by ``bench_mo_odpo_vs_online_dpo.py`` (its
"gen tok/s" column against plain ``generate``). Prints tokens/s per (path, precision, batch size) and the ratio
path / plain; ``--json`` writes everything.

    .venv/bin/python benchmarks/bench_generation.py                       # fp32 and bf16, batch 8 16 32 64
    .venv/bin/python benchmarks/bench_generation.py --batch-sizes 32 --static --compile
    .venv/bin/python benchmarks/bench_generation.py --paths eval --merge-lora off on   # LoRA merged or not
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(__file__))
from bench_harness import new_tokens, setup_process  # noqa: E402

from moalign.precision import MERGE_LORA_ENV, precision_autocast  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tiny", action="store_true", help="Tiny random Llama instead of SmolLM2 (smoke run).")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16, 32, 64])
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    p.add_argument("--paths", nargs="+", default=["eval", "sample"], choices=["eval", "steer", "sample"])
    p.add_argument("--merge-lora", nargs="+", default=["on"], choices=["off", "on"],
                   help="moalign paths with generation's LoRA merging on / off (MOALIGN_MERGE_LORA); the plain "
                        "peer has no adapter either way.")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--static", action="store_true", help="Also time plain generate with a static KV cache.")
    p.add_argument("--compile", action="store_true", help="With --static: also under torch.compile.")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    return p.parse_args(argv)


def load(cli: argparse.Namespace) -> tuple[Any, Any]:
    if cli.tiny:
        from moalign.models.testing import make_tiny_llama_and_tokenizer

        return make_tiny_llama_and_tokenizer(hidden_size=64, intermediate_size=128, num_layers=2)
    from moalign.models import load_smollm2

    return load_smollm2()


def prompts(count: int) -> list[str]:
    from moalign.experiments.demo import demo_prompts

    rows = [r["prompt"] for r in demo_prompts()]
    return [rows[i % len(rows)] for i in range(count)]


def encode(tokenizer: Any, texts: list[str]) -> tuple[dict[str, torch.Tensor], int]:
    from moalign.data.prompts import render_prompt

    rendered = [render_prompt(tokenizer, t, True) for t in texts]
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    enc = tokenizer(rendered, return_tensors="pt", padding=True, add_special_tokens=False)
    tokenizer.padding_side = side
    return {k: enc[k] for k in ("input_ids", "attention_mask")}, tokenizer.pad_token_id


@torch.no_grad()
def time_plain(model: Any, enc: dict, pad: int, stop: torch.Tensor, cli: argparse.Namespace, precision: str,
               sample: bool, **extra: Any) -> tuple[float, int]:
    kwargs: dict[str, Any] = dict(max_new_tokens=cli.max_new_tokens, do_sample=sample, pad_token_id=pad, **extra)
    if sample:
        kwargs.update(temperature=0.7, top_p=1.0, top_k=0)
        torch.manual_seed(cli.seed)
    start = time.perf_counter()
    with precision_autocast(precision, "cpu"):
        out = model.generate(**enc, **kwargs)
    return time.perf_counter() - start, new_tokens(out, enc["input_ids"].shape[1], stop)


def time_path(model: Any, tokenizer: Any, texts: list[str], policy: Any, cli: argparse.Namespace, precision: str,
              sample: bool) -> tuple[float, int]:
    from moalign.eval.generate import GenerationSettings, generate_completions

    settings = GenerationSettings(max_new_tokens=cli.max_new_tokens, batch_size=len(texts), do_sample=sample,
                                  temperature=0.7, seed=cli.seed, progress=False, precision=precision,
                                  sort_by_length=False)
    start = time.perf_counter()
    completions = generate_completions(model, tokenizer, texts, policy, settings)
    seconds = time.perf_counter() - start
    return seconds, sum(len(tokenizer(c, add_special_tokens=False)["input_ids"]) + 1 for c in completions)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    cli = parse_args(argv)
    setup_process(cli)
    from peft import LoraConfig

    from moalign.eval.generate import stop_token_ids
    from moalign.eval.policies import Policy
    from moalign.models import MultiHeadCausalLM, MultiHeadConfig

    base, tokenizer = load(cli)
    base.eval()
    import copy

    multihead = MultiHeadCausalLM(copy.deepcopy(base), MultiHeadConfig(num_heads=2, head_names=["a", "b"],
                                                                        head_type="full"),
                                  lora_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05)).eval()
    steer = Policy.steered([0.5, 0.5], divergence="forward_kl")
    steer_args = {"steering_weights": [0.5, 0.5], "divergence": "forward_kl"}  # MultiHeadCausalLM.generate's
    stop = stop_token_ids(base, tokenizer)
    rows: list[dict[str, Any]] = []
    print(f"load average {os.getloadavg()[0]:.1f} at start; {torch.get_num_threads()} threads", flush=True)
    for precision in cli.precisions:
        for batch in cli.batch_sizes:
            texts = prompts(batch)
            enc, pad = encode(tokenizer, texts)
            time_plain(base, enc, pad, stop, cli, precision, False)  # warm-up
            for path, merge in [(p, m) for p in cli.paths for m in cli.merge_lora]:
                sample = path == "sample"
                model, policy = (base, Policy.as_is("base")) if sample else (multihead, steer)
                peer, peer_args = (multihead, steer_args) if path == "steer" else (base, {})
                plain_rates, path_rates = [], []
                os.environ[MERGE_LORA_ENV] = "1" if merge == "on" else "0"
                for _ in range(cli.rounds):
                    s, n = time_plain(peer, enc, pad, stop, cli, precision, sample, **peer_args)
                    plain_rates.append(n / s)
                    s, n = time_path(model, tokenizer, texts, policy, cli, precision, sample)
                    path_rates.append(n / s)
                del os.environ[MERGE_LORA_ENV]
                row = {"path": path, "merge_lora": merge, "precision": precision, "batch": batch,
                       "plain_tok_s": statistics.median(plain_rates), "path_tok_s": statistics.median(path_rates)}
                row["ratio"] = row["path_tok_s"] / row["plain_tok_s"]
                rows.append(row)
                print(f"{path:7s} merge {merge:3s} {precision} batch {batch:3d}: plain {row['plain_tok_s']:7.1f} "
                      f"tok/s, moalign {row['path_tok_s']:7.1f} tok/s, ratio {row['ratio']:.2f}", flush=True)
            if cli.static:
                for compiled in ([False, True] if cli.compile else [False]):
                    target = base
                    if compiled:
                        target = copy.deepcopy(base)
                        target.forward = torch.compile(target.forward)
                    s, n = time_plain(target, enc, pad, stop, cli, precision, False, cache_implementation="static")
                    rates = []
                    for _ in range(cli.rounds):
                        s, n = time_plain(base, enc, pad, stop, cli, precision, False)
                        dynamic = n / s
                        s, n = time_plain(target, enc, pad, stop, cli, precision, False,
                                          cache_implementation="static")
                        rates.append((dynamic, n / s))
                    name = "static+compile" if compiled else "static"
                    row = {"path": name, "precision": precision, "batch": batch,
                           "plain_tok_s": statistics.median(r[0] for r in rates),
                           "path_tok_s": statistics.median(r[1] for r in rates)}
                    row["ratio"] = row["path_tok_s"] / row["plain_tok_s"]
                    rows.append(row)
                    print(f"{name:7s} {precision} batch {batch:3d}: dynamic cache {row['plain_tok_s']:7.1f} tok/s, "
                          f"{name} {row['path_tok_s']:7.1f} tok/s, ratio {row['ratio']:.2f}", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at end")
    result = {"settings": vars(cli), "rows": rows}
    if cli.json:
        with open(cli.json, "w") as handle:
            json.dump(result, handle, indent=2)
    return result


if __name__ == "__main__":
    main()
