"""The activation-memory estimate: sizes, and a real peak-RSS measurement untiled vs tiled."""

from __future__ import annotations

from pathlib import Path

import pytest

from carn_mobile.models import carn, carn_m
from carn_mobile.upscaling.api import Upscaler
from carn_mobile.upscaling.memory import (
    estimate_bytes,
    floats_per_lr_pixel,
    format_bytes,
    measure_peak_rss,
    parse_bytes,
    parse_count,
)


def test_parse_and_format_sizes():
    assert parse_bytes("1G") == parse_bytes("1GiB") == parse_bytes("1gb") == 1 << 30
    assert parse_bytes("512M") == 512 << 20 and parse_bytes("1.5k") == 1536 and parse_bytes(4096) == 4096
    for bad in ("", "lots", "-1G", "0", "1Q"):
        with pytest.raises(ValueError):
            parse_bytes(bad)
    assert parse_count("50M") == 50_000_000 and parse_count("2.5k") == 2500 and parse_count("0") == 0
    with pytest.raises(ValueError, match="pixel count"):
        parse_count("many")
    assert format_bytes(1 << 30) == "1.00 GiB" and format_bytes(1536 << 10) == "1.5 MiB" and format_bytes(12) == "12 B"


def test_estimate_grows_with_area_scale_and_width():
    m = carn_m().config
    assert estimate_bytes(m, 4, 100, 100) > estimate_bytes(m, 4, 50, 100) > estimate_bytes(m, 4, 10, 10)
    assert floats_per_lr_pixel(m, 4) > floats_per_lr_pixel(m, 3) > floats_per_lr_pixel(m, 2)
    assert floats_per_lr_pixel(carn().config, 2) == floats_per_lr_pixel(m, 2)  # same widths
    # the 720p-output x4 image of the docs: just over the default 1 GiB, so two exact tiles
    plan = Upscaler(4).plan(180, 320)
    assert plan.auto and len(plan.tiles) == 2 and plan.estimated_bytes <= 1 << 30
    assert Upscaler(4, max_memory="2G").plan(180, 320).tile is None


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak RSS is read from Linux /proc")
def test_tiling_bounds_measured_peak_memory():
    lr = (240, 135)  # -> 960x540 at x4
    untiled = measure_peak_rss(4, lr, None, threads=1)
    tiled = measure_peak_rss(4, lr, 32, threads=1)
    up = Upscaler(4)
    assert untiled <= up.plan(135, 240).estimated_bytes
    # Small runs are at the mercy of the allocator and of library pages evicted by a busy
    # machine: 25% slack on the tiled bound keeps this test about tiling, not about noise.
    assert tiled <= 1.25 * Upscaler(4, tile=32).plan(135, 240).estimated_bytes, format_bytes(tiled)
    assert tiled < untiled / 2, (format_bytes(tiled), format_bytes(untiled))
