"""Model soups: one policy for any weight vector w from K specialists' LoRA adapters (Rewarded Soups, ODPO Soups).

Rewarded Soups (Rame et al., NeurIPS 2023) fine-tune one specialist per objective from the same base model and,
for a preference w on the simplex, use the weights ``theta(w) = sum_k w_k theta_k``. With LoRA specialists
two rules are on offer (docs/baselines.md, Soups):

* ``"linear"`` (**default**): every LoRA matrix is interpolated, ``A(w) = sum_k w_k A_k`` and
  ``B(w) = sum_k w_k B_k`` -- what the original does (its ``WeightAverager`` averages every entry of the PEFT
  state dicts with the coefficients). The merged update ``B(w) A(w)`` is *not* ``sum_k w_k B_k A_k``
  (cross terms), but it is the paper's rule, so the baseline is the paper's baseline; it keeps rank r.
* ``"cat"``: the exact weighted sum of the specialists' updates, ``Delta W(w) = sum_k w_k s_k B_k A_k``, by
  PEFT's ``add_weighted_adapter(..., combination_type="cat")`` (rank K*r: the A's scaled by w_k s_k and
  concatenated, the B's concatenated).

At a vertex ``w = e_k`` both rules give specialist k exactly.

Specialists are folders of either format the trainers write:

* a plain PEFT adapter folder (``adapter_config.json`` + weights), as TRL's ``GRPOTrainer`` saves with
  ``peft_config`` (the Rewarded Soups and P-MORL specialists here);
* a :class:`~moalign.models.MultiHeadCausalLM` folder with one head (``multihead_config.json``, ``adapter/``,
  ``heads.safetensors``), as the trainers of the family save (e.g. MO-ODPO specialists for ODPO Soups). The
  heads are part of the policy, so they are souped too, with the same rule: a full head's matrix is
  interpolated (both rules agree), a low-rank head ``W_0 + s A B`` gets ``A(w), B(w)`` (``"linear"``) or
  ``W_0 + s sum_k w_k A_k B_k`` (``"cat"``).

:class:`SoupModel` loads the K adapters onto one base and exposes ``weighted_policy(weights)``, the context in
which ``generate``/``forward`` are the soup at w (what the evaluation's "weighted" policies call).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from moalign.core.soups import interpolate_parameters
from moalign.models.steering import validate_steering_weights

__all__ = ["INTERPOLATIONS", "SOUP_CONFIG_FILE", "SoupModel", "SpecialistSpec", "interpolate_tensors",
           "is_soup_folder", "read_specialist", "save_soup_config"]

INTERPOLATIONS = ("linear", "cat")
SOUP_CONFIG_FILE = "soup_config.json"
SOUP_ADAPTER = "soup"


class SpecialistSpec:
    """Where a specialist's adapter and (optional) single head live, read from its folder."""

    def __init__(self, directory: Path, adapter_dir: Path, heads: dict[str, torch.Tensor] | None,
                 head_config: dict[str, Any] | None, base_model_name_or_path: str | None) -> None:
        self.directory = directory
        self.adapter_dir = adapter_dir
        self.heads = heads
        self.head_config = head_config
        self.base_model_name_or_path = base_model_name_or_path


def read_specialist(directory: str | os.PathLike) -> SpecialistSpec:
    """Read a specialist folder: a PEFT adapter folder, or a one-head MultiHeadCausalLM folder (module docstring)."""
    directory = Path(directory)
    if (directory / "multihead_config.json").is_file():
        from safetensors.torch import load_file

        payload = json.loads((directory / "multihead_config.json").read_text())
        heads = payload["multihead"]
        if heads["num_heads"] != 1:
            raise ValueError(f"{directory}: a specialist must have one policy head, this model has "
                             f"{heads['num_heads']} ({heads['head_names']})")
        if payload.get("lora_config") is None:
            raise ValueError(f"{directory}: the specialist has no LoRA adapter; soups interpolate LoRA adapters")
        return SpecialistSpec(directory, directory / "adapter", load_file(str(directory / "heads.safetensors")),
                              heads, heads.get("base_model_name_or_path"))
    if (directory / "adapter_config.json").is_file():
        config = json.loads((directory / "adapter_config.json").read_text())
        return SpecialistSpec(directory, directory, None, None, config.get("base_model_name_or_path"))
    raise FileNotFoundError(f"{directory}: not a specialist (neither a PEFT adapter folder with adapter_config.json "
                            "nor a saved MultiHeadCausalLM with multihead_config.json)")


def interpolate_tensors(tensors: Sequence[dict[str, torch.Tensor]], weights: Sequence[float]) -> dict[str, torch.Tensor]:
    """``sum_k w_k T_k`` entry by entry (:func:`moalign.core.soups.interpolate_parameters`, the toy's function);
    the K dicts must have the same keys and shapes."""
    keys = list(tensors[0])
    for k, t in enumerate(tensors[1:], start=1):
        if set(t) != set(keys) or any(t[name].shape != tensors[0][name].shape for name in keys):
            raise ValueError(f"specialist {k} has different adapter/head tensors than specialist 0; soups need "
                             "specialists of one architecture (same LoRA targets and ranks)")
    stacked = {name: torch.stack([t[name] for t in tensors]) for name in keys}
    return interpolate_parameters(stacked, [float(w) for w in weights])


