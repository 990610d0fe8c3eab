"""Benchmark: ``moalign serve`` latency per request against plain ``generate``, and a cross-talk check.

* **latency**: one chat request over HTTP to a real server (uvicorn in a thread of this process, the model loaded
  once) against ``load_policy(DIR).generate`` on the same policy object, same prompt, weights and length
  (greedy, so both write the same tokens), interleaved round by round; prints the medians and the ratio
  server / generate (target: within 1.1x);
* **cross-talk**: 16 concurrent requests with mixed weights (4 weight vectors x 4 prompts, interleaved); each
  answer must equal the sequential ``generate`` answer for its weights.

The model is a folder trained by moalign (``--model DIR``, e.g. the demo's SmolLM2 model ``runs/demo/model``;
SmolLM2 loads through ``moalign.models.load_smollm2``'s cache), or one built here with two random low-rank heads
and random LoRA: ``--tiny`` (tiny random Llama, a smoke run) or ``--smollm2`` (SmolLM2-135M-Instruct).

    .venv/bin/python benchmarks/bench_serve.py --tiny
    .venv/bin/python benchmarks/bench_serve.py --model runs/demo/model --max-new-tokens 64
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(__file__))
from bench_harness import load_model, setup_process  # noqa: E402

WEIGHTS = [(0.7, 0.3), (0.2, 0.8), (1.0, 0.0), (0.5, 0.5)]
TINY_PROMPTS = ["tell me a story", "write a poem about the sun", "why is the sky blue ?", "say hello to the cat"]
PROMPTS = ["Plan a rainy Sunday.", "Write a short poem about the sea.", "Why is the sky blue?",
           "Give me three tips for a job interview."]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", default=None, help="A folder written by `moalign train <method>`.")
    source.add_argument("--tiny", action="store_true", help="Build a MOPO folder on the tiny random Llama.")
    source.add_argument("--smollm2", action="store_true", help="Build a MOPO folder on SmolLM2-135M-Instruct.")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="Write the numbers to this file.")
    return p.parse_args(argv)


def build_folder(cli: argparse.Namespace, out: Path) -> tuple[Path, str]:
    """A MOPO-style folder (two low-rank heads ``helpful``/``short``, LoRA r 8), both drawn at random so the
    weights change the answers; returns the folder and a description of its base model."""
    from peft import LoraConfig

    from moalign.models import MultiHeadCausalLM, MultiHeadConfig

    base, tokenizer, described = load_model(cli)
    if cli.tiny:  # a folder must name its base model: save the tiny one next to it
        base.save_pretrained(out.parent / "base")
        tokenizer.save_pretrained(out.parent / "base")
        base.config.name_or_path = str(out.parent / "base")
    model = MultiHeadCausalLM(base, MultiHeadConfig(num_heads=2, head_names=["helpful", "short"], head_rank=8),
                              lora_config=LoraConfig(r=8, lora_alpha=16))
    scale = 0.3 if cli.tiny else 0.02  # tiny: large enough that the weights change the answers
    g = torch.Generator().manual_seed(cli.seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name or name.endswith((".A", ".B")):
                param.copy_(torch.randn(param.shape, generator=g) * scale)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    torch.save({"method": "mopo", "objectives": ["helpful", "short"]}, out / "mopo_state.pt")
    return out, described + ", two random low-rank heads, random LoRA r 8"


def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(url + "/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as response:
        return json.loads(response.read())


def body(prompt: str, weights: tuple[float, ...], max_tokens: int) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": prompt}], "weights": list(weights), "max_tokens": max_tokens,
            "temperature": 0}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    cli = parse_args(argv)
    setup_process(cli)
    from moalign.inference import load_policy
    from moalign.inference.server import BackgroundServer, PolicyServer, create_app

    tmp = tempfile.TemporaryDirectory()
    if cli.model:
        folder, described = Path(cli.model), f"trained folder {cli.model}"
    else:
        folder, described = build_folder(cli, Path(tmp.name) / "mopo")
    prompts = TINY_PROMPTS if cli.tiny else PROMPTS
    policy = load_policy(folder)
    server = PolicyServer(policy, max_new_tokens_limit=max(cli.max_new_tokens, 1), precision=cli.precision)
    server.load()
    weights = policy.check_weights([1 / len(policy.weight_names)] * len(policy.weight_names))
    print(f"{described}; method {policy.method}; weights for {', '.join(policy.weight_names)}; "
          f"{torch.get_num_threads()} threads; load average {os.getloadavg()[0]:.1f}", flush=True)

    def plain() -> tuple[float, str]:
        start = time.perf_counter()
        text = policy.generate([prompts[0]], weights, max_new_tokens=cli.max_new_tokens, precision=cli.precision)[0]
        return time.perf_counter() - start, text

    with BackgroundServer(create_app(server)) as url:
        def served() -> tuple[float, dict[str, Any]]:
            start = time.perf_counter()
            answer = post(url, body(prompts[0], weights, cli.max_new_tokens))
            return time.perf_counter() - start, answer

        plain(), served()  # warm-up
        plain_s, served_s, tokens = [], [], None
        for r in range(cli.rounds):
            order = (plain, served) if r % 2 == 0 else (served, plain)
            for run in order:
                seconds, out = run()
                if run is plain:
                    plain_s.append(seconds)
                    text = out
                else:
                    served_s.append(seconds)
                    answer, tokens = out["choices"][0]["message"]["content"], out["usage"]["completion_tokens"]
            assert answer == text, f"the server answered {answer!r}, generate {text!r}"
        ratio = statistics.median(served_s) / statistics.median(plain_s)
        paired = statistics.median(s - p for s, p in zip(served_s, plain_s))
        print(f"latency per request, {tokens} new tokens, median of {cli.rounds}: generate "
              f"{statistics.median(plain_s) * 1000:.1f} ms (range {min(plain_s) * 1000:.0f}-{max(plain_s) * 1000:.0f}), "
              f"server {statistics.median(served_s) * 1000:.1f} ms (range {min(served_s) * 1000:.0f}-"
              f"{max(served_s) * 1000:.0f}), ratio {ratio:.3f} (target <= 1.1); median paired difference "
              f"{paired * 1000:+.1f} ms", flush=True)

        jobs = [(prompts[i % len(prompts)], WEIGHTS[(i + i // 4) % len(WEIGHTS)]) for i in range(16)]
        start = time.perf_counter()
        sequential = {job: policy.generate([job[0]], job[1], max_new_tokens=cli.max_new_tokens,
                                           precision=cli.precision)[0] for job in set(jobs)}
        sequential_s = time.perf_counter() - start
        barrier = threading.Barrier(len(jobs))

        def send(job: tuple[str, tuple[float, ...]]) -> str:
            barrier.wait()
            return post(url, body(job[0], job[1], cli.max_new_tokens))["choices"][0]["message"]["content"]

        start = time.perf_counter()
        with ThreadPoolExecutor(len(jobs)) as pool:
            answers = list(pool.map(send, jobs))
        concurrent_s = time.perf_counter() - start
    wrong = [i for i, (job, a) in enumerate(zip(jobs, answers)) if a != sequential[job]]
    distinct = len({sequential[j] for j in jobs})
    print(f"cross-talk: 16 concurrent requests, 4 weight vectors x 4 prompts ({distinct} distinct answers): "
          f"{16 - len(wrong)}/16 equal the sequential answer for their weights; 16 requests in {concurrent_s:.2f} s "
          f"(the {len(sequential)} distinct sequential answers took {sequential_s:.2f} s)", flush=True)
    result = {"model": described, "method": policy.method, "threads": torch.get_num_threads(),
              "max_new_tokens": cli.max_new_tokens, "new_tokens": tokens, "precision": cli.precision,
              "generate_s": plain_s, "server_s": served_s, "ratio": ratio, "paired_difference_s": paired, "cross_talk_wrong": wrong,
              "distinct_answers": distinct, "concurrent_s": concurrent_s}
    if cli.json:
        Path(cli.json).write_text(json.dumps(result, indent=2))
    tmp.cleanup()
    if wrong:
        raise SystemExit(f"cross-talk: requests {wrong} got another weight's answer")
    return result


if __name__ == "__main__":
    main()
