"""RL fine-tuning of the baselines through TRL's ``GRPOTrainer`` (Rewarded Soups' specialists, P-MORL).

What TRL does for us: on-policy sampling of ``num_generations`` completions per prompt (through PEFT, adapter
active), calling the reward functions with the dataset's other columns as keyword arguments, group-relative
advantages, the clipped policy-gradient loss with a KL penalty to the reference (the base model: PEFT adapter
disabled), checkpoints and resume. What we add: the mapping of our config onto ``GRPOConfig`` and ``LoraConfig``,
the prompts in our data contract (text, or a user message when the chat template is used), and the
resumable run directories (docs/baselines.md, "What TRL does for us").
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moalign.trainers.base_config import MultiObjectiveConfig, refuse_unsupported_fields

#: TrainingArguments fields copied from our config onto GRPOConfig
SHARED_TRAINING_FIELDS = (
    "learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "max_steps", "num_train_epochs",
    "logging_steps", "save_steps", "save_total_limit", "seed", "data_seed", "use_cpu", "report_to", "bf16", "fp16",
    "disable_tqdm", "lr_scheduler_type", "warmup_steps", "weight_decay", "max_grad_norm", "gradient_checkpointing",
    "optim", "dataloader_num_workers",
)
DONE_FILE = "adapter_config.json"
_NO_HEADS = "TRL's GRPOTrainer trains a plain PEFT LoRA adapter on the base model; there are no policy heads"
#: fields of MultiObjectiveConfig that a GRPO run cannot honour: field -> why (refused when not at their default)
UNSUPPORTED_FIELDS = {
    "head_type": _NO_HEADS,
    "head_rank": _NO_HEADS,
    "head_learning_rate": _NO_HEADS,
    "use_lora": "the policy is a LoRA adapter (GRPO with peft_config); training without one is not wired",
    "length_normalize": "GRPO's loss uses its own token-level log-probs (TRL's loss), not moalign's sequence "
                        "log-probs",
    "precompute_ref_log_probs": "GRPO computes the reference (the base model, adapter off) log-probs of its own "
                                "fresh samples at every step; there is no fixed set of completions to precompute",
    "reuse_frozen_backbone": "it applies when only the policy heads train; here the LoRA adapter trains and there "
                             "are no heads",
    "max_prompt_length": "TRL's GRPOConfig has no prompt truncation; prompts go to the model whole",
    "eval_dataset_path": "evaluation during training is not wired into the GRPO runs; evaluate the saved model "
                         "with moalign eval",
    "objectives": "the objectives are the reward functions' names ('name=spec' renames one)",
}


@dataclass
class RLBaselineConfig(MultiObjectiveConfig):
    """Fields shared by the RL baselines trained with TRL's GRPOTrainer (Rewarded Soups, P-MORL).

    Inherited fields these runs cannot honour (:data:`UNSUPPORTED_FIELDS`: the policy heads, moalign's log-prob
    options, prompt truncation, evaluation during training) are refused with an error when set.
    """

    reward_functions: list[str] | None = field(
        default=None,
        metadata={"help": "One reward function per objective, in order (moalign.rewards.registry names, "
                  "'hf:<path>', or 'py:<module>:<callable>'; 'name=spec' renames the objective), as MO-ODPO. "
                  "Required by the trainer."},
    )
    num_generations: int = field(default=4, metadata={"help": "Completions sampled per prompt (GRPO's group, >= 2)."})
    kl_beta: float = field(default=0.05, metadata={"help": "KL coefficient to the base model (GRPOConfig.beta)."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature of the completions."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus mass of the sampling (1 = off)."})
    steps_per_generation: int = field(default=1, metadata={
        "help": "Optimizer steps served by one generation call (GRPOConfig.steps_per_generation): the completions "
                "of that many steps are sampled in one batched generate() and used in turn; the steps after the "
                "first are corrected by the clipped importance ratio to the sampling policy (TRL computes its "
                "log-probs). 1 = sample afresh for every step."})
    scale_rewards: str = field(default="group", metadata={"help": "GRPOConfig.scale_rewards: 'group', 'batch' or "
                                                                   "'none' (advantages divided by the std)."})

    def __post_init__(self) -> None:
        refuse_unsupported_fields(self, UNSUPPORTED_FIELDS)
        super().__post_init__()
        if self.reward_functions is not None and len(self.reward_functions) < 2:
            raise ValueError(f"reward_functions: name one reward function per objective (K >= 2), e.g. "
                             f"[positivity, conciseness]; got {self.reward_functions}")
        if self.num_generations < 2:
            raise ValueError(f"num_generations must be >= 2 (GRPO compares completions of a prompt), "
                             f"got {self.num_generations}")
        if self.kl_beta < 0:
            raise ValueError(f"kl_beta must be >= 0, got {self.kl_beta}")
        if self.steps_per_generation < 1:
            raise ValueError(f"steps_per_generation must be >= 1, got {self.steps_per_generation}")


def require_rewards(config: RLBaselineConfig) -> list[str]:
    """``config.reward_functions``, or a ValueError saying that the method needs them."""
    if not config.reward_functions:
        raise ValueError("set reward_functions: one reward function per objective, e.g. [positivity, conciseness]")
    return list(config.reward_functions)


def use_chat(config: MultiObjectiveConfig, tokenizer: Any) -> bool:
    """Whether prompts go through the chat template (the family's rule: default when the tokenizer has one)."""
    if config.use_chat_template is None:
        return getattr(tokenizer, "chat_template", None) is not None
    return bool(config.use_chat_template)


def as_policy_prompt(prompt: Any, chat: bool) -> Any:
    """A prompt as GRPO gets it: text stays text, or becomes one user message when the chat template is used."""
    if chat and isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return prompt


def grpo_arguments(config: RLBaselineConfig, output_dir: str | os.PathLike) -> Any:
    """``trl.GRPOConfig`` for ``config`` (shared training fields, sampling, KL) writing to ``output_dir``."""
    from trl import GRPOConfig

    shared = {name: getattr(config, name) for name in SHARED_TRAINING_FIELDS}
    # bf16=True makes accelerate autocast GRPOTrainer's loss forward; its sampling step is covered by
    # grpo_trainer_class. TrainingArguments refuses bf16 on a CPU unless use_cpu says so.
    shared["bf16"] = config.compute_precision == "bf16"
    if shared["bf16"] and config.device.type == "cpu":
        shared["use_cpu"] = True
    return GRPOConfig(output_dir=str(output_dir), num_generations=config.num_generations, beta=config.kl_beta,
                      temperature=config.temperature, top_p=config.top_p, scale_rewards=config.scale_rewards,
                      steps_per_generation=config.steps_per_generation * config.gradient_accumulation_steps,
                      max_completion_length=config.max_completion_length, logging_first_step=True,
                      save_strategy="steps", **shared)


def lora_arguments(config: MultiObjectiveConfig) -> Any:
    """``peft.LoraConfig`` of the family's LoRA fields (all linear layers of the backbone by default)."""
    from peft import LoraConfig

    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=config.lora_target_modules or "all-linear", task_type="CAUSAL_LM")


