"""Prompts read once for every steering weight: the key/value cache of a prompt batch, shared by the policies of
one multi-head model.

Evaluating a MOPO or HaM model means generating from the same prompts with every head and at every steering
weight (11 for a 2-objective grid). The heads and the steering mixture act only on the output layer; the
transformer below them -- the part that reads the prompt -- is the same for all of them. So the keys and values
the backbone computes for a prompt batch are the same for every such policy, and reading the prompts again for
each weight (the "prefill", 23 % of a steered evaluation of the demo's MOPO on 80 test prompts; profile in
docs/precision.md) repeats identical work.

:class:`SharedPromptCache` runs the backbone once over each batch's prompts *but their last token*, keeps that
cache, and gives each policy's ``generate`` a copy: generation then starts by reading the last prompt token
through the policy's own output layer, so the first new token is the policy's own. Position ids are those
``generate`` would use (the attention mask's running count, as for left padding). Valid while the model's weights
do not change: make one per evaluation. Outputs agree with a plain ``generate`` to rounding (the prompt is read
in two calls, whose matrix products may round differently), not bit for bit.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from moalign.eval.policies import Policy

__all__ = ["SharedPromptCache"]

#: policy kinds whose backbone is the model's own (adapter on), whatever head or weight they use
_SHARED_BACKBONE_KINDS = ("head", "steer")


class SharedPromptCache:
    """Key/value caches of prompt batches, read once per batch and shared by a model's head and steering policies.

    ``generate(model, policy, inputs, **kwargs)`` is ``model.generate(**inputs, **kwargs)``; for a head or steering
    policy of a model whose heads share its backbone (``heads_share_backbone``, as
    :class:`~moalign.models.MultiHeadCausalLM` declares), the batch's prompt (all but its last token) is read
    once and each call continues from a copy of that cache. Any other policy or model generates as usual.
    """

    def __init__(self) -> None:
        self._caches: dict[tuple, Any] = {}
        #: how many batches were read once and how many calls continued from a stored batch (for tests and logs)
        self.stored = 0
        self.reused = 0

    @staticmethod
    def shares(model: Any, policy: Policy) -> bool:
        """Whether ``policy`` reads its prompts with the backbone every head and steering policy of ``model`` uses."""
        return policy.kind in _SHARED_BACKBONE_KINDS and getattr(model, "heads_share_backbone", False) is True

    def generate(self, model: Any, policy: Policy, inputs: dict[str, torch.Tensor], **kwargs: Any) -> torch.Tensor:
        """``model.generate(**inputs, **kwargs)``, continuing from the batch's shared prompt cache where it applies.

        Call it where the policy's generation context is entered (``policy_context``), under ``torch.no_grad()``.
        """
        input_ids, mask = inputs["input_ids"], inputs.get("attention_mask")
        if not self.shares(model, policy) or input_ids.shape[1] < 2 or "cache" in kwargs:
            return model.generate(**inputs, **kwargs)
        if mask is None:
            mask = torch.ones_like(input_ids)
        key = (id(model), input_ids.shape, input_ids.cpu().numpy().tobytes(), mask.cpu().numpy().tobytes())
        if key not in self._caches:
            self._caches[key] = self._read_prompt(model, input_ids[:, :-1], mask[:, :-1])
            self.stored += 1
        else:
            self.reused += 1
        return model.generate(input_ids=input_ids, attention_mask=mask, cache=copy.deepcopy(self._caches[key]),
                              **kwargs)

    @staticmethod
    def _read_prompt(model: Any, input_ids: torch.Tensor, mask: torch.Tensor) -> Any:
        """The key/value cache of ``input_ids`` with the position ids ``generate`` gives a left-padded batch."""
        positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
        out = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True,
                    logits_to_keep=1)
        return out.cache
