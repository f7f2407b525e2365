"""`twinserve serve` and `twinserve prepare` configured by TWINSERVE_* variables alone, as a
container is; a flag wins over its variable; a bad value names the variable. The image's own
entry command is tested in tests/deploy/test_image.py."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx
import pytest

from clients import GrpcClient
from tests.conftest import StartDaemon
from tests.harness import EXAMPLES, MODELS, REPO

SERVE = [sys.executable, "-m", "daemon", "serve"]  # no flag at all
PORTS = "expected a port number from 0 to 65535 (0: any free one)"
HOST = "127.0.0.2"  # loopback, but not the default 127.0.0.1: the variable must have won


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _wait_ready(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} not ready after {timeout}s")
        time.sleep(0.05)


def test_every_serve_setting_from_the_environment(start_daemon_per_test: StartDaemon) -> None:
    http_port, grpc_port = _free_port(HOST), _free_port(HOST)
    daemon = start_daemon_per_test(None, wait="none", command=SERVE, env={
        "TWINSERVE_MODEL_DIR": str(EXAMPLES / "echo"),
        "TWINSERVE_HOST": HOST,
        "TWINSERVE_HTTP_PORT": str(http_port),
        "TWINSERVE_GRPC_PORT": str(grpc_port),
        "TWINSERVE_LOG_LEVEL": "warning",
    })
    url = f"http://{HOST}:{http_port}"
    _wait_ready(url)
    assert httpx.post(f"{url}/predict", json={"x": 1}, timeout=10).json() == {"x": 1}
    with GrpcClient(f"{HOST}:{grpc_port}", timeout=10) as client:
        assert client.predict({"y": 2}) == {"y": 2}
    assert daemon.stop() == 0
    # WARNING: neither the start-up lines nor the access log, which are INFO.
    assert "listening" not in daemon.log and "/predict" not in daemon.log


def test_flags_win_over_the_environment(start_daemon_per_test: StartDaemon) -> None:
    """Each variable set to a value that could not serve; the harness's flags (model
    directory, loopback host, free ports, --log-level) win, so the variables are not read."""
    daemon = start_daemon_per_test(EXAMPLES / "echo", args=["--log-level", "INFO"], env={
        "TWINSERVE_MODEL_DIR": "/nonexistent",
        "TWINSERVE_HOST": "not a host",
        "TWINSERVE_HTTP_PORT": "http",
        "TWINSERVE_GRPC_PORT": "-1",
        "TWINSERVE_LOG_LEVEL": "ERROR",  # the harness reads the INFO "listening" line
    })
    assert httpx.post(f"{daemon.http_url}/predict", json=[1], timeout=10).json() == [1]


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("TWINSERVE_HTTP_PORT", "http", f"{PORTS}, got 'http'"),
    ("TWINSERVE_GRPC_PORT", "70000", f"{PORTS}, got '70000'"),
    ("TWINSERVE_BACKEND", "tensorrt", "expected one of hf, vllm, trtllm, got 'tensorrt'"),
    ("TWINSERVE_LOG_LEVEL", "loud", "expected one of DEBUG, INFO, WARNING, ERROR, got 'loud'"),
    ("TWINSERVE_MODEL_DIR", "/nonexistent", "no model directory at '/nonexistent'"),
])
def test_a_bad_value_names_its_variable(start_daemon_per_test: StartDaemon, variable: str,
                                        value: str, message: str) -> None:
    daemon = start_daemon_per_test(None, wait="none", command=SERVE, env={variable: value})
    assert daemon.wait_exit() == 2
    assert daemon.log_lines == [f"twinserve serve: {variable}: {message}"]


def test_an_empty_variable_counts_as_unset(start_daemon_per_test: StartDaemon) -> None:
    """As Kubernetes and `docker run -e NAME=` leave them: the default, not an error."""
    env = {"TWINSERVE_HOST": "", "TWINSERVE_LOG_LEVEL": "",
           "TWINSERVE_HTTP_PORT": "0", "TWINSERVE_GRPC_PORT": "0"}
    daemon = start_daemon_per_test(None, wait="listening",
                                   command=[*SERVE, str(EXAMPLES / "echo")], env=env)
    assert "listening http=127.0.0.1:" in daemon.log


def test_backend_from_the_environment_is_named_in_its_error(
        start_daemon_per_test: StartDaemon) -> None:
    daemon = start_daemon_per_test(MODELS / "lifecycle", wait="none",
                                   env={"TWINSERVE_BACKEND": "vllm"})
    assert daemon.wait_exit() == 1
    assert "has no engine: section to run on it (TWINSERVE_BACKEND=vllm)" in daemon.log


def test_prepare_from_the_environment() -> None:
    """A model that loads its weights as they are has nothing to prepare; the embedded
    model's conversion is tested with the image, in tests/deploy/test_image.py."""
    result = subprocess.run([sys.executable, "-m", "daemon", "prepare"], cwd=REPO, text=True,
                            capture_output=True, timeout=60,
                            env={"TWINSERVE_MODEL_DIR": str(MODELS / "engine_simulated"),
                                 "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert "nothing to prepare: engine-simulated" in result.stderr
