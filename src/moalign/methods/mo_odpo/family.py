"""MO-ODPO's policies: the one model, the weights in the system instruction (load_policy:
``moalign.inference.conditioned.PromptConditionedFamily``).

:func:`compare_policies` is what ``moalign compare`` evaluates: every weight vector of the grid as its prompt.
"""

from __future__ import annotations

from typing import Any

from moalign.methods.spec import PolicyContext


def compare_policies(ctx: PolicyContext) -> list[tuple[Any, list]]:
    """The multi-head model conditioned on each grid weight vector."""
    from moalign.data.conditioning import load_conditioning
    from moalign.eval.policies import Policy

    spec = load_conditioning(ctx.models[0], "mo_odpo")
    return [(ctx.multihead(ctx.models[0]), [(Policy.conditioned(w, spec), None, list(w)) for w in ctx.grid])]
