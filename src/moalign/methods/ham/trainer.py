"""HaMTrainer: hypervolume maximisation over K policy heads (HaM paper, arXiv 2412.05469, §3).

Per step, on a batch of B pointwise rows (x_i, y_i, scores_i):

1. rewards ``r_ij`` in [0, 1] from the scores by the rule of ``reward_normalization`` (default: the
   min-max :class:`~moalign.rewards.RewardNormalizer` fitted on the training scores, then clipped to
   [0, 1]; fitted once, saved as ``reward_normalizer.json`` with the model and in every checkpoint);
2. every head's sequence log-probs ``log p(y_i | x_i; theta_k)`` in **one** backbone pass
   (:meth:`~moalign.trainers.base_trainer.MultiObjectiveTrainer.policy_logps`, §3.5);
3. ``F_j(theta_k) = (1/B) sum_i r_ij log p(y_i | x_i; theta_k)`` (eq. 9) for every head and objective,
   averaged over the processes' rows (so that several processes compute the F of the global batch);
4. ``F_bar = max((F + z) / z, 0)`` (eq. 4; optional softplus variant, see
   :func:`moalign.core.ham.normalize_log_likelihood`);
5. loss ``= -HV({F_bar(theta_k)}_k; ref = 0)``: exact inclusion-exclusion (eq. 6) or the random
   hypervolume scalarisation (eq. 10) for many heads.

Logged (train and eval apart): ``F/<head>/<objective>`` (each head's normalised F), ``hv`` (the batch
hypervolume) and ``z``. The method state (normaliser statistics and z) is saved in every checkpoint;
evaluation reads it and changes nothing. :class:`WeightedLikelihoodTrainer` holds steps 1-4, shared with
SCA (:mod:`moalign.methods.sca.trainer`). See docs/ham.md.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import torch

from moalign.core.ham import (
    inclusion_exclusion_hypervolume,
    normalize_log_likelihood,
    random_hypervolume_scalarization,
    weighted_log_likelihood,
)
from moalign.rewards.base import RewardNormalizer
from moalign.trainers.base_trainer import MultiObjectiveTrainer, unwrap_multihead
from moalign.methods.ham.config import HaMConfig, WeightedLikelihoodConfig

NORMALIZER_FILE = "reward_normalizer.json"


def pointwise_dataset(dataset: Any) -> Any:
    """A pointwise ``MultiObjectiveDataset`` as it is; a pairwise one with ``scores_a``/``scores_b`` (what the hub
    recipes give with ``label_rewards``) converted by :func:`moalign.data.convert.pairwise_to_pointwise`."""
    if getattr(dataset, "kind", None) != "pairwise":
        return dataset
    from moalign.data.convert import pairwise_to_pointwise

    converted, _report = pairwise_to_pointwise(dataset)
    return converted


class WeightedLikelihoodTrainer(MultiObjectiveTrainer):
    """Base of HaM and SCA: rewards in [0, 1], eq. 9 per head and objective, eq. 4 (see the module docstring)."""

    data_kind = "pointwise"

    def __init__(self, model: Any, args: WeightedLikelihoodConfig, train_dataset: Any = None,
                 eval_dataset: Any = None, objectives: list[str] | None = None, processing_class: Any = None,
                 data_collator: Any = None, **kwargs: Any) -> None:
        super().__init__(model=model, args=args, train_dataset=pointwise_dataset(train_dataset),
                         eval_dataset=pointwise_dataset(eval_dataset), objectives=objectives,
                         processing_class=processing_class, data_collator=data_collator, **kwargs)
        self.z: float | None = args.z
        self.normalizer: RewardNormalizer | None = None
        if args.reward_normalization == "minmax" and self.train_dataset is not None:
            scores = np.asarray(self.train_dataset["scores"], dtype=float)
            self.normalizer = RewardNormalizer("minmax", self.objectives).fit(scores)

    # ------------------------------------------------------------------ rewards and F
    def rewards(self, scores: torch.Tensor) -> torch.Tensor:
        """``(B, J)`` rewards in [0, 1] from raw ``scores`` by the configured rule (see ``reward_normalization``)."""
        if self.args.reward_normalization == "none":
            if (scores < 0).any() or (scores > 1).any() or not torch.isfinite(scores).all():
                raise ValueError("reward_normalization='none' needs scores in [0, 1]; got values in "
                                 f"[{float(scores.min())}, {float(scores.max())}] (use 'minmax')")
            return scores.float()
        if self.normalizer is None:
            raise RuntimeError(f"{type(self).__name__}: no reward normaliser: pass a train_dataset to fit it, or "
                               f"resume from a checkpoint holding {NORMALIZER_FILE}")
        mapped = self.normalizer.transform(scores.detach().cpu().double().numpy())
        return torch.from_numpy(np.clip(mapped, 0.0, 1.0)).float()

    def global_mean(self, local: torch.Tensor) -> torch.Tensor:
        """The mean of ``local`` over the processes, with the gradient of the local term (one process: itself).

        F of eq. 9 is a batch mean; with P processes of equal batches, the global F is the mean of the local
        ones. The other processes' F enter as constants; DDP's gradient averaging then gives each parameter
        the gradient of the loss at the global F.
        """
        gathered, _ = self.gather_rows(local.detach().float().cpu().unsqueeze(0))
        return gathered.mean(dim=0).to(local) + (local - local.detach())

    def weighted_likelihoods(self, model: Any, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(K, J)`` F_j(theta_k) of eq. 9 on the (global) batch, with gradients; one backbone pass."""
        logps = self.policy_logps(model, inputs, self.shared_hidden_states(model, inputs)).float()  # (K, B)
        rewards = self.rewards(inputs["scores"]).to(logps.device)
        return self.global_mean(weighted_log_likelihood(logps, rewards))

    def z_for(self, values: torch.Tensor, mode: str) -> float:
        """z of eq. 4: configured, or set on the first training batch (z_scale x max |F|) and kept.

        In evaluation before any training step the automatic value is computed from the batch and not kept.
        """
        if self.z is not None:
            return self.z
        z = float(self.args.z_scale * values.detach().abs().max().clamp(min=1e-6))
        if mode == "train":
            self.z = z
        return z

    def normalized_likelihoods(self, model: Any, inputs: dict[str, torch.Tensor], mode: str) -> torch.Tensor:
        """``(K, J)`` F_bar of eq. 4 of every head and objective; logs ``F/<head>/<objective>`` and ``z``."""
        values = self.weighted_likelihoods(model, inputs)
        z = self.z_for(values, mode)
        normalized = normalize_log_likelihood(values, z, self.args.smooth_temperature)
        heads = unwrap_multihead(model).head_names
        logged = normalized.detach().cpu()
        for k, head in enumerate(heads):
            for j, objective in enumerate(self.objectives):
                self.record(f"F/{head}/{objective}", float(logged[k, j]), mode)
        self.record("z", z, mode)
        return normalized

    # ------------------------------------------------------------------ state
    def method_state(self) -> dict[str, Any]:
        """The reward normaliser's statistics and z: what resuming and evaluating need beyond the weights."""
        return {"normalizer": self.normalizer.to_dict() if self.normalizer is not None else None, "z": self.z}

    def load_method_state(self, state: dict[str, Any]) -> None:
        if state.get("normalizer") is not None:
            self.normalizer = RewardNormalizer.from_dict(state["normalizer"], source=self.state_file_name)
        self.z = state.get("z")

    def _save(self, output_dir: str | None = None, state_dict: Any = None) -> None:
        super()._save(output_dir, state_dict)
        if self.normalizer is not None:
            self.normalizer.save(os.path.join(output_dir or self.args.output_dir, NORMALIZER_FILE))
        with open(os.path.join(output_dir or self.args.output_dir, f"{self.method_name}_normalization.json"),
                  "w") as handle:
            json.dump({"z": self.z, "reward_normalization": self.args.reward_normalization,
                       "smooth_temperature": self.args.smooth_temperature}, handle, indent=2)


