"""Exact graph rewrites of the per-scale module, applied once before any target traces it.

Each rewrite computes what the network computes, up to float rounding (same products, other
summation order, or an identity written as a cheaper op), so parity against the unmodified
PyTorch module stays the gate. They are applied to a copy in :func:`optimized_module`, which
every target's export goes through (``carn-export --no-optimize`` skips them), and the names
applied are recorded in the manifest. Which rewrites are on by default, and why, was decided
by measurement: see ``benchmarks/profile-x86_64-2core`` and docs/export.md ("Graph rewrites").
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..models.blocks import CascadeFusion, MeanShift, UpsampleBranch
from .wrapper import SuperResolver


@dataclass(frozen=True)
class Rewrite:
    """One exact rewrite: a name for manifests and ``--rewrites``, what it does, and how."""

    name: str
    summary: str
    #: Rewrites the module in place (it is always a private copy); returns how many sites changed.
    apply: Callable[[SuperResolver], int]


class PartwiseFusion(nn.Module):
    """A :class:`CascadeFusion` computed as a sum of 1x1 convs, one per part (linearity).

    ``conv(cat(p0, p1, ...)) == conv_0(p0) + conv_1(p1) + ...`` where ``conv_i`` holds the
    input channels of part ``i``; the bias goes with the first. No concatenation is materialised,
    and a runtime that fuses ``Conv + Add (+ ReLU)`` accumulates each part into one buffer.
    """

    def __init__(self, fusion: CascadeFusion, widths: Sequence[int]) -> None:
        super().__init__()
        conv = fusion.body[0]
        if sum(widths) != conv.in_channels:
            raise ValueError(f"parts of {list(widths)} channels do not make the {conv.in_channels} the conv takes")
        self.convs = nn.ModuleList()
        start = 0
        for i, width in enumerate(widths):
            part = nn.Conv2d(width, conv.out_channels, 1, 1, 0, bias=i == 0)
            with torch.no_grad():
                part.weight.copy_(conv.weight[:, start : start + width])
                if i == 0:
                    part.bias.copy_(conv.bias)
            self.convs.append(part)
            start += width

    def forward(self, parts: list[torch.Tensor]) -> torch.Tensor:
        total = self.convs[0](parts[0])
        for conv, part in zip(self.convs[1:], parts[1:], strict=True):
            total = total + conv(part)
        return torch.relu(total)


class ShuffledExit(nn.Module):
    """The exit conv applied before the last PixelShuffle (see :func:`exit_before_shuffle`)."""

    def __init__(self, conv: nn.Conv2d, block: int) -> None:
        super().__init__()
        self.conv = conv
        self.shuffle = nn.PixelShuffle(block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))


def shuffled_exit_weight(exit_weight: torch.Tensor, block: int) -> torch.Tensor:
    """The 3x3 conv on the pre-shuffle tensor that equals ``exit_weight`` (3x3) after PixelShuffle(r).

    HR pixel ``(r*h + i, r*w + j)`` with tap offset ``(u, v)`` reads HR pixel ``r*h + i + u``,
    which is LR row ``h + (i + u) // r`` at sub-row ``(i + u) % r`` (CRD channel ``c*r*r + a*r + b``).
    For ``r >= 2`` every such LR offset is -1, 0 or 1, so a 3x3 kernel holds every tap; HR zero
    padding is LR zero padding, so borders match too. Output channel ``o*r*r + i*r + j`` is
    colour ``o`` at sub-pixel ``(i, j)``: PixelShuffle(r) after it gives the HR image.
    """
    r = block
    cout, cin = exit_weight.shape[:2]
    if exit_weight.shape[2:] != (3, 3) or r < 2:
        raise ValueError("the exit conv must be 3x3 and the shuffle at least 2")
    w = exit_weight.new_zeros(cout * r * r, cin * r * r, 3, 3)
    for i in range(r):
        for j in range(r):
            for u in (-1, 0, 1):
                a, dy = (i + u) % r, (i + u) // r
                for v in (-1, 0, 1):
                    b, dx = (j + v) % r, (j + v) // r
                    rows = torch.arange(cout) * r * r + i * r + j
                    cols = torch.arange(cin) * r * r + a * r + b
                    w[rows[:, None], cols[None, :], dy + 1, dx + 1] += exit_weight[:, :, u + 1, v + 1]
    return w


class PaddedExit(nn.Module):
    """A :class:`ShuffledExit` whose conv has zero-weight output channels appended, sliced off
    before the shuffle (see :func:`pad_exit_channels`)."""

    def __init__(self, conv: nn.Conv2d, channels: int, block: int) -> None:
        super().__init__()
        self.conv, self.channels = conv, channels
        self.shuffle = nn.PixelShuffle(block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x)[:, : self.channels])


#: Output-channel multiple int8 convolution kernels tile by (measured: see pad_exit_channels).
CHANNEL_TILE = 16
#: Grouped convs with fewer output channels per group than this run faster dense (int8; measured).
DENSE_GROUP_WIDTH = 32


def pad_exit_channels(module: SuperResolver) -> int:
    """Pad the shuffled exit conv to a multiple of :data:`CHANNEL_TILE` output channels.

    The appended channels have zero weights and are sliced off, so the result is exact. For
    int8 it pays: onnxruntime's int8 conv took 120 ms for 256 -> 12 channels at 640x360 and 38
    ms for 256 -> 16 (float32: 97 and 106 ms), one 2-core AVX-512-VNNI machine.
    """
    net = module.net
    if not isinstance(net.exit, ShuffledExit) or net.exit.conv.out_channels % CHANNEL_TILE == 0:
        return 0
    old = net.exit.conv
    padded = -(-old.out_channels // CHANNEL_TILE) * CHANNEL_TILE
    conv = nn.Conv2d(old.in_channels, padded, old.kernel_size, old.stride, old.padding)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[: old.out_channels] = old.weight
        conv.bias[: old.out_channels] = old.bias
    net.exit = PaddedExit(conv, old.out_channels, net.exit.shuffle.upscale_factor)
    return 1


def dense_groups(module: SuperResolver) -> int:
    """Grouped convs with fewer than :data:`DENSE_GROUP_WIDTH` output channels per group become
    dense convs with block-diagonal weights (the added products are with zeros: exact).

    For int8 it pays: a 64 -> 64 3x3 conv in 4 groups took 13.6 ms in onnxruntime's int8 kernels
    at 320x180, dense 8.6 ms (float32: 12.4 and 23.0 ms); 64 -> 256 in 4 groups stays grouped
    (22.0 vs 28.6 ms dense).
    """
    replaced: dict[int, nn.Conv2d] = {}  # the recursive blocks share modules: keep them shared
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if not (isinstance(child, nn.Conv2d) and child.groups > 1
                    and child.out_channels // child.groups < DENSE_GROUP_WIDTH):
                continue
            if id(child) in replaced:
                setattr(parent, name, replaced[id(child)])
                continue
            g, cin, cout = child.groups, child.in_channels, child.out_channels
            dense = nn.Conv2d(cin, cout, child.kernel_size, child.stride, child.padding, child.dilation,
                              bias=child.bias is not None)
            with torch.no_grad():
                dense.weight.zero_()
                for k in range(g):
                    rows, cols = slice(k * cout // g, (k + 1) * cout // g), slice(k * cin // g, (k + 1) * cin // g)
                    dense.weight[rows, cols] = child.weight[rows]
                if child.bias is not None:
                    dense.bias.copy_(child.bias)
            replaced[id(child)] = dense
            setattr(parent, name, dense)
    return len(replaced)


def fold_output_mean(module: SuperResolver) -> int:
    """Fold the add-mean 1x1 conv after the exit conv into the exit conv's weights and bias.

    ``A (W x + b) + c == (A W) x + (A b + c)``: the full-resolution add-mean disappears.
    """
    net = module.net
    if not (isinstance(net.add_mean, MeanShift) and isinstance(net.exit, nn.Conv2d)):
        return 0
    a = net.add_mean.shifter.weight.flatten(1)  # (3, 3)
    c = net.add_mean.shifter.bias
    with torch.no_grad():
        w = net.exit.weight
        net.exit.weight.copy_(torch.einsum("oc,cikl->oikl", a, w))
        net.exit.bias.copy_(a @ net.exit.bias + c)
    net.add_mean = nn.Identity()
    return 1


def cascade_as_sum(module: SuperResolver) -> int:
    """Every cascading fusion (local and global) as a sum of per-part 1x1 convs (no concat)."""
    changed = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, CascadeFusion):
                width = module.net.config.channels
                parts = child.body[0].in_channels // width
                setattr(parent, name, PartwiseFusion(child, [width] * parts))
                changed += 1
    return changed


def exit_before_shuffle(module: SuperResolver) -> int:
    """Swap the last PixelShuffle and the exit conv: the exit runs on the pre-shuffle tensor
    (:func:`shuffled_exit_weight`) and only its 3*r*r channels are shuffled.

    The 64-channel full-resolution tensor is never formed: the big depth-to-space (31% of
    onnxruntime's time for CARN-M x4) becomes one of 3*r*r channels. The exit conv does r*r
    times the multiply-adds (the added ones are products with zero weights).
    """
    net = module.net
    if not isinstance(net.exit, nn.Conv2d):
        return 0
    changed = 0
    for branch in net.upsample.modules():
        if isinstance(branch, UpsampleBranch) and isinstance(branch.body[-1], nn.PixelShuffle):
            r = branch.body[-1].upscale_factor
            if r < 2 or net.exit.kernel_size != (3, 3):
                continue
            conv = nn.Conv2d(net.exit.in_channels * r * r, net.exit.out_channels * r * r, 3, 1, 1)
            with torch.no_grad():
                conv.weight.copy_(shuffled_exit_weight(net.exit.weight, r))
                conv.bias.copy_(net.exit.bias.repeat_interleave(r * r))
            branch.body[-1] = nn.Identity()
            net.exit = ShuffledExit(conv, r)
            changed += 1
    return changed


#: Every rewrite, by name, in the order they are applied.
REWRITES: dict[str, Rewrite] = {
    r.name: r
    for r in (
        Rewrite("fold-output-mean", "add-mean folded into the exit conv (exact)", fold_output_mean),
        Rewrite("cascade-as-sum", "concat -> 1x1 conv as a sum of per-part 1x1 convs (linearity)", cascade_as_sum),
        Rewrite("exit-before-shuffle", "exit conv moved before the last PixelShuffle (exact)", exit_before_shuffle),
        Rewrite("pad-exit", "shuffled exit conv padded to 16-channel multiples, sliced back (exact)",
                pad_exit_channels),
        Rewrite("dense-groups", "narrow grouped convs as dense block-diagonal convs (exact)", dense_groups),
    )
}

#: Applied by default (``carn-export`` without ``--no-optimize``): each paid in the measurements
#: of docs/export.md; the rewrites that did not pay were dropped (listed there with their numbers).
#: ``pad-exit`` and ``dense-groups`` pay in int8 kernels only (float32 convs got slower), so the
#: int8 recipe adds them (:mod:`carn_mobile.quantization.recipe`).
DEFAULT_REWRITES: tuple[str, ...] = ("fold-output-mean", "cascade-as-sum", "exit-before-shuffle")


def parse_rewrites(names: Sequence[str] | str | None) -> tuple[str, ...]:
    """Rewrite names checked against :data:`REWRITES`; ``None``/"default" -> the defaults, "none" -> ()."""
    if names is None:
        return DEFAULT_REWRITES
    if isinstance(names, str):
        text = names.strip().lower()
        if text == "default":
            return DEFAULT_REWRITES
        if text in ("none", ""):
            return ()
        names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in REWRITES]
    if unknown:
        raise ValueError(f"unknown rewrite {unknown[0]!r}; known rewrites: {', '.join(REWRITES)} (or default, none)")
    return tuple(n for n in REWRITES if n in names)  # the registry's order, each once


def optimized_module(module: SuperResolver, rewrites: Sequence[str] | None = None) -> tuple[SuperResolver, list[str]]:
    """A copy of ``module`` with ``rewrites`` applied (default :data:`DEFAULT_REWRITES`), and the
    names of those that changed something. ``module`` itself is left as it was."""
    names = parse_rewrites(rewrites)
    out = copy.deepcopy(module).eval()
    applied = [name for name in names if REWRITES[name].apply(out)]
    return out, applied
