"""MOPO's policies: its heads, steered with one weight per objective (load_policy: ``HeadsFamily``).

:func:`compare_policies` is what ``moalign compare`` evaluates: the steering grid with the demo's divergence
(the grid's corners are the heads).
"""

from __future__ import annotations

from typing import Any

from moalign.methods.spec import PolicyContext


def compare_policies(ctx: PolicyContext) -> list[tuple[Any, list]]:
    """The heads steered at every weight vector of the grid."""
    from moalign.eval.policies import Policy
    from moalign.experiments.demo import DemoConfig

    divergence = DemoConfig().steering_divergence
    return [(ctx.multihead(ctx.models[0]),
             [(Policy.steered(w, divergence=divergence), None, list(w)) for w in ctx.grid])]
