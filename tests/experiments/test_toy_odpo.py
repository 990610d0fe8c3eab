"""MO-ODPO and its baselines on the toy problem (issue 12, item 3): independent checks, seeded, fast.

* the online pair label equals a hand computation of s_i = sum_k w_k r~_k (MO-ODPO eq. 1) from eq. (15);
* one MO-ODPO step moves probability toward the preferred action;
* the soup at w = (1, 0) is specialist 1 exactly;
* MODPO with w = (1, 0) is DPO on objective 1's labels (the losses agree), and the batched MODPO loss equals
  ``core.losses.modpo_loss`` called per policy;
* ``--methods`` selects the new methods (the registry's names).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from moalign.core.losses import dpo_loss, modpo_loss
from moalign.experiments.toy import ToyConfig, default_toy_methods, run_toy
from moalign.experiments.toy_online import (
    CondPolicy,
    OnlineSettings,
    RewardScale,
    features,
    pair_labels,
    train_online,
    weight_grid,
)
from moalign.experiments.toy_problem import reward_functions
from moalign.experiments.toy_soups import soup_probs, specialist_probs
from moalign.methods.modpo.toy import modpo_batch_loss, modpo_terms
from moalign.methods.registry import available_methods


def test_pair_label_by_hand():
    scale = RewardScale.of("A", 51)
    x, y1, y2 = 0.3, 0.04, 0.5
    # Set A by hand: r1 = e^x + sqrt(y) - y, r2 = -sin x - y^2; grid extremes of the 201 x 51 table
    lo1 = 1.0  # r1 at x = 0, y in {0, 1}; its maximum at x = 1 and the grid's y nearest 1/4 (0.24 and 0.26)
    hi1 = math.e + max(math.sqrt(j / 50) - j / 50 for j in range(51))
    lo2, hi2 = -math.sin(1.0) - 1.0, 0.0
    assert scale.low == pytest.approx([lo1, lo2]) and scale.high == pytest.approx([hi1, hi2])

    def norm(y):
        return np.array([(math.exp(x) + math.sqrt(y) - y - lo1) / (hi1 - lo1), (-math.sin(x) - y * y - lo2) / (hi2 - lo2)])

    w = np.array([0.7, 0.3])
    s1, s2 = w @ norm(y1), w @ norm(y2)
    first, tie = pair_labels(scale.rewards(np.array([x]), np.array([y1])), scale.rewards(np.array([x]), np.array([y2])),
                             w[None])
    assert bool(first[0]) == (s1 > s2) and not tie[0]
    # the weights decide the label: each weight vector against its own hand-computed weighted sum
    for wv in ([1.0, 0.0], [0.0, 1.0], [0.3, 0.7]):
        wv = np.array(wv)
        got, _ = pair_labels(norm(y1)[None], norm(y2)[None], wv[None])
        assert bool(got[0]) == (wv @ norm(y1) > wv @ norm(y2))
    same, tie = pair_labels(norm(y1)[None], norm(y1)[None], w[None])
    assert tie[0] and not same[0]


def test_one_mo_odpo_step_moves_toward_preferred_action():
    torch.manual_seed(0)
    policy = CondPolicy(1, 51, 2, hidden=8, generator=torch.Generator().manual_seed(0))
    ref_policy = CondPolicy(1, 51, 2, hidden=8, generator=torch.Generator().manual_seed(0)).requires_grad_(False)
    feats = features(torch.tensor([[0.4]]), torch.tensor([[0.6]]))
    chosen, rejected = 40, 5
    before = policy.log_probs(feats)[0, 0].detach()
    opt = torch.optim.Adam(policy.parameters(), lr=0.01)
    logp, ref = policy.log_probs(feats), ref_policy.log_probs(feats)
    loss, _, _ = dpo_loss(logp[..., chosen], logp[..., rejected], ref[..., chosen], ref[..., rejected], beta=0.1)
    opt.zero_grad()
    loss.sum().backward()
    opt.step()
    after = policy.log_probs(feats)[0, 0].detach()
    assert after[chosen] > before[chosen] and after[rejected] < before[rejected]
    assert (after[chosen] - after[rejected]) > (before[chosen] - before[rejected])


def test_mo_odpo_training_follows_the_weights():
    """A few online steps: w = (1, 0) moves mass toward r1's argmax region, w = (0, 1) toward y = 0 (Set A)."""
    from moalign.experiments.toy_online import conditioned_probs

    s = OnlineSettings(steps=60, batch_size=128, learning_rate=0.02, hidden=16)
    probs = conditioned_probs(train_online("A", 21, "dpo", s, seed=0), weight_grid(2))[0]  # w = (1, 0), (0, 1)
    y = np.linspace(0, 1, 21)
    mean_y = (probs * y).sum(-1).mean(-1)
    assert mean_y[1] < 0.5 * mean_y[0] and mean_y[1] < 0.15  # r2 = -sin x - y^2 wants y = 0


