"""Shared test helpers: where ``../shared`` is (fixtures that skip clearly without it), the code under
test (the checkout, never an installed copy), and image-file generators used by several modules."""

from __future__ import annotations

import contextlib
import io
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to test an installed copy: an edit in the checkout must be what runs."""
    import carn_mobile

    where = Path(carn_mobile.__file__).resolve().parent
    if where != REPO_ROOT / "carn_mobile":
        raise pytest.UsageError(f"tests import carn_mobile from {where}, not from the checkout {REPO_ROOT}")


def shared_root() -> Path:
    """The read-only data folder: ``$CARN_SHARED``, else ``<repo>/../shared``."""
    env = os.environ.get("CARN_SHARED")
    return Path(env) if env else REPO_ROOT.parent / "shared"


def require_shared(*parts: str) -> Path:
    """Path under the shared folder; skips the calling test when it is missing."""
    path = shared_root().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (shared data; set CARN_SHARED to its location)")
    return path


@pytest.fixture
def set5_dir() -> Path:
    return require_shared("data", "benchmark", "Set5")


@pytest.fixture
def set14_dir() -> Path:
    return require_shared("data", "benchmark", "Set14")


@pytest.fixture
def authors_carn_m() -> Path:
    return require_shared("weights", "carn_m.pth")


@pytest.fixture
def t91_dir() -> Path:
    return require_shared("data", "train", "T91")


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test, restored after: small inputs gain nothing from two, and
    two threads crawl when the two cores are shared with other work."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@contextlib.contextmanager
def quick_parity_settings():
    """Export tests on two shared cores: one torch thread (two oversubscribe the cores as soon as
    anything else runs) and two 32-pixel real crops instead of five 64-pixel ones. Every parity
    rule still applies."""
    import torch

    from carn_mobile import parity

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(parity, "REAL_CROP", 32)
            mp.setattr(parity, "MAX_REAL_IMAGES", 2)
            yield
    finally:
        torch.set_num_threads(threads)


def hide_modules(monkeypatch: pytest.MonkeyPatch, *prefixes: str) -> None:
    """Make carn-mobile's optional imports of modules starting with ``prefixes`` fail, as when
    their extra is not installed."""
    import importlib

    from carn_mobile.runtimes import optional as optional_mod

    real = importlib.import_module

    def import_module(name: str, *args, **kwargs):
        if name.startswith(prefixes):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(optional_mod.importlib, "import_module", import_module)


# --- image files ---------------------------------------------------------------------------------

_RNG = np.random.default_rng(4321)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def encode_png(
    samples: np.ndarray, colour_type: int, bit_depth: int = 16, chunks: tuple[tuple[bytes, bytes], ...] = ()
) -> bytes:
    """Encode a PNG by hand, cycling through the five row filters (Pillow must undo each)."""
    h, w = samples.shape[:2]
    dtype = ">u2" if bit_depth == 16 else np.uint8
    raw = samples.astype(dtype).reshape(h, -1).view(np.uint8).astype(np.int32)
    bpp = raw.shape[1] // w
    rows = []
    prev = np.zeros(raw.shape[1], np.int32)
    for y in range(h):
        cur, kind = raw[y], y % 5
        left = np.concatenate([np.zeros(bpp, np.int32), cur[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, np.int32), prev[:-bpp]])
        pred = [0, left, prev, (left + prev) // 2, _paeth(left, prev, upleft)][kind]
        rows.append(bytes([kind]) + ((cur - pred) % 256).astype(np.uint8).tobytes())
        prev = cur
    header = struct.pack(">IIBBBBB", w, h, bit_depth, colour_type, 0, 0, 0)
    body = b"".join(png_chunk(kind, data) for kind, data in chunks)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + body
        + png_chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + png_chunk(b"IEND", b"")
    )


def broken_image_files(folder: Path) -> dict[str, str]:
    """Write deliberately broken inputs into ``folder``; returns name -> expected reason fragment."""
    folder.mkdir(parents=True, exist_ok=True)
    expected: dict[str, str] = {}

    def put(name: str, data: bytes, reason: str) -> None:
        (folder / name).write_bytes(data)
        expected[name] = reason

    good = io.BytesIO()
    Image.fromarray(_RNG.integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(good, "PNG")
    png = good.getvalue()
    jpg = io.BytesIO()
    Image.fromarray(_RNG.integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(jpg, "JPEG")

    put("empty.png", b"", "empty file (0 bytes)")
    put("text.png", b"this is a text file, not a picture\n", "not an image file")
    put("truncated.png", png[: len(png) // 2], "truncated")
    put("truncated.jpg", jpg.getvalue()[: len(jpg.getvalue()) // 2], "truncated")
    bad_crc = bytearray(png)
    bad_crc[len(png) // 2] ^= 0xFF  # inside IDAT: the zlib stream or the CRC breaks
    put("corrupt_idat.png", bytes(bad_crc), "")
    put("header_only.png", png[:33], "")  # signature + IHDR, no pixel data at all
    zero = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 3, 8, 2, 0, 0, 0))
    zero += png_chunk(b"IDAT", zlib.compress(b"\0" * 3)) + png_chunk(b"IEND", b"")
    put("zero_width.png", zero, "not an image file")
    one = io.BytesIO()
    Image.new("RGB", (1, 1), (10, 20, 30)).save(one, "PNG")
    put("one_pixel.png", one.getvalue(), "at least 2x2")
    row = io.BytesIO()
    Image.new("L", (9, 1), 7).save(row, "PNG")
    put("one_row.png", row.getvalue(), "at least 2x2")
    # A decompression bomb: the header promises 30000 x 30000 = 900 MP, the data is a few bytes.
    bomb = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0))
    bomb += png_chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + png_chunk(b"IEND", b"")
    put("bomb.png", bomb, "exceeds the limit")
    f32 = io.BytesIO()
    Image.fromarray(_RNG.random((8, 8), dtype=np.float32)).save(f32, "TIFF")
    put("float32.tif", f32.getvalue(), "unsupported image mode 'F'")
    put("garbage.jpg", b"\xff\xd8\xff\xe0" + _RNG.integers(0, 256, 300, dtype=np.uint8).tobytes(), "")
    return expected




@pytest.fixture
def png_bytes() -> Callable[..., bytes]:
    """``png_bytes(samples, colour_type, bit_depth=16, chunks=())``: a hand-encoded PNG."""
    return encode_png


@pytest.fixture
def make_broken_files() -> Callable[[Path], dict[str, str]]:
    """``make_broken_files(folder)``: broken inputs written there; name -> expected reason fragment."""
    return broken_image_files
