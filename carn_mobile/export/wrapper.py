"""The per-scale module every target exports: one upsampling branch, output clamped to [0, 1]."""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..models import CARN, count_params
from ..precision import get_precision


class SuperResolver(nn.Module):
    """``lr`` (N, 3, H, W) in [0, 1] -> ``sr`` (N, 3, sH, sW) in [0, 1] for one fixed scale.

    Holds a single-scale copy of the network, so an exported graph carries only the body and
    the one upsampling branch it uses. The clamp is part of the graph so every runtime
    returns values in the contract's range.
    """

    def __init__(self, net: CARN) -> None:
        super().__init__()
        if len(net.scales) != 1:
            raise ValueError(f"SuperResolver needs a single-scale network, got scales {list(net.scales)}")
        self.net = net
        self.scale = net.scales[0]

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.net(lr).clamp(0.0, 1.0)


class HalfPrecision(nn.Module):
    """Computes a module in float16 while keeping the contract's float32 input and output."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.inner = copy.deepcopy(module).half().eval()

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.inner(lr.to(torch.float16)).to(torch.float32)


def graph_for_precision(module: nn.Module, precision: str) -> nn.Module:
    """``module`` as a target should trace it for ``precision`` (the table's compute dtype)."""
    compute = get_precision(precision).compute_dtype
    if compute == "float32":
        return module
    if compute == "float16":
        return HalfPrecision(module)
    raise ValueError(f"no float graph computes in {compute}; the target must handle {precision} itself")


def per_scale_module(model: CARN, scale: int) -> SuperResolver:
    """The exportable module for ``scale`` of ``model`` (a copy; ``model`` is not modified).

    Raises ``ValueError`` when the weights have no branch for ``scale``.
    """
    if scale not in model.scales:
        raise ValueError(f"the weights have no x{scale} branch (they have {', '.join(f'x{s}' for s in model.scales)})")
    return SuperResolver(model.single_scale(scale).eval()).eval()


def weight_counts(module: nn.Module) -> tuple[int, int]:
    """(trainable parameters, all state elements incl. the frozen mean shifts) of ``module``."""
    trainable = count_params(module)
    total = sum(t.numel() for t in module.state_dict().values())
    return trainable, total


def count_conv_calls(module: nn.Module, size: int = 8) -> int:
    """How many convolutions one forward pass runs (the recursive CARN-M reuses modules)."""
    calls = 0

    def hook(*_args) -> None:
        nonlocal calls
        calls += 1

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            module(torch.zeros(1, 3, size, size))
    finally:
        for h in handles:
            h.remove()
    return calls
