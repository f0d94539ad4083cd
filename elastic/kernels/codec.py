"""Arrays as compact JSON strings: exact ones for checkpoints, float32 ones for snapshots.

A checkpoint array is ``{"dtype": "<f8" | "<i8", "shape": [...], "data": "..."}`` where
``data`` is base64 of zlib-compressed little-endian bytes, shuffled first (byte 0 of
every element, then byte 1, ...: the sign and exponent bytes of nearby values repeat,
so they compress). It reads back bit for bit. ``decode_array`` also takes the plain
nested lists that checkpoints held before (``"positions": [[x, y], ...]``).

A snapshot array is the result format's ``float32-le-base64``: base64 of the values as
little-endian float32, no compression, readable by any client.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

CHECKPOINT_DTYPES = ("<f8", "<i8")
SNAPSHOT_ENCODING = "float32-le-base64"
ZLIB_LEVEL = 1  # level 9 saves under 1 % more and takes several times longer


def encode_array(values: np.ndarray) -> dict[str, Any]:
    """An exact, compact, JSON-ready form of a float64 or int64 array."""
    dtype = "<f8" if values.dtype.kind == "f" else "<i8"
    raw = np.ascontiguousarray(values, dtype=dtype)
    shuffled = raw.view(np.uint8).reshape(-1, 8).T.tobytes()
    data = base64.b64encode(zlib.compress(shuffled, ZLIB_LEVEL)).decode("ascii")
    return {"dtype": dtype, "shape": list(raw.shape), "data": data}


def decode_array(value: Any, *, dtype: str = "<f8") -> np.ndarray:
    """The array of ``encode_array`` (or of plain nested lists), as ``dtype``.

    Raises:
        ValueError: ``value`` is neither.
    """
    if not isinstance(value, Mapping):
        return np.array(value, dtype=dtype)
    if value.get("dtype") != dtype or not isinstance(value.get("data"), str):
        raise ValueError(f"not an encoded {dtype} array")
    shape = tuple(int(size) for size in value["shape"])
    try:
        shuffled = zlib.decompress(base64.b64decode(value["data"], validate=True))
    except (zlib.error, ValueError) as error:
        raise ValueError(f"not an encoded {dtype} array: {error}") from error
    count = int(np.prod(shape))
    if len(shuffled) != 8 * count:
        raise ValueError(f"encoded array holds {len(shuffled)} bytes, not {8 * count}")
    planes = np.frombuffer(shuffled, dtype=np.uint8).reshape(8, count)
    return planes.T.copy().view(dtype).reshape(shape)


def encode_float32(values: np.ndarray) -> str:
    """``float32-le-base64`` of ``values`` (flattened in C order)."""
    return base64.b64encode(np.ascontiguousarray(values, dtype="<f4").tobytes()).decode("ascii")


def float32_text_length(count: int) -> int:
    """The length of ``encode_float32`` of ``count`` values."""
    return 4 * ((4 * count + 2) // 3)
