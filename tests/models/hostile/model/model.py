"""A model that reads its own body while holding its slot, and fails with secrets in its
exception text: what hostile and careless clients are tested against."""

from collections.abc import AsyncIterator
from typing import Any

from daemon import Request

SECRET = "SECRET-MARKER-5f1c"


class Model:
    def __init__(self) -> None:
        self._healthy = True

    def is_healthy(self) -> bool:
        if not self._healthy:
            raise ConnectionError(f"postgres://admin:{SECRET}@db.internal:5432 refused")
        return True

    async def predict(self, request: Request) -> Any:
        body = await request.json()  # read while the call holds the model's one slot
        action = body.get("do") if isinstance(body, dict) else None
        if action == "raise":
            raise RuntimeError(f"cannot open /srv/models/{SECRET}/weights.bin")
        if action == "raise_mid_stream":
            return self._fail_after_one()
        if action == "flood":
            return self._flood()
        if action == "unhealthy":
            self._healthy = False
            return {}
        if action == "healthy":
            self._healthy = True
            return {}
        return body

    async def _fail_after_one(self) -> AsyncIterator[Any]:
        yield {"i": 0}
        raise RuntimeError(f"token {SECRET} expired")

    async def _flood(self) -> AsyncIterator[str]:
        chunk = "x" * 65536
        while True:
            yield chunk
