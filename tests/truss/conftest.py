"""Fixtures for the tests ported from Truss's own suite (basetenlabs/truss).

Truss writes each test's model inline and runs it in a container (`_temp_truss(model_src,
config_src)` then `docker_run_for_test()`); here the same source goes into a model
directory under the test's tmp_path and runs in a real twinserve daemon on free ports.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import pytest

from tests.conftest import StartDaemon, Wait
from tests.harness import DaemonProcess


class TrussServer(Protocol):
    def __call__(self, model_src: str, config_src: str = "", *, wait: Wait = "ready",
                 env: Mapping[str, str] | None = None,
                 files: Mapping[str, str] | None = None) -> DaemonProcess:
        """A daemon serving `model_src` (dedented, as Truss does) as model/model.py under
        `config_src` as config.yaml; `files` are extra files, by path in the directory."""


def write_truss(root: Path, model_src: str, config_src: str = "",
                files: Mapping[str, str] | None = None) -> Path:
    """A Truss directory as Truss's `create_truss` writes it."""
    (root / "model").mkdir(parents=True, exist_ok=True)
    (root / "model" / "model.py").write_text(textwrap.dedent(model_src))
    (root / "config.yaml").write_text(textwrap.dedent(config_src))
    for path, text in (files or {}).items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(textwrap.dedent(text))
    return root


@pytest.fixture
def truss_server(tmp_path: Path, start_daemon_per_test: StartDaemon) -> TrussServer:
    """Start daemons on inline Truss models; each is stopped at the end of the test."""
    count = 0

    def start(model_src: str, config_src: str = "", *, wait: Wait = "ready",
              env: Mapping[str, str] | None = None,
              files: Mapping[str, str] | None = None) -> DaemonProcess:
        nonlocal count
        count += 1
        root = write_truss(tmp_path / f"truss{count}", model_src, config_src, files)
        return start_daemon_per_test(root, wait=wait, env=env)

    return start
