"""Rewarded Soups (Rame et al., NeurIPS 2023; the MO-ODPO paper's §4.2 baseline) for ``moalign train``.

One specialist per objective k, RL fine-tuned from the same base model on objective k's reward alone (TRL's
``GRPOTrainer``, a LoRA adapter each; :mod:`moalign.trainers.rl_common`), then the soup: for any w on the simplex
the adapters are interpolated (:class:`moalign.models.soups.SoupModel`). The specialists are trained in sequence
into ``<output_dir>/specialists/<objective>``; a specialist whose final adapter exists is not retrained, an
interrupted one resumes from its last checkpoint. ``<output_dir>/soup_config.json`` names them (load with
``SoupModel.from_pretrained(output_dir)``).

The class speaks the protocol of :func:`moalign.trainers.run.train_method` (constructor, ``train``,
``save_model``); the multi-head model that ``train_method`` builds is not used, since each specialist starts
from a fresh base model inside TRL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from moalign.rewards.registry import resolve_rewards
from moalign.methods.rewarded_soups.config import RewardedSoupsConfig
from moalign.trainers.rl_common import as_policy_prompt, is_finished, require_rewards, train_grpo, use_chat
from moalign.trainers.soup_base import SoupTrainer, specialist_dirs

__all__ = ["RewardedSoupsTrainer", "specialist_dirs"]


class RewardedSoupsTrainer(SoupTrainer):
    """Train the K specialists with GRPO (resumable), then write the soup folder."""

    method_name = "rewarded_soups"

    def __init__(self, model: Any = None, args: RewardedSoupsConfig | None = None, train_dataset: Any = None,
                 eval_dataset: Any = None, processing_class: Any = None, **kwargs: Any) -> None:
        if args is None or train_dataset is None or processing_class is None:
            raise ValueError(f"{type(self).__name__} needs args, train_dataset (prompts) and processing_class")
        del model  # each specialist starts from a fresh base model (module docstring)
        self.rewards = resolve_rewards(require_rewards(args))
        objectives = [r.name for r in self.rewards]
        if len(objectives) < 2:
            raise ValueError(f"Rewarded Soups needs >= 2 objectives (reward_functions), got {objectives}")
        super().__init__(args, processing_class, objectives)
        dataset = getattr(train_dataset, "dataset", train_dataset)
        chat = use_chat(args, processing_class)
        self.dataset = dataset.map(lambda row: {"prompt": as_policy_prompt(row["prompt"], chat)})

    def specialist_finished(self, directory: Path) -> bool:
        """The specialist's final LoRA adapter exists."""
        return is_finished(directory)

    def train_specialist(self, k: int, directory: Path) -> None:
        """GRPO on objective k's reward alone (:func:`moalign.trainers.rl_common.train_grpo`)."""
        train_grpo(self.args, [self.rewards[k]], self.dataset, directory, self.tokenizer)
