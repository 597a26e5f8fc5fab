"""MIL data types: the proto enum codes, their short names and NumPy equivalents."""

from __future__ import annotations

import numpy as np

# MIL.proto ``DataType`` enum value -> the short name MIL uses in ops (e.g. ``cast(dtype="fp16")``).
_PROTO_CODES: dict[int, str] = {
    1: "bool",
    2: "string",
    10: "fp16",
    11: "fp32",
    12: "fp64",
    21: "int8",
    22: "int16",
    23: "int32",
    24: "int64",
    31: "uint8",
    32: "uint16",
    33: "uint32",
    34: "uint64",
}

_NUMPY: dict[str, type[np.generic]] = {
    "bool": np.bool_,
    "fp16": np.float16,
    "fp32": np.float32,
    "fp64": np.float64,
    "int8": np.int8,
    "int16": np.int16,
    "int32": np.int32,
    "int64": np.int64,
    "uint8": np.uint8,
    "uint16": np.uint16,
    "uint32": np.uint32,
    "uint64": np.uint64,
}

FLOAT_DTYPES = frozenset({"fp16", "fp32", "fp64"})


def dtype_name(code: int) -> str:
    """Short MIL name of a proto ``DataType`` code; ``KeyError`` text names unknown codes."""
    try:
        return _PROTO_CODES[code]
    except KeyError:
        # Sub-byte, bfloat16 and fp8 types only appear in compressed weights, which we do not read.
        raise KeyError(f"MIL data type code {code} is not supported by the reference executor") from None


def numpy_dtype(name: str) -> np.dtype:
    """NumPy dtype that stores a MIL tensor of type ``name`` (``fp16`` -> ``float16``, ...)."""
    try:
        return np.dtype(_NUMPY[name])
    except KeyError:
        raise KeyError(f"MIL dtype {name!r} has no NumPy tensor equivalent") from None
