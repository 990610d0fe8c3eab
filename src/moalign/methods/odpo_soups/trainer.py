"""ODPO Soups (MO-ODPO paper §4.2): Rewarded Soups whose specialists are trained by online DPO.

Specialist k is the registry's ``mo_odpo`` method run with ``fixed_weights = e_k`` (its objective only) and
``condition_prompt: false`` (the policy sees the plain prompt), saved as a one-head MultiHeadCausalLM in
``<output_dir>/specialists/<objective>``; :class:`moalign.models.soups.SoupModel` loads that format. As for
Rewarded Soups, specialists are trained in sequence, a finished one (its final ``multihead_config.json``
exists) is not retrained and an interrupted one resumes from its last checkpoint.

The specialists are runs of another registered method, so the runner (:func:`moalign.trainers.run.train_method`)
hands itself to this trainer (``runs_methods``) instead of this module importing the runner, which imports the
registry, which imports this module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from moalign.rewards.registry import reward_spec_names
from moalign.methods.odpo_soups.config import ODPOSoupsConfig
from moalign.trainers.soup_base import SoupTrainer


class ODPOSoupsTrainer(SoupTrainer):
    """Train the K MO-ODPO specialists (one-hot weights, no conditioning), then write the soup folder."""

    method_name = "odpo_soups"
    #: the runner passes ``train_method`` (itself): each specialist is a run of the registry's ``mo_odpo``
    runs_methods: ClassVar[bool] = True

    def __init__(self, model: Any = None, args: ODPOSoupsConfig | None = None, train_dataset: Any = None,
                 eval_dataset: Any = None, processing_class: Any = None,
                 train_method: Callable[[str, Any], Any] | None = None, **kwargs: Any) -> None:
        if args is None or processing_class is None:
            raise ValueError(f"{type(self).__name__} needs args and processing_class")
        if train_method is None:
            raise ValueError(f"{type(self).__name__} trains its specialists as mo_odpo runs and needs the runner: "
                             "train it with moalign.trainers.run.train_method('odpo_soups', config) (moalign train "
                             "odpo_soups), or pass train_method=")
        self.train_method = train_method
        del model, train_dataset  # each specialist is its own mo_odpo run from the base model
        objectives = reward_spec_names(list(args.reward_functions or []))
        if len(objectives) < 2:
            raise ValueError(f"ODPO Soups needs >= 2 reward_functions, got {args.reward_functions}")
        super().__init__(args, processing_class, objectives)

    def specialist_config(self, k: int, directory: Path) -> Any:
        """The ``mo_odpo`` config of specialist k: one-hot weights, plain prompts, its own output folder."""
        from transformers.trainer_utils import get_last_checkpoint

        from moalign.methods.mo_odpo.config import MOODPOConfig

        values = {f.name: getattr(self.args, f.name) for f in dataclasses.fields(MOODPOConfig) if f.init}
        values.update(fixed_weights=[float(j == k) for j in range(len(self.objectives))], condition_prompt=False,
                      output_dir=str(directory),
                      resume_from_checkpoint=get_last_checkpoint(str(directory)) if directory.is_dir() else None)
        return MOODPOConfig(**values)

    def specialist_finished(self, directory: Path) -> bool:
        """The specialist's final ``multihead_config.json`` exists."""
        return (directory / "multihead_config.json").is_file()

    def train_specialist(self, k: int, directory: Path) -> None:
        """The registry's ``mo_odpo`` method with :meth:`specialist_config`, through the runner it was handed."""
        self.train_method("mo_odpo", self.specialist_config(k, directory))
