"""Policy families: for each kind of trained folder, the policy of a weight vector -- to generate and to export.

A *policy family* knows one way a trained method turns a preference ``w`` into a policy:

========================  ==============================  ===================================================
family                    methods                         the policy of ``w``
========================  ==============================  ===================================================
:class:`HeadsFamily`      MOPO, HaM                       the heads steered with ``w`` (MOPO paper App. A.6)
:class:`WeightHeadsFamily` SCA                            the head trained for ``w``, or reverse-KL steering
                                                          of the two trained heads around ``w``
:class:`SoupFamily`       Rewarded Soups, ODPO Soups      the specialists' LoRA adapters interpolated at ``w``
:class:`PerWeightFamily`  MODPO                           the model trained for the weight vector nearest ``w``
conditioned families      MO-ODPO, P-MORL, RiC            ``w`` written into the prompt
                          (:mod:`moalign.inference.conditioned`)
========================  ==============================  ===================================================

Each family gives a :class:`GenerationTarget` (model, evaluation :class:`~moalign.eval.policies.Policy`, prompt
rewrite) that :func:`moalign.eval.generate.generate_completions` decodes, and an :class:`ExportedModel` (a plain
transformers model plus chat-template changes). The table :data:`FAMILIES` maps a method name to its family;
:func:`family_for` is the only place that reads a method name, so no caller branches on methods.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moalign.inference.folder import TrainedFolder, read_folder
from moalign.inference.weights import check_weights

__all__ = ["ExportedModel", "GenerationTarget", "PolicyFamily", "HeadsFamily", "WeightHeadsFamily", "SoupFamily",
           "PerWeightFamily", "FAMILIES", "register_family", "family_for", "load_single_model"]


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


class WeightHeadsFamily(HeadsFamily):
    """SCA: one head per trained weight vector (head names ``w_0.3_0.7``); the user gives objective weights.

    ``w`` equal to a head's vector selects that head. Between trained vectors (two objectives) the two
    neighbouring heads are steered with reverse KL, with the convex coefficients that reproduce ``w`` from their
    vectors. With three or more objectives only the trained vectors are accepted.
    """

    @property
    def weight_names(self) -> list[str]:
        return list(self.folder.objectives)

    @property
    def head_vectors(self) -> list[tuple[float, ...]]:
        vectors = []
        for name in self.head_names:
            try:
                vectors.append(tuple(float(v) for v in name.split("_")[1:]))
            except ValueError:
                raise ValueError(f"{self.folder.path}: head {name!r} does not name a weight vector (w_0.3_0.7)") from None
        return vectors

    def coefficients(self, weights: tuple[float, ...]) -> tuple[list[float], str | None]:
        vectors = self.head_vectors
        for j, v in enumerate(vectors):
            if all(math.isclose(a, b, abs_tol=1e-9) for a, b in zip(v, weights)):
                return [1.0 if i == j else 0.0 for i in range(len(vectors))], None
        trained = "; ".join(",".join(f"{x:g}" for x in v) for v in vectors)
        if len(weights) != 2:
            raise ValueError(f"SCA model: weights {list(weights)} are not one of its trained weight vectors ({trained});"
                             " with more than two objectives only those are offered")
        below = [(v[0], j) for j, v in enumerate(vectors) if v[0] <= weights[0]]
        above = [(v[0], j) for j, v in enumerate(vectors) if v[0] >= weights[0]]
        if not below or not above:
            raise ValueError(f"SCA model: weights {list(weights)} lie outside its trained weight vectors ({trained})")
        (lo, j), (hi, i) = max(below), min(above)
        t = (weights[0] - lo) / (hi - lo)
        coefficients = [0.0] * len(vectors)
        coefficients[j], coefficients[i] = 1.0 - t, t
        note = (f"between the trained heads {self.head_names[j]} and {self.head_names[i]}: reverse-KL steering with "
                f"{1 - t:.4g} / {t:.4g}")
        return coefficients, note


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


class PerWeightFamily(PolicyFamily):
    """MODPO: one trained model per weight vector; the policy of ``w`` is the model trained nearest to it."""

    kind = "per_weight"

    @property
    def members(self) -> list[tuple[tuple[float, ...], Path]]:
        """``(weights, folder)`` of every trained model, from its head name ``modpo_w_0.7_0.3``."""
        folders = self.folder.members or [self.folder.path]
        out = []
        for directory in folders:
            payload = json.loads((directory / "multihead_config.json").read_text())
            name = payload["multihead"]["head_names"][0]
            out.append((tuple(float(v) for v in name.rsplit("w_", 1)[1].split("_")), directory))
        return out

    def nearest(self, weights: tuple[float, ...]) -> tuple[tuple[float, ...], Path, bool]:
        """``(trained weights, folder, exact)`` of the model nearest ``weights`` (Euclidean; ties: first folder)."""
        best = min(self.members, key=lambda m: (math.dist(m[0], weights), str(m[1])))
        return best[0], best[1], math.dist(best[0], weights) < 1e-9

    def _select(self, weights: tuple[float, ...]) -> tuple[Path, str | None]:
        trained, directory, exact = self.nearest(weights)
        if exact:
            return directory, None
        note = (f"{self.folder.method} trains one model per weight vector; none was trained for {list(weights)}, "
                f"so the nearest one is used: {directory} (trained for {list(trained)})")
        warnings.warn(note, stacklevel=3)
        return directory, note

    @property
    def tokenizer_dir(self) -> Path:
        return self.members[0][1]

    def describe(self, weights: tuple[float, ...]) -> str:
        trained, directory, _ = self.nearest(weights)
        return f"{self.folder.method} model trained for {list(trained)} ({directory})"

    def target(self, weights: tuple[float, ...], divergence: str | None = None) -> GenerationTarget:
        from moalign.eval.policies import Policy

        directory, note = self._select(weights)
        if getattr(self, "_loaded_dir", None) != directory:
            self._model, self._loaded_dir = load_single_model(directory, self.folder.base_model, self.dtype), directory
        return GenerationTarget(self._model, Policy.as_is(f"{self.folder.method}:{directory.name}"), note=note)

    def export(self, weights: tuple[float, ...], divergence: str | None = None) -> ExportedModel:
        directory, note = self._select(weights)
        model = export_single_model(load_single_model(directory, self.folder.base_model, self.dtype))
        return ExportedModel(model, notes=[note or f"The model trained for exactly these weights ({directory})."])


#: method name -> (family class, or "module:Class" resolved on first use; keyword options of its constructor)
FAMILIES: dict[str, tuple[type[PolicyFamily] | str, dict[str, Any]]] = {}


def register_family(method: str, family: type[PolicyFamily] | str, replace: bool = False, **options: Any) -> None:
    """Make folders trained by ``method`` usable by ``load_policy`` / ``moalign generate`` / ``moalign export``.

    ``family``: a :class:`PolicyFamily` subclass or its ``"module:Class"`` path; ``options`` go to its constructor
    after the folder (e.g. the method whose conditioning file a prompt-conditioned family reads).
    """
    if method in FAMILIES and not replace:
        raise ValueError(f"a policy family is already registered for {method!r}")
    FAMILIES[method] = (family, dict(options))


def _resolve(family: type[PolicyFamily] | str) -> type[PolicyFamily]:
    if not isinstance(family, str):
        return family
    import importlib

    module, _, name = family.partition(":")
    return getattr(importlib.import_module(module), name)


def family_for(directory: str | Path | TrainedFolder) -> PolicyFamily:
    """The policy family of a trained folder (read with :func:`~moalign.inference.folder.read_folder`)."""
    folder = directory if isinstance(directory, TrainedFolder) else read_folder(directory)
    if folder.method not in FAMILIES:
        raise ValueError(f"{folder.path}: trained by {folder.method!r}, which has no policy family; known: "
                         f"{', '.join(sorted(FAMILIES))}")
    family, options = FAMILIES[folder.method]
    return _resolve(family)(folder, **options)


_CONDITIONED = "moalign.inference.conditioned"
for _method, _family, _options in (
        ("mopo", HeadsFamily, {}), ("ham", HeadsFamily, {}), ("sca", WeightHeadsFamily, {}),
        ("rewarded_soups", SoupFamily, {}), ("odpo_soups", SoupFamily, {}),
        ("modpo", PerWeightFamily, {}),
        ("mo_odpo", f"{_CONDITIONED}:PromptConditionedFamily", {"conditioning_method": "mo_odpo"}),
        ("p_morl", f"{_CONDITIONED}:PromptConditionedFamily", {"conditioning_method": "p_morl"}),
        ("ric", f"{_CONDITIONED}:RewardConditionedFamily", {})):
    register_family(_method, _family, **_options)
