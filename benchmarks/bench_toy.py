"""Benchmark: the continuous toy problem of the MOPO paper §2 / App. A.1 (Figures 1 and 7) for one reward set.

Runs :func:`moalign.experiments.toy.run_toy` (DPO on D1/D2/DJ/D_C, the COP
oracle, MOPO), then prints the wall time, the CPU time and the HV-ratio table.
Every :class:`ToyConfig` field can be overridden on the command line, e.g.::

    .venv/bin/python benchmarks/bench_toy.py --set A
    .venv/bin/python benchmarks/bench_toy.py --set B --out runs/toy
    .venv/bin/python benchmarks/bench_toy.py --set A --seeds 1 --methods mopo --mopo_ratio_form sample
    .venv/bin/python benchmarks/bench_toy.py --set B --methods ham,sca,ric
    .venv/bin/python benchmarks/bench_toy.py --set A --methods mo_odpo,p_morl,rewarded_soups,odpo_soups,modpo
    .venv/bin/python benchmarks/bench_toy.py --set A --methods mopo --mopo_threshold_rule attained \
        --mopo_threshold_warmup_steps 200                                  # issue 10 (docs/toy.md)
    .venv/bin/python benchmarks/bench_toy.py --set A --seeds 1 --methods mopo --mopo_ratio_form sample_row \
        --mopo_tau 2 --mopo_constraint_estimator policy                    # estimate vs truth
"""

from __future__ import annotations

import time

import torch

from moalign.cli.main import parse_config_and_progress
from moalign.experiments.toy import ToyConfig, format_table, run_toy
from moalign.experiments.toy_weighted_likelihood import format_weighted_likelihood_table


def main(argv: list[str] | None = None) -> dict:
    torch.set_num_threads(1)
    config, progress = parse_config_and_progress(ToyConfig, argv, "benchmarks/bench_toy.py")
    start, cpu_start = time.perf_counter(), time.process_time()
    result = run_toy(config, progress=progress)
    total, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    cfg = result["config"]
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in result["timings_s"].items() if k != "total")
    print(f"\ntoy set {cfg['set']}: N={cfg['num_rows']} rows x {cfg['seeds']} seeds, {cfg['num_actions']} actions, "
          f"methods {cfg['methods']}")
    print(f"wall time {total:.1f} s ({timing}); process CPU time {cpu:.1f} s "
          f"(the machine is shared, so wall time depends on its load)")
    print(f"outputs: {cfg['out']}/toy_{cfg['set']}.json, {cfg['out']}/toy_{cfg['set']}.png")
    print(f"HV reference point {[round(v, 4) for v in result['reference_point']]}, "
          f"true-front HV {result['true_front']['hypervolume']:.6g}\n")
    print(format_table(result))
    if "mopo_dual" in result:  # issue 10: lambda and the constraint estimate vs the truth (toy_dual.py)
        dual = result["mopo_dual"]
        print(f"\nMOPO dual ({dual['threshold_rule']} rule, {dual['constraint_estimator']} estimator, "
              f"warm-up {dual['threshold_warmup_steps']} steps):")
        for primary, s in dual["summary"].items():
            errs = ", ".join(f"{k} mean {v['mean']:+.4f} / mean|.| {v['mean_abs']:.4f} / max|.| {v['max_abs']:.4f}"
                             for k, v in s["errors"].items())
            print(f"  primary {primary}: lambda final <= {s['lambda_final_max']:.3g}, max over steps "
                  f"{s['lambda_max_max']:.3g}; estimate - truth: {errs}")
    if "weighted_likelihood" in result:  # HaM, SCA, RiC (toy_weighted_likelihood.py)
        print("\n" + format_weighted_likelihood_table(result))
    if "odpo_settings" in result:  # MO-ODPO and its baselines (toy_odpo_run.py): their rows are in the table above
        print(f"\nMO-ODPO/P-MORL/soups/MODPO settings: {result['odpo_settings']}")
    return result


if __name__ == "__main__":
    main()
