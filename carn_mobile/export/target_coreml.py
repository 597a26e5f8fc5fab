"""Core ML: an ML program for iOS 16 / macOS 13+, fp16 by default, flexible input shapes.

Converted from a traced TorchScript module, which supports bounded ``RangeDim`` shapes,
``EnumeratedShapes`` (the kind the Neural Engine runs) and image I/O. Off macOS Core ML cannot
run it; the NumPy reference executor does, and :meth:`CoreMLTarget.structural_check` reads the
package with that executor's own reader.
"""

from __future__ import annotations

import importlib
import platform
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..parity import StructuralCheck
from ..runtimes import INPUT_NAME, OUTPUT_NAME, UnsupportedPlatformError, require, version_of
from ..runtimes.quiet import captured_output
from .base import ExportOutcome, ExportRequest, Target
from .targets import register_target
from .wrapper import SuperResolver, count_conv_calls, weight_counts

if TYPE_CHECKING:
    from ..mlprogram import Program

#: iOS 16 / macOS 13 ML programs: Core ML specification version 7.
MIN_SPEC_VERSION = 7
#: Default size the package advertises for flexible shapes (clamped into the range).
DEFAULT_SIDE = 64
#: Ops a CARN ML program may contain; anything else means the graph is not what we exported.
EXPECTED_OPS = {"const", "conv", "relu", "concat", "add", "clip", "pixel_shuffle", "depth_to_space", "cast", "mul"}


