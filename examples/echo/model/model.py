"""The smallest useful model: answers with what it was sent."""

from typing import Any


class Model:
    async def predict(self, model_input: Any) -> Any:
        return model_input
