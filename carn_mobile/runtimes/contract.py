"""The one input/output contract every exported artifact follows, and its accepted shapes.

Every artifact, whatever its target, takes ``lr``: a float32 NCHW RGB tensor with values in
[0, 1] and batch size 1, and returns ``sr``: float32 NCHW RGB in [0, 1] (clamped inside the
graph) whose height and width are ``scale`` times the input's. Runners, parity and the
manifests rely on it, so none of them special-cases a target. (Core ML's optional image I/O
is the one variant: an RGB image in, an RGB image out; see :func:`contract_json`.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Literal

from ..sizes import HxW, parse_hxw

INPUT_NAME = "lr"
OUTPUT_NAME = "sr"

#: Smallest LR side a dynamic artifact accepts unless told otherwise.
DEFAULT_MIN_SIDE = 8
#: Largest LR side any shape spec may name: 4096 LR pixels already give a 16k x4 image.
MAX_SIDE_LIMIT = 4096

ShapeKind = Literal["dynamic", "fixed", "enumerated"]
Size = tuple[int, int]  # (height, width) of the LR input: see carn_mobile.sizes.HxW


@dataclass(frozen=True)
class ShapeSpec:
    """Which LR input sizes an artifact accepts.

    * ``dynamic``: any height and width in ``[min_side, max_side]``; ``max_side`` may be left
      ``None`` until a target fills in its own default (:meth:`with_default_max`).
    * ``fixed``: exactly one size, ``sizes[0]``.
    * ``enumerated``: a short list of sizes (Core ML EnumeratedShapes; other targets accept
      the range that covers them).
    """

    kind: ShapeKind = "dynamic"
    sizes: tuple[Size, ...] = ()
    min_side: int = DEFAULT_MIN_SIDE
    max_side: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("dynamic", "fixed", "enumerated"):
            raise ValueError(f"unknown shape kind {self.kind!r}")
        if self.kind == "dynamic":
            if self.sizes:
                raise ValueError("a dynamic shape spec lists no sizes")
            if not 1 <= self.min_side <= MAX_SIDE_LIMIT:
                raise ValueError(f"minimum side must be in 1..{MAX_SIDE_LIMIT}, got {self.min_side}")
            if self.max_side is not None and not self.min_side <= self.max_side <= MAX_SIDE_LIMIT:
                raise ValueError(
                    f"maximum side must be in {self.min_side}..{MAX_SIDE_LIMIT}, got {self.max_side}"
                )
            return
        if self.kind == "fixed" and len(self.sizes) != 1:
            raise ValueError("a fixed shape spec has exactly one size")
        if self.kind == "enumerated" and len(self.sizes) < 2:
            raise ValueError("enumerated shapes need at least two sizes (use HxW for one)")
        if len(set(self.sizes)) != len(self.sizes):
            raise ValueError(f"enumerated sizes repeat: {format_sizes(self.sizes)}")
        for h, w in self.sizes:
            if not (1 <= h <= MAX_SIDE_LIMIT and 1 <= w <= MAX_SIDE_LIMIT):
                raise ValueError(f"size {h}x{w} is outside 1..{MAX_SIDE_LIMIT} per side")

    @property
    def bounds(self) -> tuple[int, int]:
        """(smallest, largest) side over both axes; for ``dynamic`` the declared range."""
        if self.kind == "dynamic":
            if self.max_side is None:
                raise ValueError("dynamic shape has no maximum yet; call with_default_max first")
            return self.min_side, self.max_side
        sides = [s for size in self.sizes for s in size]
        return min(sides), max(sides)

    def with_default_max(self, default_max: int) -> ShapeSpec:
        """This spec with a target's default maximum filled in (dynamic shapes only)."""
        if self.kind != "dynamic" or self.max_side is not None:
            return self
        return replace(self, max_side=max(default_max, self.min_side))

    def accepts(self, size: Size) -> bool:
        """Whether an LR input of ``size`` (H, W) is inside this spec."""
        if self.kind == "dynamic":
            lo, hi = self.bounds
            return all(lo <= s <= hi for s in size)
        return tuple(size) in self.sizes

    def tag(self) -> str:
        """Short label for file names: '' (dynamic), '64x96' (fixed), 'enum3' (enumerated)."""
        if self.kind == "fixed":
            return format_hxw(self.sizes[0])
        if self.kind == "enumerated":
            return f"enum{len(self.sizes)}"
        return ""

    def describe(self) -> str:
        """Human-readable form, e.g. 'dynamic 8..1024' or 'enumerated 64x64,128x128'."""
        if self.kind == "dynamic":
            hi = "?" if self.max_side is None else str(self.max_side)
            return f"dynamic H, W in {self.min_side}..{hi}"
        return f"{self.kind} {format_sizes(self.sizes)}"

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind}
        if self.kind == "dynamic":
            d.update(min_side=self.min_side, max_side=self.max_side)
        else:
            d["sizes"] = [list(s) for s in self.sizes]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ShapeSpec:
        if d.get("kind") == "dynamic":
            return cls("dynamic", min_side=int(d["min_side"]), max_side=d.get("max_side"))
        return cls(d["kind"], sizes=tuple((int(h), int(w)) for h, w in d["sizes"]))


