"""CARN-family architecture: exact parameter counts, layout, shapes and variants."""

from __future__ import annotations

import pytest
import torch

from carn_mobile.models import CARNConfig, build_model, carn, carn_m, count_params, list_models


@pytest.mark.parametrize(
    ("name", "overrides", "expected"),
    [
        ("carn", {}, 1_591_939),
        ("carn-m", {}, 414_787),
        ("carn", {"scale": 4}, 1_111_875),
        ("carn-m", {"scale": 4}, 294_147),
    ],
)
def test_param_counts_match_the_paper(name, overrides, expected):
    assert count_params(build_model(name, **overrides)) == expected


def test_mean_shifts_are_frozen_and_excluded():
    m = carn_m()
    frozen = [n for n, p in m.named_parameters() if not p.requires_grad]
    assert sorted(frozen) == sorted(
        ["sub_mean.shifter.weight", "sub_mean.shifter.bias", "add_mean.shifter.weight", "add_mean.shifter.bias"]
    )
    assert sum(p.numel() for p in m.parameters()) - count_params(m) == 24


def test_registry_lists_paper_variants():
    assert {"carn", "carn-m", "carn-nl", "carn-ng", "carn-resnet"} <= set(list_models())
    with pytest.raises(ValueError, match="unknown model 'srcnn'"):
        build_model("srcnn")


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("name", ["carn", "carn-m", "carn-nl", "carn-ng", "carn-resnet"])
def test_output_shape_is_scaled_input(name, scale):
    m = build_model(name).eval()
    with torch.no_grad():
        y = m(torch.rand(2, 3, 7, 10), scale)
    assert y.shape == (2, 3, 7 * scale, 10 * scale)


def test_recursive_model_shares_one_block_per_cascading_block():
    keys = carn_m().state_dict().keys()
    assert any(k.startswith("b1.b1.body.") for k in keys)
    assert not any(k.startswith("b1.b2.") or k.startswith("b1.b3.") for k in keys)
    not_recursive = carn_m(recursive=False).state_dict().keys()
    assert any(k.startswith("b1.b3.body.4.") for k in not_recursive)
    assert count_params(carn_m(recursive=False)) > count_params(carn_m())


def test_ablations_drop_the_cascading_convs():
    nl = build_model("carn-nl").state_dict().keys()
    ng = build_model("carn-ng").state_dict().keys()
    assert not any(".c1." in k for k in nl) and any(k.startswith("c1.") for k in nl)
    assert not any(k.startswith("c1.") for k in ng) and any(k.startswith("b1.c1.") for k in ng)


@pytest.mark.parametrize("groups", [1, 2, 4, 8, 16, 64])
def test_group_size_is_configurable(groups):
    m = carn_m(groups=groups)
    assert m.b1.b1.body[0].groups == groups
    assert m.upsample.up2.body[0].groups == groups
    assert m(torch.rand(1, 3, 5, 6), 2).shape == (1, 3, 10, 12)


def test_larger_groups_mean_fewer_params():
    counts = [count_params(carn_m(groups=g)) for g in (1, 2, 4, 8)]
    assert counts == sorted(counts, reverse=True)


@pytest.mark.parametrize(
    "bad", [{"groups": 3}, {"groups": 0}, {"scales": (5,)}, {"scales": ()}, {"block": "dense"}, {"channels": 0}]
)
def test_invalid_configs_are_rejected(bad):
    with pytest.raises(ValueError):
        CARNConfig(**bad)


def test_scale_is_checked():
    with pytest.raises(ValueError, match="x8 not available"):
        carn_m()(torch.rand(1, 3, 4, 4), 8)
    with pytest.raises(ValueError, match="pass scale"):
        carn_m()(torch.rand(1, 3, 4, 4))
    assert carn(scale=3)(torch.rand(1, 3, 4, 4)).shape[-1] == 12


def test_uniform_init_bounds_follow_input_channels():
    torch.manual_seed(0)
    m = carn()
    fuse = m.c3.body[0]  # 256 input channels -> k = 1/16
    assert fuse.weight.abs().max() <= 1 / 16
    assert fuse.weight.abs().max() > 0.9 / 16  # uniform over the whole range, not a narrower default
    entry = m.entry  # 3 input channels -> k = 1/sqrt(3)
    assert entry.weight.abs().max() > 0.5


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_single_scale_copy_matches_branch(scale):
    m = carn_m().eval()
    single = m.single_scale(scale).eval()
    assert single.scales == (scale,)
    assert not any(k.startswith(f"upsample.up{s}.") for k in single.state_dict() for s in (2, 3, 4))
    x = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        assert torch.equal(single(x), m(x, scale))
