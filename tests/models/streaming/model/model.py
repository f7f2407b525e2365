"""Streams chunks; the input picks sync/async, the chunk type, pauses and a failure point."""

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import daemon


def _chunk(kind: str, i: int) -> Any:
    if kind == "str":
        return f"chunk-{i}\n"
    if kind == "bytes":
        return f"b{i};".encode()
    return {"i": i}


class Model:
    def predict(self, model_input: dict[str, Any]) -> Any:
        if model_input.get("mode") == "value":
            return {"not": "streamed"}
        if model_input.get("mode") == "sync":
            return self._sync(model_input)
        return self._async(model_input)

    def _sync(self, spec: dict[str, Any]) -> Iterator[Any]:
        for i in range(spec.get("n", 3)):
            if i == spec.get("fail_at"):
                raise RuntimeError(f"failed at chunk {i}")
            if i == spec.get("client_error_at"):
                raise daemon.ClientError(f"bad chunk {i}", status=422)
            yield _chunk(spec.get("kind", "json"), i)
            time.sleep(spec.get("delay", 0))

    async def _async(self, spec: dict[str, Any]) -> AsyncIterator[Any]:
        for i in range(spec.get("n", 3)):
            if i == spec.get("fail_at"):
                raise RuntimeError(f"failed at chunk {i}")
            yield _chunk(spec.get("kind", "json"), i)
            await asyncio.sleep(spec.get("delay", 0))
