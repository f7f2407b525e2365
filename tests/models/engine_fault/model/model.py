"""The built-in text model, plus a way for a test to make the engine's next step fail.

`predict({"inject": "engine_failure"})` makes the next forward pass of the hf backend's
model raise, as a broken kernel or an out-of-memory would, inside transformers' generation
loop. Everything else is served as usual.
"""

from __future__ import annotations

from typing import Any

from daemon.model.text_generation import TextGenerationModel


class Model(TextGenerationModel):
    async def predict(self, model_input: Any) -> Any:
        if model_input == {"inject": "engine_failure"}:
            weights = self._engine.backend._model  # type: ignore[attr-defined]
            forward = weights.forward

            def fail_once(*args: Any, **kwargs: Any) -> Any:
                weights.forward = forward
                raise RuntimeError("injected engine failure")

            weights.forward = fail_once
            return {"armed": True}
        return await super().predict(model_input)
