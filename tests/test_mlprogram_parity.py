"""End-to-end: the reference executor on real carn-mobile Core ML exports, against PyTorch.

Packages are built here the way the exporter builds them (clamped single-scale wrapper,
``ct.convert(..., convert_to="mlprogram", minimum_deployment_target=iOS16)``), for fp32/fp16,
tensor/image I/O and flexible shapes. Thresholds are issue 7's: fp32 max abs error <= 1e-4,
fp16 PSNR vs the fp32 PyTorch reference >= 50 dB. Measured numbers are printed at the end of
the module. Then faults are injected into saved packages and must be caught.
"""

from __future__ import annotations

import math
import shutil
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

ct = pytest.importorskip("coremltools", reason="coremltools is needed to build Core ML packages")

from carn_mobile.mlprogram import (  # noqa: E402
    InputError,
    UndefinedVariableError,
    load_program,
    locate_spec,
    op_histogram,
    read_spec,
)
from carn_mobile.models import build_model  # noqa: E402
from carn_mobile.weights import load_model  # noqa: E402

FP32_MAX_ABS = 1e-4
FP16_MIN_PSNR = 50.0
SIZES = [(16, 16), (13, 21)]  # square, and odd non-square: both inside the flexible range


class ClampedSR(nn.Module):
    """The exporter's wrapper: clamp to [0, 1]; x255 in the graph for an image output."""

    def __init__(self, model: nn.Module, image_out: bool) -> None:
        super().__init__()
        self.model = model
        self.image_out = image_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.clamp(self.model(x), 0.0, 1.0)
        return y * 255.0 if self.image_out else y


def trace(model: nn.Module, io: str, tracer: str):
    """The clamped wrapper as TorchScript (``jit``) or an exported program (``export``)."""
    wrapper = ClampedSR(model, io == "image").eval()
    example = torch.rand(1, 3, 16, 16)
    if tracer == "jit":
        return torch.jit.trace(wrapper, example, check_trace=False)  # the check doubles the cost
    dims = {2: torch.export.Dim("h", min=8, max=48), 3: torch.export.Dim("w", min=8, max=48)}
    return torch.export.export(wrapper, (example,), dynamic_shapes={"x": dims}).run_decompositions({})


def export(source, path: Path, precision: str, io: str, tracer: str = "jit") -> Path:
    if tracer == "jit":
        shape = (1, 3, ct.RangeDim(8, 48, 16), ct.RangeDim(8, 48, 16))
    else:
        shape = ct.EnumeratedShapes(shapes=[(1, 3, h, w) for h, w in SIZES])
    if io == "image":
        inputs = [ct.ImageType(name="lr", shape=shape, scale=1 / 255.0, color_layout=ct.colorlayout.RGB)]
        outputs = [ct.ImageType(name="sr", color_layout=ct.colorlayout.RGB)]
    else:
        inputs, outputs = [ct.TensorType(name="lr", shape=shape)], [ct.TensorType(name="sr")]
    mlmodel = ct.convert(
        source,
        convert_to="mlprogram",
        minimum_deployment_target=ct.target.iOS16,
        compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32,
        inputs=inputs,
        outputs=outputs,
    )
    mlmodel.save(str(path))
    return path


def make_model(arch: str, scale: int) -> nn.Module:
    if arch == "carn-m":
        return load_model("carn-m").single_scale(scale).eval()
    torch.manual_seed(1234)  # random-weight CARN: plain (non-group) convs
    return build_model(arch, scale=scale).eval()


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """``package(arch, scale, precision, io, tracer="jit") -> (path, torch model)``, built once each."""
    root = tmp_path_factory.mktemp("coreml")
    models: dict[tuple, nn.Module] = {}
    sources: dict[tuple, object] = {}  # one trace serves both precisions
    packages: dict[tuple, Path] = {}

    def get(arch: str, scale: int, precision: str, io: str, tracer: str = "jit") -> tuple[Path, nn.Module]:
        if (arch, scale) not in models:
            models[arch, scale] = make_model(arch, scale)
        model = models[arch, scale]
        if (arch, scale, io, tracer) not in sources:
            sources[arch, scale, io, tracer] = trace(model, io, tracer)
        key = (arch, scale, precision, io, tracer)
        if key not in packages:
            path = root / f"{arch}_x{scale}_{precision}_{io}_{tracer}.mlpackage"
            packages[key] = export(sources[arch, scale, io, tracer], path, precision, io, tracer)
        return packages[key], model

    return get


