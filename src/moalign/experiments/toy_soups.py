"""Rewarded Soups and ODPO Soups on the continuous toy problem.

Rewarded Soups (Ramé et al. 2023): one specialist per objective, fine-tuned from a SHARED initialisation
on that objective's reward alone, then for a weight vector ``w`` the parameters are interpolated,
``theta(w) = sum_k w_k theta_k`` (RS eq. 2; every parameter of the small network, hidden layers
included -- the toy's analogue of interpolating each LoRA matrix). The specialists here are unconditioned
:class:`~moalign.experiments.toy_online.CondPolicy` MLPs on ``x`` trained by RLOO on ``r~_k``
(``toy_online.train_online(loss="rloo")`` with one-hot ``w``); ODPO Soups trains them by online DPO with
the one-hot ``w`` (``loss="dpo"``), the MO-ODPO paper's variant. For a tabular softmax policy the same
interpolation would be of the logits; here it is of all MLP weights, so ``theta((1, 0)) = theta_1``
exactly (``1 * a + 0 * b == a`` in floating point) and the soup's policy is specialist 1's.
"""

from __future__ import annotations

import numpy as np
import torch

from moalign.core.soups import interpolate_parameters
from moalign.experiments.toy_online import CondPolicy, cond_log_probs, features
from moalign.experiments.toy_problem import NUM_CONTEXTS, context_grid


def interpolate(specialists: CondPolicy, weights: np.ndarray) -> dict[str, torch.Tensor]:
    """``theta(w) = sum_k w_k theta_k`` for every row of ``weights (W, K)``; a parameter stack with leading dim W.

    :func:`moalign.core.soups.interpolate_parameters`, the function the text soups (``SoupModel``) use.
    """
    return interpolate_parameters(specialists.params(), np.asarray(weights, float))


@torch.no_grad()
def soup_probs(specialists: CondPolicy, weights: np.ndarray) -> np.ndarray:
    """Probabilities ``(W, 201, A)`` of the interpolated policies on the evaluation grid."""
    params = interpolate(specialists, weights)
    n = params["w1"].shape[0]
    x = torch.as_tensor(context_grid(NUM_CONTEXTS))
    feats = features(x, None)[None].expand(n, -1, -1)
    probs = cond_log_probs(params, specialists.log_mu, feats).double().exp()
    return (probs / probs.sum(-1, keepdim=True)).numpy()


@torch.no_grad()
def specialist_probs(specialists: CondPolicy) -> np.ndarray:
    """Each specialist's own probabilities ``(K, 201, A)``."""
    x = torch.as_tensor(context_grid(NUM_CONTEXTS))
    feats = features(x, None)[None].expand(specialists.w1.shape[0], -1, -1)
    probs = specialists.log_probs(feats).double().exp()
    return (probs / probs.sum(-1, keepdim=True)).numpy()
