"""A session model: echoes text and binary frames and answers JSON with JSON, until "bye".

It imports nothing from twinserve, so it runs unchanged under Truss too: the session object
behaves like fastapi.WebSocket. twinserve serves it to WebSocket clients at /v1/websocket and
to gRPC clients on the Session RPC.
"""

import json
from typing import Any


class Model:
    async def websocket(self, websocket: Any) -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return  # the client closed, or went away
            text = message.get("text")
            if text is None:
                await websocket.send_bytes(message["bytes"])
            elif text == "bye":
                await websocket.close(code=1000, reason="bye")
                return
            elif text.startswith("{"):
                await websocket.send_json({"echo": json.loads(text)})
            else:
                await websocket.send_text(text)
