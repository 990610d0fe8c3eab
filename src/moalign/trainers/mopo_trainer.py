"""MOPOTrainer: MOPO (mopo-paper Algorithm 1) for causal language models.

One policy head per primary objective on a shared backbone (App. A.6). For
head h with primary objective p and secondary objectives q, every step:

1. the 2B sequences of a batch of B pairs (symmetric augmentation, §3.1) get
   the closed-form log ratio ``(I_p + lambda_h^T I_q) / tau - 1`` from their
   own labels (eq. 11, per-sample form), plus the clipped lagged-reference
   log ratio ``log pi_lag,h(y) - log pi_ref(y)`` (§3.1);
2. ``moalign.core.MOPODual.step`` self-normalises the weights, computes the
   pessimistic lower bound of each secondary objective (eq. 4/12), and takes
   the dual step on lambda_h (eq. 13);
3. the head is trained by weighted behaviour cloning,
   ``-mean(w * log pi_h(y|x))`` (eq. 7/13), with w detached;
4. every ``lag_steps`` optimizer steps: b_h <- beta * G_hat of the lagged
   policy (adaptive thresholds) and the lagged policy becomes the current
   one (an adapter + head snapshot inside the model, no second model copy).

The reference pi_ref is the base model (LoRA disabled, base output layer), or
precomputed log-probs. The dual state (lambda, chi, b), the lag bookkeeping
and the lagged snapshot are saved in every checkpoint and restored on resume.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

import torch
from transformers import Trainer

from moalign.core.mopo import (
    MOPODual,
    adaptive_threshold,
    constraint_estimate,
    lagged_reference_log_weight,
    lower_bound,
)
from moalign.models.multihead import eval_mode
from moalign.trainers.collator import PairwiseCollator
from moalign.trainers.mopo_config import MOPOConfig

DUAL_STATE_NAME = "mopo_state.pt"


class MOPOTrainer(Trainer):
    """``transformers.Trainer`` subclass training a :class:`~moalign.models.MultiHeadCausalLM` with MOPO.

    Args:
        model: a ``MultiHeadCausalLM`` whose ``head_names`` are the primary objectives.
        args: :class:`MOPOConfig`.
        train_dataset: pairwise rows (``prompt``, ``completion_a``, ``completion_b``,
            ``preference``: K floats); a ``datasets.Dataset`` or an object with
            ``.dataset`` and ``.objectives`` (``moalign.data.MultiObjectiveDataset``).
        objectives: objective names in the order of ``preference`` (taken from the
            dataset wrapper when it carries them).
        processing_class: the tokenizer.
    """

    def __init__(self, model: Any, args: MOPOConfig, train_dataset: Any = None, objectives: list[str] | None = None,
                 processing_class: Any = None, eval_dataset: Any = None, data_collator: Any = None, **kwargs: Any):
        if hasattr(train_dataset, "objectives") and hasattr(train_dataset, "dataset"):
            objectives = objectives or list(train_dataset.objectives)
            train_dataset = train_dataset.dataset
        if objectives is None:
            raise ValueError("MOPOTrainer needs the objective names: pass `objectives=` or a MultiObjectiveDataset")
        self.objectives = list(objectives)
        self.head_objectives = [self._objective_index(n) for n in model.head_names]
        if processing_class is None:
            raise ValueError("MOPOTrainer needs the tokenizer as `processing_class`")
        use_chat = args.use_chat_template
        if use_chat is None:
            use_chat = getattr(processing_class, "chat_template", None) is not None
        data_collator = data_collator or PairwiseCollator(
            processing_class, args.max_prompt_length, args.max_completion_length, use_chat)
        if args.precompute_ref_log_probs and train_dataset is not None:
            train_dataset = precompute_reference_log_probs(model, train_dataset, data_collator,
                                                           args.per_device_train_batch_size, args.length_normalize)
        super().__init__(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                         processing_class=processing_class, data_collator=data_collator, **kwargs)
        self.duals = [self._make_dual(h) for h in range(len(self.head_objectives))]
        self.lag_active = False  # becomes True at the first lag update (before, pi_lag == pi_ref)
        self.last_lag_step = 0
        self._lagged_estimate_sum = torch.zeros(len(self.duals), max(len(self.objectives) - 1, 1))
        self._lagged_estimate_count = 0
        self._metrics: dict[str, list[float]] = defaultdict(list)

    # ------------------------------------------------------------------ setup
    def _objective_index(self, name: str) -> int:
        if name not in self.objectives:
            raise ValueError(f"model head {name!r} is not one of the dataset objectives {self.objectives}")
        return self.objectives.index(name)

    def secondary_indices(self, head: int) -> list[int]:
        """Objectives lower-bounded by ``head``: all but its primary one."""
        return [k for k in range(len(self.objectives)) if k != self.head_objectives[head]]

    def _make_dual(self, head: int) -> MOPODual:
        args: MOPOConfig = self.args
        n_sec = len(self.secondary_indices(head))
        if args.thresholds is not None:
            b = torch.tensor([args.thresholds[k] for k in self.secondary_indices(head)], dtype=torch.float32)
        else:
            b = torch.full((n_sec,), float("nan"))  # set from the first batch (see _record)
        return MOPODual(lam=torch.full((n_sec,), float(args.initial_lambda)), threshold=b, tau=args.tau,
                        eps=args.lower_bound_eps, lr_lambda=args.lambda_learning_rate / args.gradient_accumulation_steps,
                        chi_solver=args.chi_solver, lr_chi=args.chi_learning_rate,
                        num_minibatches=args.lower_bound_minibatches)

    # ------------------------------------------------------------------ loss
    def compute_loss(self, model: Any, inputs: dict[str, torch.Tensor], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        self._maybe_update_lag(model)
        args: MOPOConfig = self.args
        ids, mask, cmask = inputs["input_ids"], inputs["attention_mask"], inputs["completion_mask"]
        labels = inputs["labels"].float().cpu()
        hidden = self.shared_hidden_states(model, inputs)
        policy_logps = _unwrap(model).sequence_logps(ids, mask, cmask, average=args.length_normalize,
                                                     hidden_states=hidden)  # (H, 2B)
        extra = None
        if self.lag_active and args.lag_steps > 0:
            lagged, reference = self.lagged_and_reference_logps(model, inputs, hidden)
            extra = lagged_reference_log_weight(lagged.float().cpu(), reference.float().cpu(), args.lag_log_ratio_clip)
        loss = policy_logps.new_zeros(())
        for h, dual in enumerate(self.duals):
            primary = labels[:, self.head_objectives[h]]
            secondary = labels[:, self.secondary_indices(h)]
            extra_h = None if extra is None else extra[h]
            if torch.isnan(dual.threshold).any():  # default b: beta x the reference policy's value
                dual.threshold = adaptive_threshold(self._lagged_value(secondary, None), args.threshold_beta)
            out = dual.step(primary, secondary, extra_h)
            self._sync_dual(dual)
            weights = out.weights.to(policy_logps)
            loss = loss - (weights * policy_logps[h]).mean()
            self._record(h, out, secondary, extra_h)
        return (loss, {"policy_logps": policy_logps}) if return_outputs else loss

    @torch.no_grad()
    def shared_hidden_states(self, model: Any, inputs: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The frozen backbone's hidden states of the batch, computed once (eval mode, no gradients), or None.

        Only with ``reuse_frozen_backbone`` and a model whose backbone does not train
        (``MultiHeadCausalLM.backbone_is_frozen``): then the policy, lagged and reference log-probs differ
        only in the head, and one backbone pass serves all three.
        """
        base = _unwrap(model)
        if not (self.args.reuse_frozen_backbone and base.backbone_is_frozen):
            return None
        with eval_mode(base):
            return base.hidden_states(inputs["input_ids"], inputs["attention_mask"])

    @torch.no_grad()
    def lagged_and_reference_logps(self, model: Any, inputs: dict[str, torch.Tensor],
                                   hidden_states: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(H, 2B)`` log-probs of the lagged heads and ``(2B,)`` of the reference policy, without gradients.

        The lagged pass runs in eval mode: log pi_lag without LoRA dropout is deterministic, as a reference
        policy's log-probs are, and cheaper (no dropout masks on the inputs of every LoRA layer).
        ``hidden_states`` (see :meth:`shared_hidden_states`) replaces both backbone passes.
        """
        args: MOPOConfig = self.args
        ids, mask, cmask = inputs["input_ids"], inputs["attention_mask"], inputs["completion_mask"]
        base = _unwrap(model)
        with eval_mode(base), base.lagged_context():
            lagged = base.sequence_logps(ids, mask, cmask, average=args.length_normalize, hidden_states=hidden_states)
        if "ref_logps" in inputs:
            return lagged, inputs["ref_logps"].to(lagged)
        with base.reference_context():
            reference = base.sequence_logps(ids, mask, cmask, heads=[0], average=args.length_normalize,
                                            hidden_states=hidden_states)[0]
        return lagged, reference

    def _lagged_value(self, secondary: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
        """G_hat (or its lower bound) of the lagged policy on this batch: what b <- beta * (.) scales (§3.1)."""
        lag_weights = torch.ones(secondary.shape[0]) if extra is None else torch.softmax(extra, 0) * extra.numel()
        if self.args.threshold_source == "estimate" or self.args.lower_bound_eps <= 0:
            return constraint_estimate(lag_weights, secondary)
        z = (lag_weights.unsqueeze(-1) * secondary).T  # (K-1, n)
        m = self.args.lower_bound_minibatches
        return lower_bound(z.reshape(z.shape[0], m, -1), self.args.lower_bound_eps)[0]

    def _record(self, head: int, out: Any, secondary: torch.Tensor, extra: torch.Tensor | None) -> None:
        """Log per objective and accumulate the lagged policy's value for the adaptive thresholds."""
        lagged_estimate = self._lagged_value(secondary, extra)
        self._lagged_estimate_sum[head, : lagged_estimate.numel()] += lagged_estimate
        if head == len(self.duals) - 1:
            self._lagged_estimate_count += 1
        name = self.objectives[self.head_objectives[head]]
        for j, k in enumerate(self.secondary_indices(head)):
            tag = f"{name}/{self.objectives[k]}"
            self._metrics[f"lambda/{tag}"].append(float(out.lam[j]))
            self._metrics[f"lower_bound/{tag}"].append(float(out.lower_bound[j]))
            self._metrics[f"threshold/{tag}"].append(float(self.duals[head].threshold[j]))
            self._metrics[f"estimate/{tag}"].append(float(out.estimate[j]))
            self._metrics[f"lagged_value/{tag}"].append(float(lagged_estimate[j]))

    def _sync_dual(self, dual: MOPODual) -> None:
        """Keep the dual state identical on every process (each sees a different batch)."""
        if self.accelerator.num_processes > 1:
            dev = self.accelerator.device
            dual.lam = self.accelerator.reduce(dual.lam.to(dev), reduction="mean").cpu()
            dual.chi = self.accelerator.reduce(dual.chi.to(dev), reduction="mean").cpu()

    def _maybe_update_lag(self, model: Any) -> None:
        """Alg. 1 lines 9-11: every t0 optimizer steps update b (adaptive) and the lagged reference."""
        args: MOPOConfig = self.args
        step = self.state.global_step
        if args.lag_steps <= 0 or step == 0 or step % args.lag_steps or step == self.last_lag_step:
            return
        if args.threshold_mode == "adaptive" and self._lagged_estimate_count > 0:
            mean_estimate = self._lagged_estimate_sum / self._lagged_estimate_count
            for h, dual in enumerate(self.duals):
                dual.threshold = adaptive_threshold(mean_estimate[h, : dual.threshold.numel()], args.threshold_beta)
        self._lagged_estimate_sum.zero_()
        self._lagged_estimate_count = 0
        _unwrap(model).snapshot_lagged()
        self.lag_active = True
        self.last_lag_step = step

    # ------------------------------------------------------------------ optimizer
    def create_optimizer(self, model: Any = None) -> torch.optim.Optimizer:
        """Trainer's optimizer; with ``head_learning_rate`` the policy heads get parameter groups of their own.

        The optimizer the Trainer built (no step taken, no state yet) is regrouped in place: each of its
        groups is split into the adapter part (its own ``lr``) and the head part (``head_learning_rate``).
        """
        created = self.optimizer is None
        optimizer = super().create_optimizer(model)
        if self.args.head_learning_rate is None or not created:
            return optimizer
        head_ids = {id(p) for p in _unwrap(self.model).output.parameters()}
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

    # ------------------------------------------------------------------ logging
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        logs.update({k: sum(v) / len(v) for k, v in self._metrics.items() if v})
        self._metrics.clear()
        super().log(logs, start_time)

    # ------------------------------------------------------------------ save / resume
    def dual_state(self) -> dict[str, Any]:
        """Everything MOPO needs beyond the weights to continue exactly where it stopped."""
        return {
            "duals": [d.state_dict() for d in self.duals],
            "lag_active": self.lag_active,
            "last_lag_step": self.last_lag_step,
            "lagged_estimate_sum": self._lagged_estimate_sum.clone(),
            "lagged_estimate_count": self._lagged_estimate_count,
            "lagged_snapshot": _unwrap(self.model).lagged_state_dict() if self.lag_active else None,
            "objectives": self.objectives,
        }

    def load_dual_state(self, state: dict[str, Any]) -> None:
        if state["objectives"] != self.objectives:
            raise ValueError(f"checkpoint objectives {state['objectives']} differ from {self.objectives}")
        for dual, s in zip(self.duals, state["duals"]):
            dual.load_state_dict(s)
        self.lag_active = state["lag_active"]
        self.last_lag_step = state["last_lag_step"]
        self._lagged_estimate_sum = state["lagged_estimate_sum"].clone()
        self._lagged_estimate_count = state["lagged_estimate_count"]
        if state["lagged_snapshot"] is not None:
            _unwrap(self.model).load_lagged_state_dict(state["lagged_snapshot"])

    def _save(self, output_dir: str | None = None, state_dict: Any = None) -> None:
        output_dir = output_dir or self.args.output_dir
        os.makedirs(output_dir, exist_ok=True)
        _unwrap(self.model).save_pretrained(output_dir)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))
        torch.save(self.dual_state(), os.path.join(output_dir, DUAL_STATE_NAME))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        _unwrap(model or self.model).load_trainable_state(resume_from_checkpoint)
        path = os.path.join(resume_from_checkpoint, DUAL_STATE_NAME)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{resume_from_checkpoint} has no {DUAL_STATE_NAME}: not a MOPOTrainer checkpoint")
        self.load_dual_state(torch.load(path, weights_only=False))


def _unwrap(model: Any) -> Any:
    """The MultiHeadCausalLM inside DDP/accelerate wrappers."""
    while hasattr(model, "module") and not hasattr(model, "sequence_logps"):
        model = model.module
    return model


@torch.no_grad()
def precompute_reference_log_probs(model: Any, dataset: Any, collator: PairwiseCollator, batch_size: int,
                                   average: bool = False) -> Any:
    """Add ``ref_logps_a``/``ref_logps_b`` columns: the base model's sequence log-probs (one pass)."""
    from tqdm.auto import tqdm

    base = _unwrap(model)
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
