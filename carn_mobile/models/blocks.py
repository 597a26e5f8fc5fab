"""Building blocks of CARN / CARN-M (Ahn et al., ECCV 2018, Sec. 3 and Fig. 3).

Submodule names (``body.N``, ``shifter``) follow the authors' released checkpoints so that
their state dicts load strictly.
"""

from __future__ import annotations

import torch
from torch import nn

from .scales import upsample_stages

#: RGB mean of DIV2K in [0, 1], subtracted at the entry and added back at the exit.
RGB_MEAN = (0.4488, 0.4371, 0.4040)


class MeanShift(nn.Module):
    """Adds ``sign * RGB_MEAN`` as a frozen 1x1 convolution (kept as a conv for checkpoint layout)."""

    def __init__(self, mean: tuple[float, float, float] = RGB_MEAN, sign: int = -1) -> None:
        super().__init__()
        self.shifter = nn.Conv2d(3, 3, 1, 1, 0)
        with torch.no_grad():
            self.shifter.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.shifter.bias.copy_(sign * torch.tensor(mean))
        for p in self.shifter.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shifter(x)


class CascadeFusion(nn.Module):
    """Eq. 3: a 1x1 conv + ReLU over the concatenation of every output so far (the cascade).

    Takes the parts rather than their concatenation so that an export rewrite can compute
    the same sum part by part (``carn_mobile.export.rewrites``) without touching the model.
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c_in, c_out, 1, 1, 0), nn.ReLU(inplace=True))

    def forward(self, parts: list[torch.Tensor]) -> torch.Tensor:
        return self.body(torch.cat(parts, dim=1))


class ResidualBlock(nn.Module):
    """CARN's residual block: conv3x3-ReLU-conv3x3, identity added, ReLU after the sum."""

    def __init__(self, channels: int, groups: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1, groups=groups),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, 1, 1, groups=groups),
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + x)


class EfficientResidualBlock(nn.Module):
    """CARN-M's residual-E block: two 3x3 group convs (G groups) and a 1x1 conv mixing the groups."""

    def __init__(self, channels: int, groups: int = 4) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1, groups=groups),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, 1, 1, groups=groups),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 1, 1, 0),
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + x)


class UpsampleBranch(nn.Module):
    """Late upsampling for one scale: (conv3x3 + ReLU + PixelShuffle(2)) x log2(s), or one x3 stage."""

    def __init__(self, channels: int, scale: int, groups: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for r in upsample_stages(scale):
            layers += [
                nn.Conv2d(channels, channels * r * r, 3, 1, 1, groups=groups),
                nn.ReLU(inplace=True),
                nn.PixelShuffle(r),
            ]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Upsampler(nn.Module):
    """One branch per scale: ``up{s}`` for a multi-scale model, ``up`` for a single-scale one."""

    def __init__(self, channels: int, scales: tuple[int, ...], groups: int = 1) -> None:
        super().__init__()
        self.scales = tuple(scales)
        self.multi_scale = len(self.scales) > 1
        if self.multi_scale:
            for s in self.scales:
                self.add_module(f"up{s}", UpsampleBranch(channels, s, groups))
        else:
            self.up = UpsampleBranch(channels, self.scales[0], groups)

    def branch(self, scale: int) -> UpsampleBranch:
        """The branch that upsamples by ``scale``."""
        if scale not in self.scales:
            raise ValueError(f"scale x{scale} not available; this model has {list(self.scales)}")
        return getattr(self, f"up{scale}") if self.multi_scale else self.up

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        return self.branch(scale)(x)
