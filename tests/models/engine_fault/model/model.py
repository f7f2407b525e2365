"""The built-in text model, plus a way for a test to make the hf engine fail mid-batch.

`predict({"inject": "engine_failure"})` kills the hf backend's engine process, as the
kernel's out-of-memory killer or a crashing kernel would. (A forward pass that raises ends
the engine process the same way; that path is tested on the engine itself, in
tests/engine/test_hf_engine.py.)

`predict({"inject": "refused_add"})` makes the next generation reach the engine without its
prompt, so that the library raises adding it: a request the engine refuses while the rest
of the batch goes on. Everything else is served as usual.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from daemon.model.text_generation import TextGenerationModel


class Model(TextGenerationModel):
    async def predict(self, model_input: Any) -> Any:
        if model_input == {"inject": "engine_failure"}:
            pid = self._engine.backend.engine_pid  # type: ignore[attr-defined]
            os.kill(pid, signal.SIGKILL)
            return {"armed": True}
        if model_input == {"inject": "refused_add"}:
            engine = self._engine.backend._engine  # type: ignore[attr-defined]
            send = engine.send

            def send_without_prompt(message: tuple[Any, ...]) -> bool:
                if message[0] != "add":
                    return bool(send(message))
                engine.send = send
                return bool(send((*message[:2], None, *message[3:])))

            engine.send = send_without_prompt
            return {"armed": True}
        return await super().predict(model_input)
