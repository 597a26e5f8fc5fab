"""Activation-memory estimate of one network call, automatic tile size, and peak-RSS measurement.

The estimate counts float32 values per LR pixel that are alive at the widest point of a
CARN forward pass in PyTorch (CPU, eval, no autograd), from the architecture:

* body: the global cascade concatenation (``channels * (num_blocks + 1)``) is rebuilt by
  ``torch.cat`` while the previous one is alive, and inside a cascading block the local
  concatenation (``channels * (units_per_block + 1)``) does the same, with a few
  ``channels``-wide tensors around: ``c * (2 (B + 1) + 2 (U + 1) + 4)``;
* upsampler: the forward keeps ``c * (B + 4)`` values alive (entry output, global
  cascade, last block outputs) while the last stage holds its conv output at HR, a blocked
  copy of it made by oneDNN and the PixelShuffle copy: ``c * (B + 4) + 3 c s^2``;
* input and output tiles (3 and ``2 * 3 s^2``, the second for the NumPy copy).

The larger of body and upsampler plus the I/O, times a safety factor of 1.25, plus a fixed
64 MiB (allocator slack, oneDNN scratch pads and kernel caches, which show as a ~30-50 MiB
offset on small tiles), stays above the measured peak RSS increase of a whole upscale in a
fresh process (see ``docs/upscale.md``: 1280x720 x4 output, CARN-M: 664 MiB measured, 1058
MiB estimated untiled; 163 MiB measured, 251 MiB estimated with 64-pixel tiles).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from ..models import CARNConfig

#: Default budget for the activations of one network call (``--max-memory``).
DEFAULT_MAX_MEMORY = 1 << 30
#: Margin over the architecture count.
SAFETY = 1.25
#: Fixed part of every call: allocator slack, oneDNN scratch pads and kernel caches.
OVERHEAD = 64 << 20
#: Smallest core tile automatic tiling picks, whatever the budget (smaller wastes compute
#: on overlap: a 32-pixel core with a 21-pixel overlap already reads 5.5x its area).
MIN_AUTO_TILE = 32

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def floats_per_lr_pixel(config: CARNConfig, scale: int) -> float:
    """float32 values alive per LR pixel at the peak of one forward pass (no safety factor)."""
    c, b, u = config.channels, config.num_blocks, config.units_per_block
    body = c * (2 * (b + 1) + 2 * (u + 1) + 4)
    upsampler = c * (b + 4) + 3 * c * scale * scale
    io = 3 + 2 * 3 * scale * scale
    return max(body, upsampler) + io


def estimate_bytes(config: CARNConfig, scale: int, height: int, width: int) -> int:
    """Estimated peak memory of one network call on an ``height x width`` LR input."""
    return OVERHEAD + math.ceil(4 * SAFETY * floats_per_lr_pixel(config, scale) * height * width)


def auto_tile(config: CARNConfig, scale: int, height: int, width: int, overlap: int, max_memory: int) -> int | None:
    """Core tile side that keeps one call under ``max_memory``, or ``None`` if no tiling is needed.

    The side is the largest ``t`` whose padded tile ``(t + 2 overlap)^2`` fits the budget,
    never below :data:`MIN_AUTO_TILE`.
    """
    if estimate_bytes(config, scale, height, width) <= max_memory:
        return None
    per_pixel = 4 * SAFETY * floats_per_lr_pixel(config, scale)
    side = math.isqrt(max(int((max_memory - OVERHEAD) / per_pixel), 0)) - 2 * overlap
    return min(max(side, MIN_AUTO_TILE), max(height, width))


def parse_bytes(text: str | int) -> int:
    """``"1G"``, ``"512MiB"``, ``"1.5g"``, ``"1073741824"`` -> bytes (binary units)."""
    if isinstance(text, int):
        value = text
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text.lower())
        if not m:
            raise ValueError(f"cannot read {text!r} as a size; use e.g. 512M or 2G")
        value = int(float(m.group(1)) * _UNITS[m.group(2)])
    if value <= 0:
        raise ValueError(f"a memory size must be positive, got {text!r}")
    return value


def parse_count(text: str | int) -> int:
    """``"50M"``, ``"2.5m"``, ``"120000"`` -> a pixel count (decimal units); ``0`` is allowed."""
    if isinstance(text, int):
        value = text
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([km]?)\s*", text.lower())
        if not m:
            raise ValueError(f"cannot read {text!r} as a pixel count; use e.g. 50M or 2000000")
        value = int(float(m.group(1)) * {"": 1, "k": 10**3, "m": 10**6}[m.group(2)])
    if value < 0:
        raise ValueError(f"a pixel count cannot be negative, got {text!r}")
    return value


def format_bytes(n: float) -> str:
    """Bytes in binary units: ``12 B``, ``1.5 MiB``, ``1.03 GiB`` (two decimals tell 1.03 from 1.00)."""
    for unit, decimals in (("B", 0), ("KiB", 1), ("MiB", 1)):
        if abs(n) < 1024:
            return f"{n:.{decimals}f} {unit}"
        n /= 1024
    return f"{n:.2f} GiB"


_PROBE = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import torch
    from carn_mobile.upscaling.api import Upscaler

    def status(key):
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
        raise RuntimeError(key + " not in /proc/self/status")

    model, weights, scale, h, w, tile, threads = json.loads(sys.argv[1])
    torch.set_num_threads(threads)
    up = Upscaler(scale, model, weights=weights, tile=tile)
    up.upscale(np.zeros((8, 8, 3), np.uint8))  # load libraries and kernels first
    lr = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    try:  # reset VmHWM so that transient peaks of start-up do not count (Linux >= 4.0)
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass
    base = status("VmRSS")
    up.upscale(lr)
    print(json.dumps({"base": base, "peak": status("VmHWM")}))
    """
)


def measure_peak_rss(
    scale: int,
    lr_size: tuple[int, int],
    tile: int | None,
    model: str = "carn-m",
    weights: str | None = None,
    threads: int = 2,
) -> int:
    """Peak RSS growth (bytes) of upscaling one ``(width, height)`` image in a fresh process.

    Linux only (reads ``VmHWM`` from ``/proc/self/status``, reset through
    ``/proc/self/clear_refs`` after start-up). The baseline is the resident size after the
    model is loaded and has run once on a tiny image, so the number is what the image itself
    costs: activations, input and output buffers.
    """
    if not Path("/proc/self/status").exists():
        raise OSError("peak-RSS measurement needs Linux /proc/self/status")
    w, h = lr_size
    args = json.dumps([model, weights, scale, h, w, tile or 0, threads])
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, args], capture_output=True, text=True, check=True, env=env
    ).stdout
    r = json.loads(out.strip().splitlines()[-1])
    return int(r["peak"] - r["base"])
