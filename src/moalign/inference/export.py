"""``moalign export``: the policy of one weight vector as a standard transformers model folder.

The folder holds ``config.json``, ``generation_config.json``, ``model.safetensors``, the tokenizer files and a
``README.md`` model card, so ``AutoModelForCausalLM.from_pretrained(DIR)``, ``pipeline("text-generation",
model=DIR)`` and ``push_to_hub`` work without moalign. What is exported, per policy family
(:mod:`moalign.inference.families`):

* heads (MOPO, HaM, SCA) with reverse-KL steering: one merged output layer ``sum_k w_k W_k`` (exact, see
  :mod:`moalign.inference.merge`); forward-KL / alpha steering is refused;
* soups: the interpolated LoRA adapter merged into the base (exact);
* conditioned methods (MO-ODPO, P-MORL, RiC): the policy merged, the weights written by the chat template
  (:mod:`moalign.inference.conditioned`);
* MODPO: the model trained for the nearest weight vector, with a warning naming it.

``moalign_export.json`` records the source folder, method, weights and what was exported.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from moalign.inference.folder import find_eval_report

__all__ = ["EXPORT_RECORD", "export_policy", "model_card"]

EXPORT_RECORD = "moalign_export.json"


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out}: exists and is not empty; choose a new --out or pass --overwrite")
        if not (out / EXPORT_RECORD).is_file():
            raise FileExistsError(f"{out}: not a folder written by moalign export ({EXPORT_RECORD} missing); "
                                  "refusing to overwrite it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def _training_data(policy: Any) -> str:
    folder = policy.family.folder
    path = folder.setting("dataset_path")
    if path:
        return f"`{path}`"
    recipe = folder.setting("dataset_recipe")
    if recipe:
        return f"hub recipe `{recipe}` (split `{folder.setting('dataset_split', 'train')}`)"
    return "not recorded in the trained folder"


def _hub_base_model(name: str | None) -> str | None:
    """``name`` when it looks like a hub id (``org/model``, not a local path or moalign's bundled alias)."""
    from moalign.models.loading import is_smollm2_name

    if not name or is_smollm2_name(name) or Path(name).expanduser().exists() or name.startswith((".", "/", "~")):
        return None
    return name if name.count("/") == 1 else None


def model_card(policy: Any, weights: tuple[float, ...], notes: list[str], divergence: str | None,
               conditioning_hint: str | None = None) -> str:
    """The README.md of an exported folder: method, objectives, weights, training data, the measured front."""
    folder = policy.family.folder
    base = _hub_base_model(folder.base_model)
    front = ["---", "library_name: transformers", "pipeline_tag: text-generation",
             f"tags: [moalign, multi-objective-alignment, {policy.method.replace('_', '-')}]"]
    if base:
        front.append(f"base_model: {base}")
    report = find_eval_report(folder.path)
    weight_text = ", ".join(f"{n} = {w:g}" for n, w in zip(policy.weight_names, weights))
    rows = [("method", f"`{policy.method}` (policy family: {policy.kind})"),
            ("objectives", ", ".join(policy.objectives)),
            ("weights", weight_text + (f" (divergence {divergence})" if divergence else "")),
            ("policy", policy.family.describe(weights)),
            ("trained folder", f"`{folder.path}`"),
            ("base model", f"`{folder.base_model}`" if folder.base_model else "not recorded"),
            ("training data", _training_data(policy)),
            ("measured front", f"`{report}` (moalign's evaluation report of the trained folder)" if report else
             "no evaluation report next to the trained folder (run `moalign eval --model DIR --prompts FILE`)")]
    lines = front + ["---", "", f"# {policy.method} policy at {weight_text}", "",
                     f"Exported by `moalign export` from a model trained with moalign's `{policy.method}`: one "
                     "standard transformers causal LM for one trade-off between the objectives.", "",
                     "| | |", "| --- | --- |", *[f"| {k} | {v} |" for k, v in rows], "", "## What was exported", "",
                     *[f"- {n}" for n in notes], "", "## Use", "", "```python", "from transformers import pipeline",
                     "", 'chat = pipeline("text-generation", model="PATH_OR_HUB_ID")',
                     'print(chat([{"role": "user", "content": "Plan a rainy Sunday."}], max_new_tokens=64))', "```", ""]
    if conditioning_hint:
        lines += ["A client that sends a plain string instead of chat messages bypasses the chat template; it must "
                  "write the conditioning itself:", "", "```text", conditioning_hint, "```", ""]
    return "\n".join(lines)


def _conditioning_hint(policy: Any, weights: tuple[float, ...]) -> str | None:
    """For a conditioned model trained on raw text: the text it continues for the prompt ``PROMPT``."""
    if policy.kind != "conditioned" or policy.family.use_chat_template:
        return None
    return policy.prompt_texts(["PROMPT"], weights)[0]


def export_policy(policy: Any, weights: Any, out: str | Path, divergence: str | None = None,
                  overwrite: bool = False) -> Path:
    """Write the policy of ``weights`` of a :class:`~moalign.inference.policy.LoadedPolicy` to ``out``.

    Raises ``ValueError`` for weights the method does not accept and for steering that no single model computes
    (forward KL / alpha-divergences); ``FileExistsError`` for a non-empty ``out`` unless ``overwrite`` (which only
    replaces an earlier export).
    """
    from moalign.models import load_tokenizer

    w = policy.check_weights(weights)
    out = Path(out)
    hint = _conditioning_hint(policy, w)
    exported = policy.family.export(w, divergence)
    _prepare_out(out, overwrite)
    tokenizer = load_tokenizer(str(policy.family.tokenizer_dir))  # a fresh copy: the policy's stays unchanged
    if exported.chat_template is not None:
        tokenizer.chat_template = exported.chat_template
    model = exported.model
    generation = getattr(model, "generation_config", None)
    if generation is not None:
        if generation.pad_token_id is None and tokenizer.pad_token_id is not None:
            generation.pad_token_id = tokenizer.pad_token_id
        if generation.eos_token_id is None and tokenizer.eos_token_id is not None:
            generation.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    used_divergence = divergence or getattr(policy.family, "default_divergence", None)
    notes = list(exported.notes)
    (out / "README.md").write_text(model_card(policy, w, notes, used_divergence, hint))
    record = {"source": str(policy.path), "method": policy.method, "objectives": policy.objectives,
              "weight_names": policy.weight_names, "weights": list(w), "divergence": used_divergence,
              "policy": policy.family.describe(w), "notes": notes}
    (out / EXPORT_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return out
