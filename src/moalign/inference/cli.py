"""``moalign generate`` and ``moalign export``: their settings (dataclasses parsed like every command) and runs."""

from __future__ import annotations

import json
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["GenerateConfig", "ExportConfig", "run_generate", "run_export"]

_WEIGHTS_HELP = ("Preference weights, comma-separated, one per objective in the model's order (HaM: one per head), "
                 "summing to 1, e.g. 0.7,0.3. MO-ODPO and P-MORL accept the one-decimal grid only.")
_DIVERGENCE_HELP = ("Multi-head models (MOPO, HaM, SCA): how the heads are combined -- 'reverse_kl' (default; "
                    "weighted geometric mean, MOPO paper App. A.6), 'forward_kl' or '<alpha>-divergence'. "
                    "Other methods ignore it.")


@dataclass
class GenerateConfig:
    """Settings of ``moalign generate``."""

    model: str = field(default="", metadata={"help": "Folder written by `moalign train <method>` (any method)."})
    weights: str = field(default="", metadata={"help": _WEIGHTS_HELP})
    prompt: str | None = field(default=None, metadata={"help": "One prompt (a user message)."})
    prompts: str | None = field(default=None, metadata={"help": "JSONL file of prompts, one object per line with a "
                                                                "'prompt' field (text or chat messages)."})
    max_prompts: int | None = field(default=None, metadata={"help": "Use only the first N prompts of --prompts."})
    max_new_tokens: int = field(default=64, metadata={"help": "Tokens generated per completion."})
    temperature: float = field(default=0.0, metadata={"help": "0: greedy decoding; above 0: sampling at this "
                                                              "temperature."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass (only when sampling)."})
    seed: int = field(default=0, metadata={"help": "Torch seed when sampling."})
    batch_size: int = field(default=32, metadata={"help": "Prompts per generate() call (32: CPU generation runs 2.4-2.7x as many tokens per second at 32 as at 8; docs/precision.md)."})
    divergence: str | None = field(default=None, metadata={"help": _DIVERGENCE_HELP})
    precision: str = field(default="auto", metadata={"help": "Compute precision: 'auto' (bf16 where the device "
                                                             "computes it natively), 'bf16' or 'fp32'."})
    out: str | None = field(default=None, metadata={"help": "Write JSONL rows {prompt, weights, completion} here "
                                                            "instead of printing."})

    def __post_init__(self) -> None:
        if not self.model or not self.weights:
            raise ValueError("moalign generate needs --model DIR and --weights W1,W2,...")
        if (self.prompt is None) == (self.prompts is None):
            raise ValueError("give exactly one of --prompt TEXT and --prompts FILE.jsonl")


@dataclass
class ExportConfig:
    """Settings of ``moalign export``."""

    model: str = field(default="", metadata={"help": "Folder written by `moalign train <method>` (any method)."})
    weights: str = field(default="", metadata={"help": _WEIGHTS_HELP})
    out: str = field(default="", metadata={"help": "Folder to write the transformers model to (new or empty)."})
    divergence: str | None = field(default=None, metadata={"help": "Multi-head models: only 'reverse_kl' (the "
                                                                    "default) is one model; other values are refused."})
    overwrite: bool = field(default=False, metadata={"help": "Replace --out if it holds an earlier export."})

    def __post_init__(self) -> None:
        if not self.model or not self.weights or not self.out:
            raise ValueError("moalign export needs --model DIR, --weights W1,W2,... and --out DIR2")


def run_generate(config: GenerateConfig) -> list[str]:
    """Load the folder, generate at the weights, print the completions or write them to ``config.out``."""
    from moalign.eval.run import read_prompts
    from moalign.inference.policy import load_policy

    policy = load_policy(config.model)
    weights = policy.check_weights(config.weights)  # before loading any model: bad weights fail fast
    prompts = [config.prompt] if config.prompt is not None else read_prompts(config.prompts, config.max_prompts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the note is printed below, once
        completions = policy.generate(prompts, weights, max_new_tokens=config.max_new_tokens,
                                      temperature=config.temperature, top_p=config.top_p, seed=config.seed,
                                      divergence=config.divergence, batch_size=config.batch_size,
                                      precision=config.precision)
    print(f"{policy.method}: {policy.family.describe(weights)}", file=sys.stderr)
    if policy.last_note:
        print(f"note: {policy.last_note}", file=sys.stderr)
    if config.out:
        path = Path(config.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            for prompt, completion in zip(prompts, completions):
                handle.write(json.dumps({"prompt": prompt, "weights": list(weights), "completion": completion}) + "\n")
        print(f"wrote {len(completions)} completion(s) to {path}")
    elif len(prompts) == 1:
        print(completions[0])
    else:
        for prompt, completion in zip(prompts, completions):
            print(f"### {prompt if isinstance(prompt, str) else json.dumps(prompt)}\n{completion}\n")
    return completions


def run_export(config: ExportConfig) -> Path:
    """Export the policy of ``config.weights`` to ``config.out`` and say what was written."""
    from moalign.inference.policy import load_policy

    policy = load_policy(config.model)
    weights = policy.check_weights(config.weights)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        out = policy.export(weights, config.out, divergence=config.divergence, overwrite=config.overwrite)
    for warning in caught:
        if "nearest" in str(warning.message):
            print(f"warning: {warning.message}", file=sys.stderr)
    print(f"{policy.method}: {policy.family.describe(weights)}")
    print(f"wrote {out} (config.json, model.safetensors, tokenizer, README.md); load it with "
          f"AutoModelForCausalLM.from_pretrained('{out}') or pipeline('text-generation', model='{out}')")
    return out
