"""What the soup trainers (Rewarded Soups, ODPO Soups) share: the specialist loop and the soup folder.

A soup trainer trains one specialist per objective, in sequence, into ``<output_dir>/specialists/<objective>``;
a specialist that is already finished is skipped (a rerun retrains only the missing ones), then
``<output_dir>/soup_config.json`` names them for :class:`moalign.models.soups.SoupModel`. Subclasses say how a
specialist is trained (:meth:`SoupTrainer.train_specialist`) and how a finished one is recognised
(:meth:`SoupTrainer.specialist_finished`); they speak the protocol of :func:`moalign.trainers.run.train_method`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from moalign.models.soups import save_soup_config


def specialist_dirs(output_dir: str, objectives: list[str]) -> list[Path]:
    """``<output_dir>/specialists/<objective>`` for every objective."""
    return [Path(output_dir) / "specialists" / name for name in objectives]


class SoupTrainer:
    """Train the K specialists in turn (resumable), then write the soup folder; subclasses train one specialist.

    Args:
        args: the method's config (``output_dir``, ``model_name_or_path``, ``interpolation``).
        processing_class: the tokenizer, saved next to ``soup_config.json``.
        objectives: the objective names, one specialist each (K >= 2, checked by the subclass).
    """

    #: registry name, written to ``soup_config.json`` as the method
    method_name: ClassVar[str]
    data_kind: ClassVar[str] = "prompts"
    #: train_method does not build a model for it: it loads its own base model(s)
    builds_own_models: ClassVar[bool] = True

    def __init__(self, args: Any, processing_class: Any, objectives: list[str]) -> None:
        self.args = args
        self.tokenizer = processing_class
        self.objectives = objectives
        #: objectives whose specialist this run trained, and those it found finished
        self.trained: list[str] = []
        self.skipped: list[str] = []

    def specialist_finished(self, directory: Path) -> bool:
        """Whether ``directory`` holds a finished specialist (its final model, written after training)."""
        raise NotImplementedError(f"{type(self).__name__} must implement specialist_finished")

    def train_specialist(self, k: int, directory: Path) -> None:
        """Train specialist k (objective k only) into ``directory``, resuming from its last checkpoint there."""
        raise NotImplementedError(f"{type(self).__name__} must implement train_specialist")

    def train(self, resume_from_checkpoint: Any = None) -> None:
        """Train every unfinished specialist in turn (objective k: its own reward only), then save the soup."""
        for k, directory in enumerate(specialist_dirs(self.args.output_dir, self.objectives)):
            if self.specialist_finished(directory):
                self.skipped.append(self.objectives[k])
                continue
            self.train_specialist(k, directory)
            self.trained.append(self.objectives[k])
        self.save_model(self.args.output_dir)

    def save_model(self, output_dir: str | None = None) -> None:
        """``soup_config.json`` (specialists, objectives, base model, interpolation) and the tokenizer."""
        output_dir = output_dir or self.args.output_dir
        save_soup_config(output_dir, specialist_dirs(self.args.output_dir, self.objectives), self.objectives,
                         self.args.model_name_or_path, self.args.interpolation, method=self.method_name)
        self.tokenizer.save_pretrained(output_dir)
