from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness import DaemonProcess

StartDaemon = Callable[..., DaemonProcess]


@pytest.fixture(scope="module")
def start_daemon() -> Iterator[StartDaemon]:
    """Start daemons that live for the test module; all are stopped at its end."""
    started: list[DaemonProcess] = []

    def start(model_dir: Path | None, *, wait: str = "ready", **kwargs: object) -> DaemonProcess:
        daemon = DaemonProcess(model_dir, **kwargs)  # type: ignore[arg-type]
        started.append(daemon)
        if wait == "ready":
            daemon.wait_ready()
        elif wait == "listening":
            daemon.wait_listening()
        return daemon

    yield start
    for daemon in started:
        daemon.stop()
