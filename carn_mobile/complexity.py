"""Parameter and Mult-Add counting the paper's way (Sec. 4.3, Fig. 4).

Mult-Adds are the multiply-accumulates of every convolution for one image whose *output*
is ``hr_width x hr_height``. The LR input is ``HR / scale`` and may be fractional (x3 at
1280x720 gives a 426.67 x 240 input), as in the paper, so the count is taken per LR pixel on a
small exact input and multiplied by the fractional LR area. Every layer of a CARN scales
linearly with the LR area, which makes this exact. The frozen mean-shift 1x1 convs are
excluded, like their parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .models import CARN, count_params
from .sizes import WxH

#: The paper's output size for Mult-Adds (Sec. 4.3): 720p.
PAPER_HR = WxH(1280, 720)

#: LR side used for counting: any size works, 12 keeps it fast and divisible.
_PROBE = 12
_EXCLUDED = ("sub_mean", "add_mean")


@dataclass(frozen=True)
class LayerCost:
    """One top-level layer of a per-scale model: its trainable params and Mult-Adds."""

    name: str
    kind: str
    params: int
    mult_adds: float


def _flops_by_module(model: CARN, scale: int) -> dict[str, int]:
    # FlopCounterMode reports 2 FLOPs per multiply-accumulate for convolutions.
    counter = FlopCounterMode(display=False, depth=None)
    x = torch.zeros(1, 3, _PROBE, _PROBE)
    with counter, torch.no_grad():
        model(x, scale)
    return {name: sum(ops.values()) // 2 for name, ops in counter.get_flop_counts().items()}


def _lr_area(scale: int, hr: WxH) -> float:
    return (hr.width / scale) * (hr.height / scale)


def layer_costs(model: CARN, scale: int, hr: WxH = PAPER_HR) -> list[LayerCost]:
    """Params and Mult-Adds of each top-level layer used at ``scale`` (mean shifts excluded)."""
    per_module = _flops_by_module(model, scale)
    root = type(model).__name__
    factor = _lr_area(scale, WxH(*hr)) / (_PROBE * _PROBE)
    rows = []
    for name, module in model.named_children():
        if name in _EXCLUDED:
            continue
        if name == "upsample":
            module = model.upsample.branch(scale)
            key = f"{root}.upsample"
            name = f"upsample (x{scale})"
        else:
            key = f"{root}.{name}"
        rows.append(LayerCost(name, type(module).__name__, count_params(module), per_module.get(key, 0) * factor))
    return rows


def mult_adds(model: CARN, scale: int, hr: WxH = PAPER_HR) -> float:
    """Multiply-accumulates to produce one ``hr`` (width first) image at ``scale``."""
    return sum(r.mult_adds for r in layer_costs(model, scale, hr))


def params_for_scale(model: CARN, scale: int) -> int:
    """Trainable params of the per-scale network: the body plus the one ``scale`` branch."""
    body = sum(count_params(m) for n, m in model.named_children() if n != "upsample")
    return body + count_params(model.upsample.branch(scale))


def describe(model: nn.Module) -> str:
    """One-line architecture summary of a CARN config."""
    cfg = model.config
    parts = [
        f"{cfg.num_blocks} cascading blocks x {cfg.units_per_block} "
        + ("residual-E" if cfg.block == "residual_e" else "residual")
        + " blocks",
        f"{cfg.channels} channels",
        f"groups={cfg.groups}",
        "recursive" if cfg.recursive else "not recursive",
        "local cascading" if cfg.local_cascade else "no local cascading",
        "global cascading" if cfg.global_cascade else "no global cascading",
        "scales " + "/".join(f"x{s}" for s in cfg.scales),
    ]
    return ", ".join(parts)
