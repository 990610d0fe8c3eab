"""moalign.runtime.configure_cpu_threads: passive OpenMP waiting by default, the user's settings left alone.

The end-to-end cases run in a fresh interpreter (the OpenMP runtime reads its environment once, when
``import torch`` loads it, and env changes must not leak into this process). libgomp's
``OMP_DISPLAY_ENV=VERBOSE`` report on stderr shows what the runtime actually uses.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from moalign.runtime import THREAD_ENV_VARS, WAIT_ENV_VARS, configure_cpu_threads

SRC = Path(__file__).resolve().parents[1] / "src"

CALL_THEN_IMPORT = """
import json, os, sys
from moalign.runtime import configure_cpu_threads
setup = configure_cpu_threads()
import torch
again = configure_cpu_threads()  # a second call (e.g. main() run twice) reports the first one's outcome
print(json.dumps({"policy": setup.wait_policy, "again": again.wait_policy, "env": {k: os.environ.get(k) for k in sys.argv[1:]},
                  "threads": torch.get_num_threads()}))
"""
#: the user sets a thread count with torch before moalign's call (e.g. a script that imports torch first)
USER_SET_THREADS_FIRST = """
import json, os, sys
import torch
torch.set_num_threads(1)
from moalign.runtime import configure_cpu_threads
setup = configure_cpu_threads()
print(json.dumps({"policy": setup.wait_policy, "env": {k: os.environ.get(k) for k in sys.argv[1:]},
                  "threads": torch.get_num_threads()}))
"""
#: the CLI entry point calls it before anything imports torch
CLI_MAIN = """
import json, os, sys
from moalign.cli.main import main
main(["--help"])
import torch
print(json.dumps({"env": {k: os.environ.get(k) for k in sys.argv[1:]}, "threads": torch.get_num_threads()}))
"""
NAMES = list(WAIT_ENV_VARS + THREAD_ENV_VARS)


def _run(code: str, **user_env: str) -> tuple[dict, dict[str, str]]:
    """Run ``code`` in a clean interpreter (no wait/thread variables but ``user_env``); its JSON line and the
    OpenMP settings libgomp reported."""
    env = {k: v for k, v in os.environ.items() if k not in NAMES}
    env.update(user_env, OMP_DISPLAY_ENV="VERBOSE", PYTHONPATH=os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", code, *NAMES], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    omp = dict(re.findall(r"^\s+(\w+) = '([^']*)'", done.stderr, flags=re.M))
    return result, omp


@pytest.fixture(scope="module")
def default_threads() -> int:
    """torch's thread count in a clean interpreter (the CPUs of this machine)."""
    env = {k: v for k, v in os.environ.items() if k not in NAMES}
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], env=env,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    return int(out)


def test_default_sets_passive_wait_before_torch_loads(default_threads):
    result, omp = _run(CALL_THEN_IMPORT)
    assert result["policy"] == result["again"] == "set"
    assert result["env"]["OMP_WAIT_POLICY"] == "PASSIVE"
    assert omp["GOMP_SPINCOUNT"] == "0"  # libgomp read it: idle threads sleep at once
    assert result["threads"] == default_threads  # thread count unchanged
    assert all(result["env"][k] is None for k in NAMES if k != "OMP_WAIT_POLICY")


@pytest.mark.parametrize("name, value", [("OMP_WAIT_POLICY", "ACTIVE"), ("GOMP_SPINCOUNT", "12345"),
                                         ("KMP_BLOCKTIME", "200")])
def test_user_wait_settings_are_left_alone(name, value):
    result, omp = _run(CALL_THEN_IMPORT, **{name: value})
    assert result["policy"] == result["again"] == "user"
    assert result["env"] == {k: (value if k == name else None) for k in NAMES}
    if name == "GOMP_SPINCOUNT":
        assert omp["GOMP_SPINCOUNT"] == "12345"
    if name == "OMP_WAIT_POLICY":
        assert omp["OMP_WAIT_POLICY"] == "ACTIVE"


def test_user_thread_counts_are_left_alone():
    result, omp = _run(CALL_THEN_IMPORT, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    assert result["policy"] == "set"
    assert result["env"]["OMP_NUM_THREADS"] == "1" and result["env"]["MKL_NUM_THREADS"] == "1"
    assert result["threads"] == 1
    assert omp["OMP_NUM_THREADS"] == "1"


def test_torch_set_num_threads_by_user_is_left_alone():
    result, _ = _run(USER_SET_THREADS_FIRST)
    assert result["policy"] == "too_late"  # the runtime is loaded: nothing changed, not even the env
    assert result["threads"] == 1
    assert result["env"]["OMP_WAIT_POLICY"] is None


def test_cli_main_configures_before_torch(default_threads):
    result, omp = _run(CLI_MAIN)
    assert result["env"]["OMP_WAIT_POLICY"] == "PASSIVE"
    assert omp["GOMP_SPINCOUNT"] == "0"
    assert result["threads"] == default_threads


def test_environ_mapping():
    env: dict[str, str] = {"GOMP_SPINCOUNT": "1", "OMP_NUM_THREADS": "2"}
    setup = configure_cpu_threads(env)
    assert setup.wait_policy == "user" and not setup.applied
    assert setup.user_env == {"GOMP_SPINCOUNT": "1", "OMP_NUM_THREADS": "2"}
    assert env == {"GOMP_SPINCOUNT": "1", "OMP_NUM_THREADS": "2"}
    # in this process torch is already imported (conftest): too late, the mapping is not touched
    empty: dict[str, str] = {}
    assert configure_cpu_threads(empty).wait_policy == "too_late"
    assert empty == {}
