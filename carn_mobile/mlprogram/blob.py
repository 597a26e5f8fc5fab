"""Reader for the weight file of an ML program package (``Data/com.apple.CoreML/weights/weight.bin``).

Layout (little-endian; learnt from files written by coremltools' MIL blob storage writer):

* a 64-byte file header: ``uint32`` blob count, ``uint32`` format version (2), zero padding;
* per blob, a 64-byte metadata record at the offset the program's ``BlobFileValue`` names:
  ``uint32`` sentinel ``0xDEADBEEF``, ``uint32`` data type code, ``uint64`` data size in bytes,
  ``uint64`` absolute offset of the data, then reserved zeros;
* the raw data, 64-byte aligned.

Every field is checked, so a truncated or overwritten file fails with a clear ``PackageError``
instead of producing garbage weights.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from .errors import PackageError

SENTINEL = 0xDEADBEEF
SUPPORTED_VERSION = 2
HEADER_SIZE = 64
_METADATA = struct.Struct("<IIQQ")

# Blob data type codes (MIL storage format) for the tensor types we read from weight files.
BLOB_DTYPE_CODES: dict[str, int] = {
    "fp16": 1,
    "fp32": 2,
    "uint8": 3,
    "int8": 4,
    "int16": 6,
    "uint16": 7,
    "int32": 14,
    "uint32": 15,
}


class BlobFile:
    """One weight file, read whole into memory (weights of our models are a few MB)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            self._data = self.path.read_bytes()
        except OSError as exc:
            raise PackageError(f"cannot read weight file {self.path}: {exc}") from exc
        if len(self._data) < HEADER_SIZE:
            raise PackageError(f"weight file {self.path} is truncated ({len(self._data)} bytes, no header)")
        self.count, self.version = struct.unpack_from("<II", self._data, 0)
        if self.version != SUPPORTED_VERSION:
            raise PackageError(
                f"weight file {self.path} has storage format version {self.version}; "
                f"only version {SUPPORTED_VERSION} is supported"
            )

    def read(self, offset: int, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
        """The tensor of MIL type ``dtype`` and ``shape`` whose metadata record is at ``offset``."""
        where = f"weight file {self.path}, blob at offset {offset}"
        if dtype not in BLOB_DTYPE_CODES:
            raise PackageError(f"{where}: MIL dtype {dtype!r} cannot be read from a weight file")
        if offset < HEADER_SIZE or offset + _METADATA.size > len(self._data):
            raise PackageError(f"{where}: offset outside the file ({len(self._data)} bytes)")
        sentinel, code, size, data_offset = _METADATA.unpack_from(self._data, offset)
        if sentinel != SENTINEL:
            raise PackageError(f"{where}: bad metadata sentinel 0x{sentinel:08x} (file corrupt?)")
        if code != BLOB_DTYPE_CODES[dtype]:
            raise PackageError(f"{where}: stored data type code {code} does not match the program's {dtype}")
        np_dtype = np.dtype(dtype.replace("fp", "float")).newbyteorder("<")
        expected = int(np.prod(shape, dtype=np.int64)) * np_dtype.itemsize
        if size != expected:
            raise PackageError(f"{where}: holds {size} bytes, but {dtype}{list(shape)} needs {expected}")
        if data_offset + size > len(self._data):
            raise PackageError(f"{where}: data runs past the end of the file (truncated?)")
        # Copy so that arrays own their memory and are writable, independent of the file buffer.
        flat = np.frombuffer(self._data, dtype=np_dtype, count=size // np_dtype.itemsize, offset=data_offset)
        return flat.astype(np_dtype.newbyteorder("="), copy=True).reshape(shape)
