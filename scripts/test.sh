#!/usr/bin/env bash
# Install (idempotent), then check types and lint, then run the whole test suite:
#   scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
.venv/bin/python -m mypy          # strict, over the files pyproject.toml lists
.venv/bin/python -m flake8 daemon clients twinserve_wire tests examples scripts   # settings in setup.cfg
exec .venv/bin/python -m pytest "$@"
