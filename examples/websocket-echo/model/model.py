"""A session model: echoes text and binary frames, answers JSON with JSON, until "bye".

Runs unchanged under Truss (the session object behaves like fastapi.WebSocket), and serves
WebSocket clients at /v1/websocket and gRPC clients on the Session RPC.
"""

from typing import Any


class Model:
    async def websocket(self, websocket: Any) -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return  # the client closed (or went away)
            text = message.get("text")
            if text == "bye":
                await websocket.close(code=1000, reason="bye")
                return
            if text is None:
                await websocket.send_bytes(message["bytes"])
            elif text.startswith("{"):
                await websocket.send_json({"echo": await _parsed(text)})
            else:
                await websocket.send_text(text)


async def _parsed(text: str) -> Any:
    import json

    return json.loads(text)
