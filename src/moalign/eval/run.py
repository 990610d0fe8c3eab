"""``moalign eval``: evaluate a saved multi-head model (heads + steering grid + base) on a prompt file."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moalign.data.encoding import named_decode_errors
from moalign.eval.evaluate import EvalConfig, evaluate_policies


@dataclass
class EvalRunConfig(EvalConfig):
    """Command-line settings of ``moalign eval`` (the evaluation settings are inherited from ``EvalConfig``)."""

    model: str = field(default="", metadata={"help": "Directory of a saved MultiHeadCausalLM (save_pretrained)."})
    prompts: str = field(
        default="", metadata={"help": "JSONL file of prompts, one object per line with a 'prompt' field."}
    )
    rewards: list[str] | None = field(
        default=None,
        metadata={"help": "Reward functions, one per head, in head order: offline names, keys of "
                  "KNOWN_REWARD_MODELS, or hf:<path>. Default: the model's head names (as `moalign demo` "
                  "names its heads after the offline scorers)."},
    )
    max_prompts: int | None = field(default=None, metadata={"help": "Evaluate only the first N prompts."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.model or not self.prompts:
            raise ValueError("moalign eval needs --model DIR and --prompts FILE.jsonl")
        if self.output_dir is None:
            self.output_dir = str(Path(self.model) / "eval")


def read_prompts(path: str | Path, limit: int | None = None) -> list[Any]:
    """Prompts of a JSONL file; errors name the file and line."""
    prompts: list[Any] = []
    with open(path, encoding="utf-8") as handle, named_decode_errors(path):
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}, line {line_no}: not valid JSON ({err.msg})") from err
            if not isinstance(row, dict) or "prompt" not in row:
                raise ValueError(f"{path}, line {line_no}: expected an object with a 'prompt' field")
            prompts.append(row["prompt"])
    if not prompts:
        raise ValueError(f"{path}: no prompts")
    return prompts[:limit] if limit else prompts


def run_eval(config: EvalRunConfig) -> Any:
    """Load the model, generate with every policy, score, write the report to ``config.output_dir``."""
    from moalign.models import MultiHeadCausalLM, load_tokenizer
    from moalign.rewards.registry import resolve_reward_functions

    model = MultiHeadCausalLM.from_pretrained(config.model)
    tokenizer = load_tokenizer(config.model)
    reward_fns = resolve_reward_functions(config.rewards if config.rewards is not None else model.head_names)
    prompts = read_prompts(config.prompts, config.max_prompts)
    result = evaluate_policies(model.eval(), tokenizer, prompts, reward_fns, config=config)
    print(f"wrote {config.output_dir}/report.md")
    return result
