"""Benchmark: how much slower moalign's CPU training gets beside one other CPU-bound process, with and without
:func:`moalign.runtime.configure_cpu_threads`.

One *unit* of work is ``--train-steps`` LoRA training steps of SmolLM2-135M-Instruct (forward + backward +
AdamW on a ``--batch-size`` x ``--seq-len`` batch, LoRA r=16 on all linear layers as in the demo) followed by
a greedy generation of ``--gen-tokens`` tokens for ``--gen-prompts`` prompts: the two kinds of work of
``moalign demo``. Each variant runs in its own worker process (the OpenMP runtime reads its settings when
``import torch`` loads it), loads the model once and then times units on command, so that the variants
are measured interleaved, round by round, in the same conditions:

* ``before``: libgomp's defaults (the wait-policy variables of :data:`moalign.runtime.WAIT_ENV_VARS` and the
  thread-count variables are removed from the worker's environment; the fix is not called);
* ``after``: the same environment, then ``configure_cpu_threads()`` before ``import torch`` (as ``moalign``'s
  ``main`` does);
* optional, for the docs: ``one_thread`` (defaults + ``torch.set_num_threads(1)``),
  ``spin<N>`` (``GOMP_SPINCOUNT=N``; libgomp's default is 300000).

``--demo`` times whole ``moalign demo --quick`` runs instead (see :class:`DemoRun`).

Per round and variant: one unit idle, then one unit while a competing process runs (``--competitor busy``:
a one-thread Python busy loop; ``matmul``: a numpy matmul loop with numpy's default threads). Prints every
measurement with the 1-minute load average and the CPU the rest of the machine used meanwhile
("others", from ``/proc/stat``: the machine may be shared; > 0.3 cores is flagged as perturbed), then
per variant the median idle and loaded times and the ratio loaded/idle. ``--json FILE`` writes everything.

    .venv/bin/python benchmarks/bench_contention.py                      # before/after, 3 rounds, ~2-3 min
    .venv/bin/python benchmarks/bench_contention.py --variants before after one_thread spin10000 --rounds 2
    .venv/bin/python benchmarks/bench_contention.py --competitor matmul
    .venv/bin/python benchmarks/bench_contention.py --demo --rounds 1   # the real demo, ~12 min
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from moalign.runtime import THREAD_ENV_VARS, WAIT_ENV_VARS, configure_cpu_threads  # noqa: E402  (no torch)

VARIANTS = {
    "before": "defaults (fix not called)",
    "after": "configure_cpu_threads() before import torch",
    "one_thread": "defaults + torch.set_num_threads(1)",
}
#: further variants for exploring: ``spin<N>`` runs with GOMP_SPINCOUNT=N (libgomp's default is 300000)


def describe(variant: str) -> str:
    if variant.startswith("spin") and variant[4:].isdigit():
        return f"GOMP_SPINCOUNT={variant[4:]}"
    return VARIANTS[variant]


def variant_name(text: str) -> str:
    describe(text)  # KeyError on an unknown name
    return text
RESULT = "RESULT "
#: a measurement during which the rest of the machine used more than this many cores is flagged as perturbed
PERTURBED_CORES = 0.3
COMPETITORS = {
    "busy": "import signal, sys\nn = 0\nsignal.signal(signal.SIGTERM, lambda *a: (print(n), sys.exit(0)))\n"
            "while True:\n    n += 1\n",
    "matmul": "import signal, sys\nimport numpy as np\nn = 0\n"
              "signal.signal(signal.SIGTERM, lambda *a: (print(n), sys.exit(0)))\n"
              "a = np.random.rand(512, 512)\nwhile True:\n    a @ a\n    n += 1\n",
}


# ---------------------------------------------------------------------------- worker process
def worker(variant: str, cli: argparse.Namespace) -> None:
    """Load the model, then answer each line on stdin with one timed unit (a ``RESULT {json}`` line)."""
    if variant == "after":
        setup = configure_cpu_threads()
        assert setup.applied, setup
    import torch  # noqa: PLC0415  (after the fix, on purpose)

    if variant == "one_thread":
        torch.set_num_threads(1)
    from peft import LoraConfig, get_peft_model

    from moalign.models import load_smollm2

    torch.manual_seed(0)
    model, tokenizer = load_smollm2(padding_side="left")
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, tokenizer.vocab_size, (cli.batch_size, cli.seq_len),
                        generator=torch.Generator().manual_seed(0))
    words = "Tell me something about the sea and the ships on it".split()
    prompts = tokenizer([" ".join(words[: 4 + i % 8]) for i in range(cli.gen_prompts)], return_tensors="pt",
                        padding=True)

    def unit() -> dict[str, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        model.train()
        for _ in range(cli.train_steps):
            model(input_ids=ids, labels=ids).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        train_s = time.perf_counter() - wall
        model.eval()
        with torch.no_grad():
            model.generate(**prompts, max_new_tokens=cli.gen_tokens, min_new_tokens=cli.gen_tokens, do_sample=False,
                           pad_token_id=tokenizer.eos_token_id)
        total = time.perf_counter() - wall
        return {"total_s": total, "train_s": train_s, "gen_s": total - train_s, "cpu_s": time.process_time() - cpu}

    unit()  # warm-up
    info = {"threads": torch.get_num_threads(), "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
            "GOMP_SPINCOUNT": os.environ.get("GOMP_SPINCOUNT")}
    print(RESULT + json.dumps({"ready": info}), flush=True)
    for _ in sys.stdin:
        print(RESULT + json.dumps(unit()), flush=True)


# ---------------------------------------------------------------------------- orchestration
class Worker:
    def __init__(self, variant: str, argv: list[str]) -> None:
        env = {k: v for k, v in os.environ.items() if k not in WAIT_ENV_VARS + THREAD_ENV_VARS}
        if variant.startswith("spin"):
            env["GOMP_SPINCOUNT"] = variant[4:]
        self.variant = variant
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", variant, *argv], env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.pid = self.proc.pid
        self.info = self._read()["ready"]

    def _read(self) -> dict[str, Any]:
        for line in self.proc.stdout:
            if line.startswith(RESULT):
                return json.loads(line[len(RESULT):])
        raise RuntimeError(f"worker {self.variant} exited with {self.proc.wait()}")

    def unit(self) -> dict[str, float]:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


class DemoRun:
    """``moalign demo --quick`` in a fresh folder as the unit (``--demo``): one CLI process per unit.

    The CLI calls ``configure_cpu_threads()`` itself, so ``before`` (and ``one_thread``) set libgomp's own default
    ``GOMP_SPINCOUNT=300000`` explicitly, which the fix leaves alone; ``after`` runs with neither set.
    """

    ENV = {"before": {"GOMP_SPINCOUNT": "300000"}, "after": {},
           "one_thread": {"GOMP_SPINCOUNT": "300000", "OMP_NUM_THREADS": "1"}}

    def __init__(self, variant: str, argv: list[str]) -> None:
        env = {k: v for k, v in os.environ.items() if k not in WAIT_ENV_VARS + THREAD_ENV_VARS}
        env.update(self.ENV[variant] if variant in self.ENV else {"GOMP_SPINCOUNT": variant[4:]})
        self.variant, self.env, self.info = variant, env, {k: env.get(k) for k in WAIT_ENV_VARS + THREAD_ENV_VARS}

    def unit(self) -> dict[str, float]:
        with tempfile.TemporaryDirectory(prefix="bench_contention_demo_") as out:
            cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
            wall = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "moalign", "demo", "--quick", "--out", out], env=self.env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            total = time.perf_counter() - wall
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if done.returncode:
                raise RuntimeError(f"moalign demo failed ({done.returncode}):\n{done.stderr[-3000:]}")
            timings = json.loads((Path(out) / "summary.json").read_text())["timings_s"]
        return {"total_s": total, "train_s": timings["train"], "gen_s": timings["sample"] + timings["evaluate"],
                "cpu_s": after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime}

    def close(self) -> None:
        pass


class Competitor:
    """A CPU-bound process beside the worker; reports how many loop iterations per second it managed."""

    def __init__(self, kind: str) -> None:
        self.start = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-c", COMPETITORS[kind]], stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)  # let it start (numpy import) before the measurement

    def stop(self) -> float:
        self.cpu_s = process_cpu_s(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        return int(out.strip() or 0) / (time.perf_counter() - self.start)


def load1() -> float:
    return os.getloadavg()[0]


def busy_cpu_s() -> float:
    """CPU seconds all CPUs have been busy since boot (``/proc/stat``; NaN where it does not exist)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return float("nan")
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """utime + stime of a live process (``/proc/PID/stat``; NaN where unreadable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(worker: Worker | DemoRun, competitor_kind: str | None) -> dict[str, Any]:
    """One unit of ``worker``, idle or beside a competitor; with the CPU the rest of the machine used meanwhile."""
    load = load1()
    competitor = Competitor(competitor_kind) if competitor_kind else None
    busy, wall = busy_cpu_s(), time.perf_counter()
    competitor_cpu = process_cpu_s(competitor.proc.pid) if competitor else 0.0
    result = worker.unit()
    busy, wall = busy_cpu_s() - busy, time.perf_counter() - wall
    rate = competitor.stop() if competitor else None
    # CPU time of everything else on the machine (other users' jobs) during the unit, in cores
    mine = result["cpu_s"] + (competitor.cpu_s - competitor_cpu if competitor else 0.0)
    return {**result, "load1": load, "foreign_cores": max(0.0, busy - mine) / wall, "competitor_iter_per_s": rate}


def run(cli: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    started = time.perf_counter()
    workers = {}
    for variant in cli.variants:
        workers[variant] = (DemoRun if cli.demo else Worker)(variant, argv)
        print(f"{variant}: {describe(variant)}; worker ready {workers[variant].info}", flush=True)
    runs: list[dict[str, Any]] = []
    try:
        for r in range(cli.rounds):
            order = cli.variants if r % 2 == 0 else cli.variants[::-1]
            for variant in order:
                for condition in cli.conditions:
                    row = {"round": r, "variant": variant, "condition": condition,
                           **measure(workers[variant], cli.competitor if condition == "loaded" else None)}
                    runs.append(row)
                    rate = row["competitor_iter_per_s"]
                    print(f"round {r} {variant:>10} {condition:>6}: {row['total_s']:6.1f} s (train "
                          f"{row['train_s']:5.1f}, generate {row['gen_s']:5.1f}, CPU {row['cpu_s']:5.1f} s)  "
                          f"load1 {row['load1']:.2f}, others {row['foreign_cores']:.2f} cores"
                          + (f", competitor {rate:,.0f} it/s" if rate else ""), flush=True)
    finally:
        for w in workers.values():
            w.close()
    summary = {}
    for variant in cli.variants:
        times = {c: [x["total_s"] for x in runs if x["variant"] == variant and x["condition"] == c]
                 for c in ("idle", "loaded")}
        idle = statistics.median(times["idle"]) if times["idle"] else float("nan")
        loaded = statistics.median(times["loaded"]) if times["loaded"] else float("nan")
        summary[variant] = {"idle_s": times["idle"], "loaded_s": times["loaded"], "idle_median_s": idle,
                            "loaded_median_s": loaded, "ratio": loaded / idle,
                            "ratios_per_round": [b / a for a, b in zip(times["idle"], times["loaded"])]}
    unit = ("`moalign demo --quick` (train = its training stage, generate = sampling + evaluation)" if cli.demo else
            f"{cli.train_steps} train steps ({cli.batch_size}x{cli.seq_len} tokens) + greedy generation of "
            f"{cli.gen_tokens} tokens for {cli.gen_prompts} prompts")
    print(f"\nunit = {unit}; competitor: {cli.competitor}; {cli.rounds} rounds; "
          f"{time.perf_counter() - started:.0f} s in all")
    print(f"{'variant':>10}  {'idle (median)':>13}  {'loaded (median)':>15}  {'loaded/idle':>11}  per round")
    for variant, s in summary.items():
        per_round = ", ".join(f"{x:.2f}" for x in s["ratios_per_round"])
        print(f"{variant:>10}  {s['idle_median_s']:11.1f} s  {s['loaded_median_s']:13.1f} s  {s['ratio']:10.2f}x  "
              f"{per_round}")
    perturbed = [x for x in runs if x["foreign_cores"] > PERTURBED_CORES]
    print(f"{len(perturbed)} of {len(runs)} measurements ran while other jobs used > {PERTURBED_CORES} cores "
          "(column 'others' above): their times are not idle/one-competitor times")
    if "before" in summary:
        for variant, s in summary.items():
            if variant != "before":
                print(f"{variant} vs before: idle {s['idle_median_s'] / summary['before']['idle_median_s']:.2f}x, "
                      f"loaded {s['loaded_median_s'] / summary['before']['loaded_median_s']:.2f}x")
    return {"config": vars(cli), "runs": runs, "summary": summary, "cpus": os.cpu_count()}


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", type=variant_name, default=["before", "after"],
                        help=f"of {', '.join(VARIANTS)} and spin<N> (GOMP_SPINCOUNT=N)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--competitor", choices=list(COMPETITORS), default="busy")
    parser.add_argument("--conditions", nargs="+", choices=["idle", "loaded"], default=["idle", "loaded"],
                        help="measure only idle (e.g. the fix's cost when nothing else runs) or only loaded")
    parser.add_argument("--train-steps", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=48)
    parser.add_argument("--gen-prompts", type=int, default=8)
    parser.add_argument("--gen-tokens", type=int, default=16)
    parser.add_argument("--demo", action="store_true", help="time whole `moalign demo --quick` runs instead "
                        "(~1.5-2 min each idle; several times longer loaded without the fix)")
    parser.add_argument("--json", type=Path, default=None, help="also write all measurements here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# the flags a worker needs (its workload sizes)
WORKLOAD_FLAGS = ("--train-steps", "--batch-size", "--seq-len", "--gen-prompts", "--gen-tokens")


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    argv = list(sys.argv[1:] if argv is None else argv)
    cli = parse(argv)
    if cli.worker:
        worker(cli.worker, cli)
        return None
    sizes = [str(x) for flag in WORKLOAD_FLAGS for x in (flag, getattr(cli, flag[2:].replace("-", "_")))]
    result = run(cli, sizes)
    if cli.json:
        cli.json.parent.mkdir(parents=True, exist_ok=True)
        cli.json.write_text(json.dumps(result, indent=1, default=str))
    return result


if __name__ == "__main__":
    main()
