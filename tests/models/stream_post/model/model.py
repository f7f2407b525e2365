from collections.abc import Iterator
from typing import Any


class Model:
    def predict(self, model_input: Any) -> Iterator[str]:
        yield "never post-processed"

    def postprocess(self, output: Any) -> Any:
        return output
