"""A user model that receives the engine and uses it directly."""

from __future__ import annotations

from typing import Any

from daemon.engine.core import EngineCore
from daemon.engine.generation import GenerationRequest
from daemon.openai.sampling import sampling_from_openai


class Model:
    def __init__(self, engine: EngineCore) -> None:
        self._engine = engine

    async def predict(self, model_input: Any) -> Any:
        request = GenerationRequest(prompt=model_input["prompt"],
                                    sampling=sampling_from_openai(model_input))
        words = [delta.text async for delta in self._engine.submit(request)]
        return {"shouted": "".join(words).upper()}
