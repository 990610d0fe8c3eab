"""The compare report's degenerate-winner flag and conflict block on hand-made methods (no model)."""

from __future__ import annotations

import pytest

from moalign.experiments.compare_diagnostics import (
    DEGENERATE_FLAG_SHARE,
    degenerate_winner,
    diagnostics,
    render_diagnostics,
)


def _method(hv: float, answers: list[list[str]]) -> dict:
    return {"hv": {"hv": hv}, "policies": [{"name": f"p{i}", "completions": a} for i, a in enumerate(answers)]}


def _methods() -> dict:
    fine = ["a full answer here", "another full answer", "one more answer now", "and a last answer"]
    # 1 of 4 answers degenerate (25 %): "ok" has one word
    hacked = ["ok", "a full answer here", "another full answer", "one more answer now"]
    return {"wide": _method(2.0, [fine, hacked]), "narrow": _method(1.0, [fine])}


def test_largest_hv_front_with_a_degenerate_policy_is_flagged():
    methods = _methods()
    out = diagnostics(methods, base_completions=["hello there friend"], data_info={
        "objective_correlation_on_samples": {"a~b": -0.5}, "num_samples": 10})
    win = out["degeneracy"]["largest_hv_front"]
    assert win["method"] == "wide" and win["flagged"]
    assert win["degenerate_policies"] == [{"policy": "p1", "degenerate_share": 0.25}]
    assert methods["narrow"]["policies"][0]["degeneracy"]["degenerate_share"] == 0.0
    assert out["conflict"]["spearman"] == {"a~b": -0.5} and out["conflict"]["num_samples"] == 10
    md = "\n".join(render_diagnostics({**out, "methods": methods}))
    assert "FLAG" in md and "wide" in md and "| a vs b | -0.50 |" in md


def test_degenerate_policies_outside_the_largest_front_do_not_flag():
    methods = _methods()
    methods["narrow"]["hv"]["hv"] = 3.0  # now the clean method has the largest HV
    diagnostics(methods, None, {})
    win = degenerate_winner(methods)
    assert win["method"] == "narrow" and not win["flagged"] and win["degenerate_policies"] == []


@pytest.mark.parametrize("share_degenerate, flagged", [(1, True), (0, False)])
def test_flag_threshold_is_inclusive(share_degenerate, flagged):
    n = round(1 / DEGENERATE_FLAG_SHARE)  # answers such that one degenerate answer is exactly the threshold
    answers = ["ok"] * share_degenerate + ["a full answer here"] * (n - share_degenerate)
    methods = {"m": _method(1.0, [answers])}
    diagnostics(methods, None, {})
    assert degenerate_winner(methods)["flagged"] is flagged
