"""Image sizes with their axis order in the name, so width-first and height-first never mix.

Two conventions meet in this project: output sizes as people write them (``--hr 1280x720``:
width first, like video modes) and tensor sizes as NCHW reads them (``--shape 64x96``: height
first). Each has its own type and parser; code reads ``.width`` / ``.height``, never ``[0]``.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_PAIR = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


class WxH(NamedTuple):
    """A size written width first (``1280x720``): display and video sizes, ``--hr``."""

    width: int
    height: int

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


class HxW(NamedTuple):
    """A size written height first (``64x96``): tensor (NCHW) sizes, ``--shape``."""

    height: int
    width: int

    def __str__(self) -> str:
        return f"{self.height}x{self.width}"


def parse_wxh(text: str, what: str = "HR size") -> WxH:
    """``"1280x720"`` -> ``WxH(width=1280, height=720)``; ``ValueError`` unless both are positive."""
    m = _PAIR.match(text or "")
    if not m:
        raise ValueError(f"{what} must look like 1280x720 (WIDTHxHEIGHT), got {text!r}")
    size = WxH(int(m.group(1)), int(m.group(2)))
    if size.width < 1 or size.height < 1:
        raise ValueError(f"{what} must be positive, got {text!r}")
    return size


def parse_hxw(text: str) -> HxW:
    """``"64x96"`` -> ``HxW(height=64, width=96)``; ``ValueError`` otherwise."""
    m = _PAIR.match(text or "")
    if not m:
        raise ValueError(f"expected a size HxW such as 64x96 (height first), got {text!r}")
    return HxW(int(m.group(1)), int(m.group(2)))
