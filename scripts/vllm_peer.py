"""vLLM's own OpenAI server, the peer of `scripts/bench_serving.py --peer vllm`: the engine
settings both servers get, the daemon's model directory for them, and the server process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx
import yaml

from daemon.cli import BUILTIN_LLM_DIR
from daemon.config import EngineConfig, load_model_config
from tests.harness import REPO

MiB = 1024 * 1024
# What the peer's environment decides about CPUs, printed with the figures.
CPU_ENV_PREFIXES = ("VLLM_CPU_", "OMP_", "KMP_", "CUDA_VISIBLE_DEVICES")


def peer_engine(max_batch_size: int) -> EngineConfig:
    """The engine settings both servers get: the embedded model's weights, float32 (greedy
    output as transformers'), eager, a 2048-token context and a 1 GiB KV cache."""
    from daemon.config import default_cache_dir
    from daemon.engine.embedded import converted_dir

    model = converted_dir(default_cache_dir(os.environ))  # converts once, as the daemon would
    return EngineConfig(backend="vllm", model=str(model), dtype="float32", enforce_eager=True,
                        max_model_len=2048, kv_cache_mib=1024, max_batch_size=max_batch_size)


def write_model_dir(root: Path, engine: EngineConfig) -> Path:
    """The embedded model's config.yaml, with `engine` as its engine: section; no model.py,
    so the built-in text-generation model serves it."""
    raw = yaml.safe_load((BUILTIN_LLM_DIR / "config.yaml").read_text())
    raw["engine"] = {"backend": engine.backend, "model": engine.model, "dtype": engine.dtype,
                     "enforce_eager": engine.enforce_eager,
                     "max_model_len": engine.max_model_len,
                     "kv_cache_mib": engine.kv_cache_mib,
                     "max_batch_size": engine.max_batch_size}
    (root / "config.yaml").write_text(yaml.safe_dump(raw))
    if load_model_config(root).engine != engine:  # the daemon must read what vLLM is given
        raise RuntimeError(f"{root / 'config.yaml'} does not read back as {engine}")
    return root


def vllm_server_args(engine: EngineConfig, served_name: str, port: int) -> list[str]:
    """vLLM's server flags for `engine`, as daemon/engine/vllm.py passes them to AsyncLLM."""
    if engine.model is None or engine.max_batch_size is None:
        raise ValueError("the peer needs an explicit model and max_batch_size")
    args = ["--model", engine.model, "--served-model-name", served_name,
            "--dtype", engine.dtype, "--max-num-seqs", str(engine.max_batch_size),
            "--tensor-parallel-size", str(engine.tensor_parallel_size),
            "--gpu-memory-utilization", str(engine.gpu_memory_utilization),
            "--host", "127.0.0.1", "--port", str(port)]
    if engine.max_model_len is not None:
        args += ["--max-model-len", str(engine.max_model_len)]
    if engine.kv_cache_mib is not None:
        args += ["--kv-cache-memory-bytes", str(engine.kv_cache_mib * MiB)]
    if engine.enforce_eager:
        args.append("--enforce-eager")
    return args


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class VllmServer:
    """vLLM's own OpenAI server as a subprocess, its output in `log_path`. Started as
    `python -m vllm.entrypoints.openai.api_server`: the `vllm` console script fails under
    the vllm-cpu distribution."""

    def __init__(self, engine: EngineConfig, *, served_name: str, env: Mapping[str, str],
                 log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server",
               *vllm_server_args(engine, served_name, self.port)]
        with log_path.open("w") as log:
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=dict(env), stdout=log,
                                         stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vLLM's server exited {self.proc.returncode}:\n"
                                   + "\n".join(self.log_lines[-40:]))
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"vLLM's server not ready after {timeout}s:\n"
                           + "\n".join(self.log_lines[-40:]))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # it stops its engine processes itself
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> VllmServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def cpu_environment(env: Mapping[str, str]) -> str:
    """The variables that place vLLM's processes on CPUs, as the two servers got them."""
    chosen = [f"{key}={value}" for key, value in sorted(env.items())
              if key.startswith(CPU_ENV_PREFIXES)]
    if "VLLM_CPU_NUM_OF_RESERVED_CPU" not in env:
        chosen.append("VLLM_CPU_NUM_OF_RESERVED_CPU unset (vLLM's default: on x86, one core "
                      "kept from its worker for the server and scheduler)")
    return ", ".join(chosen)


def cpu_binding(log_lines: Sequence[str]) -> str:
    """Where vLLM bound its worker, from its start-up log ('?' where the line is missing)."""
    def last(key: str) -> str:
        found = [line.split(key)[1].strip() for line in log_lines if key in line]
        return found[-1] if found else "?"

    return f"worker cores {last('core ids=')}, reserved {last('reserved_cpus=')}"
