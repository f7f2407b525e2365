"""API-key check shared by both transports: `Authorization: Bearer KEY` or `x-api-key: KEY`."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping

from daemon.errors import Unauthenticated


AuthCheck = Callable[[Mapping[str, str]], None]
"""Raises Unauthenticated unless the headers (or gRPC metadata) may call the model."""


def auth_check(api_key: str | None) -> AuthCheck | None:
    """The check for `api_key`; None when no key is configured and every call may pass."""
    return ApiKeyCheck(api_key) if api_key else None


class ApiKeyCheck:
    """Compares in constant time, so the key cannot be guessed byte by byte from timings."""

    def __init__(self, api_key: str) -> None:
        self._key = api_key.encode()

    def __call__(self, headers: Mapping[str, str]) -> None:
        """Raise Unauthenticated unless `headers` (case-insensitive) carry the key."""
        offered = _offered_key(headers)
        if offered is None:
            raise Unauthenticated("missing API key: send 'Authorization: Bearer <key>' or "
                                  "'x-api-key: <key>'")
        # surrogateescape: a header with bytes that are not UTF-8 (aiohttp keeps them as
        # surrogates) is a wrong key like any other, not an encoding error.
        if not hmac.compare_digest(offered.encode("utf-8", "surrogateescape"), self._key):
            raise Unauthenticated("invalid API key")


def _offered_key(headers: Mapping[str, str]) -> str | None:
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return headers.get("x-api-key") or None
