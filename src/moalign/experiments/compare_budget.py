"""The equal training budget of ``moalign compare``: training tokens processed forward + backward.

**Rule.** A method's spend is the number of token positions (padding included: it is computed) that
entered its policy's token embedding in a forward pass run with gradients enabled while the module
was in training mode -- exactly the passes whose activations are back-propagated. Generation
(online methods' sampling), reference and old-policy log-probabilities run under ``no_grad`` and
are not counted (they are reported as not counted, not hidden: the online methods spend extra
forward-only compute on top of the budget).

**Enforcement.** Every ``transformers.Trainer`` a method starts -- including the inner trainers of
Rewarded Soups / ODPO Soups specialists, P-MORL's GRPO and each MODPO weight -- is a *run*. While
:func:`metered` is active, a global forward pre-hook counts tokens into the current run, and the
trainers' callback handler stops a run after the first optimizer step at which its tokens reach
its share of the budget (``budget / number of runs`` of the method). A method therefore overshoots
its budget by less than one optimizer step per run; the comparison states a tolerance and reports
each method's actual spend and ratio to the budget.

**Checkpoints for learning curves.** With ``checkpoint_fractions`` (e.g. 0.25 and 0.5), a run also saves a
checkpoint (the trainer's own ``checkpoint-<step>`` folder, asked for through ``control.should_save``) after the
first optimizer step at which its tokens reach each fraction of its share; the run records, per fraction, the
folder, the step and the tokens spent. The run's final model is the 100 % point. Saving does not change the
training (no retraining: the curve is read from these checkpoints).

Peak memory: the process's resident set size sampled every 0.1 s while a method trains
(:class:`PeakMemory`), reported as the peak and as the increase over the RSS before training.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class TrainingRun:
    """One trainer run inside a method: where it wrote, its optimizer steps, tokens and seconds."""

    output_dir: str
    steps: int = 0
    tokens: int = 0
    seconds: float = 0.0
    stopped_by_budget: bool = False
    #: fraction of the run's budget (as a string, e.g. "0.25") -> {"path", "step", "tokens"} of its checkpoint
    checkpoints: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class TokenMeter:
    """Counts training tokens per run and stops each run at ``run_budget`` tokens (None: never stops)."""

    run_budget: int | None = None
    runs: list[TrainingRun] = field(default_factory=list)
    current: TrainingRun | None = None
    #: fractions (< 1) of ``run_budget`` at which every run saves a checkpoint
    checkpoint_fractions: tuple[float, ...] = ()
    _start: float = 0.0
    _pending: list[float] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        """Tokens of every run so far (the method's spend)."""
        return sum(r.tokens for r in self.runs) + (self.current.tokens if self.current else 0)

    def count(self, num_tokens: int) -> None:
        if self.current is None:  # a training-mode forward outside a Trainer run (none expected)
            self.current = TrainingRun(output_dir="<outside a trainer>")
            self._start = time.time()
        self.current.tokens += int(num_tokens)

    def begin(self, output_dir: str) -> None:
        self.end(None)
        self.current = TrainingRun(output_dir=str(output_dir))
        self._pending = []
        self._start = time.time()

    def end(self, steps: int | None) -> None:
        if self.current is None:
            return
        if steps is not None:
            self.current.steps = int(steps)
        self.current.seconds = time.time() - self._start
        self.runs.append(self.current)
        self.current = None

    def should_stop(self) -> bool:
        return bool(self.run_budget and self.current is not None and self.current.tokens >= self.run_budget)

    def due_checkpoints(self) -> list[float]:
        """Fractions whose token mark the current run has reached and not yet checkpointed (they become pending)."""
        if not self.run_budget or self.current is None:
            return []
        done = {float(f) for f in self.current.checkpoints} | set(self._pending)
        due = [f for f in self.checkpoint_fractions
               if f not in done and self.current.tokens >= f * self.run_budget]
        self._pending += due
        return due

    def saved(self, path: str, step: int) -> None:
        """The trainer saved ``path`` at ``step``: it is the checkpoint of every pending fraction."""
        if self.current is None:
            return
        for f in self._pending:
            self.current.checkpoints[str(f)] = {"path": str(path), "step": int(step), "tokens": self.current.tokens}
        self._pending = []


_ACTIVE: list[TokenMeter] = []


def _count_hook(module: torch.nn.Module, args: tuple) -> None:
    if not _ACTIVE or not isinstance(module, torch.nn.Embedding):
        return
    if not (module.training and torch.is_grad_enabled()):
        return
    if args and isinstance(args[0], torch.Tensor):
        _ACTIVE[-1].count(args[0].numel())


@contextlib.contextmanager
def metered(run_budget: int | None = None, checkpoint_fractions: tuple[float, ...] = ()) -> Iterator[TokenMeter]:
    """Count (and, with ``run_budget``, cap) the training tokens of every Trainer run inside the block; with
    ``checkpoint_fractions`` every run saves a checkpoint at each fraction of ``run_budget`` (module docstring)."""
    import os

    from transformers.trainer_callback import CallbackHandler
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    if any(not 0 < f < 1 for f in checkpoint_fractions):
        raise ValueError(f"checkpoint fractions must lie in (0, 1) (1 is the final model), got {checkpoint_fractions}")
    meter = TokenMeter(run_budget=run_budget, checkpoint_fractions=tuple(sorted(set(checkpoint_fractions))))
    original = {name: getattr(CallbackHandler, name)
                for name in ("on_train_begin", "on_step_end", "on_train_end", "on_save")}

    def on_train_begin(self: Any, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        meter.begin(getattr(args, "output_dir", "?"))
        return original["on_train_begin"](self, args, state, control, **kwargs)

    def on_step_end(self: Any, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        control = original["on_step_end"](self, args, state, control, **kwargs)
        if meter.due_checkpoints():
            control.should_save = True
        if meter.should_stop():
            control.should_training_stop = True
            meter.current.stopped_by_budget = True
        return control

    def on_train_end(self: Any, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        meter.end(state.global_step)
        return original["on_train_end"](self, args, state, control, **kwargs)

    def on_save(self: Any, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        meter.saved(os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"), state.global_step)
        return original["on_save"](self, args, state, control, **kwargs)

    handle = torch.nn.modules.module.register_module_forward_pre_hook(_count_hook)
    _ACTIVE.append(meter)
    CallbackHandler.on_train_begin, CallbackHandler.on_step_end, CallbackHandler.on_train_end = (
        on_train_begin, on_step_end, on_train_end)
    CallbackHandler.on_save = on_save
    try:
        yield meter
    finally:
        for name, fn in original.items():
            setattr(CallbackHandler, name, fn)
        _ACTIVE.remove(meter)
        handle.remove()
        meter.end(None)


def _rss_bytes() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


class PeakMemory:
    """Peak resident memory of this process while the ``with`` block runs (sampled every ``interval`` s)."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.before = 0
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, _rss_bytes())

    def __enter__(self) -> PeakMemory:
        self.before = self.peak = _rss_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, _rss_bytes())

    def to_dict(self) -> dict[str, float]:
        return {"peak_rss_mb": self.peak / 2**20, "peak_increase_mb": (self.peak - self.before) / 2**20}
