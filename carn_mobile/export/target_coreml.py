"""Core ML: an ML program for iOS 16 / macOS 13+, fp16 by default, flexible input shapes.

Converted from a traced TorchScript module, which supports bounded ``RangeDim`` shapes,
``EnumeratedShapes`` (the kind the Neural Engine runs) and image I/O. Off macOS the package
cannot be run, so :meth:`CoreMLTarget.structural_check` inspects it instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..parity import StructuralCheck
from ..runtimes import INPUT_NAME, OUTPUT_NAME, require, version_of
from ..runtimes.coreml_program import MLPackageInfo, inspect_mlpackage
from ..runtimes.quiet import captured_output
from .base import ExportOutcome, ExportRequest, Target
from .registry import register_target
from .wrapper import SuperResolver, count_conv_calls, weight_counts

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


@register_target
class CoreMLTarget(Target):
    name = "coreml"
    suffix = ".mlpackage"
    rank = 20
    description = "Core ML ML program (iOS 16 / macOS 13+), fp16 by default"
    requires = ("coremltools",)
    precisions = ("fp16", "fp32")
    default_precision = "fp16"
    supports_image_io = True

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
            precision = ct.precision.FLOAT16 if request.precision == "fp16" else ct.precision.FLOAT32
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
        try:
            with captured_output():
                info = inspect_mlpackage(path)
        except ImportError:
            raise
        except Exception as exc:  # unreadable package: a failed check
            return [StructuralCheck("package loads", False, f"{type(exc).__name__}: {str(exc).splitlines()[0]}")]
        checks = [StructuralCheck("package loads", True, f"{path.name} parsed by coremltools")]
        checks += _check_program(info, request, module)
        checks += _check_io(info, request)
        checks.append(_check_metadata(info, request))
        return checks

    def versions(self) -> dict[str, str | None]:
        return {"coremltools": version_of("coremltools")}


def _check_program(info: MLPackageInfo, request: ExportRequest, module: SuperResolver) -> list[StructuralCheck]:
    checks = [
        StructuralCheck("ML program", info.model_type == "mlProgram", f"model type {info.model_type}"),
        StructuralCheck("deployment target", info.spec_version >= MIN_SPEC_VERSION,
                        f"specification version {info.spec_version} (iOS 16 = {MIN_SPEC_VERSION})"),
    ]
    unexpected = sorted(set(info.op_counts) - EXPECTED_OPS)
    checks.append(StructuralCheck("op set", not unexpected,
                                  f"ops {dict(sorted(info.op_counts.items()))}"
                                  + (f"; unexpected {unexpected}" if unexpected else "")))
    upsample = info.op_counts.get("pixel_shuffle", 0) + info.op_counts.get("depth_to_space", 0)
    checks.append(StructuralCheck("upsampling op", upsample >= 1, f"{upsample} pixel_shuffle/depth_to_space"))
    checks.append(StructuralCheck("output clamp", info.op_counts.get("clip", 0) >= 1, "clip op present"))
    convs = count_conv_calls(module)
    checks.append(StructuralCheck("conv count", info.op_counts.get("conv", 0) == convs,
                                  f"{info.op_counts.get('conv', 0)} conv ops, PyTorch runs {convs}"))
    want = "float16" if request.precision == "fp16" else "float32"
    other = {k: v for k, v in info.weight_elements.items() if k != want}
    checks.append(StructuralCheck("weight precision", not other and want in info.weight_elements,
                                  f"weight elements by dtype {info.weight_elements}, expected {want}"))
    # Only this scale's branch: between the trainable parameters and everything in the state.
    trainable, total = weight_counts(module)
    stored = sum(info.weight_elements.values())
    checks.append(StructuralCheck("weights of this scale only", trainable <= stored <= total,
                                  f"{stored} weight elements; x{request.scale} model has {trainable} trainable "
                                  f"+ {total - trainable} frozen"))
    return checks


def _check_io(info: MLPackageInfo, request: ExportRequest) -> list[StructuralCheck]:
    if len(info.inputs) != 1 or len(info.outputs) != 1:
        return [StructuralCheck("io count", False, f"{len(info.inputs)} inputs, {len(info.outputs)} outputs")]
    inp, out = info.inputs[0], info.outputs[0]
    checks = [StructuralCheck("io names", (inp.name, out.name) == (INPUT_NAME, OUTPUT_NAME),
                              f"input {inp.name!r}, output {out.name!r}")]
    if request.image_io:
        checks.append(StructuralCheck("input type", inp.kind == "imageType" and inp.color == "RGB",
                                      f"{inp.kind} {inp.color}"))
        checks.append(StructuralCheck("output type", out.kind == "imageType" and out.color == "RGB",
                                      f"{out.kind} {out.color}"))
        sizes = inp.enumerated or ((inp.shape,) if not inp.ranges else ())
        hw_ranges = inp.ranges
    else:
        checks.append(StructuralCheck("input type", inp.kind == "multiArrayType" and inp.dtype == "FLOAT32",
                                      f"{inp.kind} {inp.dtype}"))
        checks.append(StructuralCheck("output type", out.kind == "multiArrayType" and out.dtype == "FLOAT32",
                                      f"{out.kind} {out.dtype}"))
        sizes = tuple(s[2:] for s in inp.enumerated) or ((inp.shape[2:],) if not inp.ranges else ())
        hw_ranges = inp.ranges[2:]
        if inp.shape[:2] != (1, 3):
            checks.append(StructuralCheck("input layout", False, f"shape {inp.shape}, expected (1, 3, H, W)"))
    shape = request.shape
    if shape.kind == "dynamic":
        want = (shape.bounds, shape.bounds)
        ok, got = tuple(hw_ranges) == want, f"H/W ranges {list(hw_ranges)}"
    else:
        want_sizes = {tuple(s) for s in shape.sizes}
        ok, got = {tuple(s) for s in sizes} == want_sizes and not hw_ranges, f"sizes {sorted(set(sizes))}"
    checks.append(StructuralCheck("input shapes", ok, f"{got}; expected {shape.describe()}"))
    return checks


def _check_metadata(info: MLPackageInfo, request: ExportRequest) -> StructuralCheck:
    user = info.metadata["user_defined"]
    ok = (user.get("carn_mobile.scale") == str(request.scale) and user.get("carn_mobile.model") == request.model
          and bool(info.metadata["license"]) and bool(info.metadata["input_descriptions"].get(INPUT_NAME)))
    licence = "set" if info.metadata["license"] else "missing"
    detail = f"model {user.get('carn_mobile.model')}, scale {user.get('carn_mobile.scale')}, licence {licence}"
    return StructuralCheck("metadata", ok, detail)
