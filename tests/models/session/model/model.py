"""A session model for tests/test_session.py: each text frame is a command.

    echo:TEXT      -> TEXT            json           -> the next frame, parsed, sent back
    bytes          -> the next frame, read as bytes, sent back
    whoami         -> {"request_id", "header", "query"} as JSON
    raise          -> raises ValueError (close 1011)
    close:CODE:WHY -> closes with CODE and WHY
    flood:N        -> N text frames of 1 KiB, sent without reading
    sleep:S        -> sleeps S seconds without receiving, then echoes "slept"
    sum            -> the running sum of the "n" of each JSON frame after it (iter_json),
                      until the client closes
    asgi-close     -> "via send", then a close with 4004 "asgi", both by ASGI-style send()
    stats          -> what earlier sessions ended with (see `_ENDED`)
    return         -> returns (close 1000)

$SESSION_LOAD_GATE, when set, holds load() until that file exists.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

from daemon import WebSocket, WebSocketDisconnect

# How each session's method ended, for the `stats` command of a later session.
_ENDED: list[str] = []


class Model:
    def load(self) -> None:
        gate = os.environ.get("SESSION_LOAD_GATE")
        while gate and not os.path.exists(gate):
            time.sleep(0.05)

    async def websocket(self, websocket: WebSocket) -> None:
        try:
            await self._serve(websocket)
        except WebSocketDisconnect as gone:
            _ENDED.append(f"disconnect:{gone.code}")
            raise
        except asyncio.CancelledError:
            _ENDED.append("cancelled")
            raise
        _ENDED.append("returned")

    async def _serve(self, websocket: WebSocket) -> None:
        while True:
            command = await websocket.receive_text()
            name, _, argument = command.partition(":")
            if name == "echo":
                await websocket.send_text(argument)
            elif name == "json":
                await websocket.send_json(await websocket.receive_json())
            elif name == "bytes":
                await websocket.send_bytes(await websocket.receive_bytes())
            elif name == "whoami":
                await websocket.send_json({
                    "request_id": websocket.request_id,
                    "header": websocket.headers.get("x-custom"),
                    "query": dict(websocket.query_params),
                })
            elif name == "raise":
                raise ValueError("the model failed on purpose")
            elif name == "close":
                code, _, reason = argument.partition(":")
                await websocket.close(int(code), reason)
                return
            elif name == "flood":
                for _ in range(int(argument)):
                    await websocket.send_text("x" * 1024)
            elif name == "sleep":
                await asyncio.sleep(float(argument))
                await websocket.send_text("slept")
            elif name == "sum":
                total = 0
                async for value in websocket.iter_json():
                    total += value["n"]
                    await websocket.send_json(total)
                return
            elif name == "asgi-close":
                await websocket.send({"type": "websocket.send", "text": "via send"})
                await websocket.send({"type": "websocket.close", "code": 4004,
                                      "reason": "asgi"})
                return
            elif name == "stats":
                await websocket.send_text(json.dumps(_ENDED))
            elif name == "return":
                return
