from typing import Any


class Model:
    def preprocess(self, model_input: dict[str, Any]) -> dict[str, Any]:
        return {**model_input, "steps": ["preprocess"]}

    async def predict(self, model_input: dict[str, Any]) -> dict[str, Any]:
        return {**model_input, "steps": [*model_input["steps"], "predict"]}

    async def postprocess(self, output: dict[str, Any]) -> dict[str, Any]:
        return {**output, "steps": [*output["steps"], "postprocess"]}
