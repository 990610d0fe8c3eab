"""CPU thread settings for training on a small, shared machine: idle OpenMP threads sleep instead of spinning.

Why. torch 2.13's CPU wheel runs its intra-op parallelism (and MKL's and oneDNN's) on **GNU OpenMP**
(``torch/lib/libgomp.so.1``; ``torch.__config__.parallel_info()`` reports ``ATen parallel backend:
OpenMP``) with one thread per CPU, i.e. 2 on the 2-core machine. A libgomp thread that has nothing
to do (a worker between parallel regions, the master at the closing barrier) busy-waits
``GOMP_SPINCOUNT`` = 300,000 pause iterations (several ms; ``OMP_DISPLAY_ENV=VERBOSE`` prints the
value) before it sleeps. Idle, that spin makes the next region start at once. Beside one other
CPU-bound process, three runnable threads share two cores: the spinning thread takes CPU time from
the thread it waits for, so each of the thousands of parallel regions of a training step or a
generated token costs scheduler time slices instead of microseconds. Measured on the shared 2-core
machine with ``benchmarks/bench_contention.py`` (docs/benchmarks.md, "CPU contention"; every run is
listed there), beside a one-core Python busy loop:

* one unit (a SmolLM2 LoRA training step + a 16-token greedy generation): libgomp defaults 3.0-3.2 s idle,
  16-34 s loaded (5-11x), the process burning up to ~35 CPU s instead of ~6, all of it in the two OpenMP
  threads (``/proc/self/task``: tokenizers and interop threads used none); with
  ``OMP_WAIT_POLICY=PASSIVE`` (spin count 0: idle threads sleep at once) 4.2-4.4 s idle, 5.2-5.7 s
  loaded (1.2-1.3x; three runs of 3 rounds);
* ``moalign demo --quick``: 59 s idle, 384-485 s loaded (6.5-8.2x) with the defaults; 70-72 s idle,
  96 s loaded (1.33-1.36x) with the fix.

The price is the idle time: 1.4x on the unit, 1.2x on the demo (every parallel region wakes its
worker through the kernel). Shorter spins trade one for the other (unit, idle / loaded, interleaved
runs): ``GOMP_SPINCOUNT`` 1,000: 4.2-4.5 / 5.4-6.3 s; 3,000: 3.6 / 6.3 s; 10,000: 3.9 / 7.7 s;
100,000: 3.2 / 13.9 s; passive 4.4-5.0 / 5.3-5.5 s, the most predictable loaded, and the one
setting (``OMP_WAIT_POLICY``) that every OpenMP runtime reads. One thread
(``torch.set_num_threads(1)``, default spin) was 4.8-5.4 s idle and loaded alike.

What :func:`configure_cpu_threads` does, and what it leaves alone:

* it sets ``OMP_WAIT_POLICY=PASSIVE`` in ``os.environ`` **only if** none of the variables that
  choose how OpenMP threads wait (:data:`WAIT_ENV_VARS`: ``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT``
  of GNU OpenMP, ``KMP_BLOCKTIME``/``KMP_LIBRARY`` of Intel OpenMP) is set, **and** no OpenMP
  runtime is loaded yet: libgomp reads its environment once, when it is loaded (by
  ``import torch``), so a later change has no effect on this process; then it changes nothing;
* it never changes the number of threads: ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` and
  ``torch.set_num_threads`` stay the user's (a thread count set by the user is honoured by
  torch as before). Passive waiting is what made 2 threads degrade gracefully.

Where to call it. The ``moalign`` command calls it first thing in :func:`moalign.cli.main.main`,
before anything imports torch. Library users (scripts and notebooks that do not go through the
CLI) call it before the first ``import torch`` (or before importing anything that imports
torch, e.g. transformers or most of moalign)::

    from moalign.runtime import configure_cpu_threads
    configure_cpu_threads()          # before `import torch`
    import torch

or set the variable in the shell: ``OMP_WAIT_POLICY=PASSIVE python train.py``. To keep libgomp's
default busy-waiting under the CLI (the fastest setting on a machine nobody else uses), set it
explicitly: ``GOMP_SPINCOUNT=300000 moalign ...`` (libgomp's default; ``OMP_WAIT_POLICY=ACTIVE``
spins far longer). Child processes inherit ``OMP_WAIT_POLICY`` from ``os.environ``. This module
imports neither torch nor transformers.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping
from dataclasses import dataclass

__all__ = ["WAIT_ENV_VARS", "THREAD_ENV_VARS", "ThreadSetup", "configure_cpu_threads", "openmp_loaded"]

#: variables that choose how idle OpenMP threads wait; when any of them is set, the user has chosen
WAIT_ENV_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "KMP_LIBRARY")
#: thread-count variables: never set or changed here (reported in :class:`ThreadSetup` only)
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
#: the value set when the user chose nothing
PASSIVE = "PASSIVE"
#: file names of OpenMP runtimes (GNU, Intel, LLVM) as they appear in /proc/self/maps
OPENMP_LIBRARIES = ("libgomp", "libiomp", "libomp")


@dataclass(frozen=True)
class ThreadSetup:
    """What :func:`configure_cpu_threads` found and did.

    ``wait_policy`` is ``"set"`` (``OMP_WAIT_POLICY=PASSIVE`` was set), ``"user"`` (the user set one of
    :data:`WAIT_ENV_VARS`: left alone) or ``"too_late"`` (an OpenMP runtime was already loaded, e.g.
    torch was imported first: nothing was changed). ``user_env`` holds the wait and thread variables
    that were set before the call.
    """

    wait_policy: str
    user_env: dict[str, str]

    @property
    def applied(self) -> bool:
        return self.wait_policy == "set"


#: the result of the call that set ``OMP_WAIT_POLICY`` in ``os.environ`` in this process, if one did
_set_here: ThreadSetup | None = None


def openmp_loaded() -> bool:
    """Whether an OpenMP runtime may already be loaded in this process (then its environment is read).

    True once torch is imported (it loads libgomp); otherwise looks for an OpenMP library in
    ``/proc/self/maps`` (Linux). Where that file cannot be read, only the torch check is made.
    """
    if "torch" in sys.modules:
        return True
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            return any(name in line for line in maps for name in OPENMP_LIBRARIES)
    except OSError:
        return False


def configure_cpu_threads(environ: MutableMapping[str, str] | None = None) -> ThreadSetup:
    """Make idle OpenMP threads sleep (``OMP_WAIT_POLICY=PASSIVE``) unless the user chose otherwise.

    Call it before ``import torch`` (see the module docstring: the OpenMP runtime reads its
    environment when it is loaded). Leaves everything alone when one of :data:`WAIT_ENV_VARS` is
    set or when an OpenMP runtime is already loaded; never changes thread counts. ``environ``
    defaults to ``os.environ`` (a dict can be passed to see what would be done). Idempotent.
    """
    global _set_here
    env = os.environ if environ is None else environ
    if environ is None and _set_here and env.get("OMP_WAIT_POLICY") == PASSIVE:
        return _set_here  # a second call (e.g. main() called twice) reports the first one's result
    user_env = {name: env[name] for name in WAIT_ENV_VARS + THREAD_ENV_VARS if name in env}
    if any(name in env for name in WAIT_ENV_VARS):
        return ThreadSetup("user", user_env)
    if openmp_loaded():
        return ThreadSetup("too_late", user_env)
    env["OMP_WAIT_POLICY"] = PASSIVE
    setup = ThreadSetup("set", user_env)
    if environ is None:
        _set_here = setup
    return setup
