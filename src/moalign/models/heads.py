"""Policy heads on a shared backbone and the output module that holds them.

The multi-policy architecture of the MOPO paper App. A.6 (Figure 10)
and the HaM paper Sec. 3.5: policy ``k`` is a matrix
``theta_k in R^{L x d}`` and its next-token logits are ``theta_k phi`` where
``phi`` is the backbone's last hidden state.  Two head types:

* :class:`FullHead` -- the papers' head: a full ``L x d`` output matrix,
  initialised as an untied copy of the base model's output layer
  (``K L d`` parameters for K heads).
* :class:`LowRankHead` -- memory-light: the frozen shared base output layer
  plus a low-rank delta, ``theta_k = W_0 + s A_k B_k`` with
  ``A_k in R^{L x r}``, ``B_k in R^{r x d}``, ``s = alpha / r``; ``B_k`` starts at
  zero so every head starts equal to the base model (``K r (L + d)``
  parameters).

:class:`MultiHeadOutput` replaces the language model's output embedding
(``lm_head``).  Its ``forward(hidden)`` returns the logits of the *active* head,
or of the *steered* combination of heads (see :mod:`moalign.models.steering`),
computed with the current parameters, a frozen snapshot of them, or the reference (base) parameters.  As
it is the model's ``lm_head``, ``model.generate`` works unchanged.

Snapshots: :meth:`PolicyHead.snapshot` stores a frozen
copy (MOPO's lagged reference is one; see
:mod:`moalign.models.snapshot`) of a head's parameters as non-persistent buffers.  For low-rank heads this
costs ``r (L + d)`` numbers a head; for full heads ``L d`` a head (SmolLM2:
49152 x 576 = 28.3M floats, 113 MB in float32, per head).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from moalign.models.steering import Divergence, parse_divergence, steered_log_probs, validate_steering_weights

__all__ = ["HEAD_TYPES", "SOURCES", "PolicyHead", "FullHead", "LowRankHead", "MultiHeadOutput"]

HEAD_TYPES = ("full", "low_rank")
#: which parameters a computation uses: the trained heads, their snapshot, or the base output layer
SOURCES = ("policy", "snapshot", "reference")


class PolicyHead(nn.Module):
    """One policy head: maps last hidden states (..., d) to next-token logits (..., L)."""

    def logits(
        self, hidden: torch.Tensor, base_weight: torch.Tensor, base_bias: torch.Tensor | None, from_snapshot: bool = False
    ) -> torch.Tensor:
        raise NotImplementedError

    def _snapshot_names(self) -> list[str]:
        return [name for name, _ in self.named_parameters(recurse=False)]

    @property
    def has_snapshot(self) -> bool:
        return all(hasattr(self, f"snapshot_{name}") for name in self._snapshot_names())

    @torch.no_grad()
    def snapshot(self) -> None:
        """Copy the current parameters into frozen ``snapshot_<name>`` buffers (not saved in state dicts)."""
        for name, param in self.named_parameters(recurse=False):
            buffer_name = f"snapshot_{name}"
            existing = getattr(self, buffer_name, None)
            if existing is not None and existing.shape == param.shape and existing.dtype == param.dtype:
                existing.copy_(param.detach())
            else:
                self.register_buffer(buffer_name, param.detach().clone(), persistent=False)

    def _tensor(self, name: str, from_snapshot: bool) -> torch.Tensor:
        if not from_snapshot:
            return getattr(self, name)
        buffer = getattr(self, f"snapshot_{name}", None)
        if buffer is None:
            raise RuntimeError("this head has no snapshot; call take_snapshot() first")
        return buffer


class FullHead(PolicyHead):
    """A full output matrix ``theta_k`` (App. A.6), an untied copy of the base output layer."""

    def __init__(self, base_weight: torch.Tensor, base_bias: torch.Tensor | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(base_weight.detach().clone())
        self.bias = nn.Parameter(base_bias.detach().clone()) if base_bias is not None else None

    def logits(
        self, hidden: torch.Tensor, base_weight: torch.Tensor, base_bias: torch.Tensor | None, from_snapshot: bool = False
    ) -> torch.Tensor:
        bias = self._tensor("bias", from_snapshot) if self.bias is not None else None
        return F.linear(hidden, self._tensor("weight", from_snapshot), bias)


class LowRankHead(PolicyHead):
    """Base output layer plus a low-rank delta: ``theta_k = W_0 + (alpha / r) A_k B_k``.

    ``A_k`` (L x r) is drawn from N(0, init_std^2) and ``B_k`` (r x d) is zero,
    so the head starts exactly equal to the base model, and the first gradient
    step moves ``B_k`` (as LoRA does).  The logits are computed as
    ``W_0 h + s A_k (B_k h)`` without ever forming the L x d delta.
    """

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int,
        rank: int,
        alpha: float | None = None,
        init_std: float = 0.02,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"low-rank head rank must be >= 1, got {rank}")
        self.rank = rank
        self.alpha = float(alpha) if alpha is not None else float(rank)
        self.scaling = self.alpha / rank
        a = torch.randn(vocab_size, rank, generator=generator, dtype=torch.float32) * init_std
        self.A = nn.Parameter(a.to(device=device, dtype=dtype))
        self.B = nn.Parameter(torch.zeros(rank, hidden_size, device=device, dtype=dtype))

    def factors(self, from_snapshot: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A_k, B_k)``: the current parameters, or the snapshot's."""
        return self._tensor("A", from_snapshot), self._tensor("B", from_snapshot)

    def logits(
        self, hidden: torch.Tensor, base_weight: torch.Tensor, base_bias: torch.Tensor | None, from_snapshot: bool = False
    ) -> torch.Tensor:
        a, b = self.factors(from_snapshot)
        base = F.linear(hidden, base_weight, base_bias)
        return base + self.scaling * F.linear(F.linear(hidden, b), a)


