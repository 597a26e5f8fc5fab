"""The reference executor's NumPy ops against PyTorch's own ops, on random inputs.

Pure NumPy/PyTorch: these run without coremltools.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from carn_mobile.mlprogram import UnsupportedOpError, apply_op, supported_ops
from carn_mobile.mlprogram.ops import conv_padding

RNG = np.random.default_rng(7)


def rand(*shape: int, dtype=np.float32) -> np.ndarray:
    return RNG.standard_normal(shape).astype(dtype)


def t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def torch_conv(x, w, b, strides, pads, dilations, groups):
    """PyTorch conv with MIL-style (possibly asymmetric) padding ``[top, bottom, left, right]``."""
    xt = F.pad(t(x), (pads[2], pads[3], pads[0], pads[1]))
    return F.conv2d(xt, t(w), None if b is None else t(b), stride=strides, dilation=dilations, groups=groups).numpy()


# --- conv -----------------------------------------------------------------------------------


@pytest.mark.parametrize("groups", [1, 2, 4, 8])
@pytest.mark.parametrize("kernel", [1, 2, 3, 5])
@pytest.mark.parametrize("pad_type", ["valid", "same", "same_lower", "custom"])
def test_conv_groups_and_padding_modes(groups, kernel, pad_type):
    x, w, b = rand(2, 8, 11, 9), rand(16, 8 // groups, kernel, kernel), rand(16)
    custom = (1, 2, 0, 3)
    out = apply_op("conv", x=x, weight=w, bias=b, pad_type=pad_type, pad=np.array(custom, np.int32), groups=groups)
    pads = conv_padding(pad_type, (11, 9), (kernel, kernel), (1, 1), (1, 1), custom)
    ref = torch_conv(x, w, b, (1, 1), pads, (1, 1), groups)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=2e-5)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # PyTorch's own note
@pytest.mark.parametrize("kernel", [2, 3, 4])
@pytest.mark.parametrize("dilation", [1, 2])
def test_conv_same_matches_torch_same_padding(kernel, dilation):
    x, w = rand(1, 4, 10, 7), rand(6, 4, kernel, kernel)
    out = apply_op("conv", x=x, weight=w, pad_type="same", dilations=np.array([dilation] * 2))
    ref = F.conv2d(t(x), t(w), padding="same", dilation=dilation).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("stride", [(2, 2), (2, 3), (3, 1)])
@pytest.mark.parametrize("pad_type", ["valid", "same", "same_lower"])
def test_conv_strides(stride, pad_type):
    x, w = rand(1, 6, 13, 10), rand(4, 3, 3, 3)
    out = apply_op("conv", x=x, weight=w, strides=np.array(stride), pad_type=pad_type, groups=2)
    pads = conv_padding(pad_type, (13, 10), (3, 3), stride, (1, 1))
    ref = torch_conv(x, w, None, stride, pads, (1, 1), 2)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=2e-5)
    if pad_type != "valid":  # MIL's 'same' contract: out = ceil(in / stride)
        assert out.shape[2:] == (-(-13 // stride[0]), -(-10 // stride[1]))


def test_conv_1d():
    x, w, b = rand(2, 4, 17), rand(6, 2, 3), rand(6)
    out = apply_op("conv", x=x, weight=w, bias=b, strides=np.array([2]), pad_type="same", groups=2)
    ref = F.conv1d(F.pad(t(x), (1, 1)), t(w), t(b), stride=2, groups=2).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=2e-5)


@settings(max_examples=40, deadline=None, database=None)
@given(
    groups=st.sampled_from([1, 2, 3]),
    cg=st.integers(1, 3),
    og=st.integers(1, 3),
    kh=st.integers(1, 4),
    kw=st.integers(1, 4),
    sh=st.integers(1, 3),
    sw=st.integers(1, 3),
    dh=st.integers(1, 2),
    dw=st.integers(1, 2),
    pads=st.tuples(*[st.integers(0, 2)] * 4),
    h=st.integers(8, 14),
    w=st.integers(8, 14),
)
def test_conv_random_configurations(groups, cg, og, kh, kw, sh, sw, dh, dw, pads, h, w):
    x, wt, b = rand(1, groups * cg, h, w), rand(groups * og, cg, kh, kw), rand(groups * og)
    out = apply_op(
        "conv",
        x=x,
        weight=wt,
        bias=b,
        strides=np.array([sh, sw]),
        dilations=np.array([dh, dw]),
        pad_type="custom",
        pad=np.array(pads),
        groups=groups,
    )
    ref = torch_conv(x, wt, b, (sh, sw), pads, (dh, dw), groups)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=2e-5)


def test_conv_large_output_is_banded(monkeypatch):
    # Force many row bands: the result must not depend on the im2col buffer size.
    from carn_mobile.mlprogram import ops

    x, w = rand(1, 8, 23, 17), rand(8, 2, 3, 3)
    whole = apply_op("conv", x=x, weight=w, pad_type="same", groups=4)
    monkeypatch.setattr(ops, "IM2COL_BYTES", 1)
    banded = apply_op("conv", x=x, weight=w, pad_type="same", groups=4)
    np.testing.assert_array_equal(whole, banded)


def test_conv_fp16_inputs_compute_in_float32():
    x, w, b = rand(1, 8, 9, 9, dtype=np.float16), rand(8, 2, 3, 3, dtype=np.float16), rand(8, dtype=np.float16)
    out = apply_op("conv", x=x, weight=w, bias=b, pad_type="same", groups=4)
    assert out.dtype == np.float32
    ref = torch_conv(x.astype(np.float32), w.astype(np.float32), b.astype(np.float32), (1, 1), (1, 1, 1, 1), (1, 1), 4)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    # Rounded once to fp16, it matches PyTorch's result rounded once, up to one fp16 ulp.
    diff = np.abs(out.astype(np.float16).astype(np.float32) - ref.astype(np.float16).astype(np.float32))
    assert np.all(diff <= np.spacing(np.abs(ref).astype(np.float16)).astype(np.float32))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"groups": 3}, "incompatible with groups"),
        ({"pad_type": "reflect"}, "unknown pad_type"),
        ({"pad_type": "custom", "pad": np.array([1, 1])}, "custom pad needs 4"),
    ],
)
def test_conv_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        apply_op("conv", x=rand(1, 4, 5, 5), weight=rand(4, 4, 3, 3), **kwargs)


def test_conv_padding_modes():
    assert conv_padding("valid", (10,), (3,), (1,), (1,)) == (0, 0)
    assert conv_padding("same", (10,), (4,), (1,), (1,)) == (1, 2)  # odd total: extra after
    assert conv_padding("same_lower", (10,), (4,), (1,), (1,)) == (2, 1)  # ... or before
    assert conv_padding("same", (10,), (3,), (2,), (1,)) == (0, 1)  # out = ceil(10 / 2) = 5
    assert conv_padding("same", (9,), (3,), (1,), (2,)) == (2, 2)  # dilated span 5


# --- element-wise ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "fn"),
    [
        ("add", torch.add),
        ("sub", torch.sub),
        ("mul", torch.mul),
        ("real_div", torch.div),
        ("maximum", torch.maximum),
        ("minimum", torch.minimum),
    ],
)
@pytest.mark.parametrize(
    ("xs", "ys"),
    [((2, 3, 4, 5), (2, 3, 4, 5)), ((2, 3, 4, 5), ()), ((1, 3, 1, 5), (2, 1, 4, 1)), ((4, 5), (3, 1, 1))],
)
def test_binary_ops_broadcast_like_torch(op, fn, xs, ys):
    x, y = rand(*xs), rand(*ys)
    out = apply_op(op, x=x, y=y)
    ref = fn(t(x), t(y)).numpy()
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-6)


@pytest.mark.parametrize("op", ["add", "sub", "mul", "real_div"])
def test_binary_fp16_equals_ieee_half_arithmetic(op):
    # Computing in float32 and rounding once gives exactly the correctly rounded fp16 result.
    x, y = rand(64, 64, dtype=np.float16), rand(64, 64, dtype=np.float16)
    y[np.abs(y) < 1e-2] = 1  # keep the quotients finite
    fn = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "real_div": torch.div}[op]
    ref = fn(t(x), t(y)).numpy()
    out = apply_op(op, x=x, y=y).astype(np.float16)
    np.testing.assert_array_equal(out, ref)


def test_binary_ops_reject_incompatible_shapes():
    with pytest.raises(ValueError):
        apply_op("add", x=rand(2, 3), y=rand(4))


def test_relu_and_clip():
    x = rand(2, 3, 5, 5) * 3
    np.testing.assert_array_equal(apply_op("relu", x=x), torch.relu(t(x)).numpy())
    alpha, beta = np.float32(-0.5), np.float32(1.25)
    np.testing.assert_array_equal(apply_op("clip", x=x, alpha=alpha, beta=beta), torch.clamp(t(x), -0.5, 1.25).numpy())
    x16 = x.astype(np.float16)
    clipped = apply_op("clip", x=x16, alpha=np.float16(0), beta=np.float16(1)).astype(np.float16)
    np.testing.assert_array_equal(clipped, torch.clamp(t(x16), 0, 1).numpy())


@pytest.mark.parametrize("dtype", ["fp16", "fp32", "int32", "bool"])
def test_cast(dtype):
    x = rand(3, 7) * 100
    x[0, :3] = [0.5, 1.5, 2.5]  # fp16 ties: round half to even, like torch
    torch_dtype = {"fp16": torch.float16, "fp32": torch.float32, "int32": torch.int32, "bool": torch.bool}[dtype]
    np.testing.assert_array_equal(apply_op("cast", x=x, dtype=dtype), t(x).to(torch_dtype).numpy())


def test_identity():
    x = rand(2, 3)
    np.testing.assert_array_equal(apply_op("identity", x=x), x)


# --- layout ---------------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat(axis):
    shapes = [(2, 3, 4), (2, 3, 4), (2, 3, 4)]
    parts = [rand(*s) for s in shapes]
    out = apply_op("concat", values=parts, axis=np.int32(axis))
    np.testing.assert_array_equal(out, torch.cat([t(p) for p in parts], dim=axis).numpy())
    inter = apply_op("concat", values=parts, axis=np.int32(axis), interleave=np.bool_(True))
    ref = torch.stack([t(p) for p in parts], dim=axis % 3 + 1).flatten(axis % 3, axis % 3 + 1).numpy()
    np.testing.assert_array_equal(inter, ref)


def test_concat_unequal_sizes_along_axis():
    parts = [rand(1, 2, 4, 4), rand(1, 5, 4, 4)]
    out = apply_op("concat", values=parts, axis=np.int32(1))
    np.testing.assert_array_equal(out, torch.cat([t(p) for p in parts], dim=1).numpy())


@pytest.mark.parametrize("factor", [2, 3])
def test_pixel_shuffle(factor):
    x = rand(2, 4 * factor * factor, 5, 3)
    out = apply_op("pixel_shuffle", x=x, upscale_factor=np.int32(factor))
    np.testing.assert_array_equal(out, F.pixel_shuffle(t(x), factor).numpy())


def _dcr_to_crd(channels_out: int, b: int) -> list[int]:
    # depth_to_space (DCR) reads sub-pixel (i, j) of channel c from channel (i*b + j)*C + c;
    # pixel_shuffle (CRD) from c*b*b + i*b + j. This maps each CRD channel to its DCR source.
    return [(k % (b * b)) * channels_out + k // (b * b) for k in range(channels_out * b * b)]


@pytest.mark.parametrize("block", [2, 3])
def test_depth_to_space_is_dcr(block):
    c_out = 3
    x = rand(2, c_out * block * block, 4, 5)
    out = apply_op("depth_to_space", x=x, block_size=np.int32(block))
    ref = F.pixel_shuffle(t(x)[:, _dcr_to_crd(c_out, block)], block).numpy()
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("block", [2, 3])
def test_space_to_depth_inverts_depth_to_space(block):
    x = rand(1, 2, 4 * block, 3 * block)
    out = apply_op("space_to_depth", x=x, block_size=np.int32(block))
    ref = F.pixel_unshuffle(t(x), block)[:, np.argsort(_dcr_to_crd(2, block))].numpy()
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(apply_op("depth_to_space", x=out, block_size=np.int32(block)), x)


@pytest.mark.parametrize("shape", [(6, 20), (-1, 5), (0, 3, -1), (2, 0, 2, 10), (120,)])
def test_reshape(shape):
    x = rand(2, 3, 4, 5)
    if 0 in shape:  # MIL: 0 copies the input dimension at that position
        torch_shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
        if len(shape) != x.ndim:
            with pytest.raises(ValueError, match="uses 0"):
                apply_op("reshape", x=x, shape=np.array(shape, np.int32))
            return
    else:
        torch_shape = list(shape)
    out = apply_op("reshape", x=x, shape=np.array(shape, np.int32))
    np.testing.assert_array_equal(out, t(x).reshape(torch_shape).numpy())


@pytest.mark.parametrize("perm", [(0, 2, 3, 1), (3, 2, 1, 0), (0, 1, 2, 3)])
def test_transpose(perm):
    x = rand(2, 3, 4, 5)
    out = apply_op("transpose", x=x, perm=np.array(perm, np.int32))
    np.testing.assert_array_equal(out, t(x).permute(*perm).numpy())


# --- registry -------------------------------------------------------------------------------


def test_unknown_op_is_named():
    with pytest.raises(UnsupportedOpError, match="'gelu'") as info:
        apply_op("gelu", x=rand(2))
    assert info.value.op_type == "gelu"


def test_supported_op_set_covers_our_exports():
    expected = {"const", "cast", "conv", "relu", "add", "sub", "mul", "real_div", "concat", "clip"}
    expected |= {"pixel_shuffle", "depth_to_space", "reshape", "transpose"}
    assert expected <= supported_ops()


# --- optional dependency --------------------------------------------------------------------


def test_loading_without_coremltools_names_the_extra(monkeypatch, tmp_path):
    from carn_mobile.mlprogram import load_program

    for name in ("coremltools", "coremltools.proto"):
        monkeypatch.setitem(sys.modules, name, None)  # makes `import coremltools...` fail
    with pytest.raises(ImportError, match=r'pip install "carn-mobile\[export\]"'):
        load_program(tmp_path / "model.mlpackage")
