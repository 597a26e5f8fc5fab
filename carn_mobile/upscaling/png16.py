"""A 16-bit PNG encoder: Pillow has no 16-bit colour or gray+alpha modes to save them with."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"



def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def write_png16(path: str | Path, pixels: np.ndarray, alpha: np.ndarray | None, icc: bytes | None = None) -> None:
    """Write a 16-bit PNG (gray, gray+alpha, RGB or RGBA) with an optional ICC profile.

    Rows use the PNG 'Up' filter (difference to the row above, byte-wise modulo 256) and
    are compressed in slices, so no second full-size buffer is made.
    """
    h, w, c = pixels.shape
    channels = c + (alpha is not None)
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    header = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    comp = zlib.compressobj(6)
    prev = np.zeros(w * channels * 2, dtype=np.uint8)
    rows_per_slice = max(1, (8 << 20) // (w * channels * 2))
    with open(path, "wb") as fh:
        fh.write(_PNG_SIGNATURE + _png_chunk(b"IHDR", header))
        if icc:
            fh.write(_png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc)))
        for y0 in range(0, h, rows_per_slice):
            y1 = min(y0 + rows_per_slice, h)
            block = pixels[y0:y1] if alpha is None else np.dstack([pixels[y0:y1], alpha[y0:y1]])
            raw = block.astype(">u2").reshape(y1 - y0, -1).view(np.uint8)
            up = np.empty_like(raw)
            up[0] = raw[0] - prev
            up[1:] = raw[1:] - raw[:-1]
            prev = raw[-1].copy()
            filt = np.hstack([np.full((y1 - y0, 1), 2, np.uint8), up])
            data = comp.compress(filt.tobytes())
            if data:
                fh.write(_png_chunk(b"IDAT", data))
        fh.write(_png_chunk(b"IDAT", comp.flush()) + _png_chunk(b"IEND", b""))

