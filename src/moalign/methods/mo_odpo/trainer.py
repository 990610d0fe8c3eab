"""MOODPOTrainer: Multi-Objective Online DPO (Gupta et al. 2025, arXiv 2503.00295, Algorithm 1) on the moalign base.

One policy (a single head, ``policy``), conditioned on objective weights through its prompt. Per training
batch of B prompts x (Algorithm 1, one pass of its inner loop for each prompt):

1. w ~ Dirichlet(alpha), quantised to 0.1 with the sum kept exactly 1 (§3.2;
   :func:`moalign.data.conditioning.sample_quantized_dirichlet`; or ``fixed_weights``);
2. x' = the weights' system-instruction block + x (§3.3; :func:`~moalign.data.conditioning.render_conditioned_prompt`,
   a system message under a chat template; skipped with ``condition_prompt: false``);
3. two samples y_1, y_2 ~ pi_theta(. | x') (§3.4): one batched ``generate`` with the KV cache, through PEFT
   with the adapter active, the model in eval mode (no dropout) and without gradients;
4. each (x, y_i) scored by the K reward functions on the **unconditioned** prompt x (§3.4), mapped to about
   [0, 1] by the saved min-max normaliser (fitted on the first training batch's samples, i.e. on the initial
   policy, then frozen); s_i = w^T r_i (eq. 1);
5. (y+, y-) = (y_1, y_2) if s_1 > s_2 else (y_2, y_1) (eq. 2); ties (|s_1 - s_2| <= ``tie_tolerance``) are
   left out of the loss and counted (``tie_rule: skip``), or follow eq. 2 literally (``tie_rule: second``);
6. the DPO loss (eq. 3) against the fixed anchor pi_theta0 = the initial policy (adapters off, base output
   layer), on x' (eq. 3 as written) or on x (``anchor_prompt: unconditioned``); mean over the non-tied pairs.

Logged per mode: ``weights/mean|std/<objective>`` (the weights' spread), ``rewards/chosen|rejected/<objective>``
(normalised), ``reward_margin`` (s+ - s-), ``dpo_accuracy`` (implicit reward of y+ above y-), ``kl_to_anchor``
(mean of log pi_theta(y|x') - log pi_theta0(y|anchor prompt) over the samples: a Monte Carlo estimate of the
KL of the sampling policy to the anchor), ``pairs/ties``, generation time and tokens. Evaluation runs the same
pipeline on the evaluation prompts with its own seeded generators (training RNGs, normaliser and weights are
not touched). Checkpoints hold the normaliser and the weight sampler's RNG state.

**Own loop, not TRL's ``OnlineDPOTrainer``.** TRL 1.16 ships ``OnlineDPOTrainer`` under
``trl.experimental.online_dpo`` only: an experimental API that may change or go. Subclassing it would also
mean overriding most of what MO-ODPO changes -- the per-prompt weights and conditioned prompts, scoring on the
*unconditioned* prompt, the weighted label with its tie rule, the anchor on either prompt -- while its model
handling (a plain ``PreTrainedModel``, its own reference/PEFT logic, its checkpoint format) would not fit our
:class:`~moalign.models.MultiHeadCausalLM`, registry, resume and evaluation. The loop is ~100 lines on our
base; the DPO arithmetic is :func:`moalign.core.losses.dpo_loss`, tested equal to TRL's ``DPOTrainer`` loss.
See docs/mo_odpo.md.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from moalign.core.losses import dpo_loss
from moalign.core.pairs import weighted_pair_labels
from moalign.data.conditioning import (
    ConditioningSpec,
    ConditioningTemplate,
    conditioning_file,
    sample_quantized_dirichlet,
)
from moalign.data.prompts import has_chat_template, render_prompt
from moalign.models.multihead import eval_mode
from moalign.rewards.base import CallableReward, RewardFunction, RewardNormalizer
from moalign.rewards.labelling import score_completions
from moalign.rewards.registry import resolve_rewards
from moalign.trainers.base_trainer import MultiObjectiveTrainer, unwrap_multihead
from moalign.trainers.collator import PromptCollator, SequenceCollator
from moalign.methods.mo_odpo.config import MOODPOConfig



# ---------------------------------------------------------------------------------------------- labels
label_pairs = weighted_pair_labels  # eqs. 1-2 with the tie rule: core.pairs (the toy calls the same function)


@dataclass
class OnlinePairs:
    """One batch of labelled on-policy pairs: sequences ``[y_1 of every prompt, y_2 of every prompt]``."""

    weights: torch.Tensor  # (B, K)
    prompts: list[Any]  # x' (or x without conditioning)
    completion_ids: list[list[int]]  # 2B
    completions: list[str]  # 2B decoded
    raw_scores: np.ndarray  # (2B, K)
    rewards: torch.Tensor  # (2B, K) normalised
    first_wins: torch.Tensor  # (B,) bool
    used: torch.Tensor  # (B,) bool
    s1: torch.Tensor
    s2: torch.Tensor
    batch: dict[str, torch.Tensor]  # policy sequences (prompt x')
    anchor_batch: dict[str, torch.Tensor]  # anchor sequences (x' or x)
    timing: dict[str, float]


# ---------------------------------------------------------------------------------------------- trainer
class MOODPOTrainer(MultiObjectiveTrainer):
    """MO-ODPO (see the module docstring).

    Args:
        model: a ``MultiHeadCausalLM`` with one head (``moalign train mo_odpo`` builds head ``policy``).
        args: :class:`~moalign.methods.mo_odpo.config.MOODPOConfig`.
        train_dataset / eval_dataset: prompts (a :class:`~moalign.data.prompt_data.PromptDataset` or a
            ``datasets.Dataset`` with a ``prompt`` column, text or chat messages).
        objectives: objective names; default: the reward functions' names.
        processing_class: the tokenizer.
        reward_funcs: the K reward functions (default: built from ``args.reward_functions``).
    """

    method_name = "mo_odpo"
    data_kind = "prompts"

    def __init__(self, model: Any, args: MOODPOConfig, train_dataset: Any = None, eval_dataset: Any = None,
                 objectives: list[str] | None = None, processing_class: Any = None, data_collator: Any = None,
                 reward_funcs: list[Any] | None = None, **kwargs: Any) -> None:
        if reward_funcs is None:
            if not args.reward_functions:
                raise ValueError("MOODPOTrainer needs reward functions: set reward_functions or pass reward_funcs=")
            reward_funcs = resolve_rewards(list(args.reward_functions))
        self.reward_funcs = [f if isinstance(f, RewardFunction) else CallableReward(f) for f in reward_funcs]
        if objectives is None and not hasattr(train_dataset, "objectives"):
            objectives = [f.name for f in self.reward_funcs]
        super().__init__(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                         objectives=objectives, processing_class=processing_class, data_collator=data_collator,
                         **kwargs)
        if len(self.objectives) != len(self.reward_funcs) or len(self.objectives) < 2:
            raise ValueError(f"MO-ODPO needs K >= 2 objectives with one reward function each; got objectives "
                             f"{self.objectives} and {len(self.reward_funcs)} reward functions")
        if unwrap_multihead(self.model).num_heads != 1:
            raise ValueError("MO-ODPO trains one policy: build the model with a single head")
        self.alpha = args.alpha_vector(len(self.objectives))
        use_chat = args.use_chat_template
        self.use_chat_template = has_chat_template(processing_class) if use_chat is None else use_chat
        as_chat = args.conditioning_as_system_message
        template = ConditioningTemplate(begin=args.conditioning_begin, end=args.conditioning_end,
                                        item=args.conditioning_item, decimals=args.weight_decimals)
        self.conditioning = ConditioningSpec(tuple(self.objectives), template,
                                             self.use_chat_template if as_chat is None else as_chat)
        self.encoder = SequenceCollator(processing_class, args.max_prompt_length, args.max_completion_length,
                                        self.use_chat_template)
        self.weight_rng = np.random.default_rng([args.seed, self.accelerator.process_index])
        self.normalizer: RewardNormalizer | None = None

    @classmethod
    def head_names_for(cls, config: MOODPOConfig, objectives: list[str]) -> list[str]:
        """One policy, conditioned through its prompt: a single head ``policy``."""
        return ["policy"]

    def make_collator(self, tokenizer: Any, args: MOODPOConfig, use_chat_template: bool) -> PromptCollator:
        return PromptCollator()

    # ------------------------------------------------------------------ steps 1-2
    def sample_weights(self, num: int, generator: np.random.Generator) -> np.ndarray:
        """``(num, K)`` weights: ``fixed_weights`` repeated, or quantised Dirichlet draws (§3.2)."""
        if self.args.fixed_weights is not None:
            return np.tile(np.asarray(self.args.fixed_weights, dtype=float), (num, 1))
        return sample_quantized_dirichlet(self.alpha, num, generator=generator, decimals=self.args.weight_decimals)

    def conditioned_prompts(self, prompts: list[Any], weights: np.ndarray) -> list[Any]:
        """x' of every prompt (§3.3), or the prompts as they are with ``condition_prompt: false``."""
        if not self.args.condition_prompt:
            return list(prompts)
        return [self.conditioning.render(p, w) for p, w in zip(prompts, weights.tolist())]

    def prompt_ids(self, prompts: list[Any]) -> list[list[int]]:
        """Token ids of the rendered prompts (the chat template when used; cut from the left), as in training."""
        tokenizer = self.processing_class
        return [tokenizer(render_prompt(tokenizer, p, self.use_chat_template), add_special_tokens=False)["input_ids"]
                [-self.args.max_prompt_length:] for p in prompts]

    # ------------------------------------------------------------------ step 3
    @torch.no_grad()
    def generate_pairs(self, model: Any, prompt_ids: list[list[int]]) -> tuple[list[list[int]], dict[str, float]]:
        """Two sampled completions per prompt: ``[y_1 of every prompt, y_2 of every prompt]`` as token ids.

        Batched and left-padded, KV cache on, adapter active, eval mode (no dropout). A completion keeps its
        tokens up to and including the first stop token; one cut by ``max_completion_length`` has no EOS.
        """
        from moalign.eval.generate import stop_token_ids
        from moalign.precision import generation_autocast

        base, tokenizer, args = unwrap_multihead(model), self.processing_class, self.args
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        device = base.device
        stop = stop_token_ids(base, tokenizer).to(device)
        size = args.generation_batch_size or len(prompt_ids)
        firsts: list[list[int]] = []
        seconds: list[list[int]] = []
        new_tokens, start = 0, time.perf_counter()
        with eval_mode(base), generation_autocast(args.compute_precision, base, device):
            for begin in range(0, len(prompt_ids), size):
                chunk = prompt_ids[begin: begin + size]
                length = max(len(p) for p in chunk)
                ids = torch.full((len(chunk), length), pad, dtype=torch.long)
                mask = torch.zeros((len(chunk), length), dtype=torch.long)
                for i, p in enumerate(chunk):
                    ids[i, length - len(p):], mask[i, length - len(p):] = torch.tensor(p), 1
                out = base.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=True,
                                    temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                                    max_new_tokens=args.max_completion_length, num_return_sequences=2,
                                    pad_token_id=pad, use_cache=True)[:, length:]
                ended = torch.isin(out, stop)
                rows = []
                for row, hits in zip(out.tolist(), ended.tolist()):
                    cut = hits.index(True) + 1 if True in hits else len(row)
                    rows.append(row[:cut])
                    new_tokens += cut
                firsts += rows[0::2]
                seconds += rows[1::2]
        seconds_taken = time.perf_counter() - start
        return firsts + seconds, {"generation/seconds": seconds_taken, "generation/new_tokens": float(new_tokens),
                                  "generation/tokens_per_s": new_tokens / max(seconds_taken, 1e-9)}

    # ------------------------------------------------------------------ step 4
    def normalized_rewards(self, raw: np.ndarray, mode: str) -> np.ndarray:
        """Raw scores ``(N, K)`` -> about [0, 1]: the frozen min-max normaliser, fitted on the first training batch.

        The fit uses every process's scores (identical statistics on every rank). In evaluation before any
        training step a normaliser is fitted on the batch and not kept.
        """
        if self.args.reward_normalization == "none":
            return raw
        normalizer = self.normalizer
        if normalizer is None:
            gathered, _ = self.gather_rows(torch.from_numpy(raw))
            # an objective constant on the first batch gets range 1 (zero_spread='unit', core.normalization)
            normalizer = RewardNormalizer("minmax", self.objectives).fit(gathered.numpy(), zero_spread="unit")
            if mode == "train":
                self.normalizer = normalizer
        return normalizer.transform(raw)

    # ------------------------------------------------------------------ steps 5-6
    def build_pairs(self, model: Any, prompts: list[Any], mode: str) -> OnlinePairs:
        """Steps 1-5 for a batch of prompts: weights, x', two samples each, rewards on x, labels (eqs. 1-2)."""
        num = len(prompts)
        if mode == "train":
            weights = self.sample_weights(num, self.weight_rng)
            x_policy = self.conditioned_prompts(prompts, weights)
            pairs, timing = self.generate_pairs(model, self.prompt_ids(x_policy))
        else:  # own generators: the training RNGs are not advanced
            weights = self.sample_weights(num, np.random.default_rng(self.args.eval_seed))
            x_policy = self.conditioned_prompts(prompts, weights)
            devices = [self.accelerator.device] if self.accelerator.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(self.args.eval_seed)
                pairs, timing = self.generate_pairs(model, self.prompt_ids(x_policy))
        texts = self.processing_class.batch_decode(pairs, skip_special_tokens=True)
        raw = score_completions(prompts + prompts, texts, self.reward_funcs, context=f"MO-ODPO {mode} samples")
        rewards = torch.from_numpy(self.normalized_rewards(raw, mode)).float()
        w = torch.from_numpy(weights).float()
        first_wins, used, s1, s2 = label_pairs(rewards[:num], rewards[num:], w, self.args.tie_rule,
                                               self.args.tie_tolerance)
        ids_policy = self.prompt_ids(x_policy)
        device = self.accelerator.device
        batch = {k: v.to(device) for k, v in self.encoder.pad(list(zip(ids_policy + ids_policy, pairs))).items()}
        anchor = batch
        if self.args.anchor_prompt == "unconditioned" and self.args.condition_prompt:
            ids_anchor = self.prompt_ids(prompts)
            anchor = {k: v.to(device) for k, v in self.encoder.pad(list(zip(ids_anchor + ids_anchor, pairs))).items()}
        return OnlinePairs(w, x_policy, pairs, texts, raw, rewards, first_wins, used, s1, s2, batch, anchor, timing)

    def pair_loss(self, model: Any, pairs: OnlinePairs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Eq. 3 on the labelled pairs, mean over the used ones; also the log-probs it used."""
        num = pairs.weights.shape[0]
        logps = self.policy_logps(model, pairs.batch)[0].float()
        ref = self.reference_logps(model, pairs.anchor_batch).float()
        wins = pairs.first_wins.to(logps.device)
        chosen, rejected = torch.where(wins, logps[:num], logps[num:]), torch.where(wins, logps[num:], logps[:num])
        ref_chosen, ref_rejected = torch.where(wins, ref[:num], ref[num:]), torch.where(wins, ref[num:], ref[:num])
        losses, chosen_rewards, rejected_rewards = dpo_loss(chosen, rejected, ref_chosen, ref_rejected,
                                                            self.args.beta)
        mask = pairs.used.to(losses.device).float()
        loss = (losses * mask).sum() / mask.sum().clamp(min=1.0)
        return loss, {"logps": logps, "ref": ref, "chosen_rewards": chosen_rewards,
                      "rejected_rewards": rejected_rewards}

    def method_loss(self, model: Any, inputs: dict[str, Any], mode: str) -> torch.Tensor:
        """One MO-ODPO step on the batch's prompts (Algorithm 1; eqs. 1-3). In eval nothing is kept."""
        pairs = self.build_pairs(model, list(inputs["prompt"]), mode)
        loss, parts = self.pair_loss(model, pairs)
        self._log_step(mode, pairs, parts)
        return loss

    def _log_step(self, mode: str, p: OnlinePairs, parts: dict[str, torch.Tensor]) -> None:
        w, rewards, first_wins, used, s1, s2 = p.weights, p.rewards, p.first_wins, p.used, p.s1, p.s2
        chosen_rewards, rejected_rewards = parts["chosen_rewards"], parts["rejected_rewards"]
        log_ratios, timing, pairs = (parts["logps"] - parts["ref"]).detach(), p.timing, p.completion_ids
        num = w.shape[0]
        for k, name in enumerate(self.objectives):
            self.record(f"weights/mean/{name}", float(w[:, k].mean()), mode)
            self.record(f"weights/std/{name}", float(w[:, k].std(unbiased=False)), mode)
        picked = used.bool()
        self.record("pairs/ties", float((~picked).sum()) if self.args.tie_rule == "skip"
                    else float(((s1 - s2).abs() <= self.args.tie_tolerance).sum()), mode)
        if picked.any():
            r1, r2 = rewards[:num][picked], rewards[num:][picked]
            wins = first_wins[picked].unsqueeze(-1)
            chosen, rejected = torch.where(wins, r1, r2), torch.where(wins, r2, r1)
            for k, name in enumerate(self.objectives):
                self.record(f"rewards/chosen/{name}", float(chosen[:, k].mean()), mode)
                self.record(f"rewards/rejected/{name}", float(rejected[:, k].mean()), mode)
            margin = torch.where(first_wins, s1 - s2, s2 - s1)[picked]
            self.record("reward_margin", float(margin.mean()), mode)
            implicit = (chosen_rewards > rejected_rewards).cpu()[picked]
            self.record("dpo_accuracy", float(implicit.float().mean()), mode)
        self.record("kl_to_anchor", float(log_ratios.mean()), mode)
        self.record("completion_length", float(np.mean([len(p) for p in pairs])), mode)
        for key, value in timing.items():
            self.record(key, value, mode)

    # ------------------------------------------------------------------ state
    def method_state(self) -> dict[str, Any]:
        """The reward normaliser and the weight sampler's RNG state (resume continues the same weight stream)."""
        return {"normalizer": self.normalizer.to_dict() if self.normalizer is not None else None,
                "weight_rng": self.weight_rng.bit_generator.state, "conditioning": self.conditioning.to_dict()}

    def load_method_state(self, state: dict[str, Any]) -> None:
        if state.get("normalizer") is not None:
            self.normalizer = RewardNormalizer.from_dict(state["normalizer"], source=self.state_file_name)
        if state.get("weight_rng") is not None:
            self.weight_rng.bit_generator.state = state["weight_rng"]
        saved = state.get("conditioning")
        if saved is not None and ConditioningSpec.from_dict(saved) != self.conditioning:
            raise ValueError(f"checkpoint conditioning {saved} differs from the configured "
                             f"{self.conditioning.to_dict()}")

    def _save(self, output_dir: str | None = None, state_dict: Any = None) -> None:
        super()._save(output_dir, state_dict)
        path = os.path.join(output_dir or self.args.output_dir, conditioning_file("mo_odpo"))
        with open(path, "w") as handle:
            json.dump({**self.conditioning.to_dict(), "condition_prompt": self.args.condition_prompt,
                       "fixed_weights": self.args.fixed_weights,
                       "normalizer": self.normalizer.to_dict() if self.normalizer is not None else None},
                      handle, indent=2)
