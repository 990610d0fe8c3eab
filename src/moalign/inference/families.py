"""Policy families: for each kind of trained folder, the policy of a weight vector -- to generate and to export.

A *policy family* knows one way a trained method turns a preference ``w`` into a policy. The kinds several
methods share live here; a method's own family lives in its package (``moalign/methods/<name>/family.py``):

==============================================  =====================  ==========================================
family                                          methods                the policy of ``w``
==============================================  =====================  ==========================================
:class:`HeadsFamily`                            MOPO, HaM              the heads steered with ``w`` (MOPO App. A.6)
:class:`~moalign.methods.sca.family.            SCA                    the head trained for ``w``, or reverse-KL
WeightHeadsFamily`                                                     steering of the two heads around ``w``
:class:`SoupFamily`                             Rewarded/ODPO Soups    the specialists' adapters interpolated at ``w``
:class:`~moalign.methods.modpo.family.          MODPO                  the model trained for the weights nearest ``w``
PerWeightFamily`
conditioned families                            MO-ODPO, P-MORL, RiC   ``w`` written into the prompt
(:mod:`moalign.inference.conditioned`)
==============================================  =====================  ==========================================

Each family gives a :class:`GenerationTarget` (model, evaluation :class:`~moalign.eval.policies.Policy`, prompt
rewrite) that :func:`moalign.eval.generate.generate_completions` decodes, and an :class:`ExportedModel` (a plain
transformers model plus chat-template changes). Which family a method uses is part of its registration
(:attr:`moalign.methods.spec.TrainingMethod.family`); :func:`family_for` reads it, so no caller branches on methods.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moalign.inference.folder import TrainedFolder, read_folder
from moalign.inference.weights import check_weights

__all__ = ["ExportedModel", "GenerationTarget", "PolicyFamily", "HeadsFamily", "SoupFamily", "family_for",
           "load_single_model", "export_single_model"]


@dataclass
class GenerationTarget:
    """What generates the policy of one weight vector: ``model`` under ``policy``, prompts rewritten first."""

    model: Any
    policy: Any
    prompt_transform: Callable[[Any], Any] | None = None
    note: str | None = None


@dataclass
class ExportedModel:
    """A plain transformers causal LM for one weight vector, and how the exported folder must differ.

    ``chat_template``: the exported tokenizer's chat template when it must change (conditioned methods);
    ``notes``: sentences for the model card (what exactly was exported).
    """

    model: Any
    chat_template: str | None = None
    notes: list[str] = field(default_factory=list)


def load_single_model(directory: Path, base_model: str | None, dtype: Any = None) -> Any:
    """The one policy in ``directory``: a saved MultiHeadCausalLM (frozen, eval mode) or a PEFT adapter on its base.

    ``dtype``: of the base model (None: as saved, see :func:`moalign.models.loading.load_base_model`).
    """
    if (directory / "multihead_config.json").is_file():
        from moalign.models import MultiHeadCausalLM

        return MultiHeadCausalLM.from_pretrained(directory, is_trainable=False, dtype=dtype)
    if (directory / "adapter_config.json").is_file():
        from peft import PeftModel

        from moalign.models.loading import load_base_model

        if not base_model:
            raise ValueError(f"{directory}: the adapter names no base model (base_model_name_or_path)")
        return PeftModel.from_pretrained(load_base_model(base_model, dtype=dtype), str(directory)).eval()
    raise FileNotFoundError(f"{directory}: neither a saved MultiHeadCausalLM nor a PEFT adapter folder")


def export_single_model(model: Any) -> Any:
    """The plain transformers model of a one-policy model: its head merged into lm_head, its LoRA merged."""
    from moalign.inference.merge import merge_adapter, merge_multihead

    if hasattr(model, "output") and hasattr(model, "num_heads"):
        return merge_multihead(model, [1.0] + [0.0] * (model.num_heads - 1))
    return merge_adapter(model).eval()


class PolicyFamily:
    """How one kind of trained folder gives the policy of a weight vector (module docstring).

    Subclasses set :attr:`kind`, override :meth:`weight_names` when the weights are not the objectives, and
    implement :meth:`target` and :meth:`export`. Models load lazily, once.
    """

    kind = "base"
    #: digits of the weight grid the method accepts (None: any point of the simplex)
    decimals: int | None = None

    def __init__(self, folder: TrainedFolder) -> None:
        self.folder = folder
        self._model: Any = None
        #: dtype the models load in (None: as saved); set by ``load_policy(..., dtype=)``
        self.dtype: Any = None

    @property
    def weight_names(self) -> list[str]:
        """What each weight refers to, in order (the objectives unless a family says otherwise)."""
        return list(self.folder.objectives)

    def check(self, weights: Any) -> tuple[float, ...]:
        """The weights as a tuple, or a ValueError that says what this model accepts."""
        return check_weights(weights, self.weight_names, self.folder.method, self.decimals)

    @property
    def tokenizer_dir(self) -> Path:
        """Folder whose tokenizer files the policy uses (the trainers save the tokenizer with the model)."""
        return self.folder.path

    @property
    def model(self) -> Any:
        if self._model is None:
            self._model = self.load_model()
        return self._model

    def load_model(self) -> Any:
        return load_single_model(self.folder.path, self.folder.base_model, self.dtype)

    @property
    def tokenizer(self) -> Any:
        """The tokenizer saved with the model (loaded once)."""
        if getattr(self, "_tokenizer", None) is None:
            from moalign.models import load_tokenizer

            self._tokenizer = load_tokenizer(str(self.tokenizer_dir))
        return self._tokenizer

    @property
    def use_chat_template(self) -> bool:
        """Whether prompts go through the chat template: as in training (``use_chat_template`` of the saved
        config), else whenever the tokenizer has one (the trainers' default)."""
        from moalign.data.prompts import has_chat_template

        saved = self.folder.setting("use_chat_template")
        return saved if isinstance(saved, bool) else has_chat_template(self.tokenizer)

    def describe(self, weights: tuple[float, ...]) -> str:
        """One line: what the policy of ``weights`` is."""
        return f"{self.folder.method} at weights {list(weights)}"

    def target(self, weights: tuple[float, ...], divergence: str | None = None) -> GenerationTarget:
        raise NotImplementedError

    def export(self, weights: tuple[float, ...], divergence: str | None = None) -> ExportedModel:
        """A plain model for ``weights``; consumes the loaded model (a later call reloads it)."""
        raise NotImplementedError

    def _take_model(self) -> Any:
        model, self._model = self.model, None
        return model


class HeadsFamily(PolicyFamily):
    """K heads on one backbone, steered with one weight per head (MOPO: per objective; HaM: per policy head)."""

    kind = "heads"
    default_divergence = "reverse_kl"

    @property
    def head_names(self) -> list[str]:
        payload = json.loads((self.folder.path / "multihead_config.json").read_text())
        return list(payload["multihead"]["head_names"])

    @property
    def weight_names(self) -> list[str]:
        return self.head_names

    def coefficients(self, weights: tuple[float, ...]) -> tuple[list[float], str | None]:
        """Per-head coefficients of ``weights`` and a note (None when the weights are the coefficients)."""
        return list(weights), None

    def _policy(self, coefficients: list[float], divergence: str) -> Any:
        from moalign.eval.policies import Policy

        if sum(c > 0 for c in coefficients) == 1:  # one head alone: exactly that head, for any divergence
            k = next(i for i, c in enumerate(coefficients) if c > 0)
            return Policy.from_head(k, name=f"head:{self.head_names[k]}")
        return Policy.steered(coefficients, divergence=divergence)

    def describe(self, weights: tuple[float, ...]) -> str:
        coefficients, note = self.coefficients(weights)
        mix = ", ".join(f"{c:g} x {n}" for c, n in zip(coefficients, self.head_names) if c > 0)
        return f"{self.folder.method} heads steered: {mix}" + (f" ({note})" if note else "")

    def target(self, weights: tuple[float, ...], divergence: str | None = None) -> GenerationTarget:
        coefficients, note = self.coefficients(weights)
        return GenerationTarget(self.model, self._policy(coefficients, divergence or self.default_divergence),
                                note=note)

    def export(self, weights: tuple[float, ...], divergence: str | None = None) -> ExportedModel:
        from moalign.inference.merge import merge_multihead

        coefficients, note = self.coefficients(weights)
        divergence = divergence or self.default_divergence
        model = merge_multihead(self._take_model(), coefficients, divergence)
        notes = [f"Output layer: sum_k c_k W_k over the heads with c = {coefficients} (reverse-KL steering, MOPO "
                 "paper App. A.6, is softmax(sum_k c_k z_k): one linear layer); LoRA merged into the backbone."]
        return ExportedModel(model, notes=notes + ([note] if note else []))


class SoupFamily(PolicyFamily):
    """Rewarded Soups / ODPO Soups: the specialists' adapters interpolated at ``w`` (:mod:`moalign.models.soups`)."""

    kind = "soup"

    def load_model(self) -> Any:
        from moalign.models.loading import load_base_model
        from moalign.models.soups import SoupModel

        base = load_base_model(self.folder.base_model, dtype=self.dtype) if self.folder.base_model else None
        return SoupModel.from_pretrained(self.folder.path, base_model=base)

    def describe(self, weights: tuple[float, ...]) -> str:
        return f"{self.folder.method}: the specialists' LoRA adapters interpolated at {list(weights)}"

    def target(self, weights: tuple[float, ...], divergence: str | None = None) -> GenerationTarget:
        from moalign.eval.policies import Policy

        return GenerationTarget(self.model, Policy.weighted(weights))

    def export(self, weights: tuple[float, ...], divergence: str | None = None) -> ExportedModel:
        soup = self._take_model()
        with soup.weighted_policy(list(weights)):  # sets the soup adapter (and heads) to theta(w)
            pass
        from moalign.models.soups import SOUP_ADAPTER

        merged = soup.peft.merge_and_unload(adapter_names=[SOUP_ADAPTER]).eval()
        notes = [f"The soup adapter theta(w) ({soup.interpolation} interpolation of the specialists' LoRA weights"
                 + (" and heads" if soup.head_type is not None else "") + f") at w = {list(weights)}, merged into the "
                 "base model."]
        return ExportedModel(merged, notes=notes)


def family_for(directory: str | Path | TrainedFolder) -> PolicyFamily:
    """The policy family of a trained folder (read with :func:`~moalign.inference.folder.read_folder`): the family
    its method registered (:attr:`moalign.methods.spec.TrainingMethod.family`), built with the method's
    ``family_options``."""
    from moalign.methods.registry import methods_in_order

    folder = directory if isinstance(directory, TrainedFolder) else read_folder(directory)
    methods = methods_in_order()
    method = methods.get(folder.method)
    if method is None or method.family is None:
        known = ", ".join(sorted(name for name, m in methods.items() if m.family is not None))
        raise ValueError(f"{folder.path}: trained by {folder.method!r}, which has no policy family; known: {known}")
    return method.family_class()(folder, **method.family_options)
