"""ONNX: opset 18, dynamic height/width, PixelShuffle as DepthToSpace, simplified and checked."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..parity import StructuralCheck
from ..quantization.onnx_qdq import QDQ_QUANTIZER
from ..runtimes import INPUT_NAME, OUTPUT_NAME, ShapeSpec, require, version_of
from ..runtimes.quiet import captured_output
from .base import ExportOutcome, ExportRequest, Target
from .targets import register_target
from .wrapper import SuperResolver, graph_for_precision

OPSET = 18


def onnx_model(graph_module: torch.nn.Module, request: ExportRequest, translations: dict | None = None):
    """``(ModelProto, notes)``: ``graph_module`` exported (opset 18), simplified, checked, with metadata.

    ``translations`` maps custom torch ops to onnxscript functions (``custom_translation_table``).
    """
    onnx = require("onnx", "export", "exporting ONNX")
    onnxsim = require("onnxsim", "export", "exporting ONNX")
    with captured_output(), torch.no_grad():
        program = torch.onnx.export(
            graph_module,
            (request.example_input(),),
            None,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=OPSET,
            dynamo=True,
            dynamic_shapes=request.export_dims(),
            custom_translation_table=translations,
            optimize=True,
        )
        model = program.model_proto
        simplified, ok = onnxsim.simplify(model)
    if not ok:
        raise RuntimeError("onnxsim could not validate the simplified model")
    nodes_before, nodes_after = len(model.graph.node), len(simplified.graph.node)
    simplified.doc_string = f"carn-mobile {request.model} x{request.scale} {request.precision}"
    del simplified.metadata_props[:]
    for key, value in sorted(request.metadata.items()):
        simplified.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(simplified, full_check=True)
    return simplified, [f"onnxsim: {nodes_before} -> {nodes_after} nodes"]


@register_target
class OnnxTarget(Target):
    name = "onnx"
    suffix = ".onnx"
    runners = ("onnxruntime",)
    backend = "onnxruntime"
    rank = 10
    description = "ONNX (opset 18) for ONNX Runtime (Mobile), dynamic H/W"
    requires = ("onnx", "onnxscript", "onnxsim", "onnxruntime")
    precisions = ("fp32", "fp16", "int8", "w8a16")
    quantizer = QDQ_QUANTIZER
    profiler = "onnxruntime"

    def export(self, module: SuperResolver, request: ExportRequest, out: Path) -> ExportOutcome:
        onnx = require("onnx", self.extra, "the onnx target")
        if request.precision_row.quantized:
            return export_int8(module, request, out)
        model, notes = onnx_model(graph_for_precision(module, request.precision), request)
        onnx.save(model, str(out))
        ops = sorted({n.op_type for n in model.graph.node})
        return ExportOutcome(notes=notes, details={"opset": OPSET, "ops": ops, "nodes": len(model.graph.node)})

    def quantized_reference(self, path: Path, request: ExportRequest,
                            module: SuperResolver) -> Callable[[np.ndarray], np.ndarray]:
        from ..quantization.onnx_qdq import qdq_reference

        return qdq_reference(path)

    def structural_check(self, path: Path, request: ExportRequest, module: SuperResolver) -> list[StructuralCheck]:
        onnx = require("onnx", self.extra, "checking ONNX artifacts")
        checks: list[StructuralCheck] = []
        try:
            model = onnx.load(str(path))
            onnx.checker.check_model(model, full_check=True)
        except Exception as exc:  # a corrupt file is a failed check, not a crash
            return [StructuralCheck("onnx.checker", False, f"{type(exc).__name__}: {str(exc).splitlines()[0]}")]
        checks.append(StructuralCheck("onnx.checker", True, "clean"))
        opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
        checks.append(StructuralCheck("opset", opset >= 17, f"opset {opset} (need >= 17)"))
        ins = [i.name for i in model.graph.input]
        outs = [o.name for o in model.graph.output]
        checks.append(StructuralCheck("io names", ins == [INPUT_NAME] and outs == [OUTPUT_NAME],
                                      f"inputs {ins}, outputs {outs}"))
        elem = model.graph.input[0].type.tensor_type.elem_type if ins else None
        checks.append(StructuralCheck("input dtype", elem == onnx.TensorProto.FLOAT, f"elem_type {elem} (1 = float32)"))
        if ins:
            dims = model.graph.input[0].type.tensor_type.shape.dim
            symbolic = [d.dim_param or d.dim_value for d in dims]
            want_dynamic = request.shape.kind != "fixed"
            ok = len(dims) == 4 and (all(bool(d.dim_param) for d in dims[2:]) if want_dynamic
                                     else [d.dim_value for d in dims] == [1, 3, *request.shape.sizes[0]])
            checks.append(StructuralCheck("input shape", ok, f"{symbolic}"))
        ops = {n.op_type for n in model.graph.node}
        checks.append(StructuralCheck("DepthToSpace", "DepthToSpace" in ops, "PixelShuffle exported as DepthToSpace"))
        if request.precision_row.quantized:
            checks.extend(int8_checks(model, request))
        meta = {p.key: p.value for p in model.metadata_props}
        ok = meta.get("carn_mobile.scale") == str(request.scale)
        checks.append(StructuralCheck("metadata scale", ok, f"carn_mobile.scale = {meta.get('carn_mobile.scale')}"))
        return checks

    def versions(self) -> dict[str, str | None]:
        return {name: version_of(name) for name in ("onnx", "onnxscript", "onnxsim", "onnxruntime")}


def export_int8(module: SuperResolver, request: ExportRequest, out: Path) -> ExportOutcome:
    """The float32 graph, quantized to QDQ int8 with the request's recipe and calibration.

    Calibration always runs on the dynamic-size graph (small patches; activation ranges are per
    tensor, independent of the image size); a fixed-size request then gets that graph with its
    input fixed (``onnxruntime.tools.onnx_model_utils``), the same ops either way.
    """
    from ..quantization.onnx_qdq import quantize_onnx

    onnx = require("onnx", "export", "the onnx target")
    assert request.quantization is not None, "a quantized request carries its recipe"
    dynamic = request if request.shape.kind != "fixed" else replace(
        request, shape=ShapeSpec(max_side=max(request.shape.bounds[1], 64)))
    model, notes = onnx_model(module, dynamic)
    with tempfile.TemporaryDirectory(prefix="carn-onnx-") as tmp:
        float_path = Path(tmp) / "float32.onnx"
        onnx.save(model, str(float_path))
        calibration = request.quantization.calibration.for_scale(request.scale)
        details = quantize_onnx(float_path, out, request.quantization.recipe, calibration)
        float_bytes = float_path.stat().st_size
    if request.shape.kind == "fixed":
        fix_input_size(out, request)
    notes.append(f"int8 QDQ: {details['quantized_convs']} convs int8, {details['float_convs']} float; "
                 f"{out.stat().st_size / float_bytes:.0%} of the float32 file; calibrated on "
                 f"{len(calibration.patches)} patches from {calibration.source}")
    return ExportOutcome(notes=notes, details={"opset": OPSET, "float32_size_bytes": float_bytes, **details})


def fix_input_size(path: Path, request: ExportRequest) -> None:
    onnx = require("onnx", "export", "the onnx target")
    from onnxruntime.tools.onnx_model_utils import fix_output_shapes, make_input_shape_fixed

    model = onnx.load(str(path))
    h, w = request.shape.sizes[0]
    make_input_shape_fixed(model.graph, INPUT_NAME, [1, 3, h, w])
    fix_output_shapes(model)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


def int8_checks(model, request: ExportRequest) -> list[StructuralCheck]:
    """Structure of a QDQ graph: every conv that the recipe does not keep in float reads weights of
    the recipe's weight type through a DequantizeLinear."""
    from ..quantization.onnx_qdq import ONNX_TENSOR_TYPES, float_nodes

    onnx = require("onnx", "export", "checking ONNX artifacts")
    assert request.quantization is not None, "a quantized request carries its recipe"
    recipe = request.quantization.recipe
    wanted = getattr(onnx.TensorProto, ONNX_TENSOR_TYPES[recipe.weight_type])
    stored = {i.name for i in model.graph.initializer if i.data_type == wanted}
    dequantized = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in stored}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    keep = set(float_nodes(model, recipe))
    float_convs = [n.name for n in convs if n.input[1] not in dequantized and n.name not in keep]
    return [
        StructuralCheck(f"{recipe.weight_type} weights", not float_convs and bool(convs),
                        f"{len(convs) - len(float_convs)}/{len(convs)} convs read {recipe.weight_type} weights"
                        + (f"; float: {', '.join(float_convs[:3])}" if float_convs else "")),
        StructuralCheck("QDQ activations", any(n.op_type == "QuantizeLinear" for n in model.graph.node),
                        "QuantizeLinear present"),
    ]
