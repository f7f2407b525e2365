"""Streams chunks; the input picks sync/async, the chunk type, pauses and a failure point.

`{"mode": "report"}` answers how many streams ended early and how, so tests can check that
a client that leaves stops the generator.
"""

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import daemon


def _chunk(kind: str, i: int, spec: dict[str, Any]) -> Any:
    if i == spec.get("unencodable_at"):
        return {1, 2}  # a set: no JSON for it
    if kind == "str":
        return f"chunk-{i}\n"
    if kind == "bytes":
        return f"b{i};".encode()
    return {"i": i}


class Model:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closed_early = 0
        self._saw_disconnect = 0

    def predict(self, model_input: dict[str, Any], request: daemon.Request) -> Any:
        mode = model_input.get("mode")
        if mode == "value":
            return {"not": "streamed"}
        if mode == "report":
            with self._lock:
                return {"closed_early": self._closed_early, "saw_disconnect": self._saw_disconnect}
        if mode == "sync":
            return self._sync(model_input, request)
        return self._async(model_input, request)

    def _ended(self, finished: bool, request: daemon.Request, cancelled: bool = False) -> None:
        if not finished:
            with self._lock:
                self._closed_early += 1
                self._saw_disconnect += cancelled or request.disconnected.is_set()

    def _sync(self, spec: dict[str, Any], request: daemon.Request) -> Iterator[Any]:
        finished = False
        try:
            for i in range(spec.get("n", 3)):
                if i == spec.get("fail_at"):
                    raise RuntimeError(f"failed at chunk {i}")
                if i == spec.get("client_error_at"):
                    raise daemon.ClientError(f"bad chunk {i}", status=422)
                yield _chunk(spec.get("kind", "json"), i, spec)
                time.sleep(spec.get("delay", 0))
            finished = True
        finally:
            self._ended(finished or "fail_at" in spec or "client_error_at" in spec
                        or "unencodable_at" in spec, request)

    async def _async(self, spec: dict[str, Any], request: daemon.Request) -> AsyncIterator[Any]:
        finished = cancelled = False
        try:
            for i in range(spec.get("n", 3)):
                if i == spec.get("fail_at"):
                    raise RuntimeError(f"failed at chunk {i}")
                yield _chunk(spec.get("kind", "json"), i, spec)
                await asyncio.sleep(spec.get("delay", 0))
            finished = True
        except asyncio.CancelledError:  # async code is told by cancellation
            cancelled = True
            raise
        finally:
            self._ended(finished or "fail_at" in spec or "unencodable_at" in spec, request,
                        cancelled)