def is_finished(directory: str | os.PathLike) -> bool:
    """A run directory holds a final adapter (written only after its training finished)."""
    return (Path(directory) / DONE_FILE).is_file()


def grpo_trainer_class() -> type:
    """TRL's ``GRPOTrainer`` with its sampling step in the run's precision.

    With ``bf16=True`` GRPOTrainer autocasts the loss's forward (accelerate wraps ``model.forward``), but it
    generates the group's completions in ``_prepare_inputs`` through the unwrapped model, outside autocast:
    measured by ``tests/test_precision.py``, those passes ran in float32. This subclass enters the same autocast
    context around ``_prepare_inputs`` (sampling, reference log-probs), so every forward pass runs in one precision.
    Every model pass of ``_prepare_inputs`` runs without grad in TRL (its generation and log-prob blocks are
    ``no_grad``), so it runs whole under ``torch.no_grad()`` with :func:`moalign.precision.generation_autocast`:
    the frozen base weights are cast to bf16 once per call instead of once per sampled token.
    """
    import torch
    from trl import GRPOTrainer

    from moalign.precision import generation_autocast

    class PrecisionGRPOTrainer(GRPOTrainer):
        def _prepare_inputs(self, generation_batch: Any) -> Any:
            precision = "bf16" if self.args.bf16 else "fp32"
            with torch.no_grad(), generation_autocast(precision, self.model, self.accelerator.device):
                return super()._prepare_inputs(generation_batch)

    return PrecisionGRPOTrainer


def train_grpo(config: RLBaselineConfig, reward_funcs: list[Callable[..., Any]], dataset: Any,
               final_dir: str | os.PathLike, tokenizer: Any) -> Any:
    """GRPO fine-tuning of a fresh base model with a LoRA adapter; the adapter is saved to ``final_dir``.

    Checkpoints go to ``final_dir/checkpoints``; an interrupted run resumes from its last checkpoint. Returns
    the GRPOTrainer.
    """
    from transformers.trainer_utils import get_last_checkpoint

    from moalign.models.loading import load_base_model

    if config.model_name_or_path is None:
        raise ValueError("set model_name_or_path (a hub id, a local directory, or 'smollm2')")
    final_dir = Path(final_dir)
    checkpoints = final_dir / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    trainer = grpo_trainer_class()(model=load_base_model(config.model_name_or_path), reward_funcs=reward_funcs,
                          args=grpo_arguments(config, checkpoints), train_dataset=dataset,
                          processing_class=tokenizer, peft_config=lora_arguments(config))
    trainer.train(resume_from_checkpoint=get_last_checkpoint(str(checkpoints)))
    trainer.save_model(str(final_dir))
    return trainer
