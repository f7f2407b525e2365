"""clients/__init__.py exports exactly its public names, sorted (as httpx tests its own)."""

from __future__ import annotations

import subprocess
import sys

import clients
from tests.harness import REPO


def test_all_is_complete_and_sorted() -> None:
    public = {name for name in vars(clients) if not name.startswith("_")}
    assert set(clients.__all__) == public
    assert clients.__all__ == sorted(clients.__all__)


def test_exports_come_from_private_modules() -> None:
    for name in clients.__all__:
        assert getattr(clients, name).__module__.startswith("clients._")


def test_the_client_library_imports_without_the_daemon() -> None:
    """`clients` depends on the shared wire contract only: a client installs and runs
    without the server's code (and its aiohttp, torch, transformers)."""
    code = ("import sys, clients\n"
            "print(sorted(m for m in sys.modules if m == 'daemon' or m.startswith('daemon.')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO, check=True)
    assert result.stdout.strip() == "[]"
