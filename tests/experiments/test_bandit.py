"""Tests of the §4.1 bandit benchmark (moalign.experiments.bandit).

Truths used: win-rate tables derived by hand from the datasets printed in
§4.1; the COP of eq. (1) solved by SciPy's SLSQP on the primal (no closed
form, no dual); the pessimistic lower bound of eq. (4) solved by SLSQP on its
primal (the KL ball itself, not the dual of Prop. 3.2); torch.optim.Adam with
autograd for the policy-extraction update; the Condorcet winner of D1; the
multiplier at which D3's two undominated actions tie, derived by hand.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

import moalign.experiments.bandit as bandit_module
from moalign.core.mopo import MOPODual, adaptive_threshold, constraint_value, tabular_win_rates
from moalign.experiments.bandit import (
    BanditConfig,
    augmented_dataset,
    behaviour_cloning_step,
    full_data_win_rates,
    simulate,
    solve_cop,
)
from moalign.experiments.bandit_result import load_bandit_result, run_bandit

# Win rates (objective 1, objective 2) of y1, y2, y3 over the symmetrically augmented
# data, derived by hand: e.g. D3's y1 is first in (y1,y2,(1,1)) and (y1,y3,(1,0)) -> (1, 0.5).
HAND_WIN_RATES = {
    "D1": [[1.0, 1.0], [0.5, 0.5], [0.0, 0.0]],
    "D2": [[1.0, 0.5], [0.0, 0.0], [0.5, 1.0]],
    "D3": [[1.0, 0.5], [0.5, 0.0], [0.0, 1.0]],
    "D4": [[0.5, 0.5], [0.0, 0.5], [1.0, 0.5]],
    "D5": [[1.0, 0.5], [0.0, 0.5], [0.0, 0.0]],  # y3 never appears: win rate 0 by convention
}


def _scipy_cop(primary: np.ndarray, secondary: np.ndarray, tau: float, b: float) -> np.ndarray:
    """max_pi pi.P - tau KL(pi || uniform) s.t. pi.Q >= b, on the simplex, by SLSQP."""
    n = len(primary)

    def negative_objective(pi: np.ndarray) -> float:
        pi = np.clip(pi, 1e-300, None)
        return -(pi @ primary - tau * np.sum(pi * np.log(pi * n)))

    constraints = [{"type": "eq", "fun": lambda pi: pi.sum() - 1.0},
                   {"type": "ineq", "fun": lambda pi: pi @ secondary - b}]
    best = None
    for start in (np.full(n, 1.0 / n), np.array([0.6, 0.2, 0.2]), np.array([0.2, 0.2, 0.6])):
        res = minimize(negative_objective, start, method="SLSQP", bounds=[(0.0, 1.0)] * n,
                       constraints=constraints, options={"ftol": 1e-14, "maxiter": 1000})
        assert res.success, res.message
        if best is None or res.fun < best.fun:
            best = res
    return best.x


def _scipy_lower_bound(values: np.ndarray, reference: np.ndarray, eps: float) -> float:
    """Primal of eq. (4): min_q q.values s.t. KL(q || reference) <= eps, q on the simplex, by SLSQP."""

    def kl(q: np.ndarray) -> float:
        q = np.clip(q, 1e-300, None)
        return float(np.sum(q * np.log(q / reference)))

    constraints = [{"type": "eq", "fun": lambda q: q.sum() - 1.0}, {"type": "ineq", "fun": lambda q: eps - kl(q)}]
    best = None
    # several feasible starts: SLSQP's line search can stall from one of them depending on BLAS summation order
    for shrink in (0.0, 0.3, 0.6):
        start = (1 - shrink) * reference + shrink * np.full_like(reference, 1.0 / len(reference))
        res = minimize(lambda q: q @ values, start, method="SLSQP", bounds=[(0.0, 1.0)] * len(values),
                       constraints=constraints, options={"ftol": 1e-14, "maxiter": 1000})
        if res.success and kl(res.x) <= eps + 1e-7 and (best is None or res.fun < best.fun):
            best = res
    assert best is not None, "SLSQP failed from every start"
    return float(best.fun)


@pytest.mark.parametrize("name", sorted(HAND_WIN_RATES))
def test_full_data_win_rates_match_hand_derivation(name: str) -> None:
    assert torch.equal(full_data_win_rates(name), torch.tensor(HAND_WIN_RATES[name], dtype=torch.float64))


def test_d1_converges_to_condorcet_winner(tmp_path) -> None:
    config = BanditConfig(out=str(tmp_path), datasets=["D1"], taus=[0.1], seeds=2, steps=1000)
    final = simulate(config, progress=False)["final_probs"][0, 0]  # (seeds, 3)
    assert (final[:, 0] > 0.95).all(), final


def test_fixed_reference_and_threshold_converge_to_scipy_cop() -> None:
    """The correctness anchor of docs/design.md ("Correctness anchor"): fixed b, fixed uniform reference, no pessimism, full data."""
    b = 0.6
    config = BanditConfig(datasets=["D2", "D3", "D5"], taus=[0.1, 1.0], seeds=1, steps=1500, sampling="full",
                          lower_bound_eps=0.0, lag_steps=None, threshold_mode="fixed", initial_threshold=b,
                          log_every=1500)
    final = simulate(config, progress=False)["final_probs"]
    for i, name in enumerate(config.datasets):
        rates = np.array(HAND_WIN_RATES[name])
        for j, tau in enumerate(config.taus):
            truth = _scipy_cop(rates[:, 1], rates[:, 0], tau, b)  # primary = objective 2, secondary = objective 1
            tv = 0.5 * np.abs(final[i, j, 0].numpy() - truth).sum()
            assert tv < 1e-2, (name, tau, final[i, j, 0], truth)
    # the constraint binds on D3 at tau = 0.1 (the unconstrained solution has pi.Q ~ 0.01), so this is not vacuous
    assert abs(final[1, 0, 0].numpy() @ np.array(HAND_WIN_RATES["D3"])[:, 0] - b) < 1e-2


def test_solve_cop_matches_scipy() -> None:
    rates = torch.tensor(HAND_WIN_RATES["D2"], dtype=torch.float64)
    uniform = torch.full((3,), 1.0 / 3, dtype=torch.float64)
    for tau, b in [(0.1, 0.75), (0.5, 0.6), (1.0, 0.3)]:
        ours = solve_cop(rates[:, 1], rates[:, 0], uniform, tau, b).numpy()
        np.testing.assert_allclose(ours, _scipy_cop(rates[:, 1].numpy(), rates[:, 0].numpy(), tau, b), atol=1e-5)
    with pytest.raises(ValueError, match="infeasible"):
        solve_cop(rates[:, 1], rates[:, 0], uniform, 0.1, 1.5)


def test_vectorised_sweep_equals_single_run() -> None:
    """Padding (D5 has 4 augmented rows, the others 6) and the run layout must not leak between runs."""
    common = dict(steps=300, log_every=100, lag_steps=100)
    sweep = simulate(BanditConfig(datasets=["D2", "D5"], taus=[0.1, 1.0], seeds=3, seed=0, **common), progress=False)
    single = simulate(BanditConfig(datasets=["D5"], taus=[1.0], seeds=1, seed=2, **common), progress=False)
    torch.testing.assert_close(sweep["probs"][1, 1, 2], single["probs"][0, 0, 0], rtol=0, atol=1e-12)
    torch.testing.assert_close(sweep["lambda"][1, 1, 2], single["lambda"][0, 0, 0], rtol=0, atol=1e-12)
    # different seeds really differ (the comparison above is not between constants)
    assert not torch.allclose(sweep["probs"][1, 1, 0], sweep["probs"][1, 1, 2])


def test_lower_bound_threshold_keeps_lambda_bounded_on_d3() -> None:
    """threshold_source='lower_bound' keeps the pessimistic constraint feasible; the paper's 'estimate' does not.

    Hand derivation (D3, primary = objective 2): P = (1/2, 0, 1), Q = (1, 1/2, 0), so the scalarised scores
    P + lambda Q of the undominated y1 and y3 are 1/2 + lambda and 1: they tie at lambda* = 1/2, the only
    multiplier at which a y1/y3 mixture is stationary under the lagged updates. We allow mini-batch noise up to
    2 lambda* = 1. Feasibility: at each phase start 'lower_bound' sets b = beta * LB(Q; pi_lag), which the
    policy attains by not moving; LB is checked against SciPy on the primal of eq. (4).
    """
    eps, beta = 0.15, 0.9995
    common = dict(datasets=["D3"], taus=[0.1, 1.0], seeds=2, steps=3000, log_every=500, lower_bound_eps=eps,
                  threshold_beta=beta)
    bounded = simulate(BanditConfig(threshold_source="lower_bound", **common), progress=False)
    literal = simulate(BanditConfig(threshold_source="estimate", **common), progress=False)
    secondary = np.array(HAND_WIN_RATES["D3"])[:, 0]
    uniform = np.full(3, 1.0 / 3)

    assert bounded["lambda"].max() <= 2 * 0.5, bounded["lambda"].amax(dim=-1)
    # the check can fail: on the same seeds the paper-literal source's lambda keeps growing past the bound
    assert literal["lambda"][..., -1].min() > 3.0, literal["lambda"][..., -1]
    assert (literal["lambda"][..., 1:].diff(dim=-1) > 0).all()

    # b^(0) = beta * LB(Q; uniform), and the last threshold = beta * LB(Q; pi_lag) with pi_lag = policy at step 3000
    b0 = beta * _scipy_lower_bound(secondary, uniform, eps)
    torch.testing.assert_close(bounded["threshold"][..., 0], torch.full((1, 2, 2), b0, dtype=torch.float64),
                               rtol=0, atol=1e-6)
    for j in range(2):
        for s in range(2):
            pi_lag = bounded["probs"][0, j, s, -1].numpy()
            feasible = beta * _scipy_lower_bound(secondary, pi_lag, eps)
            assert abs(float(bounded["threshold"][0, j, s, -1]) - feasible) < 1e-6, (j, s)
            # the paper-literal threshold asks for more than the policy's own lower bound: infeasible by staying put
            literal_lag = literal["probs"][0, j, s, -1].numpy()
            assert float(literal["threshold"][0, j, s, -1]) > _scipy_lower_bound(secondary, literal_lag, eps) + 0.01


def test_threshold_sources_agree_without_pessimism() -> None:
    """With eps = 0 the lower bound is the plain estimate, so both sources must give the same run."""
    common = dict(datasets=["D2", "D3"], taus=[0.5], seeds=1, steps=400, log_every=100, lag_steps=100,
                  lower_bound_eps=0.0)
    a = simulate(BanditConfig(threshold_source="estimate", **common), progress=False)
    b = simulate(BanditConfig(threshold_source="lower_bound", **common), progress=False)
    torch.testing.assert_close(a["threshold"], b["threshold"], rtol=0, atol=0)
    assert a["threshold"][..., -1].ne(a["threshold"][..., 0]).all()  # b did move: the comparison is not vacuous


def test_simulate_runs_single_threaded_and_restores_thread_count(monkeypatch) -> None:
    seen: list[int] = []
    inner = bandit_module._simulate
    monkeypatch.setattr(bandit_module, "_simulate",
                        lambda config, progress: seen.append(torch.get_num_threads()) or inner(config, progress))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        simulate(BanditConfig(datasets=["D1"], taus=[1.0], seeds=1, steps=10, log_every=10), progress=False)
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_manual_adam_matches_torch_adam_on_the_cloning_loss() -> None:
    """Policy extraction: grad of -sum_y target(y) log softmax(psi)_y is softmax(psi) - target; Adam as torch's.

    The bandit writes the closed-form gradient of 5 runs' logits into one batched parameter (under
    inference_mode, as simulate does); the truth is autograd on the loss, one Adam per run.
    """
    gen = torch.Generator().manual_seed(0)
    targets = torch.softmax(torch.randn(40, 5, 3, generator=gen, dtype=torch.float64) * 2, dim=-1)
    psi_ref = [torch.zeros(3, dtype=torch.float64, requires_grad=True) for _ in range(5)]
    optimisers = [torch.optim.Adam([p], lr=0.015) for p in psi_ref]
    with torch.inference_mode():
        psi = torch.zeros(5, 3, dtype=torch.float64)
        batched = torch.optim.Adam([psi], lr=0.015, betas=(0.9, 0.999), eps=1e-8)
    for target in targets:
        for run, (p, optimiser) in enumerate(zip(psi_ref, optimisers)):
            optimiser.zero_grad()
            loss = -(target[run] * torch.log_softmax(p, dim=-1)).sum()
            loss.backward()
            optimiser.step()
        with torch.inference_mode():
            behaviour_cloning_step(psi, batched, target)
    torch.testing.assert_close(psi, torch.stack([p.detach() for p in psi_ref]), rtol=0, atol=1e-12)


@pytest.mark.parametrize("source", ["estimate", "lower_bound"])
def test_simulate_iterates_the_core_mopo_step(source: str, monkeypatch) -> None:
    """The bandit's Algorithm 1 is core's MOPODual.step (lines 5-7), torch Adam (line 8) and core's adaptive
    threshold (lines 9-11), nothing of its own: one run rebuilt by hand from those pieces, with the mini-batches
    re-derived from the seed (rows floor(u * num_rows), u ~ U[0, 1) from the seed's generator), matches."""
    steps, lag, eps, beta, tau, lr = 40, 10, 0.15, 0.9995, 0.5, 0.015
    calls: list[int] = []
    step = MOPODual.step
    monkeypatch.setattr(MOPODual, "step", lambda self, *a, **k: calls.append(1) or step(self, *a, **k))
    config = BanditConfig(datasets=["D3"], taus=[tau], seeds=1, seed=4, steps=steps, log_every=steps, lag_steps=lag,
                          threshold_source=source, lower_bound_eps=eps, threshold_beta=beta)
    sim = simulate(config, progress=False)
    assert len(calls) == steps

    first, _, labels = augmented_dataset("D3")
    u = torch.rand(steps, config.batch_size, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    rows = (u * len(first)).long()
    rates = tabular_win_rates(first[rows], labels[rows], 3)[0]  # (steps, 3, 2): primary objective 2
    full_q = full_data_win_rates("D3")[:, [0]]

    def threshold(policy: torch.Tensor) -> torch.Tensor:
        return adaptive_threshold(constraint_value(full_q, source, eps, probs=policy), beta)

    pi_lag = torch.full((3,), 1 / 3, dtype=torch.float64)
    dual = MOPODual(lam=torch.zeros(1, dtype=torch.float64), threshold=threshold(pi_lag), tau=tau, eps=eps,
                    lr_lambda=lr, chi_solver="gradient", lr_chi=lr)
    psi = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.Adam([psi], lr=lr)
    for t in range(1, steps + 1):
        out = dual.step(rates[t - 1, :, 1], rates[t - 1, :, [0]], probs=pi_lag)
        optimiser.zero_grad()
        (-(pi_lag * out.weights * torch.log_softmax(psi, dim=-1)).sum()).backward()
        optimiser.step()
        if t % lag == 0:
            pi_lag = torch.softmax(psi, dim=-1).detach()
            dual.threshold = threshold(pi_lag)
    torch.testing.assert_close(sim["final_probs"][0, 0, 0], torch.softmax(psi, dim=-1).detach(), rtol=0, atol=1e-12)
    for name, value in (("lambda", dual.lam), ("chi", dual.chi), ("threshold", dual.threshold),
                        ("lower_bound", out.lower_bound), ("G_batch", out.estimate)):
        torch.testing.assert_close(sim[name][0, 0, 0, -1], value[0], rtol=0, atol=1e-12, msg=name)
    assert float(dual.lam[0]) > 0 and sim["threshold"][0, 0, 0, -1] != sim["threshold"][0, 0, 0, 0]  # not vacuous


def test_run_bandit_writes_json_and_png(tmp_path) -> None:
    config = BanditConfig(out=str(tmp_path / "run"), datasets=["D1", "D5"], taus=[0.5], seeds=2, steps=200,
                          log_every=50)
    result = run_bandit(config, progress=False)
    on_disk = json.loads((tmp_path / "run" / "bandit.json").read_text())
    assert on_disk == load_bandit_result(tmp_path / "run") == json.loads(json.dumps(result))
    for key in ("config", "final_probs", "curves", "traces", "logged_steps", "full_data_win_rates", "wall_time_s",
                "reference_solutions", "phases", "phase_steps", "max_lambda", "final_lambda"):
        assert key in on_disk
    assert on_disk["logged_steps"] == [0, 50, 100, 150, 200]
    assert set(on_disk["traces"]) == {"lambda", "threshold", "G_policy", "G_batch", "lower_bound", "chi"}
    cell = on_disk["final_probs"]["D5"]["0.5"]
    assert len(cell["mean"]) == 3 and abs(sum(cell["mean"]) - 1) < 1e-6 and len(cell["std"]) == 3
    curve = on_disk["curves"]["D1"]["0.5"]
    assert np.asarray(curve["mean"]).shape == (5, 3) and curve["mean"][0] == pytest.approx([1 / 3] * 3)
    assert on_disk["config"]["primary_objective"] == 1
    png = (tmp_path / "run" / "bandit.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_quick_tier_runs_fewer_steps() -> None:
    assert BanditConfig(quick=True).total_steps == 2000 and BanditConfig().total_steps == 20000
    assert BanditConfig(quick=True, steps=500).total_steps == 500


@pytest.mark.parametrize(
    ("field", "value"),
    [("datasets", ["D6"]), ("datasets", []), ("taus", [0.0]), ("seeds", 0), ("steps", -5), ("batch_size", 0),
     ("primary_objective", 2), ("chi_solver", "newton"), ("threshold_mode", "sometimes"), ("threshold_beta", 0.0),
     ("initial_threshold", 1.5), ("lag_steps", -1), ("lower_bound_eps", -0.1), ("sampling", "bootstrap"),
     ("lr", 0.0), ("dtype", "float16"), ("taus", [0.1, 0.1]), ("threshold_source", "batch")],
)
def test_bad_config_raises_clear_error(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"BanditConfig\.{field}: got .*expected"):
        BanditConfig(**{field: value})


def test_load_bandit_result_rejects_missing_and_foreign_files(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        load_bandit_result(tmp_path / "nothing")
    (tmp_path / "bandit.json").write_text(json.dumps({"config": {}}))
    with pytest.raises(ValueError, match="missing keys"):
        load_bandit_result(tmp_path)
