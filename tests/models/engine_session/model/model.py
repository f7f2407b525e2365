"""A realtime session model: each text frame is a prompt, answered token by token from the
engine, one frame per delta, then an empty frame."""

from __future__ import annotations

from daemon import WebSocket
from daemon.engine.core import EngineCore
from daemon.engine.generation import GenerationRequest
from daemon.openai.sampling import sampling_from_openai


class Model:
    def __init__(self, engine: EngineCore) -> None:
        self._engine = engine

    async def websocket(self, websocket: WebSocket) -> None:
        async for prompt in websocket.iter_text():
            request = GenerationRequest(prompt=prompt, sampling=sampling_from_openai(
                {"max_tokens": 1000, "ignore_eos": True}))
            async for delta in self._engine.submit(request):
                await websocket.send_text(delta.text)
            await websocket.send_text("")
