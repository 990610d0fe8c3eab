"""Results of the §4.1 bandit sweep: the JSON summary, the exact COP targets, run and reload.

:func:`run_bandit` runs :func:`moalign.experiments.bandit.simulate`, summarises it
(:func:`summarise`: final probabilities, curves and traces as mean/std over seeds,
plus the exact COP solution at the initial threshold for comparison) and writes
``bandit.json`` and ``bandit.png``; :func:`load_bandit_result` reads it back.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch

from moalign.experiments.bandit import (
    ACTIONS,
    NUM_ACTIONS,
    NUM_OBJECTIVES,
    PHASE_NAMES,
    TRACE_NAMES,
    BanditConfig,
    full_data_win_rates,
    simulate,
    single_torch_thread,
    solve_cop,
    tau_key,
)


def _mean_std(values: torch.Tensor, digits: int = 6) -> dict[str, list]:
    """Mean and sample standard deviation over the seed dimension (dim 0)."""
    if values.shape[0] > 1 and values[0].numel():
        std = values.std(dim=0)
    else:
        std = torch.zeros_like(values[0])
    return {"mean": _rounded(values.mean(dim=0), digits), "std": _rounded(std, digits)}


def _rounded(values: torch.Tensor, digits: int) -> list:
    """Rounded nested list; NaN (a trace not yet defined at step 0) becomes None (JSON null)."""
    rounded = torch.round(values.double(), decimals=digits)
    return _nan_to_none(rounded.tolist())


def _nan_to_none(value: object) -> object:
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def summarise(config: BanditConfig, sim: dict[str, torch.Tensor], wall_time_s: float) -> dict:
    """The JSON-ready result: config, final probabilities, curves, traces and per-phase records (mean/std over seeds).

    ``phases[name]`` has one entry per lag phase (ending at ``phase_steps``): lambda at its end, the threshold b
    in force during it, the full-data G_hat of pi_psi at its end, and the means over the phase of the lower bound
    and of the mini-batch G_hat that the dual step compared with b; ``phase_constraint_met`` is the fraction of
    seeds whose phase-mean lower bound is within 1e-3 of b or above. ``reference_solutions`` holds exact
    solutions of other problems (the COP with the uniform reference at b^(0)), never the run's result.
    """
    dtype = getattr(torch, config.dtype)
    grid = {d: {tau_key(t): (i, j) for j, t in enumerate(config.taus)} for i, d in enumerate(config.datasets)}

    def per_cell(tensor: torch.Tensor) -> dict:
        return {d: {k: _mean_std(tensor[i, j]) for k, (i, j) in cells.items()} for d, cells in grid.items()}

    runs = len(config.datasets) * len(config.taus) * config.seeds
    return {
        "benchmark": "mopo-paper §4.1 context-free bandit (Figure 4)",
        "config": asdict(config),
        "total_steps": config.total_steps,
        "actions": list(ACTIONS),
        "primary_objective": config.primary_objective,
        "seeds": list(range(config.seed, config.seed + config.seeds)),
        "full_data_win_rates": {d: _rounded(full_data_win_rates(d, dtype), 6) for d in config.datasets},
        "logged_steps": sim["logged_steps"].tolist(),
        "final_probs": per_cell(sim["final_probs"]),
        "final_lambda": per_cell(sim["lambda"][..., -1]),
        "max_lambda": per_cell(sim["lambda_max"]),
        "curves": per_cell(sim["probs"]),
        "traces": {name: per_cell(sim[name]) for name in TRACE_NAMES},
        "phase_steps": sim["phase_steps"].tolist(),
        "phases": {name: per_cell(sim[f"phase_{name}"]) for name in PHASE_NAMES},
        "phase_constraint_met": per_cell((sim["phase_lower_bound"] >= sim["phase_threshold"] - 1e-3).double()),
        "reference_solutions": {
            "note": "NOT results of the run: exact solutions of related problems, for comparison only.",
            "exact_cop_uniform_reference_initial_threshold": _initial_cop(config, sim["threshold"][:, :, 0, 0]),
        },
        "runs": runs,
        "wall_time_s": round(wall_time_s, 3),
        "run_steps_per_s": round(runs * config.total_steps / wall_time_s, 1),
    }


def _initial_cop(config: BanditConfig, thresholds: torch.Tensor) -> dict:
    """Exact COP solution (uniform reference, b = b^(0)) per (dataset, tau): the target of the first phase.

    With ``lag_steps=0`` and ``threshold_mode='fixed'`` it is the exact answer the run should approach
    (full data; mini-batches add estimation bias). ``None`` where b^(0) is infeasible.
    """
    uniform = torch.full((NUM_ACTIONS,), 1.0 / NUM_ACTIONS, dtype=torch.float64)
    q_idx = [k for k in range(NUM_OBJECTIVES) if k != config.primary_objective]
    table: dict[str, dict] = {}
    for i, name in enumerate(config.datasets):
        rates = full_data_win_rates(name)
        table[name] = {}
        for j, tau in enumerate(config.taus):
            try:
                probs = solve_cop(rates[:, config.primary_objective], rates[:, q_idx[0]], uniform, tau,
                                  float(thresholds[i, j]))
                table[name][tau_key(tau)] = _rounded(probs, 6)
            except ValueError:
                table[name][tau_key(tau)] = None
    return table


def run_bandit(config: BanditConfig, progress: bool = True) -> dict:
    """Run the sweep, write ``bandit.json`` and ``bandit.png`` to ``config.out``, return the result dict."""
    from moalign.experiments.bandit_plot import plot_bandit

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    with single_torch_thread():  # see single_torch_thread: one thread is ~40x faster on a loaded 2-core machine
        start = time.perf_counter()
        sim = simulate(config, progress=progress)
        result = summarise(config, sim, time.perf_counter() - start)
    (out / "bandit.json").write_text(json.dumps(result, indent=1, allow_nan=False))
    plot_bandit(result, out / "bandit.png")
    return result


def load_bandit_result(path: str | Path) -> dict:
    """Reload a ``bandit.json`` written by :func:`run_bandit` (a directory or the file itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / "bandit.json"
    if not path.is_file():
        raise FileNotFoundError(f"no bandit result at {path}")
    result = json.loads(path.read_text())
    missing = {"config", "final_probs", "curves", "traces", "logged_steps"} - set(result)
    if missing:
        raise ValueError(f"{path}: not a bandit result, missing keys {sorted(missing)}")
    return result
