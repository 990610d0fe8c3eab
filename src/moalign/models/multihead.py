"""``MultiHeadCausalLM``: K policy heads on one (optionally LoRA-adapted) causal LM backbone.

The multi-policy model of the MOPO paper App. A.6 (Figure 10) and
the HaM paper Sec. 3.5 (docs/design.md lists the papers): every policy shares the transformer backbone
and has its own output head (:mod:`moalign.models.heads`).  The base model's
output layer is replaced by a :class:`~moalign.models.heads.MultiHeadOutput`,
so the model's own ``forward`` and ``generate`` run the active head or a
steered combination of heads (docs/design.md, MOPO 8) with no generation code of our
own.

Training API (used by the trainers):

* :meth:`MultiHeadCausalLM.sequence_logps` -- one backbone pass, then per head
  the summed (or mean) completion-token log-probs, without materialising all
  heads' ``(B, T, V)`` logits (only completion positions are projected; low-rank
  heads share one base projection, :mod:`moalign.models.shared_projection`;
  full heads go one at a time, with activation checkpointing under autograd);
* :meth:`reference_context` -- the reference policy pi_ref: LoRA disabled and
  every head replaced by the base output layer (the pretrained model);
* :meth:`take_snapshot` / :meth:`snapshot_context` -- a frozen copy of the
  trainable state (a second PEFT adapter plus copies of the heads; no second
  model copy), e.g. MOPO's lagged reference (:mod:`moalign.models.snapshot`).

Without a ``LoraConfig`` the backbone is frozen and only the heads train.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, fields
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from moalign.models.config import MultiHeadConfig
from moalign.models.heads import MultiHeadOutput
from moalign.models.shared_projection import low_rank_token_logps
from moalign.models.serialization import load_multihead, load_trainable_state, save_multihead
from moalign.models.snapshot import DEFAULT_ADAPTER, SNAPSHOT_ADAPTER, TrainableStateSnapshot

__all__ = ["MultiHeadConfig", "MultiHeadCausalLM", "DEFAULT_ADAPTER", "SNAPSHOT_ADAPTER"]


#: config fields of architectures that transform the lm_head output (soft-capping, scaling): not supported
_LOGIT_POSTPROCESSING_FIELDS = ("final_logit_softcapping", "logit_scale", "logits_scaling")


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` in eval mode (dropout off) inside the block; its previous train/eval mode is restored after."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


def _check_backbone_path(causal_lm: nn.Module, decoder: nn.Module, output_layer: nn.Module) -> None:
    """Check that ``output_layer(decoder(x))`` reproduces the model's logits (no post-processing after lm_head)."""
    config = causal_lm.config.get_text_config() if hasattr(causal_lm.config, "get_text_config") else causal_lm.config
    for name in _LOGIT_POSTPROCESSING_FIELDS:
        value = getattr(config, name, None)
        if value is not None and value != 1.0:
            raise ValueError(
                f"{type(causal_lm).__name__}: config.{name}={value} post-processes the lm_head output; "
                "MultiHeadCausalLM does not support it"
            )
    vocab = output_layer.weight.shape[0]
    device = output_layer.weight.device
    ids = torch.tensor([[1 % vocab, 2 % vocab, 3 % vocab]], device=device)
    with eval_mode(causal_lm), torch.no_grad():
        expected = causal_lm(input_ids=ids, use_cache=False).logits.float()
        hidden = decoder(input_ids=ids, use_cache=False).last_hidden_state
        got = output_layer(hidden).float()
    if expected.shape != got.shape or not torch.allclose(expected, got, rtol=1e-3, atol=1e-3):
        raise ValueError(
            f"{type(causal_lm).__name__}: its logits are not output_layer(last hidden state) (the model post-processes "
            "the lm_head output, e.g. logit soft-capping or scaling); MultiHeadCausalLM does not support it"
        )


