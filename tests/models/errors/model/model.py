from typing import Any

import daemon


class Model:
    async def predict(self, model_input: dict[str, Any]) -> Any:
        what = model_input.get("raise")
        if what == "value_error":
            raise ValueError("the model could not cope")
        if what == "client_error":
            raise daemon.ClientError("field 'x' must be positive", status=422)
        if what == "unserialisable":
            return {"value": object()}
        return {"ok": True}
