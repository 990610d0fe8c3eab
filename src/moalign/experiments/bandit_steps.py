"""Two small pieces of the §4.1 bandit's loop: the tabular behaviour-cloning step and the one-thread context."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from moalign.core.cloning import behaviour_cloning_logit_gradient


def behaviour_cloning_step(psi: torch.Tensor, optimiser: torch.optim.Optimizer, target: torch.Tensor) -> None:
    """Alg. 1 line 8 for tabular policies ``softmax(psi)``: one optimiser step on the cloning loss, in place.

    ``loss = -sum_y target(y) log softmax(psi)_y`` (eq. 13 with ``target = pi_lag * w``) has the gradient
    ``softmax(psi) - target``; it is written into ``psi.grad`` directly (no autograd graph), which also works
    under ``torch.inference_mode``. ``psi`` ``(..., 3)`` is the optimiser's parameter.
    """
    psi.grad = behaviour_cloning_logit_gradient(psi, target)
    optimiser.step()


@contextmanager
def single_torch_thread() -> Iterator[None]:
    """Run the enclosed code with ``torch.set_num_threads(1)``; restore the previous count afterwards.

    The simulation is thousands of sequential steps of ~20 ops on (75, 3) tensors: per-op overhead, not
    arithmetic, is the cost, and intra-op threading only adds synchronisation. On a loaded 2-core machine
    torch's default of 2 threads made every op wait for a busy core: the quick tier ran at ~40 steps/s
    instead of ~1600 with one thread.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
