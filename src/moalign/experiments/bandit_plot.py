"""Figure 4 of mopo-paper (§4.1): learning curves of the bandit's action probabilities.

Laid out as the paper's figure is read: one column per dataset (D1..D5), one
row per tau; in each panel the mean probability of each action over the
logged steps, shaded +-1 standard deviation over the seeds.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ACTION_COLOURS = ("tab:blue", "tab:orange", "tab:green")


def plot_bandit(result: dict, path: str | Path) -> Path:
    """Draw the ``curves`` of a :func:`moalign.experiments.bandit.run_bandit` result to ``path`` (PNG)."""
    datasets = list(result["curves"])
    taus = list(result["curves"][datasets[0]])
    steps = np.asarray(result["logged_steps"])
    actions = result["actions"]
    fig, axes = plt.subplots(len(taus) + 1, len(datasets), figsize=(2.6 * len(datasets), 2.2 * (len(taus) + 1)),
                             sharex=True, squeeze=False)
    for col, dataset in enumerate(datasets):
        for row, tau in enumerate(taus):
            ax = axes[row, col]
            curve = result["curves"][dataset][tau]
            mean, std = np.asarray(curve["mean"]), np.asarray(curve["std"])
            for a, (name, colour) in enumerate(zip(actions, ACTION_COLOURS)):
                ax.plot(steps, mean[:, a], color=colour, lw=1.2, label=name)
                ax.fill_between(steps, mean[:, a] - std[:, a], mean[:, a] + std[:, a], color=colour, alpha=0.25,
                                lw=0)
            ax.set_ylim(-0.02, 1.02)
            if col:
                ax.tick_params(labelleft=False)
            ax.grid(alpha=0.3)
            if row == 0:
                ax.set_title(dataset)
            if col == 0:
                ax.set_ylabel(f"tau = {tau}\nprobability")
        ax = axes[len(taus), col]  # lambda per tau (mean over seeds): bounded or diverging
        for tau in taus:
            ax.plot(steps, np.asarray(result["traces"]["lambda"][dataset][tau]["mean"], float), lw=1.2,
                    label=f"tau = {tau}")
        ax.grid(alpha=0.3)
        ax.set_xlabel("step")
        if col == 0:
            ax.set_ylabel("lambda (mean)")
    axes[0, -1].legend(loc="center right", fontsize=8)
    axes[len(taus), -1].legend(loc="upper left", fontsize=7)
    primary = result.get("primary_objective")
    config = result.get("config", {})
    setting = ", ".join(f"{k} {config[k]}" for k in ("threshold_rule", "lower_bound_eps") if k in config)
    fig.suptitle(f"MOPO on the §4.1 bandit: action probabilities (mean ± 1 std over {len(result['seeds'])} seeds; "
                 f"primary = objective {primary + 1 if primary is not None else '?'}"
                 f"{'; ' + setting if setting else ''})", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