def is_soup_folder(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` holds a ``soup_config.json`` (written by :func:`save_soup_config`)."""
    return (Path(directory) / SOUP_CONFIG_FILE).is_file()


def save_soup_config(directory: str | os.PathLike, specialists: Sequence[str | os.PathLike], objectives: Sequence[str],
                     base_model_name_or_path: str | None, interpolation: str = "linear",
                     method: str = "rewarded_soups") -> Path:
    """Write ``soup_config.json``: specialist folders (relative to ``directory`` when inside it), one per objective."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    if len(specialists) != len(objectives):
        raise ValueError(f"{len(specialists)} specialists for {len(objectives)} objectives: one per objective")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = [os.path.relpath(Path(s).resolve(), directory.resolve()) for s in specialists]
    payload = {"method": method, "objectives": list(objectives), "specialists": paths,
               "base_model_name_or_path": base_model_name_or_path, "interpolation": interpolation}
    path = directory / SOUP_CONFIG_FILE
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


class SoupModel(nn.Module):
    """K specialists' LoRA adapters (and single heads, if any) on one base model; the soup for any weight vector.

    Args:
        base_model: the plain transformers causal LM all specialists were trained from (modified in place).
        specialists: K specialist folders (see the module docstring), in the order of the weights.
        interpolation: ``"linear"`` (A and B each interpolated, as Rewarded Soups; default) or ``"cat"``
            (the exact ``sum_k w_k B_k A_k`` via PEFT).
        objectives: optional names of the K objectives (one per specialist).

    Outside :meth:`weighted_policy` the model is the uniform soup (w_k = 1/K, Rewarded Soups' average).
    """

    def __init__(self, base_model: nn.Module, specialists: Sequence[str | os.PathLike], interpolation: str = "linear",
                 objectives: Sequence[str] | None = None) -> None:
        super().__init__()
        from peft import PeftModel

        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
        if len(specialists) < 2:
            raise ValueError(f"a soup needs at least 2 specialists, got {len(specialists)}")
        self.specs = [read_specialist(s) for s in specialists]
        self.interpolation = interpolation
        self.objectives = list(objectives) if objectives is not None else [f"objective_{k}" for k in
                                                                           range(len(self.specs))]
        if len(self.objectives) != len(self.specs):
            raise ValueError(f"{len(self.objectives)} objectives for {len(self.specs)} specialists")
        self.names = [f"specialist_{k}" for k in range(len(self.specs))]
        self.peft = PeftModel.from_pretrained(base_model, str(self.specs[0].adapter_dir), adapter_name=self.names[0])
        for name, spec in zip(self.names[1:], self.specs[1:]):
            self.peft.load_adapter(str(spec.adapter_dir), adapter_name=name)
        self._check_adapters()
        self._init_heads(base_model)
        self.peft.requires_grad_(False)
        self.eval()
        self._applied: tuple[float, ...] | None = None
        self._wanted = tuple(1.0 / len(self.specs) for _ in self.specs)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, base_model: nn.Module | None = None,
                        interpolation: str | None = None) -> SoupModel:
        """Load a soup folder written by :func:`save_soup_config` (base model from its saved name unless given)."""
        directory = Path(directory)
        if not is_soup_folder(directory):
            raise FileNotFoundError(f"{directory / SOUP_CONFIG_FILE}: not found; is {directory} a soup folder?")
        payload = json.loads((directory / SOUP_CONFIG_FILE).read_text())
        if base_model is None:
            from moalign.models.loading import load_base_model

            if not payload.get("base_model_name_or_path"):
                raise ValueError(f"{directory}: no base_model_name_or_path saved; pass base_model=")
            base_model = load_base_model(payload["base_model_name_or_path"])
        return cls(base_model, [directory / p for p in payload["specialists"]],
                   interpolation or payload.get("interpolation", "linear"), payload.get("objectives"))

    def _check_adapters(self) -> None:
        configs = [self.peft.peft_config[n] for n in self.names]
        if any(getattr(c, "use_dora", False) for c in configs):
            raise ValueError("DoRA specialists cannot be souped here (magnitude vectors); use plain LoRA")
        if self.interpolation == "linear":
            keys = [(c.r, c.lora_alpha, sorted(c.target_modules) if not isinstance(c.target_modules, str)
                     else c.target_modules, bool(getattr(c, "use_rslora", False))) for c in configs]
            if len(set(map(str, keys))) != 1:
                raise ValueError(f"interpolation='linear' needs specialists with one LoRA shape (r, alpha, targets); "
                                 f"got {keys}; use interpolation='cat'")
            self.peft.add_adapter(SOUP_ADAPTER, configs[0])

    def _init_heads(self, base_model: nn.Module) -> None:
        """With MultiHeadCausalLM specialists: an untied output layer whose weight the soup overwrites."""
        with_heads = [s.heads is not None for s in self.specs]
        if any(with_heads) and not all(with_heads):
            raise ValueError("all specialists must be of one format: PEFT adapter folders or MultiHeadCausalLM "
                             "folders (with heads)")
        self.head_type = self.specs[0].head_config["head_type"] if all(with_heads) else None
        if self.head_type is None:
            return
        types = {s.head_config["head_type"] for s in self.specs}
        if len(types) != 1:
            raise ValueError(f"specialists have different head types {sorted(types)}")
        output = base_model.get_output_embeddings()
        self.base_weight = output.weight.detach().clone()
        self.base_bias = output.bias.detach().clone() if output.bias is not None else None
        has_bias = self.base_bias is not None or any("0.bias" in s.heads for s in self.specs)
        untied = nn.Linear(output.in_features, output.out_features, bias=has_bias,
                           dtype=output.weight.dtype, device=output.weight.device)
        untied.requires_grad_(False)
        base_model.set_output_embeddings(untied)
        if hasattr(base_model, "config"):
            base_model.config.tie_word_embeddings = False

    # ------------------------------------------------------------------ the soup at w
    @property
    def num_specialists(self) -> int:
        return len(self.specs)

    @contextmanager
    def weighted_policy(self, weights: Sequence[float] | torch.Tensor) -> Iterator[SoupModel]:
        """Context in which ``generate``/``forward`` are the soup at ``weights`` (K floats on the simplex)."""
        try:
            w = tuple(validate_steering_weights(weights, self.num_specialists))
        except (ValueError, TypeError) as err:
            raise ValueError(f"soup weights (one per specialist: {self.objectives}): {err}") from err
        saved = self._wanted
        self._wanted = w
        self._apply(w)
        try:
            yield self
        finally:
            self._wanted = saved

    @torch.no_grad()
    def _apply(self, weights: tuple[float, ...]) -> None:
        if self._applied == weights:
            return
        from peft import get_peft_model_state_dict, set_peft_model_state_dict

        if self.interpolation == "linear":
            states = [get_peft_model_state_dict(self.peft, adapter_name=n) for n in self.names]
            set_peft_model_state_dict(self.peft, interpolate_tensors(states, weights), adapter_name=SOUP_ADAPTER)
        else:
            if SOUP_ADAPTER in self.peft.peft_config:
                self.peft.set_adapter(self.names[0])
                self.peft.delete_adapter(SOUP_ADAPTER)
            self.peft.add_weighted_adapter(self.names, list(weights), SOUP_ADAPTER, combination_type="cat")
        self.peft.set_adapter(SOUP_ADAPTER)
        self.peft.requires_grad_(False)
        if self.head_type is not None:
            self._apply_heads(weights)
        self._applied = weights

    def _apply_heads(self, weights: tuple[float, ...]) -> None:
        output = self.peft.get_output_embeddings()
        heads = [s.heads for s in self.specs]
        if self.head_type == "full":
            mixed = interpolate_tensors(heads, weights)
            output.weight.copy_(mixed["0.weight"])
            if output.bias is not None:
                output.bias.copy_(mixed.get("0.bias", self.base_bias))
            return
        config = self.specs[0].head_config
        scaling = float(config.get("head_alpha") or config["head_rank"]) / config["head_rank"]
        base = self.base_weight.float()
        if self.interpolation == "linear":
            mixed = interpolate_tensors(heads, weights)
            delta = mixed["0.A"].float() @ mixed["0.B"].float()
        else:
            delta = sum(w * (h["0.A"].float() @ h["0.B"].float()) for w, h in zip(weights, heads))
        output.weight.copy_((base + scaling * delta).to(output.weight.dtype))
        if output.bias is not None:
            output.bias.copy_(self.base_bias)

    # ------------------------------------------------------------------ the model interface
    def merged_delta(self, module_name: str) -> torch.Tensor:
        """The active adapter's weight update ``s * B A`` of the LoRA layer ``module_name`` (for checks)."""
        self._apply(self._wanted)
        layer = dict(self.peft.named_modules())[module_name]
        return layer.get_delta_weight(SOUP_ADAPTER)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        self._apply(self._wanted)
        return self.peft(*args, **kwargs)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        self._apply(self._wanted)
        return self.peft.generate(*args, **kwargs)

    @contextmanager
    def disable_adapter(self) -> Iterator[SoupModel]:
        """The base model: adapters off and, with heads, the base output layer."""
        saved = None
        if self.head_type is not None:
            output = self.peft.get_output_embeddings()
            saved = output.weight.detach().clone()
            output.weight.data.copy_(self.base_weight)
        try:
            with self.peft.disable_adapter():
                yield self
        finally:
            if saved is not None:
                self.peft.get_output_embeddings().weight.data.copy_(saved)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def generation_config(self) -> Any:
        return self.peft.generation_config

    @property
    def config(self) -> Any:
        return self.peft.config
