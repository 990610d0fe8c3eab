"""A test-only method, weighted-sum DPO, defined outside moalign and plugged in with one call.

DPO on pairs labelled by a fixed weight vector ``w``: pair ``(a, b)`` has the preference vector ``p`` (``p_k``: how
strongly ``a`` beats ``b`` on objective k); ``a`` is the chosen answer when ``w . p > w . (1 - p)`` (the shared rule
:func:`moalign.core.pairs.weighted_pair_labels`, ties left out). Everything a method needs is here -- config,
trainer, tabular version on the toy problem, policy family, compare facts -- and :data:`METHOD` declares it;
``register_method(METHOD)`` is the whole diff to make moalign use it (docs/adding_a_method.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from moalign.core.losses import dpo_loss
from moalign.core.pairs import weighted_pair_labels
from moalign.inference.families import HeadsFamily
from moalign.methods.spec import CompareFacts, PolicyContext, ToyEntry, TrainingMethod
from moalign.trainers.base_config import MultiObjectiveConfig
from moalign.trainers.base_trainer import MultiObjectiveTrainer


# ---------------------------------------------------------------- config and trainer
@dataclass
class WSDPOConfig(MultiObjectiveConfig):
    """Weighted-sum DPO: one fixed weight vector scalarises the pair labels."""

    weights: list[float] | None = field(default=None, metadata={
        "help": "The weight vector over the objectives (None: equal weights)."})
    beta: float = field(default=0.1, metadata={"help": "DPO beta."})


class WSDPOTrainer(MultiObjectiveTrainer):
    """One head trained by DPO on the weighted labels; no state of its own."""

    method_name = "wsdpo"
    data_kind = "pairwise"

    @classmethod
    def head_names_for(cls, config: WSDPOConfig, objectives: list[str]) -> list[str]:
        return ["wsdpo"]

    def label_weights(self) -> torch.Tensor:
        k = len(self.objectives)
        return torch.tensor(self.args.weights or [1.0 / k] * k, dtype=torch.float32)

    def method_loss(self, model: Any, inputs: dict[str, torch.Tensor], mode: str) -> torch.Tensor:
        hidden = self.shared_hidden_states(model, inputs)
        policy = self.policy_logps(model, inputs, hidden)[0]  # (2B,): the B first answers, then the B second
        reference = self.reference_logps(model, inputs, hidden).to(policy)
        half = policy.shape[0] // 2
        p = inputs["preference"][:half].to(policy)
        a_wins, used, _, _ = weighted_pair_labels(p, 1 - p, self.label_weights().to(policy))
        a, b = slice(0, half), slice(half, 2 * half)
        chosen = torch.where(a_wins, policy[a], policy[b])
        rejected = torch.where(a_wins, policy[b], policy[a])
        ref_chosen = torch.where(a_wins, reference[a], reference[b])
        ref_rejected = torch.where(a_wins, reference[b], reference[a])
        losses, _, _ = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta=self.args.beta)
        self.record("wsdpo/used_pairs", float(used.float().mean()), mode)
        return (losses * used).sum() / used.sum().clamp_min(1)


# ---------------------------------------------------------------- the tabular version on the toy problem
TOY_WEIGHTS = ((1.0, 0.0), (0.7, 0.3), (0.5, 0.5), (0.3, 0.7), (0.0, 1.0))
TOY_CONTEXTS = 11  # context nodes of the tabular policies (the rows per cell of a 201-node table are too few)


def train_tabular(rows: Any, weights: np.ndarray, num_actions: int, beta: float, steps: int, seed: int) -> np.ndarray:
    """Tabular DPO on the toy's pairwise rows, one policy per weight vector: ``(W, 201, A)`` probabilities.

    The policy of context node c (of :data:`TOY_CONTEXTS` nodes; each row's x goes to the nearest) is
    ``softmax(theta_c)`` over the action grid, the reference the toy's uniform density; the label of a row is
    ``w . I > w . (1 - I)`` with its two BT labels ``I``. The 201 evaluation contexts take their nearest node's policy.
    """
    from moalign.experiments.toy_problem import NUM_CONTEXTS, cell_widths, context_grid, nearest_node

    node = torch.as_tensor(nearest_node(rows.x, TOY_CONTEXTS))
    first = torch.as_tensor(nearest_node(rows.y, num_actions))
    second = torch.as_tensor(nearest_node(rows.y_other, num_actions))
    labels = torch.as_tensor(rows.labels)
    w = torch.as_tensor(np.asarray(weights, float))[:, None, :]  # (W, 1, K)
    a_wins, used, _, _ = weighted_pair_labels(labels[None], 1 - labels[None], w)  # (W, N)
    log_ref = torch.log(torch.as_tensor(cell_widths(num_actions)))
    gen = torch.Generator().manual_seed(seed)
    theta = torch.nn.Parameter(0.01 * torch.randn(len(weights), TOY_CONTEXTS, num_actions, generator=gen,
                                                  dtype=torch.float64))
    opt = torch.optim.Adam([theta], lr=0.05)
    for _ in range(steps):
        log_ratio = torch.log_softmax(theta + log_ref, -1) - log_ref  # (W, C, A)
        h_first, h_second = log_ratio[:, node, first], log_ratio[:, node, second]
        chosen, rejected = torch.where(a_wins, h_first, h_second), torch.where(a_wins, h_second, h_first)
        zero = torch.zeros(())
        losses, _, _ = dpo_loss(chosen, rejected, zero, zero, beta=beta)
        loss = ((losses * used).sum(-1) / used.sum(-1).clamp_min(1)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        probs = torch.softmax(theta + log_ref, -1).numpy()
    return probs[:, nearest_node(context_grid(NUM_CONTEXTS), TOY_CONTEXTS)]


def run_toy(run: Any) -> None:
    """The toy entry point: every seed's pairwise rows, five weight vectors, policies labelled ``WS-DPO``."""
    steps = 100 if run.cfg.quick else 500
    for index, seed in enumerate(run.seeds):
        probs = train_tabular(run.pairwise_rows(index), np.array(TOY_WEIGHTS), run.cfg.num_actions,
                              beta=0.1, steps=steps, seed=seed)
        for w, p in zip(TOY_WEIGHTS, probs):
            run.add("WS-DPO", {"seed": seed, "w": list(w)}, p)


# ---------------------------------------------------------------- policy family and compare facts
class FixedWeightFamily(HeadsFamily):
    """One policy, trained for one weight vector: every request gets it, with a note when ``w`` differs."""

    kind = "fixed"

    @property
    def weight_names(self) -> list[str]:
        return list(self.folder.objectives)

    def coefficients(self, weights: tuple[float, ...]) -> tuple[list[float], str | None]:
        trained = self.folder.setting("weights") or [1.0 / len(weights)] * len(weights)
        same = all(math.isclose(a, b, abs_tol=1e-9) for a, b in zip(trained, weights))
        return [1.0], None if same else f"trained for the fixed weights {list(trained)} only"


def compare_policies(ctx: PolicyContext) -> list[tuple[Any, list]]:
    """``moalign compare`` evaluates the one head, which carries no weight vector of the grid."""
    from moalign.eval.policies import Policy

    return [(ctx.multihead(ctx.models[0]), [(Policy.from_head(0, name="head:wsdpo"), None, None)])]


METHOD = TrainingMethod(
    name="wsdpo",
    title="WS-DPO",
    description="weighted-sum DPO (test-only plug-in): DPO on pairs labelled by w . preference for a fixed w",
    config=WSDPOConfig,
    trainer=WSDPOTrainer,
    tuning_grid=(("learning_rate", (3e-4, 1e-3)), ("beta", (0.05, 0.2))),
    family=FixedWeightFamily,
    toy=ToyEntry(run=run_toy, default=False, pairwise_rows=True),
    compare=CompareFacts(policies=compare_policies),
)
