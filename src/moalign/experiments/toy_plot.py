"""Figure 1 / Figure 7 of mopo-paper for the toy problem: the true front and each method's policies."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

STYLE = {
    "DPO-D1": ("tab:blue", "s"), "DPO-D2": ("tab:orange", "s"), "DPO-DJ": ("tab:green", "D"),
    "DPO-DC": ("tab:purple", "P"), "DPO-DC sweep": ("tab:pink", "."), "COP": ("black", "x"),
    "COP (relative b)": ("tab:gray", "+"), "MOPO": ("tab:red", "o"), "uniform reference": ("tab:olive", "*"),
    "HaM (K=2)": ("tab:brown", "^"), "HaM (K=5)": ("tab:brown", "v"), "HaM (K=10)": ("tab:brown", "<"),
    "SCA (5 paper weights)": ("tab:cyan", "h"), "SCA (11 weights)": ("tab:cyan", "."), "RiC": ("gold", "d"),
    # the online methods (toy_odpo_run.py): the 11-weight sets in colour, the 101-weight sets as small dots of the same colour
    "MO-ODPO (11 w)": ("crimson", "p"), "MO-ODPO (101 w)": ("crimson", "."),
    "P-MORL (11 w)": ("darkgreen", "H"), "P-MORL (101 w)": ("darkgreen", "."),
    "Rewarded Soups (11 w)": ("navy", "8"), "Rewarded Soups (101 w)": ("navy", "."),
    "ODPO Soups (11 w)": ("darkorange", ">"), "ODPO Soups (101 w)": ("darkorange", "."),
    "MODPO (11 w)": ("magenta", "X"), "MODPO (101 w)": ("magenta", "."),
}


def plot_toy(result: dict, path: str | Path) -> None:
    """Scatter every method's policies in (E r1, E r2) space over the true front; one seed's policies."""
    fig, ax = plt.subplots(figsize=(7.0, 5.2))
    front = np.asarray(result["true_front"]["vertices"])
    ax.plot(front[:, 0], front[:, 1], color="0.3", lw=2.0, label="true Pareto front", zorder=1)
    ref = result["reference_point"]
    ax.scatter([ref[0]], [ref[1]], marker="v", color="0.5", s=30, label="HV reference point", zorder=1)
    seed = result["config"]["seed"]
    singles = [n for n, m in result["methods"].items() if m["policies_per_seed"] == 1]
    sweeps = [n for n, m in result["methods"].items() if m["policies_per_seed"] > 1]
    for name in sweeps + singles:  # single policies last and larger, so they stay visible on the front
        info = result["methods"][name]
        pts = np.array([p["expected_rewards"] for p in result["policies"]
                        if p["method"] == name and p["params"].get("seed", seed) == seed])
        if pts.size == 0:
            continue
        color, marker = STYLE.get(name, ("tab:cyan", "o"))
        label = f"{name} (HV {info['hv_ratio_mean']:.3f})"
        single = name in singles
        ax.scatter(pts[:, 0], pts[:, 1], color=color, marker=marker, s=75 if single else 28, label=label,
                   edgecolors="black" if single else None, linewidths=0.6 if single else None,
                   zorder=4 if single else 2, alpha=0.85)
    # Zoom on the box between the reference point and the ideal point (Set A's uniform policy sits far below).
    lo, hi = np.asarray(ref), np.asarray(result["true_front"]["ideal"])
    pad = 0.06 * (hi - lo)
    ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
    ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
    outside = sum(1 for p in result["policies"] if p["params"].get("seed", seed) == seed
                  and np.any(np.asarray(p["expected_rewards"]) < lo - pad))
    if outside:
        ax.text(0.99, 0.01, f"{outside} policies below/left of the axes are not shown", transform=ax.transAxes,
                ha="right", va="bottom", fontsize=7, color="0.4")
    ax.set_xlabel(r"$E[r_1]$")
    ax.set_ylabel(r"$E[r_2]$")
    ax.set_title(f"Toy problem, set {result['config']['set']} (seed {seed}; HV ratio = mean over seeds)")
    ax.legend(fontsize=7, loc="lower left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
