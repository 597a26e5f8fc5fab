"""CARN and CARN-M (Ahn, Kang, Sohn, ECCV 2018) and the paper's ablation variants.

One configurable network covers them all:

* CARN: 3 cascading blocks of 3 residual blocks, local and global cascading (Eq. 1-4).
* CARN-M: residual-E blocks with group convolution (G=4) and one residual-E block shared
  recursively inside each cascading block; group convolution in the upsampler too.
* Table 2 ablations: ``carn-nl`` (no local cascading), ``carn-ng`` (no global cascading) and
  ``carn-resnet`` (neither: the plain ResNet baseline).
* Fig. 5 style efficiency variants through ``groups`` and ``recursive`` overrides.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Literal

import torch
from torch import nn

from .blocks import CascadeFusion, EfficientResidualBlock, MeanShift, ResidualBlock, Upsampler
from .scales import PAPER_SCALES, check_scale
from .zoo import register_model

BlockKind = Literal["residual", "residual_e"]


@dataclass(frozen=True)
class CARNConfig:
    """Hyper-parameters of a CARN-family network (defaults: CARN, multi-scale x2/x3/x4)."""

    channels: int = 64
    num_blocks: int = 3  # cascading blocks in the body
    units_per_block: int = 3  # residual blocks inside each cascading block
    block: BlockKind = "residual"
    groups: int = 1  # group convolution in residual-E blocks and the upsampler
    recursive: bool = False  # share one residual block within each cascading block
    local_cascade: bool = True
    global_cascade: bool = True
    scales: tuple[int, ...] = PAPER_SCALES

    def __post_init__(self) -> None:
        if self.channels < 1 or self.num_blocks < 1 or self.units_per_block < 1:
            raise ValueError("channels, num_blocks and units_per_block must be positive")
        if self.block not in ("residual", "residual_e"):
            raise ValueError(f"block must be 'residual' or 'residual_e', not {self.block!r}")
        if not 1 <= self.groups <= self.channels or self.channels % self.groups:
            raise ValueError(f"groups={self.groups} must divide channels={self.channels}")
        if not self.scales or len(set(self.scales)) != len(self.scales):
            raise ValueError(f"scales must be non-empty and unique, got {self.scales}")
        for s in self.scales:
            check_scale(s)

    @property
    def multi_scale(self) -> bool:
        return len(self.scales) > 1


class CascadingBlock(nn.Module):
    """Residual blocks whose outputs are concatenated and fused by 1x1 convs (local cascading)."""

    def __init__(self, cfg: CARNConfig) -> None:
        super().__init__()
        c = cfg.channels
        n_modules = 1 if cfg.recursive else cfg.units_per_block
        for i in range(n_modules):
            unit = ResidualBlock(c) if cfg.block == "residual" else EfficientResidualBlock(c, cfg.groups)
            self.add_module(f"b{i + 1}", unit)
        # The recursive scheme applies the single shared unit b1 at every position.
        self._unit_names = ["b1" if cfg.recursive else f"b{i + 1}" for i in range(cfg.units_per_block)]
        self.local_cascade = cfg.local_cascade
        if cfg.local_cascade:
            for i in range(cfg.units_per_block):
                self.add_module(f"c{i + 1}", CascadeFusion(c * (i + 2), c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts, out = [x], x
        for i, name in enumerate(self._unit_names):
            y = getattr(self, name)(out)
            if self.local_cascade:
                parts.append(y)
                out = getattr(self, f"c{i + 1}")(parts)
            else:
                out = y
        return out


class CARN(nn.Module):
    """Cascading Residual Network; input RGB in [0, 1] (N, 3, H, W), output unclamped RGB.

    ``forward(x, scale)`` picks the upsampling branch; ``scale`` may be omitted on a
    single-scale model.
    """

    #: Registry name this network was built as (set by ``build_model``/``load_model``).
    arch: str = "carn"

    def __init__(self, config: CARNConfig | None = None) -> None:
        super().__init__()
        cfg = config or CARNConfig()
        self.config = cfg
        c = cfg.channels
        self.sub_mean = MeanShift(sign=-1)
        self.add_mean = MeanShift(sign=1)
        self.entry = nn.Conv2d(3, c, 3, 1, 1)
        for i in range(cfg.num_blocks):
            self.add_module(f"b{i + 1}", CascadingBlock(cfg))
            if cfg.global_cascade:
                self.add_module(f"c{i + 1}", CascadeFusion(c * (i + 2), c))
        up_groups = cfg.groups if cfg.block == "residual_e" else 1
        self.upsample = Upsampler(c, cfg.scales, up_groups)
        self.exit = nn.Conv2d(c, 3, 3, 1, 1)
        init_uniform_(self)

    @property
    def scales(self) -> tuple[int, ...]:
        return self.config.scales

    def _resolve_scale(self, scale: int | None) -> int:
        if scale is None:
            if self.config.multi_scale:
                raise ValueError(f"multi-scale model: pass scale, one of {list(self.scales)}")
            return self.scales[0]
        if scale not in self.scales:
            raise ValueError(f"scale x{scale} not available; this model has {list(self.scales)}")
        return scale

    def forward(self, x: torch.Tensor, scale: int | None = None) -> torch.Tensor:
        s = self._resolve_scale(scale)
        x = self.entry(self.sub_mean(x))
        parts, out = [x], x
        for i in range(self.config.num_blocks):
            y = getattr(self, f"b{i + 1}")(out)
            if self.config.global_cascade:
                parts.append(y)
                out = getattr(self, f"c{i + 1}")(parts)
            else:
                out = y
        out = self.upsample(out, s)
        return self.add_mean(self.exit(out))

    def single_scale(self, scale: int) -> CARN:
        """A single-scale copy holding the body and only the ``scale`` branch (for export)."""
        s = self._resolve_scale(scale)
        if not self.config.multi_scale:
            return copy.deepcopy(self)
        out = CARN(replace(self.config, scales=(s,)))
        out.load_state_dict(single_scale_state(self.state_dict(), s), strict=True)
        out.arch = self.arch
        return out.train(self.training)


def single_scale_state(state: Mapping[str, torch.Tensor], scale: int) -> dict[str, torch.Tensor]:
    """A multi-scale state dict reduced to the body and the ``up{scale}`` branch, renamed to the
    single-scale layout's ``upsample.up.`` (the layout of the authors' single-scale files)."""
    prefix = f"upsample.up{scale}."
    return {
        k.replace(prefix, "upsample.up.", 1): v
        for k, v in state.items()
        if not k.startswith("upsample.") or k.startswith(prefix)
    }


def init_uniform_(model: nn.Module) -> None:
    """Sec. 4.2 init: every conv weight and bias ~ U(-k, k) with k = 1/sqrt(c_in).

    The paper defines c_in as the number of input feature channels, so the kernel size is
    not part of k (unlike PyTorch's default fan-in). The frozen mean shifts are left alone.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m.weight.requires_grad:
            k = 1.0 / math.sqrt(m.in_channels)
            nn.init.uniform_(m.weight, -k, k)
            if m.bias is not None:
                nn.init.uniform_(m.bias, -k, k)


def count_params(model: nn.Module) -> int:
    """Learned parameters: every parameter but the fixed mean-shift convs', as in the paper.

    Decided by structure, not ``requires_grad``, so a model frozen for inference counts the same.
    """
    fixed = {id(p) for m in model.modules() if isinstance(m, MeanShift) for p in m.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in fixed)


def config_dict(model: CARN) -> dict:
    """The model's config as a JSON-friendly dict."""
    d = asdict(model.config)
    d["scales"] = list(d["scales"])
    return d


def _build(base: CARNConfig, overrides: dict) -> CARN:
    # ``scale=4`` is accepted as shorthand for a single-scale ``scales=(4,)`` model.
    if "scale" in overrides:
        if "scales" in overrides:
            raise ValueError("pass either scale or scales, not both")
        overrides["scales"] = (int(overrides.pop("scale")),)
    if "scales" in overrides:
        overrides["scales"] = tuple(int(s) for s in overrides["scales"])
    return CARN(replace(base, **overrides))


CARN_CONFIG = CARNConfig()
CARN_M_CONFIG = CARNConfig(block="residual_e", groups=4, recursive=True)


@register_model("carn")
def carn(**overrides) -> CARN:
    """CARN (Sec. 3.1-3.2): 1.59 M params multi-scale."""
    return _build(CARN_CONFIG, overrides)


@register_model("carn-m")
def carn_m(**overrides) -> CARN:
    """CARN-M (Sec. 3.3): residual-E blocks, G=4, recursive; 0.41 M params multi-scale."""
    return _build(CARN_M_CONFIG, overrides)


@register_model("carn-nl")
def carn_nl(**overrides) -> CARN:
    """Table 2 ablation: CARN without local cascading."""
    return _build(replace(CARN_CONFIG, local_cascade=False), overrides)


@register_model("carn-ng")
def carn_ng(**overrides) -> CARN:
    """Table 2 ablation: CARN without global cascading."""
    return _build(replace(CARN_CONFIG, global_cascade=False), overrides)


@register_model("carn-resnet")
def carn_resnet(**overrides) -> CARN:
    """Table 2 baseline: plain ResNet of the same depth (no local or global cascading)."""
    return _build(replace(CARN_CONFIG, local_cascade=False, global_cascade=False), overrides)
