"""Where the time of one training step goes: CPU seconds per phase (``bench_mopo_vs_dpo.py --breakdown``).

Wraps methods of one trainer instance (no library changes) and splits a step into
forward passes (MOPO: backbone and heads of the policy, lagged and reference passes;
DPO: policy and reference forwards), the rest of ``compute_loss``, backward and
clip + optimizer + scheduler.
"""

from __future__ import annotations

import time
from typing import Any

import torch


class PhaseTimer:
    """CPU time per phase of a step, by wrapping methods of one trainer instance (no library changes).

    MOPO: ``sequence_logps`` by grad mode and source (policy with grad, no-grad lagged, no-grad reference), each
    split into backbone (``hidden_states``) and heads; the rest of ``compute_loss`` (dual step, metrics); backward
    (the rest of ``training_step``); clip + optimizer + scheduler (the rest of the step). DPO: model forwards with
    grad (policy) and without (reference), then the same three.
    """

    def __init__(self, variant: Any) -> None:
        self.variant = variant
        self.seconds: dict[str, float] = {}
        self._patched: list[tuple[Any, str]] = []

    def _wrap(self, owner: Any, name: str, key_of: Any) -> None:
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            key = key_of()
            start = time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[key] = self.seconds.get(key, 0.0) + time.process_time() - start

        setattr(owner, name, timed)
        self._patched.append((owner, name))

    def run(self, steps: int) -> dict[str, float]:
        trainer = self.variant.trainer
        model = trainer.model
        mopo = hasattr(model, "sequence_logps")
        if mopo:
            def kind() -> str:
                return "policy (grad)" if torch.is_grad_enabled() else f"{model.output.source} (no-grad)"

            self._wrap(model, "sequence_logps", lambda: f"pass {kind()}")
            self._wrap(model, "hidden_states", lambda: f"backbone {kind()}")
        else:
            self._wrap(model, "forward",
                       lambda: "forward policy (grad)" if torch.is_grad_enabled() else "forward reference (no-grad)")
        self._wrap(trainer, "compute_loss", lambda: "compute_loss")
        self._wrap(trainer, "training_step", lambda: "training_step")
        try:
            _, cpu = self.variant.run(steps, record=False)
        finally:
            for owner, name in self._patched:
                delattr(owner, name)
        s = {k: v / steps for k, v in self.seconds.items()}
        step = sum(cpu) / steps
        phases: dict[str, float] = {}
        if mopo:
            for kind_name in ("policy (grad)", "lagged (no-grad)", "reference (no-grad)"):
                if f"pass {kind_name}" in s:
                    backbone = s.get(f"backbone {kind_name}", 0.0)
                    phases[f"{kind_name} pass: backbone"] = backbone
                    phases[f"{kind_name} pass: heads"] = s[f"pass {kind_name}"] - backbone
            passes = sum(v for k, v in s.items() if k.startswith("pass "))
        else:
            phases.update({k: v for k, v in s.items() if k.startswith("forward")})
            passes = sum(v for k, v in s.items() if k.startswith("forward"))
        phases["rest of compute_loss (loss, dual step, metrics)"] = s["compute_loss"] - passes
        phases["backward (rest of training_step)"] = s["training_step"] - s["compute_loss"]
        phases["clip + optimizer + scheduler"] = step - s["training_step"]
        phases["step total"] = step
        return phases


def format_breakdown(breakdowns: dict[str, dict[str, float]]) -> str:
    lines = []
    for name, phases in breakdowns.items():
        lines.append(f"{name} (CPU s/step, share of the step):")
        lines += [f"    {k:50s} {v:7.2f}  {100 * v / phases['step total']:5.1f}%" for k, v in phases.items()]
    return "\n".join(lines)
