"""Receptive field of a CARN-family network, derived from its architecture.

Every layer of a CARN is local: 3x3 and 1x1 convolutions with zero padding, ReLUs,
concatenations and PixelShuffle. An output pixel therefore depends only on a window of the
input, and a tile whose overlap covers that window reproduces the full image's output
exactly (see :mod:`carn_mobile.upscale.tiling`).

Counting the 3x3 convolutions along the longest path:

* at LR resolution (1 LR pixel each): the entry conv, the two 3x3 convs of every residual
  (or residual-E) block applied in the body, ``num_blocks * units_per_block * 2`` of them
  (a recursive block is applied ``units_per_block`` times, so it counts that often), and the
  first conv of the upsampler, which runs before its PixelShuffle;
* inside the upsampler, a conv after a x2 PixelShuffle works at 2x resolution: half an LR pixel;
* the exit conv works at HR resolution: ``1/scale`` LR pixel.

1x1 convs, the mean shifts and the cascading concatenations add nothing. CARN and CARN-M have
the same depth, so both have radius 20.5 (x2), 20.33 (x3) and 20.75 (x4) LR pixels: an
overlap of 21 LR pixels makes tiling exact at every scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from torch import nn

from ..models import CARN, CARNConfig


@dataclass(frozen=True)
class ReceptiveField:
    """How far, in LR pixels, an output pixel of one scale reaches into the input."""

    scale: int
    #: 3x3 convs at LR resolution on the longest path (entry, body, first upsampler stage).
    lr_convs: int
    #: Resolution factor of each later 3x3 conv (upsampler stages after the first, then exit).
    hr_conv_factors: tuple[int, ...]
    #: Exact radius in LR pixels: ``lr_convs + sum(1 / f for f in hr_conv_factors)``.
    radius: Fraction
    #: LR pixels needed beyond a tile's core on the (top/left, bottom/right) sides, from
    #: propagating the core's HR rows back through every layer with integer arithmetic.
    margins: tuple[int, int]

    @property
    def overlap(self) -> int:
        """LR overlap that makes tiling exact: ``ceil(radius)`` (equal to the larger margin)."""
        return max(self.margins)

    def describe(self) -> str:
        """One line for logs and docs."""
        return f"x{self.scale}: radius {float(self.radius):.2f} LR px -> overlap {self.overlap} LR px"


def _stages(scale: int) -> list[int]:
    """PixelShuffle factors of the upsampler branch for ``scale`` (mirrors ``UpsampleBranch``)."""
    if scale in (2, 4, 8):
        return [2] * int(math.log2(scale))
    if scale == 3:
        return [3]
    raise ValueError(f"unsupported upscaling factor {scale}; use 2, 3, 4 or 8")


def _config_of(model: CARN | CARNConfig | nn.Module) -> CARNConfig:
    if isinstance(model, CARNConfig):
        return model
    cfg = getattr(model, "config", None)
    if isinstance(cfg, CARNConfig):
        return cfg
    raise TypeError(f"cannot derive a receptive field from {type(model).__name__}: expected a CARN or CARNConfig")


def receptive_field(model: CARN | CARNConfig, scale: int) -> ReceptiveField:
    """Receptive field of ``model`` (a ``CARN`` or its ``CARNConfig``) at ``scale``."""
    cfg = _config_of(model)
    stages = _stages(scale)
    # Both block kinds hold exactly two 3x3 convs; their 1x1 convs widen nothing.
    body = cfg.num_blocks * cfg.units_per_block * 2
    lr_convs = 1 + body + 1  # entry, body, first upsampler conv (before its PixelShuffle)
    factors: list[int] = []
    res = stages[0]
    for r in stages[1:]:
        factors.append(res)  # this stage's conv runs at the resolution reached so far
        res *= r
    factors.append(res)  # exit conv at HR
    radius = Fraction(lr_convs) + sum((Fraction(1, f) for f in factors), Fraction(0))
    margins = _margins(lr_convs, stages)
    return ReceptiveField(scale, lr_convs, tuple(factors), radius, margins)


def _margins(lr_convs: int, stages: list[int]) -> tuple[int, int]:
    """Exact LR margins for an LR core ``[0, n)`` (translation invariant, so n = 1 suffices).

    The core's HR rows ``[0, s)`` are walked back through the layers in reverse: a 3x3 conv
    widens an inclusive interval by one on both sides at its resolution; a PixelShuffle by
    ``r`` maps rows ``[a, b]`` to ``[floor(a / r), floor(b / r)]`` one resolution down.
    """
    lo, hi = 0, math.prod(stages) - 1
    lo, hi = lo - 1, hi + 1  # exit conv
    for i, r in enumerate(reversed(stages)):
        lo, hi = lo // r, hi // r  # PixelShuffle(r)
        if i < len(stages) - 1:
            lo, hi = lo - 1, hi + 1  # this stage's conv, above LR resolution
    lo, hi = lo - lr_convs, hi + lr_convs  # first upsampler conv, body, entry
    return -lo, hi  # the core is the single LR pixel 0