@pytest.fixture(scope="module")
def parity_log(request):
    """Collects measured numbers; printed as a table when the module finishes."""
    rows: list[str] = []
    yield rows
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is None or capture is None or not rows:
        return
    with capture.global_and_fixture_disabled():  # show the table even though the test passed
        reporter.write_line("")
        reporter.write_line("Core ML reference executor vs PyTorch (measured):")
        for row in rows:
            reporter.write_line("  " + row)


def low_res(h: int, w: int, seed: int) -> np.ndarray:
    """8-bit RGB noise, NCHW float in [0, 255]: a hard case (strong overshoot before the clamp)."""
    return np.random.default_rng(seed).integers(0, 256, size=(1, 3, h, w)).astype(np.float32)


def reference(model: nn.Module, lr01: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.clamp(model(torch.from_numpy(lr01)), 0, 1).numpy().astype(np.float64)


def run_sr(program, pixels: np.ndarray) -> np.ndarray:
    """Run on 8-bit pixels; returns SR in [0, 1] whatever the program's I/O kind."""
    image_in = program.inputs[0].kind == "image"
    out = program.run({"lr": pixels if image_in else pixels / 255.0})["sr"].astype(np.float64)
    return out / 255.0 if program.outputs[0].kind == "image" else out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def expected_ops(precision: str, io: str) -> set[str]:
    ops = {"const", "conv", "relu", "concat", "add", "pixel_shuffle", "clip"}
    if io == "image":
        ops.add("mul")  # input x 1/255 (the ImageType scale) and output x 255
        if precision == "fp16":
            ops.add("cast")  # image tensors are fp32: cast to fp16 after the scale, back before the output
    return ops


# --- parity ---------------------------------------------------------------------------------


@pytest.mark.parametrize("io", ["tensor", "image"])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_carn_m_parity(package, parity_log, scale, precision, io):
    path, model = package("carn-m", scale, precision, io)
    program = load_program(path)
    hist = op_histogram(program)
    assert set(hist) == expected_ops(precision, io), hist
    assert hist["pixel_shuffle"] == (2 if scale == 4 else 1) and hist["clip"] == 1
    assert program.precision == precision
    assert [f.kind for f in program.inputs + program.outputs] == [io, io]
    for i, (h, w) in enumerate(SIZES):
        pixels = low_res(h, w, seed=10 * scale + i)
        ref = reference(model, pixels / 255.0)
        start = time.perf_counter()
        sr = run_sr(program, pixels)
        took = time.perf_counter() - start
        assert sr.shape == (1, 3, h * scale, w * scale)
        err, db = float(np.abs(sr - ref).max()), psnr(sr, ref)
        parity_log.append(
            f"carn-m x{scale} {precision} {io:6s} {h}x{w}: max abs {err:.2e}  PSNR {db:6.2f} dB  run {took:.2f}s"
        )
        if precision == "fp32":
            assert err <= FP32_MAX_ABS
        else:
            assert db >= FP16_MIN_PSNR
            assert err > 0  # fp16 rounding really was applied


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_random_carn_parity(package, parity_log, precision):
    path, model = package("carn", 4, precision, "tensor")
    program = load_program(path)
    convs = program.find_ops("conv")
    groups = {int(program.constants[op.inputs["groups"][0].name]) for op in convs}
    assert groups == {1}  # CARN: plain convolutions only
    pixels = low_res(*SIZES[1], seed=99)
    ref = reference(model, pixels / 255.0)
    sr = run_sr(program, pixels)
    err, db = float(np.abs(sr - ref).max()), psnr(sr, ref)
    parity_log.append(f"carn (random) x4 {precision} tensor 13x21: max abs {err:.2e}  PSNR {db:6.2f} dB")
    if precision == "fp32":
        assert err <= FP32_MAX_ABS
    else:
        assert db >= FP16_MIN_PSNR


def test_torch_export_with_enumerated_shapes(package, parity_log):
    path, model = package("carn-m", 3, "fp16", "image", tracer="export")
    program = load_program(path)
    assert set(op_histogram(program)) == expected_ops("fp16", "image")
    assert program.inputs[0].shape_choices == tuple((1, 3, h, w) for h, w in SIZES)
    for h, w in SIZES:
        pixels = low_res(h, w, seed=h + w)
        db = psnr(run_sr(program, pixels), reference(model, pixels / 255.0))
        parity_log.append(f"carn-m x3 fp16 image (torch.export, enumerated) {h}x{w}: PSNR {db:6.2f} dB")
        assert db >= FP16_MIN_PSNR
    with pytest.raises(InputError, match="not one of the enumerated shapes"):
        program.run({"lr": low_res(16, 20, seed=0)})


def test_image_input_takes_pixel_values(package):
    path, _ = package("carn-m", 2, "fp32", "image")
    program = load_program(path)
    with pytest.raises(InputError, match=r"pixel values in \[0, 255\]"):
        program.run({"lr": low_res(16, 16, seed=0) * 2})


def test_speed_carn_m_x4_32x32(package, parity_log):
    for precision in ("fp32", "fp16"):
        program = load_program(package("carn-m", 4, precision, "tensor")[0])
        lr = low_res(32, 32, seed=5) / 255.0
        start = time.perf_counter()
        program.run({"lr": lr})
        took = time.perf_counter() - start
        parity_log.append(f"speed: carn-m x4 {precision} 1x3x32x32 -> 128x128 in {took:.2f}s")
        assert took < 10.0  # typically well under a second; generous for busy CI machines


# --- faults must be caught ------------------------------------------------------------------


def damaged_copy(src: Path, dst: Path) -> Path:
    return Path(shutil.copytree(src, dst))


def write_spec(pkg: Path, spec) -> None:
    locate_spec(pkg).write_bytes(spec.SerializeToString())


def main_block(spec):
    fn = spec.mlProgram.functions["main"]
    return fn.block_specializations[fn.opset]


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_flipped_weight_in_blob_breaks_parity(package, parity_log, tmp_path, precision):
    src, model = package("carn-m", 2, precision, "tensor")
    pkg = damaged_copy(src, tmp_path / "flipped.mlpackage")
    # Find the exit conv's weight in the weight file and flip the sign bit of its largest value.
    ref_val = None
    for op in main_block(read_spec(pkg)).operations:
        val = op.attributes["val"] if op.type == "const" else None
        if val is not None and "exit_weight" in op.outputs[0].name and val.WhichOneof("value") == "blobFileValue":
            ref_val = val
    assert ref_val is not None, "exit conv weight not found in the weight file"
    weights = pkg / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"
    data = bytearray(weights.read_bytes())
    _, _, size, start = struct.unpack_from("<IIQQ", data, ref_val.blobFileValue.offset)
    np_dtype = np.float16 if precision == "fp16" else np.float32
    values = np.frombuffer(bytes(data[start : start + size]), dtype=np_dtype)
    i = int(np.argmax(np.abs(values)))
    sign_byte = start + (i + 1) * values.itemsize - 1  # little-endian: the sign bit is in the last byte
    data[sign_byte] ^= 0x80
    weights.write_bytes(bytes(data))

    pixels = low_res(16, 16, seed=1)
    ref = reference(model, pixels / 255.0)
    good = run_sr(load_program(src), pixels)
    bad = run_sr(load_program(pkg), pixels)
    parity_log.append(
        f"fault: flipped weight ({precision}): max abs {np.abs(bad - ref).max():.2e}  PSNR {psnr(bad, ref):6.2f} dB"
    )
    if precision == "fp32":
        assert np.abs(good - ref).max() <= FP32_MAX_ABS < 1e-3 < np.abs(bad - ref).max()
    assert psnr(good, ref) >= FP16_MIN_PSNR > psnr(bad, ref)


def swap_with_producer(block, op_type: str) -> str:
    """Swap the first ``op_type`` op with the op that produces its ``x``; returns the op's output name."""
    ops = block.operations
    idx = next(i for i, op in enumerate(ops) if op.type == op_type)
    src = ops[idx].inputs["x"].arguments[0].name
    prod = next(i for i, op in enumerate(ops) if any(o.name == src for o in op.outputs))
    first = type(ops[idx])()
    first.CopyFrom(ops[prod])
    ops[prod].CopyFrom(ops[idx])
    ops[idx].CopyFrom(first)
    return ops[prod].outputs[0].name


@pytest.mark.parametrize("op_type", ["clip", "pixel_shuffle", "relu"])
def test_reordered_ops_are_caught(package, tmp_path, op_type):
    src, _ = package("carn-m", 2, "fp32", "tensor")
    pkg = damaged_copy(src, tmp_path / "reordered.mlpackage")
    spec = read_spec(pkg)
    moved = swap_with_producer(main_block(spec), op_type)
    write_spec(pkg, spec)
    with pytest.raises(UndefinedVariableError, match=f"op '{op_type}' \\(output '{moved}'\\) reads") as info:
        load_program(pkg)
    assert info.value.op_type == op_type
    # Without load-time validation the executor itself refuses, at the same op.
    program = load_program(pkg, validate=False)
    with pytest.raises(UndefinedVariableError, match=f"op '{op_type}'"):
        program.run({"lr": low_res(16, 16, seed=0) / 255.0})


def drop_op(block, op_type: str) -> None:
    """Remove the first ``op_type`` op and wire its input straight to its consumers (and outputs)."""
    ops = block.operations
    idx = next(i for i, op in enumerate(ops) if op.type == op_type)
    src, dst = ops[idx].inputs["x"].arguments[0].name, ops[idx].outputs[0].name
    del ops[idx]
    for op in ops:  # renaming src -> dst everywhere keeps names unique and the output name intact
        for out in op.outputs:
            if out.name == src:
                out.name = dst
        for arg in op.inputs.values():
            for binding in arg.arguments:
                if binding.WhichOneof("binding") == "name" and binding.name == src:
                    binding.name = dst


@pytest.mark.parametrize(("precision", "io"), [("fp32", "tensor"), ("fp16", "image")])
def test_dropped_clamp_is_caught(package, parity_log, tmp_path, precision, io):
    src, model = package("carn-m", 2, precision, io)
    pkg = damaged_copy(src, tmp_path / "noclamp.mlpackage")
    spec = read_spec(pkg)
    drop_op(main_block(spec), "clip")
    write_spec(pkg, spec)
    program = load_program(pkg)  # still a well-formed program...
    assert "clip" not in op_histogram(program)
    pixels = low_res(16, 16, seed=2)  # noise drives CARN-M's output past [0, 1]
    sr = run_sr(program, pixels)
    assert sr.min() < 0 and sr.max() > 1  # ...but its values leave the image range
    ref = reference(model, pixels / 255.0)
    parity_log.append(
        f"fault: no clamp ({precision} {io}): range [{sr.min():.3f}, {sr.max():.3f}]  "
        f"max abs {np.abs(sr - ref).max():.2e}  PSNR {psnr(sr, ref):6.2f} dB"
    )
    assert np.abs(sr - ref).max() > 1e-2
    assert psnr(sr, ref) < FP16_MIN_PSNR
