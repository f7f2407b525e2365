"""Results and inputs Truss encodes beyond plain JSON: numpy arrays and scalars, pydantic
models, and (over msgpack) Truss's extensions, read and written as Truss's own client
library does (msgpack-numpy). Not a port: Truss tests these in-process."""

from __future__ import annotations

import datetime
import decimal
import uuid
from typing import Any

import httpx
import msgpack
import msgpack_numpy
import numpy as np

from tests.truss.conftest import TrussServer

MODEL = """
import numpy as np
import pydantic


class Point(pydantic.BaseModel):
    x: int
    when: str


class Model:
    def predict(self, inputs):
        if isinstance(inputs, dict) and "echo" in inputs:
            value = inputs["echo"]
            return {"type": type(value).__name__, "value": value}
        grid = np.arange(12, dtype=np.int64).reshape(3, 4)
        return {
            "array": grid,
            "strided": grid[:, ::2],            # not contiguous
            "half": np.array([0.5, 1.5], dtype=np.float16),
            "scalar": np.float32(2.5),
            "count": np.int64(7),
            "point": Point(x=1, when="now"),
        }
"""


def truss_pack(value: Any) -> bytes:
    """What Truss's client sends (truss_msgpack_serialize's numpy part)."""
    return msgpack.packb(value, default=msgpack_numpy.encode)  # type: ignore[no-any-return]


def truss_unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, object_hook=msgpack_numpy.decode)


def test_numpy_and_pydantic_results_as_json(truss_server: TrussServer) -> None:
    daemon = truss_server(MODEL)
    answer = httpx.post(f"{daemon.http_url}/v1/models/model:predict", json={})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "array": [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]],
        "strided": [[0, 2], [4, 6], [8, 10]],
        "half": [0.5, 1.5],
        "scalar": 2.5,
        "count": 7,
        "point": {"x": 1, "when": "now"},
    }


def test_numpy_results_and_inputs_over_msgpack(truss_server: TrussServer) -> None:
    daemon = truss_server(MODEL)
    url = f"{daemon.http_url}/v1/models/model:predict_binary"
    answer = httpx.post(url, content=truss_pack({}))
    assert answer.status_code == 200, answer.text
    result = truss_unpack(answer.content)
    grid = np.arange(12, dtype=np.int64).reshape(3, 4)
    np.testing.assert_array_equal(result["array"], grid)
    np.testing.assert_array_equal(result["strided"], grid[:, ::2])
    assert result["half"].dtype == np.float16
    assert result["scalar"] == np.float32(2.5) and result["count"] == 7
    assert result["point"] == {"x": 1, "when": "now"}
    sent = np.linspace(0, 1, 6).reshape(2, 3)
    echoed = truss_unpack(httpx.post(url, content=truss_pack({"echo": sent})).content)
    assert echoed["type"] == "ndarray"
    np.testing.assert_array_equal(echoed["value"], sent)


def test_truss_msgpack_extensions_round_trip(truss_server: TrussServer) -> None:
    """Dates, times, decimals and UUIDs, in the maps Truss's serializer writes."""
    daemon = truss_server(MODEL)
    url = f"{daemon.http_url}/v1/models/model:predict_binary"
    cases: list[tuple[Any, dict[bytes, Any]]] = [
        (datetime.datetime(2026, 11, 29, 8, 0),
         {b"__dt_datetime_iso__": True, b"data": "2026-11-29T08:00:00"}),
        (datetime.date(2026, 11, 29), {b"__dt_date_iso__": True, b"data": "2026-11-29"}),
        (datetime.time(8, 30), {b"__dt_time_iso__": True, b"data": "08:30:00"}),
        (datetime.timedelta(days=1, seconds=2), {b"__dt_timedelta__": True, b"data": [1, 2, 0]}),
        (decimal.Decimal("1.25"), {b"__decimal__": True, b"data": "1.25"}),
        (uuid.UUID(int=7), {b"__uuid__": True, b"data": str(uuid.UUID(int=7))}),
    ]
    for value, wire in cases:
        answer = httpx.post(url, content=msgpack.packb({"echo": wire}))
        assert answer.status_code == 200, answer.text
        echoed = msgpack.unpackb(answer.content)
        assert echoed["type"] == type(value).__name__
        assert echoed["value"] == wire  # written back the way it came


def test_a_malformed_numpy_map_is_400(truss_server: TrussServer) -> None:
    daemon = truss_server(MODEL)
    bad = msgpack.packb({"echo": {b"nd": True, b"type": "<f8", b"kind": b"", b"shape": [5],
                                  b"data": b"\x00" * 3}})
    answer = httpx.post(f"{daemon.http_url}/v1/models/model:predict_binary", content=bad)
    assert answer.status_code == 400
    assert "msgpack" in answer.json()["error"]
