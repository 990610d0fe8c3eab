"""ODPO Soups (MO-ODPO paper §4.2): Rewarded Soups whose specialists are trained by online DPO.

Specialist k is the registry's ``mo_odpo`` method run with ``fixed_weights = e_k`` (its objective only) and
``condition_prompt: false`` (the policy sees the plain prompt), saved as a one-head MultiHeadCausalLM in
``<output_dir>/specialists/<objective>``; :class:`moalign.models.soups.SoupModel` loads that format. As for
Rewarded Soups, specialists are trained in sequence, a finished one (its final ``multihead_config.json``
exists) is not retrained and an interrupted one resumes from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

from moalign.models.soups import save_soup_config
from moalign.trainers.odpo_soups_config import ODPOSoupsConfig
from moalign.trainers.rewarded_soups_trainer import specialist_dirs


class ODPOSoupsTrainer:
    """Train the K MO-ODPO specialists (one-hot weights, no conditioning), then write the soup folder."""

    method_name: ClassVar[str] = "odpo_soups"
    data_kind: ClassVar[str] = "prompts"
    #: train_method does not build a model for it: it loads its own base model(s)
    builds_own_models: ClassVar[bool] = True

    def __init__(self, model: Any = None, args: ODPOSoupsConfig | None = None, train_dataset: Any = None,
                 eval_dataset: Any = None, processing_class: Any = None, **kwargs: Any) -> None:
        from moalign.trainers.mo_odpo_trainer import reward_spec_names

        if args is None or processing_class is None:
            raise ValueError(f"{type(self).__name__} needs args and processing_class")
        del model, train_dataset  # each specialist is its own mo_odpo run from the base model
        self.args = args
        self.tokenizer = processing_class
        self.objectives = reward_spec_names(list(args.reward_functions or []))
        if len(self.objectives) < 2:
            raise ValueError(f"ODPO Soups needs >= 2 reward_functions, got {args.reward_functions}")
        self.trained: list[str] = []
        self.skipped: list[str] = []

    @classmethod
    def head_names_for(cls, config: ODPOSoupsConfig, objectives: list[str]) -> list[str]:
        return ["policy"]

    def specialist_config(self, k: int, directory: Path) -> Any:
        """The ``mo_odpo`` config of specialist k: one-hot weights, plain prompts, its own output folder."""
        from transformers.trainer_utils import get_last_checkpoint

        from moalign.trainers.mo_odpo_config import MOODPOConfig

        values = {f.name: getattr(self.args, f.name) for f in dataclasses.fields(MOODPOConfig) if f.init}
        values.update(fixed_weights=[float(j == k) for j in range(len(self.objectives))], condition_prompt=False,
                      output_dir=str(directory),
                      resume_from_checkpoint=get_last_checkpoint(str(directory)) if directory.is_dir() else None)
        return MOODPOConfig(**values)

    def train(self, resume_from_checkpoint: Any = None) -> None:
        from moalign.trainers.run import train_method

        for k, directory in enumerate(specialist_dirs(self.args.output_dir, self.objectives)):
            if (directory / "multihead_config.json").is_file():
                self.skipped.append(self.objectives[k])
                continue
            train_method("mo_odpo", self.specialist_config(k, directory))
            self.trained.append(self.objectives[k])
        self.save_model(self.args.output_dir)

    def save_model(self, output_dir: str | None = None) -> None:
        output_dir = output_dir or self.args.output_dir
        save_soup_config(output_dir, specialist_dirs(self.args.output_dir, self.objectives), self.objectives,
                         self.args.model_name_or_path, self.args.interpolation, method=self.method_name)
        self.tokenizer.save_pretrained(output_dir)