def format_hxw(size: Size) -> str:
    return str(HxW(*size))


def format_sizes(sizes: tuple[Size, ...]) -> str:
    return ",".join(format_hxw(s) for s in sizes)


_DYNAMIC = re.compile(r"^dynamic(?::(?:(\d+)-)?(\d+))?$")

SHAPE_HELP = (
    "dynamic (target default range), dynamic:MAX or dynamic:MIN-MAX (LR side bounds), "
    "HxW (one fixed LR size, height first), or enumerated:HxW,HxW,..."
)


def parse_shape(text: str) -> ShapeSpec:
    """Parse a ``--shape`` value; raises ``ValueError`` with the accepted forms on bad input."""
    s = text.strip().lower()
    try:
        if m := _DYNAMIC.match(s):
            lo, hi = m.groups()
            return ShapeSpec(
                "dynamic",
                min_side=int(lo) if lo else DEFAULT_MIN_SIDE,
                max_side=int(hi) if hi else None,
            )
        if s.startswith("enumerated:"):
            sizes = tuple(tuple(parse_hxw(part)) for part in s.removeprefix("enumerated:").split(",") if part.strip())
            return ShapeSpec("enumerated", sizes=sizes)
        return ShapeSpec("fixed", sizes=(tuple(parse_hxw(s)),))
    except ValueError as exc:
        raise ValueError(f"unusable shape spec {text!r} ({exc}); use {SHAPE_HELP}") from None


#: Tensor layouts an artifact's I/O may use: the contract's NCHW, or NHWC where a target offers
#: it (LiteRT: what Android bitmaps and its GPU delegate use). Runners take and return NCHW
#: either way; they transpose for an NHWC artifact.
LAYOUTS = ("NCHW", "NHWC")


def layout_shape(layout: str, height: str, width: str) -> list[Any]:
    """``[1, 3, H, W]`` or ``[1, H, W, 3]``."""
    return [1, 3, height, width] if layout == "NCHW" else [1, height, width, 3]


def contract_json(scale: int, shape: ShapeSpec, image_io: bool = False, layout: str = "NCHW") -> dict[str, Any]:
    """The input/output contract of one artifact, as written into its manifest."""
    if image_io:
        inp = {"name": INPUT_NAME, "type": "image", "color": "RGB", "bits": 8,
               "preprocessing": "pixel / 255 inside the model"}
        out = {"name": OUTPUT_NAME, "type": "image", "color": "RGB", "bits": 8,
               "note": "the model computes clamp(sr, 0, 1) * 255; Core ML rounds it into the image"}
    else:
        inp = {"name": INPUT_NAME, "type": "tensor", "layout": layout, "dtype": "float32",
               "color": "RGB", "range": [0.0, 1.0], "shape": layout_shape(layout, "H", "W")}
        out = {"name": OUTPUT_NAME, "type": "tensor", "layout": layout, "dtype": "float32",
               "color": "RGB", "range": [0.0, 1.0], "clamped_in_graph": True,
               "shape": layout_shape(layout, f"{scale}*H", f"{scale}*W")}
    return {"scale": scale, "input": inp, "output": out, "accepted_lr_sizes": shape.to_json()}
