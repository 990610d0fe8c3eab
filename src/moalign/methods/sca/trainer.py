"""SCATrainer: linear scalarisation of the normalised weighted log-likelihoods (HaM paper, eq. 5).

``L_SCA(theta; w) = sum_j w_j F_bar_j(theta)`` with F_bar of eqs. 9 and 4 (the same rewards, z and
normalisation as HaM: :class:`~moalign.methods.ham.trainer.WeightedLikelihoodTrainer`).

The paper trains **one model per weight vector**. Here each weight vector w_k gets **one head** of a
:class:`~moalign.models.MultiHeadCausalLM`, and the loss is ``-sum_k L_SCA(theta_k; w_k)``: each head
receives exactly the gradient of its own scalarisation, as a separate policy would. With LoRA the
backbone adapter is shared, so it receives the sum of the K gradients and the K policies are coupled
through it (cheaper: one backbone pass for all weights; not the paper's protocol). For the paper's
protocol, train one run per weight vector (``--sca_weights 0.3,0.7``, one head each) or set
``use_lora: false`` (frozen backbone: the heads are then fully independent). See docs/ham.md.
"""

from __future__ import annotations

from typing import Any

import torch

from moalign.methods.ham.trainer import WeightedLikelihoodTrainer
from moalign.methods.sca.config import SCAConfig, parse_weight_vectors, weight_head_name


class SCATrainer(WeightedLikelihoodTrainer):
    """One head per weight vector, each maximising eq. 5 (see the module docstring); pointwise data."""

    method_name = "sca"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        vectors = parse_weight_vectors(self.args.sca_weights, len(self.objectives))
        heads = self.unwrapped_model.head_names
        if len(heads) != len(vectors):
            raise ValueError(f"the model has {len(heads)} heads {heads} but there are {len(vectors)} SCA weight "
                             f"vectors {vectors}: one head per weight vector")
        self.weights = torch.tensor(vectors, dtype=torch.float32)  # (K, J)

    @classmethod
    def head_names_for(cls, config: SCAConfig, objectives: list[str]) -> list[str]:
        """One head per weight vector, named after it (``w_0.3_0.7``)."""
        return [weight_head_name(v) for v in parse_weight_vectors(config.sca_weights, len(objectives))]

    def method_loss(self, model: Any, inputs: dict[str, torch.Tensor], mode: str) -> torch.Tensor:
        """``-sum_k sum_j w_kj F_bar_j(theta_k)`` (eq. 5 for every head); logs each head's ``sca/<head>``."""
        normalized = self.normalized_likelihoods(model, inputs, mode)  # (K, J)
        per_head = (self.weights.to(normalized) * normalized).sum(dim=1)  # (K,)
        for name, value in zip(self.unwrapped_model.head_names, per_head.detach().cpu().tolist()):
            self.record(f"sca/{name}", value, mode)
        return -per_head.sum()
