"""MOPOTrainer: MOPO (MOPO paper, Algorithm 1) for causal language models.

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
4. every ``lag_steps`` optimizer steps: the adaptive threshold (``threshold_rule``;
   default 'attained': b_h <- beta * the phase's mean of the lower bound the dual
   step checked; 'paper': beta * G_hat of the lagged policy as printed) and the
   lagged policy becomes the current one (an adapter + head snapshot inside the
   model, no second model copy).

The constraint estimate of step 2 (``constraint_estimator``) uses by default the
head's own label-free ratio ``clip(pi_h / pi_ref)`` (core's
``policy_estimate_weights``): the per-row weight of eq. (10)/(11) contains the
row's own secondary label and overestimates the policy's value
(docs/design.md, MOPO 7; measured on the toy in docs/toy.md).

The reference pi_ref is the base model (LoRA disabled, base output layer), or
precomputed log-probs. The dual state (lambda, chi, b), the lag bookkeeping
and the lagged snapshot are saved in every checkpoint and restored on resume.

Everything that is not MOPO (data, collator, log-probs, metrics, checkpoints,
processes) comes from :class:`~moalign.trainers.base_trainer.MultiObjectiveTrainer`.
With several processes the dual step runs on the rows of all processes
(gathered), so lambda, chi and b are the same on every rank and equal to a
single process with the global batch. Evaluation (``mode='eval'``) computes the
loss with the current lambda and logs the estimates and bounds without taking
a dual step, updating b or moving the lagged reference.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from moalign.core.cloning import behaviour_cloning_loss
from moalign.core.mopo import (
    MOPODual,
    constraint_value,
    lagged_reference_log_weight,
    policy_estimate_weights,
)
from moalign.core.thresholds import next_threshold, rule_source
from moalign.trainers.base_trainer import MultiObjectiveTrainer, unwrap_multihead
from moalign.methods.mopo.config import MOPOConfig


class MOPOTrainer(MultiObjectiveTrainer):
    """Train a :class:`~moalign.models.MultiHeadCausalLM` with MOPO (one head per primary objective).

    Args:
        model: a ``MultiHeadCausalLM`` whose ``head_names`` are the primary objectives.
        args: :class:`MOPOConfig`.
        train_dataset / eval_dataset: pairwise rows (``prompt``, ``completion_a``, ``completion_b``,
            ``preference``: K floats); a ``moalign.data.MultiObjectiveDataset`` or a ``datasets.Dataset``
            with ``objectives=``.
        objectives: objective names in the order of ``preference``.
        processing_class: the tokenizer.
    """

    method_name = "mopo"
    data_kind = "pairwise"

    def __init__(self, model: Any, args: MOPOConfig, train_dataset: Any = None, objectives: list[str] | None = None,
                 processing_class: Any = None, eval_dataset: Any = None, data_collator: Any = None, **kwargs: Any):
        super().__init__(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                         objectives=objectives, processing_class=processing_class, data_collator=data_collator,
                         **kwargs)
        self.head_objectives = [self._objective_index(n) for n in unwrap_multihead(model).head_names]
        self.duals = [self._make_dual(h) for h in range(len(self.head_objectives))]
        self.lag_active = False  # becomes True at the first lag update (before, pi_lag == pi_ref)
        self.last_lag_step = 0
        self._lagged_estimate_sum = torch.zeros(len(self.duals), max(len(self.objectives) - 1, 1))
        self._lagged_estimate_count = 0
        self._phase_bound_sum = torch.zeros_like(self._lagged_estimate_sum)  # 'attained': checked LB over the phase
        self._phase_bound_count = 0
        self._previous_state: dict[str, torch.Tensor] | None = None  # snapshot_time='lagged': the policy at t - t0

    # ------------------------------------------------------------------ setup
    @classmethod
    def head_names_for(cls, config: MOPOConfig, objectives: list[str]) -> list[str]:
        """One head per primary objective (``primary_objectives``, default: every objective)."""
        primary = list(config.primary_objectives or objectives)
        unknown = [p for p in primary if p not in objectives]
        if unknown:
            raise ValueError(f"primary_objectives {unknown} are not objectives of the dataset: {objectives}")
        return primary

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
            b = torch.full((n_sec,), float("nan"))  # set from the first batch (see method_loss)
        return MOPODual(lam=torch.full((n_sec,), float(args.initial_lambda)), threshold=b, tau=args.tau,
                        eps=args.lower_bound_eps, lr_lambda=args.lambda_learning_rate / args.gradient_accumulation_steps,
                        chi_solver=args.chi_solver, lr_chi=args.chi_learning_rate,
                        num_minibatches=args.lower_bound_minibatches)

    # ------------------------------------------------------------------ loss
    def method_loss(self, model: Any, inputs: dict[str, torch.Tensor], mode: str) -> torch.Tensor:
        """Alg. 1 lines 5-8 on a batch (train), or the loss at the current lambda without any update (eval)."""
        training = mode == "train"
        if training:
            self._maybe_update_lag(model)
        args: MOPOConfig = self.args
        hidden = self.shared_hidden_states(model, inputs)
        policy_logps = self.policy_logps(model, inputs, hidden)  # (H, 2B)
        extra, reference = None, None
        if self.lag_active and args.lag_steps > 0:
            lagged = self.snapshot_logps(model, inputs, hidden)
            reference = self.reference_logps(model, inputs, hidden)
            extra = lagged_reference_log_weight(lagged.float().cpu(), reference.float().cpu(), args.lag_log_ratio_clip)
        estimate_weights = None
        if args.constraint_estimator == "policy":  # label-free weights of the head itself (docs/design.md, MOPO 7)
            if reference is None:
                reference = self.reference_logps(model, inputs, hidden)
            own = self.gather_rows(policy_logps.detach().float().cpu(), dim=1)[0]
            ref = self.gather_rows(reference.float().cpu().expand_as(policy_logps), dim=1)[0]
            estimate_weights = policy_estimate_weights(own, ref, args.lag_log_ratio_clip)
        # the dual step sees the rows of every process: identical state on all ranks
        preference, rows = self.gather_rows(inputs["preference"].float().cpu())
        if extra is not None:
            extra = self.gather_rows(extra, dim=1)[0]
        loss = policy_logps.new_zeros(())
        for h, dual in enumerate(self.duals):
            primary = preference[:, self.head_objectives[h]]
            secondary = preference[:, self.secondary_indices(h)]
            extra_h = None if extra is None else extra[h]
            est_h = None if estimate_weights is None else estimate_weights[h]
            if training:
                if torch.isnan(dual.threshold).any():  # default b: beta x the reference policy's value
                    dual.threshold = next_threshold(args.threshold_rule, args.threshold_beta,
                                                    reference_value=lambda _: self._lagged_value(secondary, None))
                out = dual.step(primary, secondary, extra_h, estimate_weights=est_h)
                self._phase_bound_sum[h, : out.lower_bound.numel()] += out.lower_bound.float()
                self._phase_bound_count += int(h == len(self.duals) - 1)
                dual.lam = self.average_across_processes(dual.lam)  # equal already; guards against drift
                dual.chi = self.average_across_processes(dual.chi)
                self._accumulate_lagged_value(h, secondary, extra_h)
            else:
                out = copy.deepcopy(dual).step(primary, secondary, extra_h, estimate_weights=est_h)  # no state change
                out.weights = dual.weights(primary, secondary, extra_h)
                out.lam = dual.lam
            loss = loss + behaviour_cloning_loss(policy_logps[h], out.weights[rows].to(policy_logps), "mean")
            self._record(h, out, mode)
        return loss

    def _lagged_value(self, secondary: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
        """G_hat (or its lower bound) of the lagged policy on this batch: what b <- beta * (.) scales (§3.1)."""
        lag_weights = None if extra is None else torch.softmax(extra, 0) * extra.numel()
        args: MOPOConfig = self.args
        source = rule_source(args.threshold_rule, phase_mean_available=False)  # 'attained': b^(0) from the LB
        return constraint_value(secondary, source, args.lower_bound_eps, weights=lag_weights,
                                num_minibatches=args.lower_bound_minibatches)

    def _accumulate_lagged_value(self, head: int, secondary: torch.Tensor, extra: torch.Tensor | None) -> None:
        """Sum the lagged policy's value over the lag phase, for the adaptive thresholds."""
        lagged_estimate = self._lagged_value(secondary, extra)
        self._lagged_estimate_sum[head, : lagged_estimate.numel()] += lagged_estimate
        if head == len(self.duals) - 1:
            self._lagged_estimate_count += 1
        name = self.objectives[self.head_objectives[head]]
        for j, k in enumerate(self.secondary_indices(head)):
            self.record(f"lagged_value/{name}/{self.objectives[k]}", float(lagged_estimate[j]), "train")

    def _record(self, head: int, out: Any, mode: str) -> None:
        """Log lambda, b, G_hat and the lower bound per (head, secondary objective)."""
        name = self.objectives[self.head_objectives[head]]
        for j, k in enumerate(self.secondary_indices(head)):
            tag = f"{name}/{self.objectives[k]}"
            self.record(f"lambda/{tag}", float(out.lam[j]), mode)
            self.record(f"lower_bound/{tag}", float(out.lower_bound[j]), mode)
            self.record(f"threshold/{tag}", float(self.duals[head].threshold[j]), mode)
            self.record(f"estimate/{tag}", float(out.estimate[j]), mode)

    def _maybe_update_lag(self, model: Any) -> None:
        """Alg. 1 lines 9-11: every t0 optimizer steps update b (adaptive) and the lagged reference."""
        args: MOPOConfig = self.args
        step = self.state.global_step
        if args.lag_steps <= 0 or step == 0 or step % args.lag_steps or step == self.last_lag_step:
            return
        if args.threshold_mode == "adaptive" and self._lagged_estimate_count > 0:
            # the bound b was checked against (phase mean), and the lagged policy's value (phase mean, of the
            # source the rule scales): core's next_threshold picks what the rule needs
            mean_bound = self._phase_bound_sum / self._phase_bound_count if self._phase_bound_count else None
            mean_lagged = self._lagged_estimate_sum / self._lagged_estimate_count
            for h, dual in enumerate(self.duals):
                n = dual.threshold.numel()
                dual.threshold = next_threshold(args.threshold_rule, args.threshold_beta,
                                                None if mean_bound is None else mean_bound[h, :n],
                                                lambda source, h=h, n=n: mean_lagged[h, :n])
        self._lagged_estimate_sum.zero_()
        self._lagged_estimate_count = 0
        self._phase_bound_sum.zero_()
        self._phase_bound_count = 0
        self._move_lagged_reference(unwrap_multihead(model))
        self.last_lag_step = step

    def _move_lagged_reference(self, model: Any) -> None:
        """Alg. 1 line 11: the lagged reference becomes the policy at t ('current') or at t - t0 ('lagged')."""
        model.take_snapshot()  # the snapshot now holds the policy at t
        if self.args.snapshot_time == "current":
            self.lag_active = True
            return
        at_t = model.snapshot_state_dict()
        if self._previous_state is not None:  # the policy at t - t0 becomes the reference
            model.load_snapshot_state_dict(self._previous_state)
            self.lag_active = True
        # else: first update, the policy at t - t0 = 0 is pi_ref: the reference stays pi_ref (lag_active unchanged)
        self._previous_state = at_t

    # ------------------------------------------------------------------ state in checkpoints
    def method_state(self) -> dict[str, Any]:
        """Everything MOPO needs beyond the weights to continue exactly where it stopped."""
        return {
            "duals": [d.state_dict() for d in self.duals],
            "lag_active": self.lag_active,
            "last_lag_step": self.last_lag_step,
            "lagged_estimate_sum": self._lagged_estimate_sum.clone(),
            "lagged_estimate_count": self._lagged_estimate_count,
            "phase_bound_sum": self._phase_bound_sum.clone(),
            "phase_bound_count": self._phase_bound_count,
            "lagged_snapshot": self.unwrapped_model.snapshot_state_dict() if self.lag_active else None,
            "previous_state": self._previous_state,
        }

    def load_method_state(self, state: dict[str, Any]) -> None:
        for dual, s in zip(self.duals, state["duals"]):
            dual.load_state_dict(s)
        self.lag_active = state["lag_active"]
        self.last_lag_step = state["last_lag_step"]
        self._lagged_estimate_sum = state["lagged_estimate_sum"].clone()
        self._lagged_estimate_count = state["lagged_estimate_count"]
        self._phase_bound_sum = state.get("phase_bound_sum", torch.zeros_like(self._lagged_estimate_sum)).clone()
        self._phase_bound_count = state.get("phase_bound_count", 0)
        self._previous_state = state.get("previous_state")
        if state["lagged_snapshot"] is not None:
            self.unwrapped_model.load_snapshot_state_dict(state["lagged_snapshot"])
