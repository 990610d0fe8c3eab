"""The timing harness the trainer benchmarks share: synthetic rows of exact token lengths, shared training
arguments and LoRA, a per-step timer, a timed variant, the process setup, the model and the count of generated tokens.

Used by ``bench_mopo_vs_dpo.py`` (MOPOTrainer vs TRL's DPOTrainer), ``bench_ham_vs_sft.py``,
``bench_mo_odpo_vs_online_dpo.py``, ``bench_generation.py``, ``bench_grpo_generation.py`` and ``bench_serve.py``: every side of a comparison is
built and timed the same way (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import random
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import TrainerCallback

TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
#: words that are one token each (also after a space) for the SmolLM2 and the tiny tokenizer
WORDS = ("the cat dog sun moon tree house car red blue green big small good bad kind happy sad rain "
         "yes no very short long").split()


# ---------------------------------------------------------------------------- data
def make_pairs(num_pairs: int, prompt_tokens: int, completion_tokens: int, num_objectives: int,
               seed: int) -> list[dict[str, Any]]:
    """Pairwise rows: ``prompt_tokens``-word prompts, ``completion_tokens - 1``-word completions (+ EOS)."""
    rng = random.Random(seed)

    def words(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n))

    return [{"prompt": words(prompt_tokens),
             "completion_a": " " + words(completion_tokens - 1),
             "completion_b": " " + words(completion_tokens - 1),
             "preference": [rng.random() for _ in range(num_objectives)]} for _ in range(num_pairs)]


def check_token_lengths(tokenizer: Any, rows: list[dict[str, Any]], prompt_tokens: int, completion_tokens: int) -> None:
    """Fail loudly if a row's prompt/completion token counts differ from the requested lengths."""
    for i, row in enumerate(rows):
        n_prompt = len(tokenizer(row["prompt"], add_special_tokens=False)["input_ids"])
        for column in ("completion_a", "completion_b"):
            n_completion = len(tokenizer(row[column], add_special_tokens=False)["input_ids"]) + 1  # + EOS
            if (n_prompt, n_completion) != (prompt_tokens, completion_tokens):
                raise ValueError(f"synthetic row {i}, prompt/{column}: {n_prompt}/{n_completion} tokens, expected "
                                 f"{prompt_tokens}/{completion_tokens} (a word of WORDS is not one token here)")


# ---------------------------------------------------------------------------- trainers
def common_args(cli: argparse.Namespace, output_dir: str) -> dict[str, Any]:
    """TrainingArguments shared by both trainers."""
    return dict(
        output_dir=output_dir, per_device_train_batch_size=cli.batch_size, gradient_accumulation_steps=1,
        learning_rate=cli.learning_rate, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
        optim="adamw_torch", max_grad_norm=1.0, gradient_checkpointing=False, use_cpu=True,
        bf16=cli.precision == "bf16", fp16=False,  # TRL's flag; moalign's configs add precision=cli.precision
        dataloader_num_workers=0, report_to=[], logging_strategy="no", save_strategy="no", eval_strategy="no",
        disable_tqdm=True, seed=cli.seed, data_seed=cli.seed, max_steps=1,
    )


def lora_config(cli: argparse.Namespace) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=cli.lora_r, lora_alpha=cli.lora_alpha, lora_dropout=cli.lora_dropout,
                      target_modules=list(cli.target_modules), task_type="CAUSAL_LM")


class StepTimer(TrainerCallback):
    """Wall and process CPU time of every optimizer step (``on_step_begin`` -> ``on_step_end``)."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self._start = (0.0, 0.0)

    def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
        self._start = (time.perf_counter(), time.process_time())

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
        self.wall.append(time.perf_counter() - self._start[0])
        self.cpu.append(time.process_time() - self._start[1])


def attach_timer(trainer: Any) -> tuple[Any, StepTimer]:
    """``(trainer, its new StepTimer)``; drops the callback that prints the metrics at the end of every ``train()``."""
    from transformers.trainer_callback import PrinterCallback

    timer = StepTimer()
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(timer)
    return trainer, timer


def build_trl(trainer_class: type, config_class: type, cli: argparse.Namespace, base: Any, tokenizer: Any,
              data: Any, output_dir: str, **config: Any) -> tuple[Any, StepTimer]:
    """A TRL baseline trainer (``SFTTrainer``, ``DPOTrainer``) set up as the moalign trainer it is timed against.

    A copy of ``base`` with the shared LoRA (PEFT inside TRL), :func:`common_args`, sequences of prompt +
    completion tokens, and a :class:`StepTimer`; ``config`` adds the TRL config's own fields.
    """
    args = config_class(**common_args(cli, output_dir), max_length=cli.prompt_tokens + cli.completion_tokens, **config)
    trainer = trainer_class(model=copy.deepcopy(base), args=args, train_dataset=data, processing_class=tokenizer,
                            peft_config=lora_config(cli))
    return attach_timer(trainer)


@dataclass
class Variant:
    """One timed configuration: a trainer plus the ``lag_steps`` it runs with (MOPO only)."""

    name: str
    trainer: Any
    timer: StepTimer
    lag_steps: int | None = None
    wall: list[float] = field(default_factory=list)  # seconds per optimizer step, timed steps only
    cpu: list[float] = field(default_factory=list)

    def run(self, steps: int, record: bool = True) -> tuple[list[float], list[float]]:
        """``steps`` optimizer steps in one ``train()`` call; returns (and records) their wall and CPU times."""
        args = self.trainer.args
        args.max_steps = steps
        if self.lag_steps is not None:
            args.lag_steps = self.lag_steps
        self.timer.wall.clear()
        self.timer.cpu.clear()
        self.trainer.train()
        if len(self.timer.wall) != steps:
            raise RuntimeError(f"{self.name}: timed {len(self.timer.wall)} steps, expected {steps}")
        if record:
            self.wall += self.timer.wall
            self.cpu += self.timer.cpu
        return list(self.timer.wall), list(self.timer.cpu)


# ---------------------------------------------------------------------------- process and model
def setup_process(cli: argparse.Namespace) -> None:
    """The benchmark process: ``--threads`` torch threads, ``--seed``, no transformers logging or warnings in the
    timed output, no tokenizer threads competing with torch's."""
    torch.set_num_threads(cli.threads)
    torch.manual_seed(cli.seed)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def load_model(cli: argparse.Namespace) -> tuple[Any, Any, str]:
    if cli.tiny:
        from moalign.models.testing import make_tiny_llama_and_tokenizer

        base, tokenizer = make_tiny_llama_and_tokenizer(hidden_size=64, intermediate_size=128, num_layers=2)
        return base, tokenizer, "tiny random Llama (2 layers, hidden 64)"
    from moalign.models import load_smollm2

    base, tokenizer = load_smollm2()
    return base, tokenizer, f"SmolLM2-135M-Instruct ({'bf16 autocast' if cli.precision == 'bf16' else 'float32'})"


def new_tokens(out: torch.Tensor, prompt_length: int, stop: torch.Tensor) -> int:
    """Generated tokens up to and including the first stop token of each row (a row without one: all of them)."""
    new = out[:, prompt_length:]
    hit = torch.isin(new, stop)
    lengths = torch.where(hit.any(1), hit.int().argmax(1) + 1, torch.full_like(hit[:, 0], new.shape[1],
                                                                                dtype=torch.long))
    return int(lengths.sum())
