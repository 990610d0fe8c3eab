"""Hand computations of core.normalization (reward fits), core.soups (theta(w)) and core.losses.modpo_target.

The trainer-vs-toy agreement on the same inputs is in tests/experiments/test_shared_normalization.py (and, for
the MODPO target, tests/baselines/test_modpo.py).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from moalign.core.losses import modpo_target
from moalign.core.normalization import fit_normalization, normalize
from moalign.core.soups import interpolate_parameters

SCORES = [[1.0, 10.0, 7.0], [2.0, 20.0, 7.0], [3.0, 60.0, 7.0]]  # the third objective is constant


def test_zscore_and_minmax_by_hand():
    shift, scale = fit_normalization([row[:2] for row in SCORES], "zscore")
    # mean (2, 30); population std sqrt(2/3) and sqrt((400 + 100 + 900) / 3)
    np.testing.assert_allclose(shift, [2.0, 30.0], rtol=1e-15)
    np.testing.assert_allclose(scale, [math.sqrt(2 / 3), math.sqrt(1400 / 3)], rtol=1e-15)
    shift, scale = fit_normalization([row[:2] for row in SCORES], "minmax")
    np.testing.assert_array_equal(shift, [1.0, 10.0])
    np.testing.assert_array_equal(scale, [2.0, 50.0])
    np.testing.assert_allclose(normalize([[2.0, 35.0], [5.0, 0.0]], shift, scale), [[0.5, 0.5], [2.0, -0.2]])


def test_zero_spread_rules():
    with pytest.raises(ValueError, match=r"objective 'c' has zero range \(max == min\) over 3 scores"):
        fit_normalization(SCORES, "minmax", "raise", objectives=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"objective 'objective 2' has zero variance"):
        fit_normalization(SCORES, "zscore")
    shift, scale = fit_normalization(SCORES, "minmax", "unit")
    np.testing.assert_array_equal(shift, [1.0, 10.0, 7.0])
    np.testing.assert_array_equal(scale, [2.0, 50.0, 1.0])  # range 1: shift only
    assert normalize([[1.0, 10.0, 7.5]], shift, scale)[0, 2] == 0.5
    with pytest.raises(ValueError, match="zero_spread"):
        fit_normalization(SCORES, "minmax", "floor")
    with pytest.raises(ValueError, match="method"):
        fit_normalization(SCORES, "robust")
    with pytest.raises(ValueError, match=r"shape \(n, K\)"):
        fit_normalization([1.0, 2.0])


def test_soup_interpolation_by_hand():
    a = {"m": torch.tensor([[1.0, 2.0], [3.0, 4.0]]), "v": torch.tensor([1.0, -1.0])}
    b = {"m": torch.tensor([[5.0, 6.0], [7.0, 8.0]]), "v": torch.tensor([3.0, 1.0])}
    stacked = {n: torch.stack([a[n], b[n]]) for n in a}
    one = interpolate_parameters(stacked, [0.25, 0.75])  # 0.25 a + 0.75 b, exact in binary
    torch.testing.assert_close(one["m"], torch.tensor([[4.0, 5.0], [6.0, 7.0]]), rtol=0, atol=0)
    torch.testing.assert_close(one["v"], torch.tensor([2.5, 0.5]), rtol=0, atol=0)
    many = interpolate_parameters(stacked, np.array([[1.0, 0.0], [0.0, 1.0], [0.25, 0.75]]))
    assert many["m"].shape == (3, 2, 2)
    torch.testing.assert_close(many["m"][0], a["m"], rtol=0, atol=0)  # a vertex is the specialist exactly
    torch.testing.assert_close(many["v"][1], b["v"], rtol=0, atol=0)
    torch.testing.assert_close(many["m"][2], one["m"], rtol=0, atol=0)
    half = interpolate_parameters({"h": torch.stack([a["m"], b["m"]]).to(torch.bfloat16)}, [0.5, 0.5])["h"]
    assert half.dtype == torch.bfloat16 and half.tolist() == [[3.0, 4.0], [5.0, 6.0]]
    with pytest.raises(ValueError, match="one weight per specialist"):
        interpolate_parameters(stacked, [0.2, 0.3, 0.5])


def test_modpo_target_by_hand():
    assert int(modpo_target([0.6, 0.4])) == 0 and int(modpo_target([0.3, 0.7])) == 1
    assert int(modpo_target([0.5, 0.5])) == 0  # ties: the first
    assert int(modpo_target([0.2, 0.4, 0.4])) == 1
    assert modpo_target(np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])).tolist() == [0, 1, 0]
    assert int(modpo_target([0.3, 0.7], target=0)) == 0  # a named target wins over the largest weight
    with pytest.raises(ValueError, match="weight 0"):
        modpo_target([0.0, 1.0], target=0)
    with pytest.raises(ValueError, match="not an index"):
        modpo_target([0.5, 0.5], target=2)
