"""Saving and reloading a :class:`~moalign.models.multihead.MultiHeadCausalLM`.

Layout of a saved folder::

    multihead_config.json   head config, base model id/path, LoRA config (for information)
    adapter/                the LoRA adapter in PEFT format (absent without LoRA)
    heads.safetensors       the policy heads' parameters

The base model is not saved; it is reloaded from ``base_model_name_or_path``
(or passed in).  This module does not import the model class (the
class is passed in), so the dependency runs one way: multihead -> serialization.
The snapshot (:mod:`moalign.models.snapshot`) is training state and is not saved.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from torch import nn

from moalign.models.config import MultiHeadConfig

__all__ = ["CONFIG_FILE", "HEADS_FILE", "ADAPTER_DIR", "FORMAT_VERSION", "save_multihead", "load_multihead"]

CONFIG_FILE = "multihead_config.json"
HEADS_FILE = "heads.safetensors"
ADAPTER_DIR = "adapter"
FORMAT_VERSION = 1


def save_multihead(model: Any, save_directory: str | os.PathLike, adapter_name: str = "default") -> None:
    """Write ``model`` to ``save_directory`` (layout in the module docstring)."""
    from safetensors.torch import save_file

    directory = Path(save_directory)
    directory.mkdir(parents=True, exist_ok=True)
    lora = None
    if model.is_peft:
        model.model.save_pretrained(
            str(directory / ADAPTER_DIR), selected_adapters=[adapter_name], save_embedding_layers=False
        )
        lora = model.lora_config.to_dict()
    payload = {"format_version": FORMAT_VERSION, "multihead": asdict(model.head_config), "lora_config": lora}
    (directory / CONFIG_FILE).write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    tensors = {name: t.detach().contiguous().cpu() for name, t in model.output.heads.state_dict().items()}
    save_file(tensors, str(directory / HEADS_FILE), metadata={"head_type": model.head_config.head_type})


def load_multihead(
    cls: type,
    directory: str | os.PathLike,
    base_model: nn.Module | None = None,
    is_trainable: bool = True,
    **base_model_kwargs: Any,
) -> Any:
    """Rebuild a model saved by :func:`save_multihead` (see ``MultiHeadCausalLM.from_pretrained``)."""
    from safetensors.torch import load_file

    directory = Path(directory)
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path}: not found; is {directory} a saved MultiHeadCausalLM?")
    payload = json.loads(config_path.read_text())
    if payload.get("format_version") != FORMAT_VERSION or "multihead" not in payload:
        raise ValueError(f"{config_path}: expected format_version {FORMAT_VERSION} with a 'multihead' entry")
    config = MultiHeadConfig(**payload["multihead"])
    if base_model is None:
        from moalign.models.loading import load_base_model

        if not config.base_model_name_or_path:
            raise ValueError(f"{config_path}: no base_model_name_or_path saved; pass base_model=")
        base_model = load_base_model(config.base_model_name_or_path, **base_model_kwargs)
    adapter_dir = directory / ADAPTER_DIR
    has_adapter = payload.get("lora_config") is not None
    if has_adapter and not adapter_dir.is_dir():
        raise FileNotFoundError(f"{adapter_dir}: the config names a LoRA adapter but the folder is missing")
    heads_path = directory / HEADS_FILE
    if not heads_path.is_file():
        raise FileNotFoundError(f"{heads_path}: not found")
    model = cls(base_model, config, _adapter_dir=adapter_dir if has_adapter else None, _adapter_trainable=is_trainable)
    state = load_file(str(heads_path), device=str(model.device))
    model.output.heads.load_state_dict(state, strict=True)
    if not is_trainable:
        model.eval()
    return model


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if hasattr(value, "value"):  # enums such as peft's TaskType
        return value.value
    return str(value)


# ---------------------------------------------------------------- training state (checkpoints)
def load_trainable_state(model: Any, directory: str | os.PathLike, adapter_name: str = "default") -> None:
    """Load adapter and head weights saved by :func:`save_multihead` into an existing ``model``.

    Used to resume training in place (the trainer keeps its model object).
    """
    from safetensors.torch import load_file

    directory = Path(directory)
    if model.is_peft:
        from peft import load_peft_weights, set_peft_model_state_dict

        adapter_dir = directory / ADAPTER_DIR
        if not adapter_dir.is_dir():
            raise FileNotFoundError(f"{adapter_dir}: no saved LoRA adapter to resume from")
        result = set_peft_model_state_dict(model.model, load_peft_weights(str(adapter_dir)), adapter_name=adapter_name)
        missing = [k for k in getattr(result, "missing_keys", []) if adapter_name in k.split(".")]
        if missing:
            raise ValueError(f"{adapter_dir}: adapter weights missing for {missing[:5]}")
    heads_path = directory / HEADS_FILE
    if not heads_path.is_file():
        raise FileNotFoundError(f"{heads_path}: not found")
    model.output.heads.load_state_dict(load_file(str(heads_path), device=str(model.device)), strict=True)
