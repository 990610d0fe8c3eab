"""``MultiObjectiveTrainer``: the ``transformers.Trainer`` every moalign method subclasses.

What every method needs lives here, so that a method's trainer holds only its
loss and its own state (as TRL's trainers on ``Trainer``):

* a :class:`~moalign.data.MultiObjectiveDataset` in, its objective names kept
  (``self.objectives``); evaluation data of the same objectives;
* the collator of the method's data kind (``data_kind = "pairwise"``: 2B
  sequences with the symmetric-augmentation ``preference`` labels);
* policy / snapshot / reference sequence log-probs of a
  :class:`~moalign.models.MultiHeadCausalLM` (reference log-probs precomputed
  once on request, on the model's device), with one shared backbone pass when
  the backbone is frozen;
* the heads' own learning rate (``head_learning_rate``);
* metrics kept per mode, ``train`` and ``eval`` apart (TRL's ``_metrics[mode]``),
  averaged into each log line;
* evaluation that never changes training state: :meth:`method_loss` is told
  the mode and must not update anything when it is ``"eval"``;
* a method's own state saved in every checkpoint and restored on resume
  (:meth:`method_state` / :meth:`load_method_state`);
* cross-process helpers (:meth:`gather_rows`, :meth:`average_across_processes`)
  so that a method's state stays identical on every rank;
* one compute precision (``args.precision``, :mod:`moalign.precision`) for every
  model pass of a step: the whole loss computation — policy, snapshot and
  reference log-probs, on-policy generation — runs in one autocast context.

A subclass sets ``method_name`` and implements :meth:`method_loss`; see
:mod:`moalign.methods.mopo.trainer` and the registry in
:mod:`moalign.methods.registry`.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any, ClassVar

import torch
from transformers import Trainer

from moalign.models.multihead import eval_mode
from moalign.precision import precision_autocast
from moalign.trainers.base_config import MultiObjectiveConfig
from moalign.trainers.collator import PairwiseCollator, PointwiseCollator, PromptCollator


class MultiObjectiveTrainer(Trainer):
    """Shared base of the multi-objective trainers (see the module docstring).

    Args:
        model: a :class:`~moalign.models.MultiHeadCausalLM`.
        args: a :class:`MultiObjectiveConfig` (or a method's subclass of it).
        train_dataset / eval_dataset: a ``MultiObjectiveDataset`` (objectives travel
            with it) or a ``datasets.Dataset`` with ``objectives=`` given.
        objectives: objective names in the order of the rows' label lists.
        processing_class: the tokenizer.
    """

    #: registry name; also names the checkpoint file of the method's state
    method_name: ClassVar[str] = "multi_objective"
    #: the row format the method trains on ("pairwise" or "pointwise")
    data_kind: ClassVar[str] = "pairwise"

    def __init__(self, model: Any, args: MultiObjectiveConfig, train_dataset: Any = None, eval_dataset: Any = None,
                 objectives: list[str] | None = None, processing_class: Any = None, data_collator: Any = None,
                 **kwargs: Any) -> None:
        name = type(self).__name__
        train_dataset, objectives = _unpack_dataset(train_dataset, objectives, "train_dataset")
        eval_dataset, objectives = _unpack_dataset(eval_dataset, objectives, "eval_dataset")
        if objectives is None:
            raise ValueError(f"{name} needs the objective names: pass `objectives=` or a MultiObjectiveDataset")
        if processing_class is None:
            raise ValueError(f"{name} needs the tokenizer as `processing_class`")
        self.objectives = list(objectives)
        use_chat = args.use_chat_template
        if use_chat is None:
            use_chat = getattr(processing_class, "chat_template", None) is not None
        data_collator = data_collator or self.make_collator(processing_class, args, use_chat)
        super().__init__(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                         processing_class=processing_class, data_collator=data_collator, **kwargs)
        #: "bf16" or "fp32": the precision every model pass of this trainer runs in (saved with the model)
        self.compute_precision = args.compute_precision
        if args.precompute_ref_log_probs:  # after the Trainer placed the model on its device
            self.train_dataset = self._with_reference_log_probs(self.train_dataset)
            self.eval_dataset = self._with_reference_log_probs(self.eval_dataset)
        # our losses do their own normalisation; let the Trainer divide by the accumulation steps
        self.model_accepts_loss_kwargs = False
        self._metrics: dict[str, dict[str, list[float]]] = {"train": defaultdict(list), "eval": defaultdict(list)}

    # ------------------------------------------------------------------ what a method implements
    @classmethod
    def head_names_for(cls, config: MultiObjectiveConfig, objectives: list[str]) -> list[str]:
        """Names of the policy heads to build for ``objectives`` (default: one head per objective)."""
        return list(objectives)

    def method_loss(self, model: Any, inputs: dict[str, torch.Tensor], mode: str) -> torch.Tensor:
        """The method's loss on a batch. ``mode`` is ``"train"`` or ``"eval"``; in eval change no state."""
        raise NotImplementedError(f"{type(self).__name__} must implement method_loss")

    def method_state(self) -> dict[str, Any]:
        """The method's own state beyond the weights (saved in every checkpoint); empty by default."""
        return {}

    def load_method_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`method_state` returned."""

    def make_collator(self, tokenizer: Any, args: MultiObjectiveConfig, use_chat_template: bool) -> Any:
        """The collator of ``data_kind`` rows: :class:`PairwiseCollator`, :class:`PointwiseCollator`, or
        :class:`PromptCollator` (``"prompts"``: untokenised prompts for online methods)."""
        if self.data_kind == "prompts":
            return PromptCollator()
        collators = {"pairwise": PairwiseCollator, "pointwise": PointwiseCollator}
        if self.data_kind not in collators:
            raise NotImplementedError(f"{type(self).__name__}: no default collator for {self.data_kind!r} data "
                                      f"(known kinds: {sorted(collators)}); override make_collator")
        return collators[self.data_kind](tokenizer, args.max_prompt_length, args.max_completion_length,
                                         use_chat_template)

    # ------------------------------------------------------------------ log-probs
    @property
    def unwrapped_model(self) -> Any:
        return unwrap_multihead(self.model)

    def policy_logps(self, model: Any, inputs: dict[str, torch.Tensor],
                     hidden_states: torch.Tensor | None = None) -> torch.Tensor:
        """``(H, N)`` sequence log-probs of every head, with gradients.

        Called through ``model(...)`` (not the unwrapped model's method) so that a DDP wrapper sees the forward
        and synchronises the gradients.
        """
        return model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                     completion_mask=inputs["completion_mask"], average=self.args.length_normalize,
                     hidden_states=hidden_states)

    @torch.no_grad()
    def shared_hidden_states(self, model: Any, inputs: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The frozen backbone's hidden states of the batch, computed once (eval mode, no gradients), or None.

        Only with ``reuse_frozen_backbone`` and a model whose backbone does not train
        (``MultiHeadCausalLM.backbone_is_frozen``): then the policy, snapshot and reference log-probs differ
        only in the head, and one backbone pass serves all three.
        """
        base = unwrap_multihead(model)
        if not (self.args.reuse_frozen_backbone and base.backbone_is_frozen):
            return None
        with eval_mode(base):
            return base.hidden_states(inputs["input_ids"], inputs["attention_mask"])

    @torch.no_grad()
    def snapshot_logps(self, model: Any, inputs: dict[str, torch.Tensor],
                       hidden_states: torch.Tensor | None = None) -> torch.Tensor:
        """``(H, N)`` log-probs of the model's snapshot (adapter + heads copies), in eval mode, no gradients.

        Eval mode: without LoRA dropout the snapshot's log-probs are deterministic, as a reference's are.
        """
        base = unwrap_multihead(model)
        with eval_mode(base), base.snapshot_context():
            return base.sequence_logps(inputs["input_ids"], inputs["attention_mask"], inputs["completion_mask"],
                                       average=self.args.length_normalize, hidden_states=hidden_states)

    @torch.no_grad()
    def reference_logps(self, model: Any, inputs: dict[str, torch.Tensor],
                        hidden_states: torch.Tensor | None = None) -> torch.Tensor:
        """``(N,)`` log-probs of the reference policy (base model): precomputed column or a no-grad pass."""
        if "ref_logps" in inputs:
            return inputs["ref_logps"]
        base = unwrap_multihead(model)
        with base.reference_context():
            return base.sequence_logps(inputs["input_ids"], inputs["attention_mask"], inputs["completion_mask"],
                                       heads=[0], average=self.args.length_normalize,
                                       hidden_states=hidden_states)[0]

    def _with_reference_log_probs(self, dataset: Any) -> Any:
        if dataset is None or (hasattr(dataset, "column_names") and "ref_logps_a" in dataset.column_names):
            return dataset
        with self.autocast_smart_context_manager():
            return precompute_reference_log_probs(self.model, dataset, self.data_collator,
                                                  self.args.per_device_train_batch_size, self.args.length_normalize)

    # ------------------------------------------------------------------ metrics
    def record(self, name: str, value: float, mode: str) -> None:
        """Add one value of metric ``name`` for ``mode``; each log line reports the mean since the last one."""
        self._metrics[mode][name].append(float(value))

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "eval" if any(key.startswith("eval_") for key in logs) else "train"
        prefix = "eval_" if mode == "eval" else ""
        logs.update({f"{prefix}{k}": sum(v) / len(v) for k, v in self._metrics[mode].items() if v})
        self._metrics[mode].clear()
        super().log(logs, start_time)

    # ------------------------------------------------------------------ processes
    def average_across_processes(self, tensor: torch.Tensor) -> torch.Tensor:
        """Mean of ``tensor`` over the processes (itself with one process); returned on the CPU."""
        if self.accelerator.num_processes <= 1:
            return tensor
        return self.accelerator.reduce(tensor.to(self.accelerator.device), reduction="mean").cpu()

    def gather_rows(self, tensor: torch.Tensor, dim: int = 0) -> tuple[torch.Tensor, slice]:
        """Concatenate ``tensor`` over the processes along ``dim`` (rank order); also this rank's slice.

        With a method's per-batch statistics computed on the gathered rows, every rank holds the same state
        and the same numbers as one process with the global batch.
        """
        size = tensor.shape[dim]
        if self.accelerator.num_processes <= 1:
            return tensor, slice(0, size)
        moved = tensor.movedim(dim, 0).contiguous().to(self.accelerator.device)
        sizes = self.accelerator.gather(torch.tensor([size], device=self.accelerator.device)).tolist()
        if len(set(sizes)) != 1:
            raise RuntimeError(f"processes hold batches of different sizes {sizes}; use even batches")
        gathered = self.accelerator.gather(moved).cpu().movedim(0, dim)
        start = self.accelerator.process_index * size
        return gathered, slice(start, start + size)

    # ------------------------------------------------------------------ Trainer overrides
    def autocast_smart_context_manager(self, cache_enabled: bool | None = True) -> Any:
        """bf16 autocast around the loss computation when :attr:`compute_precision` is bf16 (else a no-op).

        The Trainer enters this context (through ``compute_loss_context_manager``) around ``compute_loss`` in
        training and around :meth:`prediction_step` in evaluation; every forward pass and generation a method
        makes inside :meth:`method_loss` therefore runs in the chosen precision. Backward runs outside it, as
        autocast expects; the parameters and the optimizer stay float32.
        """
        return precision_autocast(self.compute_precision, self.args.device)

    def compute_loss(self, model: Any, inputs: dict[str, torch.Tensor], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        mode = "train" if model.training else "eval"
        loss = self.method_loss(model, inputs, mode)
        return (loss, {}) if return_outputs else loss

    def prediction_step(self, model: Any, inputs: dict[str, Any], prediction_loss_only: bool,
                        ignore_keys: list[str] | None = None) -> tuple[torch.Tensor, None, None]:
        """Evaluation: the method's loss without gradients (no logits or labels: the batch has no token labels)."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.method_loss(model, inputs, "eval")
        return loss.detach(), None, None

    def create_optimizer(self, model: Any = None) -> torch.optim.Optimizer:
        """Trainer's optimizer; with ``head_learning_rate`` the policy heads get parameter groups of their own.

        The optimizer the Trainer built (no step taken, no state yet) is regrouped in place: each of its
        groups is split into the adapter part (its own ``lr``) and the head part (``head_learning_rate``).
        """
        created = self.optimizer is None
        optimizer = super().create_optimizer(model)
        if self.args.head_learning_rate is None or not created:
            return optimizer
        head_ids = {id(p) for p in unwrap_multihead(self.model).output.parameters()}
        groups = []
        for group in optimizer.param_groups:
            for is_head in (False, True):
                params = [p for p in group["params"] if (id(p) in head_ids) == is_head]
                if params:
                    groups.append({**group, "params": params,
                                   "lr": self.args.head_learning_rate if is_head else group["lr"]})
        optimizer.param_groups.clear()
        for group in groups:
            optimizer.add_param_group(group)
        return optimizer

    # ------------------------------------------------------------------ save / resume
    @property
    def state_file_name(self) -> str:
        """File of a checkpoint holding the method's state (``<method_name>_state.pt``)."""
        return f"{self.method_name}_state.pt"

    def _save(self, output_dir: str | None = None, state_dict: Any = None) -> None:
        output_dir = output_dir or self.args.output_dir
        os.makedirs(output_dir, exist_ok=True)
        unwrap_multihead(self.model).save_pretrained(output_dir)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))
        state = {"method": self.method_name, "objectives": self.objectives, "precision": self.compute_precision,
                 **self.method_state()}
        torch.save(state, os.path.join(output_dir, self.state_file_name))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        unwrap_multihead(model or self.model).load_trainable_state(resume_from_checkpoint)
        path = os.path.join(resume_from_checkpoint, self.state_file_name)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{resume_from_checkpoint} has no {self.state_file_name}: not a checkpoint of "
                                    f"{type(self).__name__}")
        state = torch.load(path, weights_only=False)
        if state["objectives"] != self.objectives:
            raise ValueError(f"{path}: checkpoint objectives {state['objectives']} differ from {self.objectives}")
        self.load_method_state(state)


