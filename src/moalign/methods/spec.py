"""What a method declares once, in its package's ``__init__.py``: a :class:`TrainingMethod`.

One registration holds everything the shared commands need to know about a method, so that none of them
branches on method names:

* ``moalign train`` -- its config and trainer classes (the trainer says which rows it reads, ``data_kind``);
* ``load_policy`` / ``moalign generate`` / ``export`` / ``serve`` -- its policy family (:attr:`family`);
* ``moalign synthetic toy`` and ``moalign compare --task toy-*`` -- its tabular version (:class:`ToyEntry`);
* ``moalign compare --task demo`` (curves and ``--tune`` included) -- how it is trained under the shared budget
  and which policies it is evaluated with (:class:`CompareFacts`), and its tuning grid.

Hooks are given as objects or as ``"module:attribute"`` strings, resolved on first use: listing the methods
imports neither transformers nor the methods' code. docs/adding_a_method.md describes every field.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["TrainingMethod", "ToyEntry", "CompareFacts", "PolicyContext", "TuningGrid", "resolve"]

#: a tuning grid: (config field, candidate values) pairs; the trials are points of their product
TuningGrid = tuple[tuple[str, tuple[float, ...]], ...]


def resolve(target: Any) -> Any:
    """``target`` itself, or the attribute a ``"module:attribute"`` string names (imported now)."""
    if not isinstance(target, str):
        return target
    module, _, attribute = target.partition(":")
    if not attribute:
        raise ValueError(f"expected 'module:attribute', got {target!r}")
    return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True)
class ToyEntry:
    """A method's tabular version on the MOPO paper's continuous toy problem (:mod:`moalign.experiments.toy`).

    ``run(toy_run)`` trains the method for every seed of a :class:`~moalign.experiments.toy_run.ToyRun` and adds
    each policy it offers with ``toy_run.add(label, params, probs)`` (``probs``: ``(201, A)`` action
    probabilities on the evaluation grid); what it reports beyond the policies goes into ``toy_run.results``.
    """

    run: Callable[[Any], None] | str
    #: part of the toy's default selection (False: only when named in ``--methods``)
    default: bool = True
    #: reads the seeds' pairwise rows (x, y, y', I1, I2), drawn once up front and shared with the DPO baselines
    pairwise_rows: bool = False
    #: why its policies carry no weight vector, for ``moalign compare``'s steerability column (None: they do)
    unsteerable_reason: str | None = None

    @property
    def runner(self) -> Callable[[Any], None]:
        return resolve(self.run)


@dataclass(frozen=True)
class CompareFacts:
    """How ``moalign compare --task demo`` trains and evaluates a method (:mod:`moalign.experiments.compare_demo`).

    The training data follows the trainer's ``data_kind``: scored pairs (``pairwise``), scored responses
    (``pointwise``) or the train prompts with the comparison's reward functions (``prompts``).
    """

    #: ``policies(ctx: PolicyContext) -> [(load_model, [(Policy, prompt_transform or None, weights or None)])]``
    policies: Callable[[PolicyContext], list] | str
    #: ``args(config, weights) -> dict``: config fields beyond the shared ones (None: none)
    args: Callable[[Any, list[float] | None], dict[str, Any]] | str | None = None
    #: ``jobs(config) -> [(folder name, weights)]``: one training run per entry (None: one run, ``model``)
    jobs: Callable[[Any], list[tuple[str, list[float] | None]]] | str | None = None
    #: every job trains one run per objective (the soups' specialists): the budget is split over them too
    runs_per_objective: bool = False
    #: its policies write the weights with this many decimals, so the steering grid must fit (None: any grid)
    weight_decimals: int | None = None

    def training_args(self, config: Any, weights: list[float] | None) -> dict[str, Any]:
        return dict(resolve(self.args)(config, weights)) if self.args is not None else {}

    def training_jobs(self, config: Any) -> list[tuple[str, list[float] | None]]:
        return list(resolve(self.jobs)(config)) if self.jobs is not None else [("model", None)]


@dataclass(frozen=True)
class TrainingMethod:
    """A method: name, one-line description, config and trainer, and the facts each shared command reads.

    ``tuning_grid`` holds the method's main settings for ``moalign compare --tune`` (its learning rate and its
    KL-type coefficient, as config field names and candidate values); every built-in grid has 4 points, so an
    equal number of trials covers each grid once. ``family`` is the :class:`~moalign.inference.families.
    PolicyFamily` subclass that turns a folder it trained into the policy of a weight vector, constructed with
    ``family_options`` after the folder. ``title`` is its display name in reports (default: ``name``).
    """

    name: str
    description: str
    config: type | str
    trainer: type | str
    tuning_grid: TuningGrid = ()
    title: str = ""
    family: type | str | None = None
    family_options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    toy: ToyEntry | None = None
    compare: CompareFacts | None = None

    @property
    def config_class(self) -> type:
        return resolve(self.config)

    @property
    def trainer_class(self) -> type:
        return resolve(self.trainer)

    @property
    def data_kind(self) -> str:
        """The rows its trainer reads: ``pairwise``, ``pointwise`` or ``prompts``."""
        return self.trainer_class.data_kind

    @property
    def display_name(self) -> str:
        return self.title or self.name

    def family_class(self) -> type:
        """The policy family class (a ValueError when the method declares none)."""
        if self.family is None:
            raise ValueError(f"method {self.name!r} declares no policy family (TrainingMethod.family)")
        return resolve(self.family)


@dataclass
class PolicyContext:
    """What a method's ``CompareFacts.policies`` hook gets: its trained folders and the evaluation's grid."""

    #: one folder per training job (``CompareFacts.jobs``), in order; the curves pass checkpoint snapshots
    models: list[Path]
    #: the weights of each job (None where the job has none)
    job_weights: list[list[float] | None]
    #: the comparison's steering grid (weight vectors over the objectives)
    grid: list[tuple[float, ...]]
    #: the base model the methods were trained from
    model_name_or_path: str

    def base(self) -> Any:
        """A fresh copy of the base model (PEFT wraps models in place, so every load needs its own)."""
        from moalign.models.loading import load_base_model

        return load_base_model(self.model_name_or_path)

    def multihead(self, directory: Path) -> Callable[[], Any]:
        """A loader of the frozen multi-head model saved in ``directory``, on a fresh base."""
        def load() -> Any:
            from moalign.models import MultiHeadCausalLM

            return MultiHeadCausalLM.from_pretrained(directory, base_model=self.base(), is_trainable=False)

        return load