class _ImageOutput(nn.Module):
    """Scales ``sr`` to 0..255, the range Core ML expects of an image output."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.inner = module

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.inner(lr) * 255.0


def coreml_writer_missing() -> str | None:
    """Why coremltools cannot write ``.mlpackage`` files here, or ``None`` when it can.

    Converting to an ML program needs coremltools' native BlobWriter (weights file) and model
    package libraries; its wheels for Linux aarch64 ship without them, and conversion then
    fails deep inside with ``RuntimeError: BlobWriter not loaded``. Probed directly, so a future
    wheel that has them is picked up.
    """
    missing = []
    libraries = (("coremltools.libmilstoragepython", "BlobWriter"), ("coremltools.libmodelpackage", "ModelPackage"))
    for module, what in libraries:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(what)
    if not missing:
        return None
    return (
        f"coremltools on {platform.system()} {platform.machine()} has no native {' or '.join(missing)} library, so it "
        "cannot write Core ML packages; export Core ML on macOS or Linux x86-64 (carn-parity verifies the "
        ".mlpackage here), or choose another target"
    )


@register_target
class CoreMLTarget(Target):
    name = "coreml"
    suffix = ".mlpackage"
    runners = ("coreml-predict", "coreml-reference")  # Core ML itself on macOS, else the NumPy executor
    rank = 20
    description = "Core ML ML program (iOS 16 / macOS 13+), fp16 by default"
    requires = ("coremltools",)
    precisions = ("fp16", "fp32")
    default_precision = "fp16"
    precision_note = "Core ML W8A8 is not done yet; use --target onnx or executorch for int8 (docs/int8.md)"
    supports_image_io = True

    def check_available(self) -> None:
        """The package, and on this platform its native writer libraries (absent on Linux aarch64)."""
        super().check_available()
        reason = coreml_writer_missing()
        if reason:
            raise UnsupportedPlatformError(reason)

    def _input_shape(self, ct, request: ExportRequest):
        shape = request.shape
        if shape.kind == "fixed":
            return (1, 3, *shape.sizes[0])
        if shape.kind == "enumerated":
            return ct.EnumeratedShapes(shapes=[(1, 3, h, w) for h, w in shape.sizes], default=(1, 3, *shape.sizes[0]))
        lo, hi = shape.bounds
        default = min(max(DEFAULT_SIDE, lo), hi)
        return (1, 3, ct.RangeDim(lo, hi, default=default, symbol="height"),
                ct.RangeDim(lo, hi, default=default, symbol="width"))

    def export(self, module: SuperResolver, request: ExportRequest, out: Path) -> ExportOutcome:
        with captured_output():
            ct = require("coremltools", self.extra, "the coreml target")
            graph_module = _ImageOutput(module).eval() if request.image_io else module
            with torch.no_grad():
                traced = torch.jit.trace(graph_module, request.example_input())
            shape = self._input_shape(ct, request)
            if request.image_io:
                inputs = [ct.ImageType(name=INPUT_NAME, shape=shape, scale=1.0 / 255.0,
                                       color_layout=ct.colorlayout.RGB)]
                outputs = [ct.ImageType(name=OUTPUT_NAME, color_layout=ct.colorlayout.RGB)]
            else:
                inputs = [ct.TensorType(name=INPUT_NAME, shape=shape, dtype=np.float32)]
                outputs = [ct.TensorType(name=OUTPUT_NAME, dtype=np.float32)]
            compute = request.precision_row.compute_dtype
            precision = {"float16": ct.precision.FLOAT16, "float32": ct.precision.FLOAT32}[compute]
            mlmodel = ct.convert(
                traced,
                inputs=inputs,
                outputs=outputs,
                convert_to="mlprogram",
                minimum_deployment_target=ct.target.iOS16,
                compute_precision=precision,
            )
        self._describe(mlmodel, request)
        mlmodel.save(str(out))
        return ExportOutcome(details={"minimum_deployment_target": "iOS16 / macOS13",
                                      "compute_precision": request.precision})

    def _describe(self, mlmodel, request: ExportRequest) -> None:
        s = request.scale
        mlmodel.short_description = (
            f"{request.model.upper()} super-resolution x{s} (Ahn et al., ECCV 2018), exported by carn-mobile"
        )
        mlmodel.author = "carn-mobile; weights: " + request.metadata.get("carn_mobile.weights", "unknown")
        mlmodel.license = request.metadata.get("carn_mobile.license", "unknown")
        mlmodel.version = __version__
        if request.image_io:
            mlmodel.input_description[INPUT_NAME] = "Low-resolution RGB image"
            mlmodel.output_description[OUTPUT_NAME] = f"RGB image {s}x the input's width and height"
        else:
            mlmodel.input_description[INPUT_NAME] = "Low-resolution image: float32 (1, 3, H, W), RGB in [0, 1]"
            mlmodel.output_description[OUTPUT_NAME] = (
                f"Super-resolved image: float32 (1, 3, {s}H, {s}W), RGB in [0, 1] (clamped)"
            )
        for key, value in request.metadata.items():
            mlmodel.user_defined_metadata[key] = value

    def structural_check(self, path: Path, request: ExportRequest, module: SuperResolver) -> list[StructuralCheck]:
        # The reference executor's own reader: the checks see exactly what parity runs.
        from ..mlprogram import MLProgramError, load_program

        require("coremltools", self.extra, "reading Core ML packages")  # its proto classes parse the spec
        try:
            program = load_program(path)
        except (MLProgramError, OSError, ValueError) as exc:  # unreadable package: a failed check
            return [StructuralCheck("package loads", False, f"{type(exc).__name__}: {str(exc).splitlines()[0]}")]
        checks = [StructuralCheck("package loads", True, f"{path.name} parsed"),
                  StructuralCheck("ML program", True, f"function {program.function!r}, opset {program.opset}")]
        checks += _check_program(program, request, module)
        checks += _check_io(program, request)
        checks.append(_check_metadata(program, request))
        return checks

    def versions(self) -> dict[str, str | None]:
        return {"coremltools": version_of("coremltools")}


def _check_program(program: Program, request: ExportRequest, module: SuperResolver) -> list[StructuralCheck]:
    checks = [StructuralCheck("deployment target", program.spec_version >= MIN_SPEC_VERSION,
                              f"specification version {program.spec_version} (iOS 16 = {MIN_SPEC_VERSION})")]
    ops = program.op_histogram()
    unexpected = sorted(set(ops) - EXPECTED_OPS)
    extra = f"; unexpected {unexpected}" if unexpected else ""
    checks.append(StructuralCheck("op set", not unexpected, f"ops {dict(sorted(ops.items()))}{extra}"))
    upsample = ops.get("pixel_shuffle", 0) + ops.get("depth_to_space", 0)
    checks.append(StructuralCheck("upsampling op", upsample >= 1, f"{upsample} pixel_shuffle/depth_to_space"))
    checks.append(StructuralCheck("output clamp", ops.get("clip", 0) >= 1, "clip op present"))
    convs = count_conv_calls(module)
    checks.append(StructuralCheck("conv count", ops.get("conv", 0) == convs,
                                  f"{ops.get('conv', 0)} conv ops, PyTorch runs {convs}"))
    want = request.precision_row.weight_dtype
    weights = program.weight_elements()
    other = {k: v for k, v in weights.items() if k != want}
    checks.append(StructuralCheck("weight precision", not other and want in weights,
                                  f"weight elements by dtype {weights}, expected {want}"))
    # Only this scale's branch: between the trainable parameters and everything in the state.
    trainable, total = weight_counts(module)
    stored = sum(weights.values())
    checks.append(StructuralCheck("weights of this scale only", trainable <= stored <= total,
                                  f"{stored} weight elements; x{request.scale} model has {trainable} trainable "
                                  f"+ {total - trainable} frozen"))
    return checks


def _check_io(program: Program, request: ExportRequest) -> list[StructuralCheck]:
    if len(program.inputs) != 1 or len(program.outputs) != 1:
        return [StructuralCheck("io count", False, f"{len(program.inputs)} inputs, {len(program.outputs)} outputs")]
    inp, out = program.inputs[0], program.outputs[0]
    checks = [StructuralCheck("io names", (inp.name, out.name) == (INPUT_NAME, OUTPUT_NAME),
                              f"input {inp.name!r}, output {out.name!r}")]
    if request.image_io:
        for what, f in (("input type", inp), ("output type", out)):
            checks.append(StructuralCheck(what, f.kind == "image" and f.color_layout == "RGB",
                                          f"{f.kind} {f.color_layout}"))
    else:
        for what, f in (("input type", inp), ("output type", out)):
            checks.append(StructuralCheck(what, f.kind == "tensor" and f.description_dtype == "FLOAT32",
                                          f"{f.kind} {f.description_dtype}"))
    leading = {tuple(s[:2]) for s in inp.shape_choices or ()} | (
        {tuple(lo for lo, _ in inp.shape_bounds[:2])} if inp.shape_bounds else set())
    if leading != {(1, 3)}:
        checks.append(StructuralCheck("input layout", False, f"leading dims {sorted(leading)}, expected (1, 3, H, W)"))
    shape = request.shape
    if shape.kind == "dynamic":
        hw_ranges = tuple(inp.shape_bounds[2:]) if inp.shape_bounds else ()
        ok, got = hw_ranges == (shape.bounds, shape.bounds), f"H/W ranges {list(hw_ranges)}"
    else:
        sizes = {tuple(s[2:]) for s in inp.shape_choices or ()}
        ok = sizes == {tuple(s) for s in shape.sizes} and inp.shape_bounds is None
        got = f"sizes {sorted(sizes)}"
    checks.append(StructuralCheck("input shapes", ok, f"{got}; expected {shape.describe()}"))
    return checks


def _check_metadata(program: Program, request: ExportRequest) -> StructuralCheck:
    user, desc = program.metadata, program.description
    ok = (user.get("carn_mobile.scale") == str(request.scale) and user.get("carn_mobile.model") == request.model
          and bool(desc.get("license")) and bool(desc.get("input_descriptions", {}).get(INPUT_NAME)))
    licence = "set" if desc.get("license") else "missing"
    detail = f"model {user.get('carn_mobile.model')}, scale {user.get('carn_mobile.scale')}, licence {licence}"
    return StructuralCheck("metadata", ok, detail)
