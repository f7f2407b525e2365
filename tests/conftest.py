"""The fixtures that start test daemons and open clients to them; tests never build a
`DaemonProcess` themselves.

- `start_daemon` (module scope): start a daemon that lives until the end of the test module.
- `start_daemon_per_test` (function scope): the same, stopped at the end of the test; for a
  test that stops or signals its daemon, reads its whole log, or needs it fresh.
- `daemons` (module scope): one ready daemon per (model directory, env), shared by the
  module, started on first use through `start_daemon`.
- `transport` (parametrized "http", "grpc") and `client_for`: clients of `daemons` over
  the test's transport, closed after the test.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import pytest

from tests.harness import DaemonProcess
from tests.transports import TRANSPORTS, Client, connect

Wait = Literal["ready", "listening", "none"]


class StartDaemon(Protocol):
    def __call__(self, model_dir: Path | None, *, wait: Wait = "ready",
                 env: Mapping[str, str] | None = None, args: Sequence[str] = (),
                 timeout: float = 120.0, command: Sequence[str] | None = None
                 ) -> DaemonProcess:
        """`twinserve serve model_dir` (None: the built-in model) on free loopback ports,
        returned once it is `wait`: "ready" (GET /health/ready is 200), "listening" (its
        ports are open; the model may still be loading) or "none" (just started).
        `command` replaces that command line whole (model_dir None, no args): settings
        then come from `env` alone, as in a container."""


class Daemons(Protocol):
    def __call__(self, model_dir: Path,
                 env: Mapping[str, str] | None = None) -> DaemonProcess: ...


def _starting() -> Iterator[StartDaemon]:
    """A StartDaemon, then (when resumed) every daemon it started is stopped."""
    started: list[DaemonProcess] = []

    def start(model_dir: Path | None, *, wait: Wait = "ready",
              env: Mapping[str, str] | None = None, args: Sequence[str] = (),
              timeout: float = 120.0, command: Sequence[str] | None = None) -> DaemonProcess:
        if wait not in ("ready", "listening", "none"):
            raise ValueError(f"wait must be 'ready', 'listening' or 'none', not {wait!r}")
        daemon = DaemonProcess(model_dir, env=env, args=args, command=command)
        started.append(daemon)
        if wait == "ready":
            daemon.wait_ready(timeout)
        elif wait == "listening":
            daemon.wait_listening(timeout)
        return daemon

    try:
        yield start
    finally:
        for daemon in started:
            daemon.stop()


@pytest.fixture(scope="module")
def start_daemon() -> Iterator[StartDaemon]:
    """Start daemons that live for the test module; all are stopped at its end."""
    yield from _starting()


@pytest.fixture
def start_daemon_per_test() -> Iterator[StartDaemon]:
    """Start daemons that live for one test; all are stopped at its end."""
    yield from _starting()


@pytest.fixture(scope="module")
def daemons(start_daemon: StartDaemon) -> Daemons:
    """One ready daemon per model directory (and env) for the whole test module, started on
    first use."""
    started: dict[tuple[Path, tuple[tuple[str, str], ...]], DaemonProcess] = {}

    def get(model_dir: Path, env: Mapping[str, str] | None = None) -> DaemonProcess:
        key = (model_dir, tuple(sorted((env or {}).items())))
        if key not in started:
            started[key] = start_daemon(model_dir, env=env)
        return started[key]

    return get


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    """Each test that takes it runs once per transport (unless it parametrizes its own)."""
    return str(request.param)


@pytest.fixture
def client_for(daemons: Daemons, transport: str) -> Iterator[Any]:
    """Open clients for model directories over this test's transport; closed afterwards."""
    opened: list[Client] = []

    def open_client(model: Path, **options: Any) -> Client:
        client = connect(daemons(model), transport, **options)
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        client.close()
