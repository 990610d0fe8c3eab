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
from typing import Any, ClassVar

from moalign.models.soups import save_soup_config
from moalign.trainers.rewarded_soups_config import RewardedSoupsConfig
from moalign.trainers.rl_common import as_policy_prompt, is_finished, require_rewards, train_grpo, use_chat


def specialist_dirs(output_dir: str, objectives: list[str]) -> list[Path]:
    """``<output_dir>/specialists/<objective>`` for every objective."""
    return [Path(output_dir) / "specialists" / name for name in objectives]


class RewardedSoupsTrainer:
    """Train the K specialists with GRPO (resumable), then write the soup folder."""

    method_name: ClassVar[str] = "rewarded_soups"
    data_kind: ClassVar[str] = "prompts"
    #: train_method does not build a model for it: it loads its own base model(s)
    builds_own_models: ClassVar[bool] = True

    def __init__(self, model: Any = None, args: RewardedSoupsConfig | None = None, train_dataset: Any = None,
                 eval_dataset: Any = None, processing_class: Any = None, **kwargs: Any) -> None:
        from moalign.trainers.mo_odpo_trainer import resolve_rewards

        if args is None or train_dataset is None or processing_class is None:
            raise ValueError(f"{type(self).__name__} needs args, train_dataset (prompts) and processing_class")
        del model  # each specialist starts from a fresh base model (module docstring)
        self.args = args
        self.tokenizer = processing_class
        self.rewards = resolve_rewards(require_rewards(args))
        self.objectives = [r.name for r in self.rewards]
        if len(self.objectives) < 2:
            raise ValueError(f"Rewarded Soups needs >= 2 objectives (reward_functions), got {self.objectives}")
        dataset = getattr(train_dataset, "dataset", train_dataset)
        chat = use_chat(args, processing_class)
        self.dataset = dataset.map(lambda row: {"prompt": as_policy_prompt(row["prompt"], chat)})
        self.trained: list[str] = []
        self.skipped: list[str] = []

    @classmethod
    def head_names_for(cls, config: RewardedSoupsConfig, objectives: list[str]) -> list[str]:
        return ["policy"]

    def train(self, resume_from_checkpoint: Any = None) -> None:
        """Train every unfinished specialist in turn (objective k: its own reward only), then save the soup."""
        for reward, directory in zip(self.rewards, specialist_dirs(self.args.output_dir, self.objectives)):
            if is_finished(directory):
                self.skipped.append(reward.name)
                continue
            train_grpo(self.args, [reward], self.dataset, directory, self.tokenizer)
            self.trained.append(reward.name)
        self.save_model(self.args.output_dir)

    def save_model(self, output_dir: str | None = None) -> None:
        """``soup_config.json`` (specialists, objectives, base model, interpolation) and the tokenizer."""
        output_dir = output_dir or self.args.output_dir
        save_soup_config(output_dir, specialist_dirs(self.args.output_dir, self.objectives), self.objectives,
                         self.args.model_name_or_path, self.args.interpolation, method=self.method_name)
        self.tokenizer.save_pretrained(output_dir)
