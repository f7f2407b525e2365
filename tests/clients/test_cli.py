"""`twinserve call` over both transports."""

from __future__ import annotations

import subprocess
import sys

import pytest

from daemon.errors import ModelError
from tests.conftest import StartDaemon
from tests.harness import MODELS, REPO, DaemonProcess


@pytest.fixture(scope="module")
def streaming(start_daemon: StartDaemon) -> DaemonProcess:
    return start_daemon(MODELS / "streaming")


def call(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daemon", "call", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("flag", ["--grpc", "--http"])
def test_call_value_stream_and_error(streaming: DaemonProcess, flag: str) -> None:
    where = streaming.grpc_target if flag == "--grpc" else streaming.http_url
    result = call(flag, where, '{"mode": "value"}')
    assert (result.returncode, result.stdout) == (0, '{"not": "streamed"}\n')
    result = call(flag, where, '{"kind": "str"}', "--stream")
    assert (result.returncode, result.stdout) == (0, "chunk-0\nchunk-1\nchunk-2\n")
    result = call(flag, where, '{"fail_at": 0}', "--stream")
    assert result.returncode == 1
    assert result.stderr == f"error: INTERNAL: {ModelError.unexpected('predict').message}\n"


def test_call_rejects_bad_json() -> None:
    result = call("--grpc", "127.0.0.1:1", "{nope")
    assert result.returncode == 2
    assert "not valid JSON" in result.stderr


def test_help_tells_a_user_what_the_command_does() -> None:
    result = subprocess.run([sys.executable, "-m", "daemon", "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert "Serve a Truss-style model directory" in result.stdout
    assert "config.py" not in result.stdout  # no notes meant for the code's readers
