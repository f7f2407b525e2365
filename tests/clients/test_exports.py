"""clients/__init__.py exports exactly its public names, sorted (as httpx tests its own)."""

from __future__ import annotations

import clients


def test_all_is_complete_and_sorted() -> None:
    public = {name for name in vars(clients) if not name.startswith("_")}
    assert set(clients.__all__) == public
    assert clients.__all__ == sorted(clients.__all__)


def test_exports_come_from_private_modules() -> None:
    for name in clients.__all__:
        assert getattr(clients, name).__module__.startswith("clients._")
