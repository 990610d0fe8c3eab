"""The soups' policies (Rewarded Soups, ODPO Soups): the specialists' adapters interpolated at a weight vector
(load_policy: ``moalign.inference.families.SoupFamily``).

:func:`compare_policies` is what ``moalign compare`` evaluates: the soup at every weight vector of the grid.
"""

from __future__ import annotations

from typing import Any

from moalign.methods.spec import PolicyContext


def compare_policies(ctx: PolicyContext) -> list[tuple[Any, list]]:
    """The soup model, weighted at each grid weight vector."""
    from moalign.eval.policies import Policy
    from moalign.models.soups import SoupModel

    return [(lambda: SoupModel.from_pretrained(ctx.models[0], base_model=ctx.base()),
             [(Policy.weighted(w), None, list(w)) for w in ctx.grid])]
