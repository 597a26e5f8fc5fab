"""Receptive field of a CARN-family network, read from the model's own layers.

Every layer of a CARN is local: 3x3 and 1x1 convolutions with zero padding, ReLUs,
concatenations and PixelShuffle. An output pixel therefore depends only on a window of the
input, and a tile whose overlap covers that window reproduces the full image's output
exactly (see :mod:`carn_mobile.upscaling.tiling`).

:func:`receptive_field` runs the network once on a tiny input with hooks on its convolutions
and PixelShuffles, recording each conv's kernel and the resolution it works at, in call order.
Summing the convs' reach is exact for a chain in which every conv feeds the next (CARN: entry,
the body's residual blocks and cascading fusions, the upsampler, exit; a recursive block is
called, and counted, at every use) and an upper bound for any other graph, so the overlap it
gives is always safe. A 3x3 conv reaches one pixel at its own resolution: one LR pixel in the
body, half of one after a x2 PixelShuffle, ``1/scale`` at the exit. CARN and CARN-M have the
same depth, so both have radius 20.5 (x2), 20.33 (x3) and 20.75 (x4) LR pixels: an overlap of 21
LR pixels makes tiling exact at every scale.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from fractions import Fraction

import torch
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


#: LR side of the probe input: any size works; 4 keeps the probe instant.
_PROBE = 4


def _config_of(model: CARN | CARNConfig | nn.Module) -> CARNConfig:
    if isinstance(model, CARNConfig):
        return model
    cfg = getattr(model, "config", None)
    if isinstance(cfg, CARNConfig):
        return cfg
    raise TypeError(f"cannot derive a receptive field from {type(model).__name__}: expected a CARN or CARNConfig")


def spatial_layers(model: CARN, scale: int) -> list[tuple[str, int, Fraction]]:
    """The convs and PixelShuffles one forward pass at ``scale`` runs, in call order, as
    ``("conv", kernel, resolution)`` or ``("shuffle", factor, resolution)``; resolution is
    relative to the LR input (1 in the body, 2 after a x2 PixelShuffle, ...)."""
    calls: list[tuple[str, int, Fraction]] = []

    def on_conv(module: nn.Conv2d, inputs: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        k = module.kernel_size[0]
        if module.kernel_size != (k, k) or module.stride != (1, 1) or module.dilation != (1, 1) \
                or module.padding != (k // 2, k // 2):
            raise ValueError(f"receptive field: unexpected conv {module} (needs stride 1 and 'same' padding)")
        calls.append(("conv", k, Fraction(inputs[0].shape[-2], _PROBE)))

    def on_shuffle(module: nn.PixelShuffle, inputs: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        calls.append(("shuffle", module.upscale_factor, Fraction(inputs[0].shape[-2], _PROBE)))

    hooks = [m.register_forward_hook(on_conv) for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_hook(on_shuffle) for m in model.modules() if isinstance(m, nn.PixelShuffle)]
    weight = next(model.parameters())
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, _PROBE, _PROBE, dtype=weight.dtype, device=weight.device), scale)
    finally:
        for h in hooks:
            h.remove()
    return calls


@functools.lru_cache(maxsize=32)
def _from_config(config: CARNConfig, scale: int) -> ReceptiveField:
    # Built only to walk its layers: weights do not change where a pixel reaches.
    return _from_layers(CARN(replace(config, scales=(scale,))), scale)


def receptive_field(model: CARN | CARNConfig, scale: int) -> ReceptiveField:
    """Receptive field of ``model`` (a ``CARN`` or its ``CARNConfig``) at ``scale``."""
    if isinstance(model, CARN):
        return _from_layers(model, scale)
    return _from_config(_config_of(model), scale)


def _from_layers(model: CARN, scale: int) -> ReceptiveField:
    layers = spatial_layers(model, scale)
    reaching = [(k // 2, res) for kind, k, res in layers if kind == "conv" and k > 1]
    lr_convs = sum(1 for _, res in reaching if res == 1)
    factors = tuple(int(res) for _, res in reaching if res != 1)
    radius = sum((Fraction(r) / res for r, res in reaching), Fraction(0))
    return ReceptiveField(scale, lr_convs, factors, radius, _margins(layers, scale))


def _margins(layers: list[tuple[str, int, Fraction]], scale: int) -> tuple[int, int]:
    """Exact LR margins for an LR core ``[0, n)`` (translation invariant, so n = 1 suffices).

    The core's HR rows ``[0, scale)`` are walked back through the layers in reverse: a conv of
    kernel ``k`` widens an inclusive interval by ``k // 2`` on both sides at its resolution; a
    PixelShuffle by ``r`` maps rows ``[a, b]`` to ``[floor(a / r), floor(b / r)]`` one resolution down.
    """
    lo, hi = 0, scale - 1
    for kind, k, _res in reversed(layers):
        if kind == "conv":
            lo, hi = lo - k // 2, hi + k // 2
        else:
            lo, hi = lo // k, hi // k
    return -lo, hi  # the core is the single LR pixel 0
