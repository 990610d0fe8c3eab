"""HaM's policies: its K heads (load_policy steers them with one weight per head: ``HeadsFamily``).

:func:`compare_policies` is what ``moalign compare`` evaluates: every head as it is (HaM's heads are not tied to
weight vectors, so they carry none).
"""

from __future__ import annotations

import json
from typing import Any

from moalign.methods.spec import PolicyContext


def head_policies(ctx: PolicyContext, weights_from_names: bool) -> list[tuple[Any, list]]:
    """Every head of the one trained model; with ``weights_from_names`` each head's weight vector is read from its
    name (``w_0.3_0.7``, SCA)."""
    from moalign.eval.policies import Policy

    names = json.loads((ctx.models[0] / "multihead_config.json").read_text())["multihead"]["head_names"]
    entries = []
    for i, name in enumerate(names):
        weights = [float(v) for v in name.split("_")[1:]] if weights_from_names else None
        entries.append((Policy.from_head(i, name=f"head:{name}"), None, weights))
    return [(ctx.multihead(ctx.models[0]), entries)]


def compare_policies(ctx: PolicyContext) -> list[tuple[Any, list]]:
    """HaM's heads, without weights."""
    return head_policies(ctx, weights_from_names=False)
