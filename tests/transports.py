"""Clients per transport and per-module daemons, shared by the parity and gRPC suites."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import pytest

from clients import GrpcClient, HttpClient
from tests.harness import DaemonProcess

TRANSPORTS = ("http", "grpc")


class Client(Protocol):
    def predict(self, obj: Any, *, route: str = ...) -> Any: ...
    def predict_stream(self, obj: Any, *, route: str = ...) -> Generator[Any, None, None]: ...
    def close(self) -> None: ...


def connect(daemon: DaemonProcess, transport: str, **options: Any) -> Client:
    if transport == "http":
        return HttpClient(daemon.http_url, **options)
    return GrpcClient(daemon.grpc_target, **options)


Daemons = Callable[..., DaemonProcess]


@pytest.fixture(scope="module")
def daemons() -> Iterator[Daemons]:
    """One ready daemon per model directory for the whole test module, started on first use."""
    started: dict[tuple[Path, tuple[tuple[str, str], ...]], DaemonProcess] = {}

    def get(model_dir: Path, env: Mapping[str, str] | None = None) -> DaemonProcess:
        key = (model_dir, tuple(sorted((env or {}).items())))
        if key not in started:
            started[key] = DaemonProcess(model_dir, env=env).wait_ready()
        return started[key]

    yield get
    for daemon in started.values():
        daemon.stop()


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


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)