class MultiHeadOutput(nn.Module):
    """K policy heads that replace a causal LM's output layer.

    The base output layer's weight (and bias) are kept by reference, frozen,
    never copied: when the base model ties ``lm_head`` to the input embedding
    this is the embedding matrix itself, which therefore stays unchanged.

    State consulted by :meth:`forward` (set by the context managers of
    :class:`~moalign.models.multihead.MultiHeadCausalLM`):

    * ``active_head`` -- head used when not steering;
    * ``steering`` -- ``(weights, Divergence)`` or ``None``;
    * ``source`` -- ``"policy"``, ``"snapshot"`` (the frozen copy of the heads) or ``"reference"``
      (every head replaced by the base output layer).
    """

    def __init__(
        self,
        base_layer: nn.Linear,
        num_heads: int,
        head_type: str = "low_rank",
        rank: int = 8,
        alpha: float | None = None,
        init_std: float = 0.02,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(base_layer, nn.Linear):
            raise TypeError(
                f"the model's output layer must be a torch.nn.Linear to be replaced by policy heads, "
                f"got {type(base_layer).__name__}"
            )
        if head_type not in HEAD_TYPES:
            raise ValueError(f"head_type must be one of {HEAD_TYPES}, got {head_type!r}")
        if num_heads < 1:
            raise ValueError(f"num_heads must be >= 1, got {num_heads}")
        self.head_type = head_type
        self.vocab_size, self.hidden_size = base_layer.weight.shape
        # references to the original (possibly tied) parameters; frozen
        self.base_weight = base_layer.weight
        self.base_weight.requires_grad_(False)
        self.base_bias = base_layer.bias
        if self.base_bias is not None:
            self.base_bias.requires_grad_(False)
        weight = base_layer.weight
        if head_type == "full":
            heads = [FullHead(weight, self.base_bias) for _ in range(num_heads)]
        else:
            generator = torch.Generator().manual_seed(seed)
            heads = [
                LowRankHead(
                    self.vocab_size,
                    self.hidden_size,
                    rank,
                    alpha=alpha,
                    init_std=init_std,
                    dtype=weight.dtype,
                    device=weight.device,
                    generator=generator,
                )
                for _ in range(num_heads)
            ]
        self.heads = nn.ModuleList(heads)
        self.active_head = 0
        self.steering: tuple[list[float], Divergence] | None = None
        self.source = "policy"

    # ------------------------------------------------------------------ state
    @property
    def num_heads(self) -> int:
        return len(self.heads)

    def check_head(self, head: int) -> int:
        if not isinstance(head, int) or isinstance(head, bool) or not 0 <= head < self.num_heads:
            raise ValueError(f"head must be an integer in [0, {self.num_heads}), got {head!r}")
        return head

    def set_steering(self, weights: Sequence[float] | torch.Tensor | None, divergence: str = "reverse_kl") -> None:
        if weights is None:
            self.steering = None
            return
        self.steering = (validate_steering_weights(weights, self.num_heads, on_simplex=False),
                         parse_divergence(divergence))

    def set_source(self, source: str) -> None:
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
        if source == "snapshot" and not self.has_snapshot:
            raise RuntimeError("no snapshot of the heads; call take_snapshot() first")
        self.source = source

    @property
    def has_snapshot(self) -> bool:
        return all(head.has_snapshot for head in self.heads)

    def snapshot(self) -> None:
        for head in self.heads:
            head.snapshot()

    # ------------------------------------------------------------- computing
    def base_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits of the original output layer (the reference policy's head)."""
        return F.linear(hidden, self.base_weight, self.base_bias)

    def head_logits(self, hidden: torch.Tensor, head: int, source: str | None = None) -> torch.Tensor:
        """Logits of head ``head`` computed with ``source`` parameters (default: the current source)."""
        source = self.source if source is None else source
        if source == "reference":
            return self.base_logits(hidden)
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
        return self.heads[head].logits(hidden, self.base_weight, self.base_bias, from_snapshot=source == "snapshot")

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits of the active head, or log-probs of the steered combination of heads.

        Under the ``"reference"`` source every head is the base output layer,
        so the base logits are returned whatever the head choice or steering.
        """
        if self.source == "reference":
            return self.base_logits(hidden)
        if self.steering is None:
            return self.head_logits(hidden, self.active_head)
        weights, divergence = self.steering
        per_head = [self.head_logits(hidden, k) if w > 0 else None for k, w in enumerate(weights)]
        placeholder = next(logits for logits in per_head if logits is not None)
        per_head = [logits if logits is not None else placeholder for logits in per_head]
        return steered_log_probs(per_head, weights, divergence).to(placeholder.dtype)

    def extra_repr(self) -> str:
        return (
            f"num_heads={self.num_heads}, head_type={self.head_type!r}, vocab_size={self.vocab_size}, "
            f"hidden_size={self.hidden_size}"
        )
