"""What a trained folder is: which method wrote it, its objectives, base model and training settings.

Every ``moalign train <method>`` run leaves a folder in one of four layouts (docs/use_your_model.md):

* a saved :class:`~moalign.models.MultiHeadCausalLM` (``multihead_config.json``, ``heads.safetensors``,
  ``adapter/``) with ``<method>_state.pt`` holding ``{"method", "objectives", ...}`` -- MOPO, HaM, SCA, RiC,
  MODPO, MO-ODPO (the trainers of the shared base, :class:`~moalign.trainers.base_trainer.MultiObjectiveTrainer`);
* a soup folder with ``soup_config.json`` naming the method and its specialists -- Rewarded Soups, ODPO Soups;
* a PEFT adapter folder with ``p_morl_conditioning.json`` -- P-MORL (trained by TRL's GRPO);
* a folder whose sub-folders are MODPO models, one per weight vector (as ``moalign compare`` keeps them).

:func:`read_folder` recognises the layout and returns a :class:`TrainedFolder`; nothing here loads a model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["TrainedFolder", "read_folder", "read_training_args", "find_eval_report"]

SOUP_MARKER = "soup_config.json"
MULTIHEAD_MARKER = "multihead_config.json"


@dataclass
class TrainedFolder:
    """A trained folder as :func:`read_folder` found it.

    ``members``: for a folder of several per-weight models (MODPO), the member folders (else empty).
    ``training_args``: the saved training config (``training_args.bin``) when it could be read, else None.
    """

    path: Path
    method: str
    objectives: list[str]
    base_model: str | None = None
    members: list[Path] = field(default_factory=list)
    training_args: Any = None

    def setting(self, name: str, default: Any = None) -> Any:
        """A field of the saved training config (``default`` when the config or the field is missing)."""
        value = getattr(self.training_args, name, None) if self.training_args is not None else None
        return default if value is None else value


def _load_torch(path: Path) -> Any:
    """A small torch-pickled file written by moalign itself (state dicts of plain values, training configs)."""
    import torch

    try:
        return torch.load(path, weights_only=True)
    except Exception:  # noqa: BLE001 -- configs and numpy RNG states need the full unpickler; our own file
        return torch.load(path, weights_only=False)


def read_training_args(directory: Path) -> Any:
    """``training_args.bin`` of ``directory`` (a config dataclass), or None when absent or unreadable."""
    path = directory / "training_args.bin"
    if not path.is_file():
        return None
    try:
        return _load_torch(path)
    except Exception:  # noqa: BLE001 -- informational only (model card, chat-template setting)
        return None


def _state_file(directory: Path) -> dict[str, Any] | None:
    """The ``{"method", "objectives", ...}`` state of a base-trainer folder (``<method>_state.pt``), or None."""
    for path in sorted(directory.glob("*_state.pt")):
        state = _load_torch(path)
        if isinstance(state, dict) and "method" in state and "objectives" in state:
            return state
    return None


def _base_model_of(directory: Path) -> str | None:
    for name, key in ((MULTIHEAD_MARKER, "multihead"), ("adapter_config.json", None), (SOUP_MARKER, None)):
        path = directory / name
        if path.is_file():
            payload = json.loads(path.read_text())
            payload = payload[key] if key else payload
            return payload.get("base_model_name_or_path")
    return None


def _p_morl_marker() -> str:
    """The file of a P-MORL policy folder (its conditioning file); the method is implied by it."""
    from moalign.data.conditioning import conditioning_file  # on first use: moalign.data loads datasets

    return conditioning_file("p_morl")


def _read_single(directory: Path) -> TrainedFolder | None:
    """The folder of one trained model (any layout but the per-weight collection), or None."""
    if (directory / SOUP_MARKER).is_file():
        payload = json.loads((directory / SOUP_MARKER).read_text())
        specialists = [directory / p for p in payload.get("specialists", [])]
        args = next((a for a in (read_training_args(s) for s in specialists) if a is not None), None)
        return TrainedFolder(directory, str(payload.get("method", "rewarded_soups")), list(payload["objectives"]),
                             payload.get("base_model_name_or_path"), training_args=args)
    if (directory / _p_morl_marker()).is_file():
        payload = json.loads((directory / _p_morl_marker()).read_text())
        return TrainedFolder(directory, "p_morl", list(payload["objectives"]), _base_model_of(directory),
                             training_args=read_training_args(directory))
    if (directory / MULTIHEAD_MARKER).is_file():
        state = _state_file(directory)
        if state is None:
            return None
        return TrainedFolder(directory, str(state["method"]), list(state["objectives"]), _base_model_of(directory),
                             training_args=read_training_args(directory))
    return None


def read_folder(directory: str | Path) -> TrainedFolder:
    """Recognise a trained folder (module docstring); a clear error when it is none of the known layouts."""
    path = Path(directory)
    if not path.is_dir():
        raise FileNotFoundError(f"model folder {path}: no such directory")
    single = _read_single(path)
    if single is not None:
        return single
    children = [c for c in sorted(path.iterdir()) if c.is_dir()]
    members = [m for m in (_read_single(c) for c in children) if m is not None]
    methods = sorted({m.method for m in members})
    if members and len(methods) == 1:
        objectives = {tuple(m.objectives) for m in members}
        if len(objectives) != 1:
            raise ValueError(f"{path}: its {methods[0]} models have different objectives {sorted(objectives)}")
        first = members[0]
        return TrainedFolder(path, first.method, list(first.objectives), first.base_model,
                             members=[m.path for m in members], training_args=first.training_args)
    if len(methods) > 1:
        raise ValueError(f"{path}: holds models of several methods ({', '.join(methods)}); name one of its "
                         "sub-folders")
    raise ValueError(
        f"{path}: not a folder trained by moalign (expected multihead_config.json with a <method>_state.pt, "
        f"{SOUP_MARKER}, {_p_morl_marker()}, or sub-folders of per-weight models such as MODPO's)")


def find_eval_report(directory: Path, levels: int = 3) -> Path | None:
    """The measured front of this model, or None: ``DIR/eval/report.md`` (``moalign eval``), else up to ``levels``
    folders above an ``eval/report.md`` (``moalign demo`` keeps ``out/model`` next to ``out/eval``) or the
    ``report.md`` of a ``moalign compare`` run (next to its ``compare.json``)."""
    own = directory / "eval" / "report.md"
    if own.is_file():
        return own
    for parent in list(directory.resolve().parents)[:levels]:
        if (parent / "eval" / "report.md").is_file():
            return parent / "eval" / "report.md"
        if (parent / "report.md").is_file() and (parent / "compare.json").is_file():
            return parent / "report.md"
    return None