class HaMTrainer(WeightedLikelihoodTrainer):
    """Train K heads of a :class:`~moalign.models.MultiHeadCausalLM` to maximise their hypervolume (HaM).

    Args:
        model: a ``MultiHeadCausalLM`` with K heads (``policy_0`` .. ``policy_{K-1}`` when built by
            ``moalign train ham``).
        args: :class:`~moalign.methods.ham.config.HaMConfig`.
        train_dataset / eval_dataset: pointwise rows (``prompt``, ``completion``, ``scores``: J floats), a
            ``MultiObjectiveDataset`` (a pairwise one with scores is converted) or a ``datasets.Dataset`` with
            ``objectives=``.
        objectives: objective names in the order of ``scores``.
        processing_class: the tokenizer.
    """

    method_name = "ham"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._break_full_head_symmetry()

    @classmethod
    def head_names_for(cls, config: HaMConfig, objectives: list[str]) -> list[str]:
        """``policy_0`` .. ``policy_{K-1}`` with K = ``num_policies``: HaM's heads are not tied to objectives."""
        return [f"policy_{k}" for k in range(config.num_policies)]

    def _break_full_head_symmetry(self) -> None:
        """Identical full heads stay identical under the HV gradient; perturb them once (``full_head_init_noise``)."""
        output = self.unwrapped_model.output
        noise = self.args.full_head_init_noise
        if output.head_type != "full" or noise <= 0 or output.num_heads < 2:
            return
        weights = [head.weight for head in output.heads]
        if not all(torch.equal(weights[0], w) for w in weights[1:]):
            return
        generator = torch.Generator().manual_seed(self.args.seed)
        scale = noise * float(weights[0].detach().float().std())
        with torch.no_grad():
            for w in weights:
                w.add_((torch.randn(w.shape, generator=generator) * scale).to(w))

    def hypervolume(self, points: torch.Tensor, mode: str) -> torch.Tensor:
        """HV of the heads' normalised points above the origin: eq. 6, or eq. 10 with directions from the step."""
        reference = torch.zeros(points.shape[1], dtype=points.dtype, device=points.device)
        args: HaMConfig = self.args
        if args.uses_exact_hypervolume:
            return inclusion_exclusion_hypervolume(points, reference)
        step = self.state.global_step if mode == "train" else 0
        return random_hypervolume_scalarization(points, reference, args.num_directions, seed=args.seed + step)

    def method_loss(self, model: Any, inputs: dict[str, torch.Tensor], mode: str) -> torch.Tensor:
        """``-HV`` of the heads' F_bar on the batch (eqs. 9, 4, 6/10); in eval nothing is stored."""
        points = self.normalized_likelihoods(model, inputs, mode)  # (K, J)
        hv = self.hypervolume(points, mode)
        self.record("hv", float(hv.detach()), mode)
        return -hv
