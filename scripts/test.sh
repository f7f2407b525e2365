#!/usr/bin/env bash
# Install (idempotent), then check types and lint, then run the whole test suite:
#   scripts/test.sh [pytest args]
#   scripts/test.sh --vllm [pytest args]   the vllm backend's real tests, from ./.venv-vllm
#                                          (installed by scripts/install.sh --vllm; heavy)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--vllm" ]; then
    shift
    scripts/install.sh --vllm
    # tests/engine/test_vllm.py too: the adapter against its double, beside the real engine.
    exec .venv-vllm/bin/python -m pytest tests/vllm tests/engine/test_vllm.py "$@"
fi
scripts/install.sh
.venv/bin/python -m mypy          # strict, over the files pyproject.toml lists
.venv/bin/python -m mypy examples/websocket-echo/model/model.py   # see pyproject.toml
.venv/bin/python -m flake8 daemon clients twinserve_wire tests examples scripts   # settings in setup.cfg
exec .venv/bin/python -m pytest "$@"
