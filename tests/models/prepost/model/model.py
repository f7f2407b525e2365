from typing import Any


class Model:
    def preprocess(self, model_input: dict[str, Any]) -> dict[str, Any]:
        _fail_if_asked("preprocess", model_input)
        return {**model_input, "steps": ["preprocess"]}

    async def predict(self, model_input: dict[str, Any]) -> dict[str, Any]:
        return {**model_input, "steps": [*model_input["steps"], "predict"]}

    async def postprocess(self, output: dict[str, Any]) -> dict[str, Any]:
        _fail_if_asked("postprocess", output)
        return {**output, "steps": [*output["steps"], "postprocess"]}


def _fail_if_asked(step: str, value: dict[str, Any]) -> None:
    if value.get("fail") == step:
        raise ValueError(f"asked to fail in {step}")
