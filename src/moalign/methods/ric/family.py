"""RiC's policies: the one model, the preference mapped to target rewards in the prompt (load_policy:
``moalign.inference.conditioned.RewardConditionedFamily``).

:func:`compare_policies` is what ``moalign compare`` evaluates: every weight vector of the grid as its prompt.
"""

from __future__ import annotations

from typing import Any

from moalign.methods.spec import PolicyContext


def compare_policies(ctx: PolicyContext) -> list[tuple[Any, list]]:
    """The model with each grid preference written into the prompt (scored on the plain prompt)."""
    from moalign.eval.policies import Policy
    from moalign.methods.ric.trainer import RewardConditioner

    cond = RewardConditioner.load(ctx.models[0])
    return [(ctx.multihead(ctx.models[0]),
             [(Policy.as_is(f"ric[{','.join(f'{v:g}' for v in w)}]"),
               lambda p, w=w: cond.prompt_for_preference(p, list(w)), list(w)) for w in ctx.grid])]
