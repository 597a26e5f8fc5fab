"""The DCR forms of the upsampler are exact rewrites of PyTorch's CRD PixelShuffle."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from carn_mobile.export.depth_to_space import (
    DCRStage,
    dcr_channel_order,
    depth_to_space_dcr,
    with_dcr_upsampler,
)
from carn_mobile.export.wrapper import per_scale_module
from carn_mobile.models import build_model
from carn_mobile.weights import load_model


@pytest.mark.parametrize("block", [2, 3])
def test_dcr_of_reordered_channels_is_pixel_shuffle(block: int) -> None:
    x = torch.randn(2, 5 * block * block, 4, 6)
    order = dcr_channel_order(x.shape[1], block)
    assert sorted(order.tolist()) == list(range(x.shape[1]))  # a permutation
    assert torch.equal(depth_to_space_dcr(x[:, order], block), nn.functional.pixel_shuffle(x, block))
    # ...and DCR of the channels as they are is not the same thing
    assert not torch.equal(depth_to_space_dcr(x, block), nn.functional.pixel_shuffle(x, block))


@pytest.mark.parametrize("arch, groups", [("carn-m", 4), ("carn", 1)])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_dcr_upsampler_matches_the_module(arch: str, groups: int, scale: int) -> None:
    net = load_model("carn-m") if arch == "carn-m" else build_model("carn", scales=(2, 3, 4))
    module = per_scale_module(net, scale)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    dcr = with_dcr_upsampler(module)
    stages = [m for m in dcr.modules() if isinstance(m, DCRStage)]
    assert len(stages) == (2 if scale == 4 else 1)
    assert all(len(s.convs) == groups for s in stages)  # a grouped conv becomes one conv per group
    x = torch.rand(1, 3, 13, 17, generator=torch.Generator().manual_seed(scale))
    with torch.no_grad():
        assert (dcr(x) - module(x)).abs().max().item() < 1e-5
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())  # the original is untouched
