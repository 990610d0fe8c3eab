"""The methods ``moalign train <method>`` (and the demo, and ``moalign compare``) know.

A method is a config class (a :class:`~moalign.trainers.base_config.MultiObjectiveConfig`
subclass) and a trainer class (a :class:`~moalign.trainers.base_trainer.MultiObjectiveTrainer`
subclass). Built-in methods are registered by import path, so that listing them
does not import transformers; a plugin registers its classes with
:func:`register_method`, or from another package through the entry-point group
``moalign.methods`` (an entry point naming a :class:`TrainingMethod`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

__all__ = ["TrainingMethod", "register_method", "get_method", "available_methods"]

ENTRY_POINT_GROUP = "moalign.methods"


#: a tuning grid: (config field, candidate values) pairs; the trials are points of their product
TuningGrid = tuple[tuple[str, tuple[float, ...]], ...]

#: learning rates of the methods tuned on the learning rate alone (no KL-type coefficient)
_LR_ONLY = (("learning_rate", (1e-4, 3e-4, 1e-3, 3e-3)),)


@dataclass(frozen=True)
class TrainingMethod:
    """A trainable method: its name, one-line description, config and trainer (classes or ``module:Class``).

    ``tuning_grid`` holds the method's main settings for ``moalign compare --tune`` (its learning rate and its
    KL-type coefficient, as config field names and candidate values); every method's grid has the same number
    of points (4), so an equal number of trials covers each grid once.
    """

    name: str
    description: str
    config: type | str
    trainer: type | str
    tuning_grid: TuningGrid = ()

    @property
    def config_class(self) -> type:
        return _resolve(self.config)

    @property
    def trainer_class(self) -> type:
        return _resolve(self.trainer)


_METHODS: dict[str, TrainingMethod] = {}
_ENTRY_POINTS_LOADED = False


def register_method(method: TrainingMethod, replace: bool = False) -> TrainingMethod:
    """Make ``method`` available to ``moalign train``; a second method of the same name is an error."""
    if not method.name or not method.name.replace("-", "_").isidentifier():
        raise ValueError(f"method name must be a word (letters, digits, _ or -), got {method.name!r}")
    if method.name in _METHODS and not replace:
        raise ValueError(f"a method named {method.name!r} is already registered")
    _METHODS[method.name] = method
    return method


def unregister_method(name: str) -> None:
    """Remove a registered method (tests, plugins reloading)."""
    _METHODS.pop(name, None)


def available_methods() -> dict[str, TrainingMethod]:
    """Registered methods by name, sorted."""
    _load_entry_points()
    return dict(sorted(_METHODS.items()))


def get_method(name: str) -> TrainingMethod:
    """The registered method ``name``; unknown names list the known ones."""
    methods = available_methods()
    if name not in methods:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(methods) or 'none'}")
    return methods[name]


def _resolve(target: type | str) -> Any:
    if not isinstance(target, str):
        return target
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _load_entry_points() -> None:
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    from importlib.metadata import entry_points

    for entry in entry_points(group=ENTRY_POINT_GROUP):
        method = entry.load()
        if not isinstance(method, TrainingMethod):
            raise TypeError(f"entry point {entry.name!r} of {ENTRY_POINT_GROUP} must name a TrainingMethod, "
                            f"got {type(method).__name__}")
        register_method(method, replace=True)


register_method(TrainingMethod(
    name="mopo",
    description="MOPO: maximise one objective, lower-bound the others (closed-form dual, weighted behaviour "
                "cloning, lagged reference); one policy head per primary objective",
    config="moalign.trainers.mopo_config:MOPOConfig",
    trainer="moalign.trainers.mopo_trainer:MOPOTrainer",
    tuning_grid=(("learning_rate", (3e-4, 1e-3)), ("tau", (0.04, 0.08))),
))
register_method(TrainingMethod(
    name="ham",
    description="HaM: K policy heads maximise the hypervolume of their normalised reward-weighted "
                "log-likelihoods (exact inclusion-exclusion or random scalarisation); pointwise data",
    config="moalign.trainers.ham_config:HaMConfig",
    trainer="moalign.trainers.ham_trainer:HaMTrainer",
    tuning_grid=_LR_ONLY,
))
register_method(TrainingMethod(
    name="sca",
    description="SCA (HaM paper eq. 5): one head per weight vector, each maximising the weighted sum of the "
                "normalised reward-weighted log-likelihoods; pointwise data",
    config="moalign.trainers.sca_config:SCAConfig",
    trainer="moalign.trainers.sca_trainer:SCATrainer",
    tuning_grid=_LR_ONLY,
))
register_method(TrainingMethod(
    name="mo_odpo",
    description="MO-ODPO: one prompt-conditioned policy; per prompt Dirichlet weights in a system instruction, "
                "two on-policy samples labelled by the weighted rewards, DPO against the initial policy; prompts",
    config="moalign.trainers.mo_odpo_config:MOODPOConfig",
    trainer="moalign.trainers.mo_odpo_trainer:MOODPOTrainer",
    tuning_grid=(("learning_rate", (3e-4, 1e-3)), ("beta", (0.05, 0.2))),
))
register_method(TrainingMethod(
    name="ric",
    description="Rewards-in-Context: SFT with the normalised rewards written into the prompt; at inference the "
                "preference is mapped to target rewards in the prompt; one head, pointwise data",
    config="moalign.trainers.ric_config:RiCConfig",
    trainer="moalign.trainers.ric_trainer:RiCTrainer",
    tuning_grid=_LR_ONLY,
))
register_method(TrainingMethod(
    name="modpo",
    description="MODPO (Zhou et al. 2023): DPO on one target objective's preferences with the other objectives' "
                "weighted score differences as margins; one model per weight vector, pairwise data with scores",
    config="moalign.trainers.modpo_config:MODPOConfig",
    trainer="moalign.trainers.modpo_trainer:MODPOTrainer",
    tuning_grid=(("learning_rate", (3e-4, 1e-3)), ("beta", (0.05, 0.2))),
))
register_method(TrainingMethod(
    name="rewarded_soups",
    description="Rewarded Soups: one GRPO-trained LoRA specialist per objective (TRL), then the soup of their "
                "adapters for any weight vector; resumable; prompts",
    config="moalign.trainers.rewarded_soups_config:RewardedSoupsConfig",
    trainer="moalign.trainers.rewarded_soups_trainer:RewardedSoupsTrainer",
    tuning_grid=(("learning_rate", (3e-4, 1e-3)), ("kl_beta", (0.01, 0.05))),
))
register_method(TrainingMethod(
    name="odpo_soups",
    description="ODPO Soups: one MO-ODPO specialist per objective (one-hot fixed weights, no prompt "
                "conditioning), then the soup of their adapters and heads for any weight vector; resumable; prompts",
    config="moalign.trainers.odpo_soups_config:ODPOSoupsConfig",
    trainer="moalign.trainers.odpo_soups_trainer:ODPOSoupsTrainer",
    tuning_grid=(("learning_rate", (3e-4, 1e-3)), ("beta", (0.05, 0.2))),
))
register_method(TrainingMethod(
    name="p_morl",
    description="P-MORL (MO-ODPO paper baseline): MO-ODPO's prompt conditioning on Dirichlet weights, RL "
                "fine-tuning with TRL GRPO on the weighted normalised reward w^T r; prompts",
    config="moalign.trainers.p_morl_config:PMORLConfig",
    trainer="moalign.trainers.p_morl_trainer:PMORLTrainer",
    tuning_grid=(("learning_rate", (3e-4, 1e-3)), ("kl_beta", (0.01, 0.05))),
))