def test_soup_at_one_hot_is_specialist():
    s = OnlineSettings(steps=5, batch_size=16, hidden=8)
    spec = train_online("B", 11, "rloo", s, seed=1, fixed_weights=np.eye(2), shared_init=True)
    own = specialist_probs(spec)
    soup = soup_probs(spec, np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]))
    np.testing.assert_array_equal(soup[0], own[0])
    np.testing.assert_array_equal(soup[1], own[1])
    assert not np.allclose(own[0], own[1])  # the specialists did move apart
    # shared initialisation: before training, both models are the same network
    fresh = train_online("B", 11, "rloo", OnlineSettings(steps=0, hidden=8), seed=1, fixed_weights=np.eye(2),
                         shared_init=True)
    for p in fresh.params().values():
        assert torch.equal(p[0], p[1])


def test_modpo_one_hot_is_dpo_and_batched_equals_core():
    gen = torch.Generator().manual_seed(3)
    b = 12
    lp1, lp2 = torch.randn(3, b, generator=gen), torch.randn(3, b, generator=gen)
    wins = torch.rand(3, b, generator=gen) > 0.5
    m1, m2 = torch.randn(3, b, generator=gen), torch.randn(3, b, generator=gen)
    weights = np.array([[1.0, 0.0], [0.7, 0.3], [0.2, 0.8]])
    target, tw, mw = modpo_terms(weights)
    assert target.tolist() == [0, 0, 1] and tw.tolist() == [1.0, 0.7, 0.8] and mw.tolist() == [0.0, 0.3, 0.2]
    beta = 0.05
    got = modpo_batch_loss(lp1, lp2, wins, m1, m2, torch.as_tensor(tw, dtype=torch.float32),
                           torch.as_tensor(mw, dtype=torch.float32), beta)
    zero = torch.zeros(())
    # w = (1, 0): DPO on objective 1's labels, uniform reference (log-ratio = log-density)
    dpo, _, _ = dpo_loss(torch.where(wins[0], lp1[0], lp2[0]), torch.where(wins[0], lp2[0], lp1[0]), zero, zero, beta)
    torch.testing.assert_close(got[0], dpo)
    for i in range(3):  # the core loss, one policy at a time
        c = torch.where(wins[i], lp1[i], lp2[i])
        r = torch.where(wins[i], lp2[i], lp1[i])
        mc, mr = torch.where(wins[i], m1[i], m2[i])[:, None], torch.where(wins[i], m2[i], m1[i])[:, None]
        core, _, _ = modpo_loss(c, r, zero, zero, mc, mr, float(tw[i]), torch.tensor([float(mw[i])]), beta=beta)
        torch.testing.assert_close(got[i], core)
        by_hand = -torch.nn.functional.logsigmoid((beta * (c - r) - mw[i] * (mc[:, 0] - mr[:, 0])) / tw[i])
        torch.testing.assert_close(got[i], by_hand.float())


def test_methods_selection_and_registry_names(tmp_path):
    from moalign.cli.main import parse_config

    online = {"mo_odpo", "p_morl", "rewarded_soups", "odpo_soups", "modpo"}
    assert all(available_methods()[m].toy is not None for m in online)
    assert not online & set(default_toy_methods())  # opt-in
    cfg = parse_config(ToyConfig, ["--methods", "mo_odpo,modpo", "odpo_soups", "--quick", "true"],
                       "moalign synthetic toy")
    assert cfg.resolved().methods == ["mo_odpo", "modpo", "odpo_soups"]
    assert "mo_odpo" not in ToyConfig().resolved().methods  # opt-in, not in the default set
    result = run_toy(ToyConfig(set="B", quick=True, methods=["p_morl,rewarded_soups"], odpo_steps=5,
                               num_rows=2000, out=str(tmp_path)), progress=False)
    assert set(result["methods"]) == {"uniform reference", "P-MORL (11 w)", "P-MORL (101 w)",
                                      "Rewarded Soups (11 w)", "Rewarded Soups (101 w)"}
    assert result["methods"]["P-MORL (11 w)"]["policies_per_seed"] == 11
    assert result["methods"]["Rewarded Soups (101 w)"]["policies_per_seed"] == 101
    pol = [p for p in result["policies"] if p["method"] == "P-MORL (11 w)"]
    assert [p["params"]["w"][0] for p in pol] == pytest.approx(np.linspace(1, 0, 11))
    assert len(pol[0]["probs"]) == 201 and len(pol[0]["probs"][0]) == 51
    assert (tmp_path / "toy_B.json").exists() and result["odpo_settings"]["online"]["steps"] == 5


def test_reward_scale_matches_eq15():
    scale = RewardScale.of("B", 51)
    r1, r2 = reward_functions("B")
    x, y = np.array([0.2, 0.9]), np.array([0.0, 1.0])
    raw = np.stack([r1(x, y), r2(x, y)], -1)
    np.testing.assert_allclose(scale.rewards(x, y), (raw - scale.low) / (scale.high - scale.low))
    assert scale.high[0] == pytest.approx(4.0) and scale.low[0] == pytest.approx(0.0)
