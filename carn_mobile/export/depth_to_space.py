"""Exact DCR forms of the upsampler's PixelShuffle, for runtimes whose accelerators want them.

PyTorch's ``PixelShuffle`` is depth-to-space in CRD order (channel ``c * r*r + i*r + j`` goes to
sub-pixel ``(i, j)`` of output channel ``c``). ONNX ``DepthToSpace`` in DCR mode and LiteRT's
``DEPTH_TO_SPACE`` read channel ``(i*r + j) * C + c`` instead; ORT's NNAPI execution provider and
Core ML's NeuralNetwork EP take DCR only, and LiteRT has no CRD op at all. Permuting the output
channels of the conv before each shuffle makes DCR compute exactly what CRD computed: the same
products and sums, only written to other channels.

A grouped conv (CARN-M's upsampler, 4 groups) cannot take that permutation as one grouped conv
(DCR interleaves channels of every group), so each group becomes its own conv with its own
depth-to-space, and the per-group outputs are concatenated: output channels ``16g..16g+15``
come from group ``g`` alone, in order. Same multiply-adds, one extra concat at high resolution.

:func:`with_dcr_upsampler` applies this to an exportable module; the runtime-specific op that
computes DCR depth-to-space is passed in as :class:`DCROps` (an ONNX ``DepthToSpace`` node, LiteRT ops).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..models.blocks import UpsampleBranch
from .wrapper import SuperResolver


class DCROps:
    """How a runtime computes a DCR stage: the per-group split and the depth-to-space.

    The default is plain PyTorch (for eager checks); a target subclasses it to emit its own
    ops (ONNX ``DepthToSpace`` mode DCR, LiteRT ``SPLIT`` and ``DEPTH_TO_SPACE``). Taking the
    parts together lets a runtime keep its own layout across the concat (LiteRT: NHWC throughout).
    """

    def split(self, x: torch.Tensor, groups: int) -> list[torch.Tensor]:
        """``x`` NCHW cut into ``groups`` equal channel blocks."""
        return list(x.chunk(groups, dim=1))

    def depth_to_space_one(self, x: torch.Tensor, block: int) -> torch.Tensor:
        """DCR depth-to-space of one NCHW tensor."""
        return depth_to_space_dcr(x, block)

    def depth_to_space(self, parts: list[torch.Tensor], block: int) -> torch.Tensor:
        """DCR depth-to-space of each NCHW part, concatenated along channels."""
        outs = [self.depth_to_space_one(p, block) for p in parts]
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)


#: Graph forms of the upsampler a target may offer (manifest value ``depth_to_space``).
FORMS = ("crd", "dcr")


def depth_to_space_dcr(x: torch.Tensor, block: int) -> torch.Tensor:
    """Reference DCR depth-to-space of one NCHW tensor in plain PyTorch (rank-6 reshape)."""
    n, c, h, w = x.shape
    r = block
    y = x.reshape(n, r, r, c // (r * r), h, w).permute(0, 3, 4, 1, 5, 2)
    return y.reshape(n, c // (r * r), h * r, w * r)


def dcr_channel_order(out_channels: int, block: int) -> torch.Tensor:
    """Index ``k`` such that ``conv.weight[k]`` reorders a CRD conv's filters into DCR order.

    DCR channel ``(i*r + j) * C + c`` must hold what CRD channel ``c * r*r + i*r + j`` held.
    """
    r2 = block * block
    c = out_channels // r2
    sub = torch.arange(r2).repeat_interleave(c)  # i*r + j of each DCR channel
    base = torch.arange(c).repeat(r2)  # c of each DCR channel
    return base * r2 + sub


class DCRStage(nn.Module):
    """``conv -> ReLU -> PixelShuffle(r)`` of one upsampler stage, computed with DCR depth-to-space.

    ``ops`` computes the split and depth-to-space; a grouped conv becomes one conv per group.
    """

    def __init__(self, conv: nn.Conv2d, block: int, ops: DCROps, relu: bool = True) -> None:
        super().__init__()
        self.block = block
        self.relu = relu
        self.groups = conv.groups
        self.ops = ops
        in_per_group = conv.in_channels // conv.groups
        out_per_group = conv.out_channels // conv.groups
        order = dcr_channel_order(out_per_group, block)
        self.convs = nn.ModuleList()
        for g in range(conv.groups):
            part = nn.Conv2d(in_per_group, out_per_group, conv.kernel_size, conv.stride, conv.padding)
            rows = slice(g * out_per_group, (g + 1) * out_per_group)
            with torch.no_grad():
                part.weight.copy_(conv.weight[rows][order])
                part.bias.copy_(conv.bias[rows][order])
            self.convs.append(part)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = self.ops.split(x, self.groups) if self.groups > 1 else [x]
        outs = [conv(p) for conv, p in zip(self.convs, parts, strict=True)]
        return self.ops.depth_to_space([torch.relu(o) for o in outs] if self.relu else outs, self.block)


def _dcr_branch(branch: UpsampleBranch, ops: DCROps) -> nn.Sequential:
    layers = list(branch.body)
    stages: list[nn.Module] = []
    for i in range(0, len(layers), 3):
        conv, relu, shuffle = layers[i : i + 3]
        if not (isinstance(conv, nn.Conv2d) and isinstance(relu, nn.ReLU)):
            raise TypeError(f"unexpected upsampler stage {[type(m).__name__ for m in layers[i:i + 3]]}")
        if isinstance(shuffle, nn.PixelShuffle):
            stages.append(DCRStage(conv, shuffle.upscale_factor, ops))
        elif isinstance(shuffle, nn.Identity):  # the exit-before-shuffle rewrite moved this shuffle
            stages += [conv, relu]
        else:
            raise TypeError(f"unexpected upsampler stage {[type(m).__name__ for m in layers[i:i + 3]]}")
    return nn.Sequential(*stages)


def with_dcr_upsampler(module: SuperResolver, ops: DCROps | None = None) -> SuperResolver:
    """A copy of ``module`` whose upsampler uses DCR depth-to-space (exact; ``module`` unchanged).

    Takes the plain module and the rewritten one (``carn_mobile.export.rewrites``) alike: a
    shuffle moved after the exit conv becomes a DCR stage of that conv.
    """
    from .rewrites import ShuffledExit

    ops = ops or DCROps()
    out = copy.deepcopy(module)
    upsample = out.net.upsample
    for child in list(upsample.children()):
        if isinstance(child, UpsampleBranch):
            child.body = _dcr_branch(child, ops)
    if isinstance(out.net.exit, ShuffledExit):
        out.net.exit = DCRStage(out.net.exit.conv, out.net.exit.shuffle.upscale_factor, ops, relu=False)
    return out.eval()
