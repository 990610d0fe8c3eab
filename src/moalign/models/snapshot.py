"""A frozen snapshot of a multi-head model's trainable state (LoRA adapter + policy heads).

Some methods need the policy *as it was* a while ago next to the policy being
trained: MOPO's lagged reference (MOPO paper §3.1) is the policy of ``t0``
steps back.  A second model copy would double the memory; instead the model
keeps

* the LoRA weights in a second PEFT adapter named :data:`SNAPSHOT_ADAPTER`
  (the base weights are shared), and
* frozen copies of the heads as non-persistent buffers
  (:meth:`moalign.models.heads.PolicyHead.snapshot`).

:class:`TrainableStateSnapshot` is mixed into
:class:`~moalign.models.multihead.MultiHeadCausalLM`; it needs only the
model's ``model`` (the possibly PEFT-wrapped causal LM), ``is_peft`` and
``output`` (the :class:`~moalign.models.heads.MultiHeadOutput`).  The snapshot
is training state: it is not part of a saved model, but trainers store
:meth:`snapshot_state_dict` in their checkpoints.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

__all__ = ["DEFAULT_ADAPTER", "SNAPSHOT_ADAPTER", "TrainableStateSnapshot"]

DEFAULT_ADAPTER = "default"
SNAPSHOT_ADAPTER = "snapshot"
#: names used by checkpoints written before the snapshot had its own module (``lagged`` adapter and buffers)
_LEGACY_NAME = "lagged"


class TrainableStateSnapshot:
    """Mixin: take, use, save and restore one frozen copy of the adapter and the heads."""

    model: Any
    output: Any

    @property
    def is_peft(self) -> bool:  # overridden by the model class
        raise NotImplementedError

    @torch.no_grad()
    def take_snapshot(self) -> None:
        """Copy the current LoRA adapter and heads into the snapshot (overwriting an earlier one).

        Memory: the adapter size, plus per head ``r (V + d)`` numbers for
        low-rank heads or ``V d`` for full heads (SmolLM2: 113 MB float32 per
        full head).
        """
        if self.is_peft:
            flags = {id(p): p.requires_grad for p in self.parameters()}  # type: ignore[attr-defined]
            if SNAPSHOT_ADAPTER not in self.model.peft_config:
                self.model.add_adapter(SNAPSHOT_ADAPTER, copy.deepcopy(self.model.peft_config[DEFAULT_ADAPTER]))
            params = dict(self.model.named_parameters())
            copied = 0
            for name, param in params.items():
                parts = name.split(".")
                if DEFAULT_ADAPTER not in parts:
                    continue
                target = ".".join(SNAPSHOT_ADAPTER if part == DEFAULT_ADAPTER else part for part in parts)
                if target not in params:
                    raise RuntimeError(f"snapshot adapter has no parameter {target} matching {name}")
                params[target].copy_(param)
                copied += 1
            if copied == 0:
                raise RuntimeError("found no parameters of the default LoRA adapter to snapshot")
            for param in self.parameters():  # type: ignore[attr-defined]
                param.requires_grad_(flags.get(id(param), False))
        self.output.snapshot()

    @property
    def has_snapshot(self) -> bool:
        return self.output.has_snapshot

    @contextmanager
    def snapshot_context(self) -> Iterator[Any]:
        """Compute with the snapshot (its adapter and head copies) instead of the current state.

        Inside, every parameter is frozen (PEFT's ``set_adapter``); the
        ``requires_grad`` flags are restored on exit.  LoRA dropout follows the
        train/eval mode: call ``eval()`` for deterministic log-probs.
        """
        if not self.has_snapshot:
            raise RuntimeError("no snapshot; call take_snapshot() first")
        saved = self.output.source
        flags = {id(p): p.requires_grad for p in self.parameters()}  # type: ignore[attr-defined]
        if self.is_peft:
            self.model.set_adapter(SNAPSHOT_ADAPTER, inference_mode=True)
        self.output.set_source("snapshot")
        try:
            yield self
        finally:
            self.output.source = saved
            if self.is_peft:
                self.model.set_adapter(DEFAULT_ADAPTER)
            for param in self.parameters():  # type: ignore[attr-defined]
                param.requires_grad_(flags.get(id(param), False))

    def snapshot_state_dict(self) -> dict[str, torch.Tensor]:
        """Copies of the snapshot's tensors (``adapter.<name>`` and ``heads.<name>``), for checkpoints."""
        if not self.has_snapshot:
            raise RuntimeError("no snapshot; call take_snapshot() first")
        state = {}
        if self.is_peft:
            for name, param in self.model.named_parameters():
                if SNAPSHOT_ADAPTER in name.split("."):
                    state[f"adapter.{name}"] = param.detach().cpu().clone()
        for name, buffer in self.output.heads.named_buffers():
            if name.split(".")[-1].startswith(f"{SNAPSHOT_ADAPTER}_"):
                state[f"heads.{name}"] = buffer.detach().cpu().clone()
        return state

    def load_snapshot_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore a snapshot from :meth:`snapshot_state_dict` (also reads the older ``lagged`` key names)."""
        self.take_snapshot()  # builds the snapshot adapter and buffers with the right shapes
        params = dict(self.model.named_parameters())
        buffers = dict(self.output.heads.named_buffers())
        with torch.no_grad():
            for key, value in state.items():
                kind, name = key.split(".", 1)
                name = _current_name(name, kind)
                table = params if kind == "adapter" else buffers
                if name not in table:
                    raise KeyError(f"snapshot entry {key!r} does not match the model")
                table[name].copy_(value)


def _current_name(name: str, kind: str) -> str:
    """Translate a pre-rename (``lagged``) tensor name to the current one; other names pass unchanged."""
    parts = name.split(".")
    if kind == "adapter":
        return ".".join(SNAPSHOT_ADAPTER if part == _LEGACY_NAME else part for part in parts)
    legacy = f"{_LEGACY_NAME}_"
    if parts[-1].startswith(legacy):
        parts[-1] = f"{SNAPSHOT_ADAPTER}_" + parts[-1][len(legacy):]
    return ".".join(parts)