class MultiHeadCausalLM(TrainableStateSnapshot, nn.Module):
    """A causal LM with K policy heads sharing its backbone.

    Args:
        base_model: a Hugging Face causal LM (``PreTrainedModel`` with an
            ``nn.Linear`` output embedding).  It is modified in place: its
            ``lm_head`` becomes a :class:`MultiHeadOutput`.
        config: head configuration; keyword ``overrides`` set its fields.
        lora_config: optional ``peft.LoraConfig`` for the backbone.  If its
            ``target_modules`` is None, all linear layers of the backbone
            (attention and MLP projections; never the heads) are targeted; if
            its ``task_type`` is None, ``"CAUSAL_LM"`` is used.
    """

    #: heads and steering act on the output layer only: every head and steering policy reads a prompt with the same
    #: backbone, so evaluation may share a prompt's key/value cache between them (moalign.eval.prompt_cache)
    heads_share_backbone = True

    def __init__(
        self,
        base_model: nn.Module,
        config: MultiHeadConfig | None = None,
        lora_config: Any | None = None,
        *,
        _adapter_dir: str | os.PathLike | None = None,
        _adapter_trainable: bool = True,
        **overrides: Any,
    ) -> None:
        super().__init__()
        from peft import PeftModel  # local import keeps `import moalign.models` light

        if isinstance(base_model, PeftModel):
            raise TypeError("pass the plain transformers model and a lora_config, not a PeftModel")
        config = copy.deepcopy(config) if config is not None else MultiHeadConfig()
        if overrides:
            known = {f.name for f in fields(MultiHeadConfig)}
            unknown = sorted(set(overrides) - known)
            if unknown:
                raise TypeError(f"unknown MultiHeadConfig fields {unknown}; known fields: {sorted(known)}")
            merged = {**asdict(config), **overrides}
            default_names = [f"head_{k}" for k in range(config.num_heads)]
            if "head_names" not in overrides and config.head_names == default_names:
                merged["head_names"] = None  # default names follow an overridden num_heads
            config = MultiHeadConfig(**merged)
        if config.base_model_name_or_path is None:
            config.base_model_name_or_path = getattr(getattr(base_model, "config", None), "name_or_path", None) or None
        self.head_config = config

        output_layer = base_model.get_output_embeddings()
        if output_layer is None:
            raise TypeError(f"{type(base_model).__name__} has no output embedding (lm_head) to replace")
        decoder = base_model.base_model
        _check_backbone_path(base_model, decoder, output_layer)
        output = MultiHeadOutput(
            output_layer,
            config.num_heads,
            head_type=config.head_type,
            rank=config.head_rank,
            alpha=config.head_alpha,
            init_std=config.head_init_std,
            seed=config.seed,
        )
        base_model.set_output_embeddings(output)
        # plain lists: only `self.model` is a registered submodule (no duplicate entries in state dicts)
        self._decoder = [decoder]
        self._causal_lm = [base_model]
        self._output = [output]

        self.lora_config = None
        if _adapter_dir is not None:
            self.model = PeftModel.from_pretrained(base_model, str(_adapter_dir), is_trainable=_adapter_trainable)
            self.lora_config = self.model.peft_config[DEFAULT_ADAPTER]
        elif lora_config is not None:
            from peft import get_peft_model

            lora_config = copy.deepcopy(lora_config)
            if getattr(lora_config, "target_modules", None) is None:
                lora_config.target_modules = "all-linear"
            if getattr(lora_config, "task_type", None) is None:
                lora_config.task_type = "CAUSAL_LM"
            self.model = get_peft_model(base_model, lora_config, adapter_name=DEFAULT_ADAPTER)
            self.lora_config = self.model.peft_config[DEFAULT_ADAPTER]
        else:
            self.model = base_model
            for param in base_model.parameters():
                param.requires_grad_(False)
        if any(name.startswith("lora_") or ".lora_" in name for name, _ in self.output.named_parameters()):
            raise ValueError("LoRA target_modules matched the policy heads; target backbone modules only")
        self.output.base_weight.requires_grad_(False)
        for param in self.output.heads.parameters():
            param.requires_grad_(_adapter_trainable or _adapter_dir is None)

    # ------------------------------------------------------------ properties
    @property
    def causal_lm(self) -> nn.Module:
        """The wrapped transformers model (its ``lm_head`` is :attr:`output`; LoRA layers injected if any)."""
        return self._causal_lm[0]

    @property
    def output(self) -> MultiHeadOutput:
        """The :class:`MultiHeadOutput` holding the policy heads (the model's ``lm_head``)."""
        return self._output[0]

    @property
    def config(self) -> Any:
        """The base model's transformers config (what Trainer/TRL utilities expect); heads: :attr:`head_config`."""
        return self.causal_lm.config

    @property
    def is_peft(self) -> bool:
        return self.model is not self.causal_lm

    @property
    def num_heads(self) -> int:
        return self.head_config.num_heads

    @property
    def head_names(self) -> list[str]:
        return list(self.head_config.head_names)

    @property
    def device(self) -> torch.device:
        return self.output.base_weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.output.base_weight.dtype

    @property
    def generation_config(self) -> Any:
        return self.causal_lm.generation_config

    def head_index(self, head: int | str) -> int:
        """Index of a head given by index or name."""
        if isinstance(head, str):
            if head not in self.head_config.head_names:
                raise ValueError(f"unknown head name {head!r}; heads are {self.head_config.head_names}")
            return self.head_config.head_names.index(head)
        return self.output.check_head(head)

    @property
    def backbone_is_frozen(self) -> bool:
        """True when no LoRA adapter is attached and no backbone parameter trains: only the heads change, so
        the policy, snapshot and reference policies share the backbone's hidden states."""
        head_ids = {id(p) for p in self.output.parameters()}
        return not self.is_peft and not any(p.requires_grad for p in self.parameters() if id(p) not in head_ids)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters that training updates: the LoRA adapter (if any) and the policy heads."""
        return [param for param in self.parameters() if param.requires_grad]

    def parameter_counts(self) -> dict[str, int]:
        """Numbers of parameters: ``heads``, ``lora`` (default adapter), ``base`` (frozen original model)."""
        heads = sum(p.numel() for p in self.output.heads.parameters())
        lora = sum(
            p.numel()
            for name, p in self.model.named_parameters()
            if "lora_" in name and DEFAULT_ADAPTER in name.split(".")
        )
        base = sum(p.numel() for p in self.causal_lm.parameters()) - heads - lora
        base -= sum(p.numel() for n, p in self.model.named_parameters() if SNAPSHOT_ADAPTER in n.split("."))
        return {"heads": heads, "lora": lora, "base": base}

    # --------------------------------------------------------- head choice
    def use_head(self, head: int | str) -> None:
        """Make ``head`` the active head of ``forward``/``generate`` (and turn steering off)."""
        self.output.active_head = self.head_index(head)
        self.output.set_steering(None)

    def use_steering(self, weights: Sequence[float] | torch.Tensor | None, divergence: str = "reverse_kl") -> None:
        """Steer ``forward``/``generate`` with ``weights`` until changed (``None`` turns steering off)."""
        self.output.set_steering(weights, divergence)

    @contextmanager
    def head(self, head: int | str) -> Iterator[MultiHeadCausalLM]:
        """Context in which ``forward``/``generate`` use head ``head`` only."""
        saved = (self.output.active_head, self.output.steering)
        self.use_head(head)
        try:
            yield self
        finally:
            self.output.active_head, self.output.steering = saved

    @contextmanager
    def steer(
        self, weights: Sequence[float] | torch.Tensor, divergence: str = "reverse_kl"
    ) -> Iterator[MultiHeadCausalLM]:
        """Context in which ``forward``/``generate`` use the heads combined with ``weights``.

        ``divergence``: ``"reverse_kl"`` (sum_k w_k log p_k), ``"forward_kl"`` or
        ``"<alpha>-divergence"`` (-logsumexp_k(-alpha log p_k + log w_k)); see
        :mod:`moalign.models.steering`.
        """
        saved = self.output.steering
        self.output.set_steering(weights, divergence)
        try:
            yield self
        finally:
            self.output.steering = saved

    # ----------------------------------------------------------- references
    @contextmanager
    def reference_context(self) -> Iterator[MultiHeadCausalLM]:
        """Context computing the reference policy: LoRA disabled, every head = the base output layer.

        Applies to :meth:`forward`, :meth:`generate` and :meth:`sequence_logps`.
        Dropout follows the train/eval mode; wrap in ``torch.no_grad()``.
        """
        saved = self.output.source
        adapters_off = self.model.disable_adapter() if self.is_peft else nullcontext()
        with adapters_off:
            self.output.set_source("reference")
            try:
                yield self
            finally:
                self.output.source = saved

    # ------------------------------------------------------------ computing
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The wrapped model's forward; logits come from the active head / steering / source.

        Called with a ``completion_mask`` keyword it returns :meth:`sequence_logps` instead: the trainers'
        entry point, so that a DDP wrapper around this module sees a forward and synchronises gradients.
        """
        if "completion_mask" in kwargs:
            return self.sequence_logps(**kwargs)
        return self.model(*args, **kwargs)

    def generate(
        self,
        *args: Any,
        head: int | str | None = None,
        steering_weights: Sequence[float] | torch.Tensor | None = None,
        divergence: str = "reverse_kl",
        **kwargs: Any,
    ) -> Any:
        """``model.generate`` with head ``head`` or with ``steering_weights`` (else the current state)."""
        if head is not None and steering_weights is not None:
            raise ValueError("pass either head or steering_weights, not both")
        if head is not None:
            context = self.head(head)
        elif steering_weights is not None:
            context = self.steer(steering_weights, divergence)
        else:
            context = nullcontext()
        with context:
            return self.model.generate(*args, **kwargs)

    def hidden_states(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Last hidden states ``(B, T, d)`` of the backbone (LoRA state as set by the contexts)."""
        outputs = self._decoder[0](
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        )
        return outputs.last_hidden_state

    def sequence_logps(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        completion_mask: torch.Tensor,
        heads: Sequence[int] | None = None,
        average: bool = False,
        position_ids: torch.Tensor | None = None,
        hidden_states: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-head sequence log-likelihoods of completions, ``(len(heads), batch)``.

        ``log pi_k(y|x) = sum_t completion_mask[:, t] * log pi_k(input_ids[:, t] | input_ids[:, <t])``
        (MOPO eq. 7 / docs/design.md, MOPO 5: sum over completion tokens; ``average``
        divides by the number of completion tokens).  One backbone pass; per
        head, only the completion positions are projected to the vocabulary.
        Within :meth:`reference_context` every head is the base output layer
        and within :meth:`snapshot_context` the snapshot.  Steering is
        ignored.  Use right padding (or pass ``position_ids``) so positions
        match those of generation.  ``hidden_states`` (``(B, T, d)``, from
        :meth:`hidden_states`) skips the backbone pass: with a frozen backbone
        (:attr:`backbone_is_frozen`) the policy, snapshot and reference heads can
        share one pass.
        """
        head_list = list(range(self.num_heads)) if heads is None else [self.head_index(h) for h in heads]
        if not head_list:
            raise ValueError("heads must name at least one head")
        completion = _validate_masks(input_ids, attention_mask, completion_mask)
        if hidden_states is None:
            hidden = self.hidden_states(input_ids, attention_mask, position_ids)
        elif hidden_states.shape[:2] != input_ids.shape:
            raise ValueError(f"hidden_states of shape {tuple(hidden_states.shape)} do not match input_ids "
                             f"{tuple(input_ids.shape)}: expected (batch, length, hidden size)")
        else:
            hidden = hidden_states
        targets_mask = completion[:, 1:]
        selected = hidden[:, :-1][targets_mask]  # (N, d): states that predict completion tokens
        targets = input_ids[:, 1:][targets_mask]  # (N,)
        batch = input_ids.shape[0]
        rows = torch.arange(batch, device=input_ids.device).unsqueeze(1).expand_as(targets_mask)[targets_mask]
        counts = targets_mask.sum(dim=1)
        if average and bool((counts == 0).any()):
            empty = torch.nonzero(counts == 0).flatten().tolist()
            raise ValueError(f"completion_mask rows {empty} have no completion token; cannot average")

        source = self.output.source
        if self.output.head_type == "low_rank" and source != "reference":
            token_logps = self._low_rank_token_logps(selected, targets, head_list, source)
            per_row = token_logps.new_zeros(len(head_list), batch).index_add(1, rows, token_logps)
            return per_row / counts.to(per_row.dtype) if average else per_row
        cache: dict[str, torch.Tensor] = {}
        results = []
        for head in head_list:
            if source == "reference" and "reference" in cache:
                results.append(cache["reference"])
                continue
            token_logps = self._token_logps(selected, targets, head, source)
            per_row = torch.zeros(batch, dtype=token_logps.dtype, device=token_logps.device)
            per_row = per_row.index_add(0, rows, token_logps)
            if average:
                per_row = per_row / counts.to(per_row.dtype)
            if source == "reference":
                cache["reference"] = per_row
            results.append(per_row)
        return torch.stack(results)

    def _low_rank_token_logps(self, hidden: torch.Tensor, targets: torch.Tensor, heads: list[int],
                              source: str) -> torch.Tensor:
        """``(len(heads), N)`` token log-probs of low-rank heads with one shared base projection."""
        output = self.output
        chosen = [output.heads[h] for h in heads]
        factors = [head.factors(from_snapshot=source == "snapshot") for head in chosen]
        return low_rank_token_logps(hidden, targets, output.base_weight, output.base_bias, factors,
                                    [head.scaling for head in chosen])

    def _token_logps(self, hidden: torch.Tensor, targets: torch.Tensor, head: int, source: str) -> torch.Tensor:
        output = self.output

        def token_logps(states: torch.Tensor) -> torch.Tensor:
            logits = output.head_logits(states, head, source).float()
            return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)

        needs_grad = torch.is_grad_enabled() and (
            hidden.requires_grad or any(p.requires_grad for p in output.heads[head].parameters())
        )
        if self.head_config.checkpoint_heads and needs_grad:
            return checkpoint(token_logps, hidden, use_reentrant=False)
        return token_logps(hidden)

    def gradient_checkpointing_enable(self, **kwargs: Any) -> None:
        """Activation checkpointing of the backbone (delegates to transformers; inputs made to require grad)."""
        kwargs.setdefault("gradient_checkpointing_kwargs", {"use_reentrant": False})
        self.causal_lm.gradient_checkpointing_enable(**kwargs)
        if self.is_peft:
            self.causal_lm.enable_input_require_grads()

    # -------------------------------------------------------------- saving
    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Save the head config (JSON), the LoRA adapter (PEFT format) and the heads (safetensors).

        The base model is not saved: :meth:`from_pretrained` reloads it from
        ``head_config.base_model_name_or_path`` (or takes it as an argument).
        The snapshot is training state and is not saved.
        """
        save_multihead(self, save_directory, adapter_name=DEFAULT_ADAPTER)

    def load_trainable_state(self, directory: str | os.PathLike) -> None:
        """Load the adapter and heads of a :meth:`save_pretrained` folder into this model (resume)."""
        load_trainable_state(self, directory, adapter_name=DEFAULT_ADAPTER)

    @classmethod
    def from_pretrained(
        cls,
        directory: str | os.PathLike,
        base_model: nn.Module | None = None,
        is_trainable: bool = True,
        **base_model_kwargs: Any,
    ) -> MultiHeadCausalLM:
        """Reload a model saved by :meth:`save_pretrained`.

        ``base_model``: the base causal LM; if None it is loaded with
        :func:`moalign.models.loading.load_base_model` from the saved
        ``base_model_name_or_path`` (``base_model_kwargs`` passed on).
        ``is_trainable=False`` freezes the adapter and heads and sets eval mode.
        """
        return load_multihead(cls, directory, base_model, is_trainable=is_trainable, **base_model_kwargs)


def _validate_masks(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, completion_mask: torch.Tensor
) -> torch.Tensor:
    """Check the masks of :meth:`MultiHeadCausalLM.sequence_logps`; return the completion mask as bool."""
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}")
    for name, mask in (("attention_mask", attention_mask), ("completion_mask", completion_mask)):
        if mask.shape != input_ids.shape:
            raise ValueError(f"{name} shape {tuple(mask.shape)} differs from input_ids shape {tuple(input_ids.shape)}")
        bad = (mask != 0) & (mask != 1)
        if bool(bad.any()):
            row, col = torch.nonzero(bad)[0].tolist()
            raise ValueError(f"{name}[{row}, {col}] = {mask[row, col].item()}; expected 0 or 1")
    completion = completion_mask.bool()
    if bool(completion[:, 0].any()):
        row = int(torch.nonzero(completion[:, 0])[0])
        raise ValueError(f"completion_mask[{row}, 0] = 1: the first token has no context to be predicted from")
    outside = completion & ~attention_mask.bool()
    if bool(outside.any()):
        row, col = torch.nonzero(outside)[0].tolist()
        raise ValueError(f"completion_mask[{row}, {col}] = 1 where attention_mask is 0 (a padding token)")
    return completion
