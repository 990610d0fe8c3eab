"""Shared setup of the end-to-end ``moalign train <method> --config`` tests: a tiny saved model, a JSONL data
file and a YAML config with the fields every CPU test run sets."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from moalign.models.testing import make_tiny_llama_and_tokenizer

#: the fields every CLI test config sets: CPU only, no trackers, no chat template, quiet, a log line per step
CPU_TEST_FIELDS: dict[str, Any] = {
    "use_cpu": True,
    "report_to": [],
    "use_chat_template": False,
    "disable_tqdm": True,
    "logging_steps": 1,
}


def save_tiny_model(directory: Path) -> Path:
    """Save the tiny Llama and its tokenizer to ``directory`` (a ``model_name_or_path``); return ``directory``."""
    base, tokenizer = make_tiny_llama_and_tokenizer()
    base.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def write_jsonl(path: Path, rows: Iterable[dict]) -> Path:
    """Write ``rows`` to ``path``, one JSON object a line; return ``path``."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def write_config(path: Path, *, without: Iterable[str] = (), **fields: Any) -> Path:
    """Write a YAML config: :data:`CPU_TEST_FIELDS` (less the keys in ``without``) updated by ``fields``.

    ``Path`` values are written as strings. Returns ``path``.
    """
    config = {key: value for key, value in CPU_TEST_FIELDS.items() if key not in set(without)}
    config.update({key: str(value) if isinstance(value, Path) else value for key, value in fields.items()})
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
