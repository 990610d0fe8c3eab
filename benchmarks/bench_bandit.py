"""Benchmark: the full §4.1 bandit sweep of the MOPO paper (Figure 4) on the CPU.

Runs :func:`moalign.experiments.bandit.run_bandit` (default: 5 datasets x
3 taus x 5 seeds x 20k steps, all 75 runs in one tensor program), then prints
the wall time, the throughput and the table of final action probabilities
(mean +- std over seeds). Every :class:`BanditConfig` field can be overridden
on the command line, e.g.::

    .venv/bin/python benchmarks/bench_bandit.py
    .venv/bin/python benchmarks/bench_bandit.py --lower_bound_eps 0 --out runs/bandit_eps0
    .venv/bin/python benchmarks/bench_bandit.py --lag_steps 0 --threshold_mode fixed --out runs/bandit_cop
    .venv/bin/python benchmarks/bench_bandit.py --threshold_rule paper --out runs/bandit_paper
    .venv/bin/python benchmarks/bench_bandit.py --threshold_rule primary_winrate --lower_bound_eps 0 --out runs/bandit_hyp

The same flags work with ``moalign synthetic bandit``. ``run_bandit`` itself runs with one
torch thread (see ``single_torch_thread``); ``main`` also sets it for the whole script.
"""

from __future__ import annotations

import time

import torch

from moalign.cli.main import parse_config_and_progress
from moalign.experiments.bandit import BanditConfig
from moalign.experiments.bandit_result import run_bandit


def main(argv: list[str] | None = None) -> dict:
    torch.set_num_threads(1)
    config, progress = parse_config_and_progress(BanditConfig, argv, "benchmarks/bench_bandit.py")
    start, cpu_start = time.perf_counter(), time.process_time()
    result = run_bandit(config, progress=progress)
    total, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    steps = result["total_steps"]
    print(f"\nbandit sweep: {len(config.datasets)} datasets x {len(config.taus)} taus x {config.seeds} seeds "
          f"= {result['runs']} runs x {steps} steps (chi_solver={config.chi_solver}, eps={config.lower_bound_eps}, "
          f"threshold_mode={config.threshold_mode}, threshold_rule={config.threshold_rule}, "
          f"lag_steps={config.lag_steps})")
    print(f"wall time: simulation {result['wall_time_s']:.2f} s, including JSON and PNG {total:.2f} s "
          f"(process CPU time {cpu:.2f} s; the machine is shared, so wall time depends on its load)")
    print(f"throughput: {steps / result['wall_time_s']:.0f} vectorised steps/s, "
          f"{result['run_steps_per_s']:.0f} run-steps/s")
    print(f"outputs: {config.out}/bandit.json, {config.out}/bandit.png\n")
    print("final action probabilities, mean ± std over seeds")
    print(f"{'dataset':8}{'tau':>6}   {'p(y1)':>15}{'p(y2)':>15}{'p(y3)':>15}{'lambda':>10}{'max':>8}{'b':>8}")
    for dataset, cells in result["final_probs"].items():
        for tau, cell in cells.items():
            probs = "".join(f"{m:>8.3f} ± {s:<5.3f}" for m, s in zip(cell["mean"], cell["std"]))
            lam = result["traces"]["lambda"][dataset][tau]["mean"][-1]
            b = result["traces"]["threshold"][dataset][tau]["mean"][-1]
            lam_max = result["max_lambda"][dataset][tau]["mean"]
            print(f"{dataset:8}{tau:>6}   {probs}{lam:>10.3f}{lam_max:>8.3f}{b:>8.3f}")
    return result


if __name__ == "__main__":
    main()