def unwrap_multihead(model: Any) -> Any:
    """The MultiHeadCausalLM inside DDP/accelerate wrappers."""
    while hasattr(model, "module") and not hasattr(model, "sequence_logps"):
        model = model.module
    return model


def _unpack_dataset(dataset: Any, objectives: list[str] | None, what: str) -> tuple[Any, list[str] | None]:
    """``(datasets.Dataset, objectives)`` from a MultiObjectiveDataset or a plain dataset."""
    if dataset is None or not (hasattr(dataset, "objectives") and hasattr(dataset, "dataset")):
        return dataset, objectives
    if objectives is not None and list(dataset.objectives) != list(objectives):
        raise ValueError(f"{what} has objectives {list(dataset.objectives)}, expected {list(objectives)}")
    return dataset.dataset, list(dataset.objectives)


@torch.no_grad()
def precompute_reference_log_probs(model: Any, dataset: Any, collator: PairwiseCollator, batch_size: int,
                                   average: bool = False) -> Any:
    """Add ``ref_logps_a``/``ref_logps_b`` columns: the base model's sequence log-probs (one pass, model's device)."""
    from tqdm.auto import tqdm

    base = unwrap_multihead(model)
    ref_a: list[float] = []
    ref_b: list[float] = []
    device = next(base.parameters()).device
    for start in tqdm(range(0, len(dataset), batch_size), desc="reference log-probs"):
        rows = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        batch = collator(rows)
        with base.reference_context():
            logps = base.sequence_logps(batch["input_ids"].to(device), batch["attention_mask"].to(device),
                                        batch["completion_mask"].to(device), heads=[0], average=average)[0].cpu()
        ref_a += logps[: len(rows)].tolist()
        ref_b += logps[len(rows):].tolist()
    return dataset.add_column("ref_logps_a", ref_a).add_column("ref_logps_b", ref_b)
