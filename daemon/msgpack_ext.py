"""Truss's msgpack extensions, so Truss clients' binary calls round-trip unchanged.

Truss encodes numpy arrays and scalars as the msgpack-numpy package does (a map with
b"nd", b"type", b"shape", b"data"), and datetimes, dates, times, timedeltas, decimals and
UUIDs as maps with a marker key (truss/templates/shared/serialization.py). numpy is
imported only when an array or scalar is actually met.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from typing import Any


def encode(value: Any) -> Any:
    """msgpack's `default`: what it cannot pack by itself."""
    kind = type(value).__module__
    if kind == "numpy":
        import numpy as np

        if isinstance(value, np.ndarray):
            if value.dtype.kind in "OV":
                raise TypeError(f"numpy arrays of dtype {value.dtype} cannot be sent")
            return {b"nd": True, b"type": value.dtype.str, b"kind": b"",
                    b"shape": list(value.shape), b"data": value.tobytes()}
        if isinstance(value, (np.bool_, np.number)):
            return {b"nd": False, b"type": value.dtype.str, b"data": value.tobytes()}
    if isinstance(value, datetime.datetime):
        text = value.isoformat()
        return {b"__dt_datetime_iso__": True,
                b"data": text[:-6] + "Z" if text.endswith("+00:00") else text}
    if isinstance(value, datetime.date):
        return {b"__dt_date_iso__": True, b"data": value.isoformat()}
    if isinstance(value, datetime.time):
        if value.utcoffset() is not None:
            raise TypeError("times with a timezone cannot be sent")
        return {b"__dt_time_iso__": True, b"data": value.isoformat()}
    if isinstance(value, datetime.timedelta):
        return {b"__dt_timedelta__": True,
                b"data": [value.days, value.seconds, value.microseconds]}
    if isinstance(value, decimal.Decimal):
        return {b"__decimal__": True, b"data": str(value)}
    if isinstance(value, uuid.UUID):
        return {b"__uuid__": True, b"data": str(value)}
    dump = getattr(value, "model_dump", None)  # a pydantic model, as Truss dumps it
    if callable(dump):
        return dump(mode="python")
    raise TypeError(f"cannot serialize {type(value).__name__!r} object")


def decode(value: dict[Any, Any]) -> Any:
    """msgpack's `object_hook`: every map passes here; most have none of the markers."""
    if b"nd" in value:
        import numpy as np

        dtype = np.dtype(value[b"type"])
        if value[b"nd"]:
            return np.frombuffer(value[b"data"], dtype=dtype).reshape(value[b"shape"])
        return np.frombuffer(value[b"data"], dtype=dtype)[0]
    if b"__dt_datetime_iso__" in value:
        return datetime.datetime.fromisoformat(value[b"data"])
    if b"__dt_date_iso__" in value:
        return datetime.date.fromisoformat(value[b"data"])
    if b"__dt_time_iso__" in value:
        return datetime.time.fromisoformat(value[b"data"])
    if b"__dt_timedelta__" in value:
        days, seconds, microseconds = value[b"data"]
        return datetime.timedelta(days=days, seconds=seconds, microseconds=microseconds)
    if b"__decimal__" in value:
        return decimal.Decimal(value[b"data"])
    if b"__uuid__" in value:
        return uuid.UUID(value[b"data"])
    return value
