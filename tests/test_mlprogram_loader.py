"""Loading saved ML programs: small programs built with coremltools' MIL builder.

These cover ops and settings our CARN exports do not emit (strided/dilated conv, depth_to_space,
reshape, transpose, real_div, ...), the package/IO errors, and the weight-file reader.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

ct = pytest.importorskip("coremltools", reason="coremltools is needed to build Core ML packages")
from coremltools.converters.mil import Builder as mb  # noqa: E402

from carn_mobile.mlprogram import (  # noqa: E402
    InputError,
    OpExecutionError,
    PackageError,
    ProgramStructureError,
    UnsupportedOpError,
    load_program,
    locate_spec,
    op_histogram,
    read_spec,
    run_program,
)
from carn_mobile.mlprogram.blob import BlobFile  # noqa: E402

RNG = np.random.default_rng(3)
W1 = RNG.standard_normal((8, 4, 3, 3)).astype(np.float32)
B1 = RNG.standard_normal(8).astype(np.float32)
W2 = RNG.standard_normal((4, 8, 2, 3)).astype(np.float32)


def kitchen_sink(x):
    """MIL builder body: a program exercising ops our CARN exports do not emit."""
    y = mb.conv(x=x, weight=W1, bias=B1, strides=[2, 2], pad_type="same", groups=2)
    y = mb.relu(x=y)
    z = mb.conv(x=x, weight=W2, pad_type="custom", pad=[1, 0, 2, 1], dilations=[2, 1])
    d = mb.depth_to_space(x=y, block_size=2)
    s = mb.space_to_depth(x=x, block_size=2)
    r = mb.transpose(x=mb.reshape(x=s, shape=[1, 32, 30]), perm=[0, 2, 1])
    r = mb.real_div(x=r, y=mb.add(x=mb.mul(x=r, y=r), y=np.float32(1.0)))  # a non-const divisor stays a real_div
    r = mb.minimum(x=mb.maximum(x=mb.sub(x=r, y=np.float32(0.25)), y=np.float32(-0.5)), y=np.float32(0.4))
    c = mb.clip(x=mb.concat(values=[d, mb.mul(x=d, y=np.float32(-3))], axis=1, interleave=True), alpha=-2.0, beta=2.0)
    return z, c, r


def torch_reference(x: np.ndarray) -> dict[str, np.ndarray]:
    """The kitchen-sink program written with PyTorch ops (DCR depth_to_space via pixel_shuffle)."""
    xt = torch.from_numpy(x)
    y = torch.relu(F.conv2d(F.pad(xt, (0, 1, 0, 1)), torch.from_numpy(W1), torch.from_numpy(B1), stride=2, groups=2))
    z = F.conv2d(F.pad(xt, (2, 1, 1, 0)), torch.from_numpy(W2), dilation=(2, 1))
    dcr = [(k % 4) * 2 + k // 4 for k in range(8)]
    d = F.pixel_shuffle(y[:, dcr], 2)
    s = F.pixel_unshuffle(xt, 2)[:, np.argsort([(k % 4) * 8 + k // 4 for k in range(32)])]
    r = s.reshape(1, 32, 30).permute(0, 2, 1)
    r = torch.clamp(r / (r * r + 1) - 0.25, -0.5, 0.4)
    c = torch.stack([d, d * -3], dim=2).flatten(1, 2).clamp(-2, 2)
    return {"conv_1": z.numpy(), "clip_0": c.numpy(), "minimum_0": r.numpy()}


def save(prog, path: Path, precision: str = "fp32", **kwargs) -> Path:
    model = ct.convert(
        prog,
        convert_to="mlprogram",
        minimum_deployment_target=ct.target.iOS16,
        compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32,
        **kwargs,
    )
    model.save(str(path))
    return path


@pytest.fixture(scope="module")
def sink_packages(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sink")
    prog = mb.program(input_specs=[mb.TensorSpec(shape=(1, 8, 12, 10))], opset_version=ct.target.iOS16)(kitchen_sink)
    return {p: save(prog, root / f"sink_{p}.mlpackage", p) for p in ("fp32", "fp16")}


@pytest.fixture
def sink_copy(sink_packages, tmp_path) -> Path:
    """A private copy of the fp32 package, free to damage."""
    return Path(shutil.copytree(sink_packages["fp32"], tmp_path / "copy.mlpackage"))


def test_kitchen_sink_fp32_matches_torch(sink_packages):
    prog = load_program(sink_packages["fp32"])
    hist = op_histogram(prog, include_const=False)
    for op in ("conv", "relu", "depth_to_space", "space_to_depth", "reshape", "transpose", "real_div"):
        assert op in hist, hist
    x = RNG.standard_normal((1, 8, 12, 10)).astype(np.float32)
    out = prog.run({"x": x})
    ref = torch_reference(x)
    assert set(out) == set(ref)
    for name in ref:
        assert out[name].dtype == np.float32
        np.testing.assert_allclose(out[name], ref[name], rtol=1e-5, atol=1e-5, err_msg=name)


def test_kitchen_sink_fp16_rounds_like_the_program(sink_packages):
    prog = load_program(sink_packages["fp16"])
    assert prog.precision == "fp16"
    assert op_histogram(prog)["cast"] >= 4  # fp32 input -> fp16, three fp16 outputs -> fp32
    convs = [op for op in prog.find_ops("conv")]
    weight = prog.constants[convs[0].inputs["weight"][0].name]
    assert weight.dtype == np.float16
    np.testing.assert_array_equal(weight, W1.astype(np.float16))
    x = RNG.standard_normal((1, 8, 12, 10)).astype(np.float32)
    out = run_program(sink_packages["fp16"], {"x": x})
    ref = torch_reference(x)
    for name in ref:
        assert out[name].dtype == np.float32  # cast back to the fp32 outputs
        np.testing.assert_allclose(out[name], ref[name], rtol=1e-2, atol=2e-2, err_msg=name)
        assert not np.array_equal(out[name], ref[name])  # fp16 rounding did happen


def test_io_summary_and_metadata(sink_packages):
    prog = load_program(sink_packages["fp32"])
    summary = prog.io_summary()
    assert summary["precision"] == "fp32" and summary["opset"] == "CoreML6"
    assert summary["inputs"] == [
        {
            "name": "x",
            "kind": "tensor",
            "type": "fp32[1,8,12,10]",
            "description_dtype": "FLOAT32",
            "shape_choices": [[1, 8, 12, 10]],
        }
    ]
    assert [o["name"] for o in summary["outputs"]] == ["conv_1", "clip_0", "minimum_0"]
    assert summary["outputs"][0]["type"] == "fp32[1,4,11,11]"
    assert "com.github.apple.coremltools.version" in prog.metadata
    json.dumps(summary)


def test_weight_reader_agrees_with_coremltools(sink_packages):
    storage = pytest.importorskip("coremltools.libmilstoragepython")
    spec = read_spec(sink_packages["fp16"])
    block = spec.mlProgram.functions["main"].block_specializations["CoreML6"]
    weight_file = sink_packages["fp16"] / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"
    theirs = storage._BlobStorageReader(str(weight_file))
    ours = BlobFile(weight_file)
    checked = 0
    for op in block.operations:
        val = op.attributes["val"] if op.type == "const" else None
        if val is not None and val.WhichOneof("value") == "blobFileValue":
            shape = tuple(d.constant.size for d in val.type.tensorType.dimensions)
            mine = ours.read(val.blobFileValue.offset, "fp16", shape)
            ref = theirs.read_fp16_data(val.blobFileValue.offset)
            np.testing.assert_array_equal(mine.reshape(-1).view(np.uint16), ref)
            checked += 1
    assert checked >= 2


# --- unsupported ops ------------------------------------------------------------------------


def test_unknown_op_fails_with_its_name(tmp_path):
    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 4))], opset_version=ct.target.iOS16)
    def trig(x):
        return mb.relu(x=mb.sin(x=x, name="wobble"))

    prog = load_program(save(trig, tmp_path / "trig.mlpackage"))  # loading and inspecting still work
    assert op_histogram(prog, include_const=False) == {"relu": 1, "sin": 1}
    with pytest.raises(UnsupportedOpError, match=r"'sin' \(output 'wobble'\)") as info:
        prog.run({"x": np.zeros((1, 4), np.float32)})
    assert (info.value.op_type, info.value.output) == ("sin", "wobble")


# --- inputs ---------------------------------------------------------------------------------


def test_input_checks(sink_packages):
    prog = load_program(sink_packages["fp32"])
    x = np.zeros((1, 8, 12, 10), np.float32)
    with pytest.raises(InputError, match="missing"):
        prog.run({})
    with pytest.raises(InputError, match="unexpected"):
        prog.run({"x": x, "y": x})
    with pytest.raises(InputError, match="does not fit"):
        prog.run({"x": x[..., :9]})
    with pytest.raises(InputError, match="numeric"):
        prog.run({"x": np.full(x.shape, "a")})
    # Any numeric array is cast to the declared type, as Core ML does for an MLMultiArray.
    out64 = prog.run({"x": x.astype(np.float64) + 0.5})
    out32 = prog.run({"x": x + 0.5})
    np.testing.assert_array_equal(out64["clip_0"], out32["clip_0"])


def test_flexible_tensor_input_ranges(tmp_path):
    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 2, ct.RangeDim(2, 6).symbol, 4))], opset_version=ct.target.iOS16)
    def double(x):
        return mb.add(x=x, y=x)

    path = save(
        double, tmp_path / "flex.mlpackage", inputs=[ct.TensorType(name="x", shape=(1, 2, ct.RangeDim(2, 6), 4))]
    )
    prog = load_program(path)
    assert prog.inputs[0].shape_bounds == ((1, 1), (2, 2), (2, 6), (4, 4))
    assert str(prog.inputs[0].type) == "fp32[1,2,?,4]"
    out = prog.run({"x": np.ones((1, 2, 5, 4), np.float32)})
    np.testing.assert_array_equal(out[prog.outputs[0].name], np.full((1, 2, 5, 4), 2, np.float32))
    with pytest.raises(InputError, match=r"dimension 2 is 7, outside the allowed range \[2, 6\]"):
        prog.run({"x": np.ones((1, 2, 7, 4), np.float32)})


@pytest.mark.parametrize(("layout", "channels", "bias"), [("BGR", 3, [-1.0, -0.5, 0.25]), ("GRAYSCALE", 1, [0.1])])
def test_image_input_preprocessing_runs_as_program_ops(tmp_path, layout, channels, bias):
    shape = (1, channels, 4, 5)

    @mb.program(input_specs=[mb.TensorSpec(shape=shape)], opset_version=ct.target.iOS16)
    def rectify(x):
        return mb.relu(x=x)

    image = ct.ImageType(name="x", shape=shape, scale=2 / 255, bias=bias, color_layout=getattr(ct.colorlayout, layout))
    prog = load_program(save(rectify, tmp_path / "image.mlpackage", "fp16", inputs=[image]))
    spec = prog.inputs[0]
    assert (spec.kind, spec.color_layout, str(spec.type)) == ("image", layout, f"fp32[1,{channels},4,5]")
    # ML programs carry the image scale and bias as ops (there is no separate preprocessing layer).
    assert {"mul", "add", "cast"} <= set(prog.op_histogram())
    pixels = RNG.integers(0, 256, size=shape).astype(np.float32)  # channels in the image's layout order
    out = prog.run({"x": pixels})[prog.outputs[0].name]
    scaled = (pixels * np.float32(2 / 255) + np.array(bias, np.float32).reshape(1, -1, 1, 1)).astype(np.float16)
    np.testing.assert_array_equal(out, np.maximum(scaled, 0).astype(np.float32))


# --- damaged packages -----------------------------------------------------------------------


def test_missing_or_wrong_paths(tmp_path, sink_packages):
    with pytest.raises(PackageError, match="no such Core ML package"):
        load_program(tmp_path / "nope.mlpackage")
    (tmp_path / "model.mlmodel").write_bytes(b"x")
    with pytest.raises(PackageError, match="is a file"):
        load_program(tmp_path / "model.mlmodel")
    (tmp_path / "empty.mlpackage").mkdir()
    with pytest.raises(PackageError, match="Manifest.json is missing"):
        load_program(tmp_path / "empty.mlpackage")


def test_corrupt_manifest(sink_copy):
    (sink_copy / "Manifest.json").write_text("{not json")
    with pytest.raises(PackageError, match="Manifest.json is corrupt"):
        load_program(sink_copy)


def test_corrupt_spec(sink_copy):
    (sink_copy / "Data" / "com.apple.CoreML" / "model.mlmodel").write_bytes(b"\xff\xff\xff garbage")
    with pytest.raises(PackageError, match="not a readable Core ML model spec"):
        load_program(sink_copy)


def test_missing_weight_file(sink_copy):
    (sink_copy / "Data" / "com.apple.CoreML" / "weights" / "weight.bin").unlink()
    with pytest.raises(PackageError, match="weight file .* is missing"):
        load_program(sink_copy)


def test_overwritten_blob_metadata(sink_copy):
    weights = sink_copy / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"
    data = bytearray(weights.read_bytes())
    struct.pack_into("<I", data, 64, 0x12345678)  # the first blob's sentinel
    weights.write_bytes(bytes(data))
    with pytest.raises(PackageError, match="bad metadata sentinel"):
        load_program(sink_copy)


def test_truncated_weight_file(sink_copy):
    weights = sink_copy / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(PackageError, match="weight file"):
        load_program(sink_copy)


def edit_spec(pkg: Path, edit) -> None:
    spec = read_spec(pkg)
    fn = spec.mlProgram.functions["main"]
    edit([op for op in fn.block_specializations[fn.opset].operations if op.type != "const"])
    locate_spec(pkg).write_bytes(spec.SerializeToString())


def test_result_contradicting_declared_shape(sink_copy):
    def claim_seven_channels(ops):
        ops[0].outputs[0].type.tensorType.dimensions[1].constant.size = 7

    edit_spec(sink_copy, claim_seven_channels)
    prog = load_program(sink_copy)
    with pytest.raises(OpExecutionError, match=r"op 'conv' .*shape \[1, 8, 6, 5\].* declares fp32\[1,7,6,5\]"):
        prog.run({"x": np.zeros((1, 8, 12, 10), np.float32)})


def test_variable_defined_twice(sink_copy):
    def reuse_name(ops):
        ops[1].outputs[0].name = ops[0].outputs[0].name

    edit_spec(sink_copy, reuse_name)
    with pytest.raises(ProgramStructureError, match="defined twice"):
        load_program(sink_copy)
