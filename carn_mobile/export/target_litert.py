"""LiteRT (formerly TensorFlow Lite): a ``.tflite`` converted with litert-torch, for Android apps.

The graph is built for LiteRT's GPU delegate and NNAPI as well as its CPU (XNNPACK) path:
PixelShuffle becomes the builtin ``DEPTH_TO_SPACE`` in NHWC (exact, :mod:`.depth_to_space`)
instead of the converter's reshape/transpose chain, the grouped upsampler conv is split with
``SPLIT``, and with ``layout="NHWC"`` the graph has no ``TRANSPOSE`` at all (NCHW I/O keeps one
at the input and one at the output). Every op and every tensor rank is checked against the GPU
delegate's supported set (:data:`GPU_DELEGATE_OPS`), and the result goes into the manifest.

Shapes: litert-torch 0.10 folds CARN's body into a constant when H and W are symbolic, so the
model is converted at one stored size; its ops hold no size (``SPLIT``, not ``SLICE``), so
``resize_tensor_input`` (Kotlin: ``Interpreter.resizeInput``) runs it at any size, which parity
checks at several sizes of the accepted range.

fp16 stores float16 weights with ``DEQUANTIZE`` ops (ai-edge-quantizer's float casting): half
the file; the CPU computes in float32, the GPU delegate in float16.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..parity import StructuralCheck
from ..quantization.litert_aeq import AEQ_QUANTIZER
from ..runtimes import INPUT_NAME, LAYOUTS, OUTPUT_NAME, require, version_of
from ..runtimes.quiet import captured_output
from .base import ExportOutcome, ExportRequest, Target, TargetOption
from .depth_to_space import with_dcr_upsampler
from .targets import register_target
from .wrapper import SuperResolver

#: Name of the metadata entry carrying the artifact's ``carn_mobile.*`` keys, layout included (JSON).
METADATA_NAME = "carn_mobile"

#: Builtin ops LiteRT's GPU delegate builds kernels for, as listed by its model builder's op
#: switch (LiteRT, ML Drift IR builder, read 2026-12) - the subset a super-resolution graph can
#: plausibly contain. An op outside it runs on the CPU and splits the graph.
GPU_DELEGATE_OPS = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CAST", "CONCATENATION", "CONV_2D", "DEPTH_TO_SPACE", "DEPTHWISE_CONV_2D",
    "DEQUANTIZE", "DIV", "FULLY_CONNECTED", "HARD_SWISH", "LEAKY_RELU", "LOGISTIC", "MAXIMUM",
    "MAX_POOL_2D", "MEAN", "MINIMUM", "MUL", "PAD", "PADV2", "PRELU", "QUANTIZE", "RELU", "RELU6",
    "RELU_0_TO_1", "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "SLICE",
    "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT", "SPLIT_V", "STRIDED_SLICE", "SUB", "TANH", "TRANSPOSE",
    "TRANSPOSE_CONV",
})
#: The GPU delegate works on tensors of rank 4 at most (BHWC).
GPU_MAX_RANK = 4


class _LayoutIO(nn.Module):
    """The per-scale module with named I/O (``lr`` in, ``{"sr": ...}`` out) in the chosen layout."""

    def __init__(self, module: nn.Module, layout: str) -> None:
        super().__init__()
        self.inner = module
        self.nhwc = layout == "NHWC"

    def forward(self, lr: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.nhwc:
            return {OUTPUT_NAME: self.inner(lr.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)}
        return {OUTPUT_NAME: self.inner(lr)}


@register_target
class LiteRTTarget(Target):
    name = "litert"
    suffix = ".tflite"
    runners = ("litert",)
    backend = "litert"
    rank = 50
    description = "LiteRT (.tflite) for Android: XNNPACK, GPU delegate and NNAPI-ready graph, NCHW or NHWC I/O"
    extra = "litert"
    requires = ("litert_torch", "ai_edge_litert.interpreter", "ai_edge_quantizer")
    precisions = ("fp32", "fp16", "int8")
    quantizer = AEQ_QUANTIZER
    options = (TargetOption("--layout", "layout", choices=("nchw", "nhwc"),
                            help="I/O tensor layout (default nchw, the contract; nhwc is what Android bitmaps and "
                                 "LiteRT's GPU delegate use, and leaves no TRANSPOSE in the graph)"),
               TargetOption("--int8-io", "int8_io", switch=True,
                            help="with --precision int8: int8 input and output tensors instead of float32 (their "
                                 "scale and zero point are in the manifest; the output is the 8-bit picture - 128)"))
    refused_rewrites = {
        "pad-exit": "its channel SLICE holds the tile size (resize_tensor_input and the web page re-size the graph) "
                    "and leaves the exit shuffle without its DEPTH_TO_SPACE",
    }
    platform_limits = {
        "aarch64": "the litert target needs litert-torch, whose ai-edge-litert 2.3 has no Linux aarch64 wheel (the "
                   "litert extra installs only the 2.2 interpreter here); export LiteRT on x86-64 (carn-parity runs "
                   "those .tflite files here)",
    }

    def __init__(self, layout: str = "NCHW", int8_io: bool = False) -> None:
        self.layout = layout
        self.int8_io = int8_io

    def with_options(self, **options: Any) -> Target:
        layout = str(options.pop("layout", self.layout)).upper()
        int8_io = bool(options.pop("int8_io", self.int8_io))
        super().with_options(**options)  # anything else is an error
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout.lower()!r} for the litert target; use nchw or nhwc")
        return LiteRTTarget(layout, int8_io)

    def from_manifest(self, manifest: dict[str, Any]) -> Target:
        """This target with the int8 edges the artifact was exported with (``carn-parity``)."""
        details = manifest.get("export", {}).get("details", {})
        return LiteRTTarget(str(details.get("layout", self.layout)), bool(details.get("int8", {}).get("int8_io")))

    def unsupported(self, request: ExportRequest) -> str | None:
        if self.int8_io and not request.precision_row.quantized:
            return f"--int8-io applies to --precision int8 only, not {request.precision}"
        return super().unsupported(request)

    def export(self, module: SuperResolver, request: ExportRequest, out: Path) -> ExportOutcome:
        with captured_output():
            litert_torch = require("litert_torch", self.extra, "the litert target")
            from .litert_ops import LiteRTDCROps

            graph = _LayoutIO(with_dcr_upsampler(module, LiteRTDCROps()), request.layout).eval()
            h, w = request.example_size()
            sample = request.example_input()
            if request.layout == "NHWC":
                sample = sample.permute(0, 2, 3, 1).contiguous()
            try:
                with torch.no_grad():
                    converted = litert_torch.convert(graph, sample_kwargs={INPUT_NAME: sample})
            except Exception as exc:  # the converter's own errors are long MLIR dumps
                first = (str(exc).strip().splitlines() or [""])[0][:200]
                raise ValueError(f"litert-torch could not convert {request.model} x{request.scale} at LR {h}x{w} "
                                 f"({type(exc).__name__}: {first}); try another --shape, or --verbose for the "
                                 f"converter's log") from exc
            with tempfile.TemporaryDirectory(prefix="carn-litert-") as tmp:
                converted.export(str(Path(tmp) / "model.tflite"))
                data = (Path(tmp) / "model.tflite").read_bytes()
            if request.precision_row.weight_dtype == "float16":
                data = _float16_weights(data)
        int8: dict[str, Any] = {}
        if request.precision_row.quantized:
            data, int8 = self._quantize(data, request)
        # request.metadata already names the layout (carn_mobile.layout), which the runner reads.
        data = _with_metadata(data, request.metadata | {"carn_mobile.stored_lr_size": f"{h}x{w}"})
        out.write_bytes(data)
        info = analyze(out) | {"litert_analyzer": _analyzer_verdict(out)}
        notes = [f"ops: {_op_summary(info['op_counts'])}", *_int8_notes(int8, info),
                 f"TRANSPOSE ops: {info['transposes']}; GPU delegate: "
                 + ("every op and rank supported" if info["gpu_compatible"] else f"outside: {info['gpu_unsupported']}"),
                 f"stored at LR {h}x{w}; other sizes via resize_tensor_input"]
        return ExportOutcome(notes=notes, details={
            "layout": request.layout, "stored_lr_size": [h, w], "depth_to_space": "DEPTH_TO_SPACE (DCR conv order)",
            **info, **({"int8": int8} if int8 else {}),
        })

    def _quantize(self, data: bytes, request: ExportRequest) -> tuple[bytes, dict[str, Any]]:
        from ..quantization.litert_aeq import quantize_tflite

        assert request.quantization is not None, "a quantized request carries its recipe"
        calibration = request.quantization.calibration.for_scale(request.scale)
        data, details = quantize_tflite(data, request.quantization.recipe, calibration, request.layout == "NHWC",
                                        self.int8_io)
        details["calibration_patches"] = len(calibration.patches)
        return data, details

    def quantized_reference(self, path: Path, request: ExportRequest,
                            module: SuperResolver) -> Callable[[np.ndarray], np.ndarray]:
        from ..quantization.litert_aeq import tflite_reference

        return tflite_reference(path, request.layout == "NHWC")

    def structural_check(self, path: Path, request: ExportRequest, module: SuperResolver) -> list[StructuralCheck]:
        try:
            info = analyze(path)
            meta = read_metadata(path)
        except Exception as exc:  # a corrupt file is a failed check, not a crash
            return [StructuralCheck("flatbuffer", False, f"{type(exc).__name__}: {str(exc).splitlines()[0]}")]
        checks = [StructuralCheck("io names", info["inputs"] == [INPUT_NAME] and info["outputs"] == [OUTPUT_NAME],
                                  f"signature inputs {info['inputs']}, outputs {info['outputs']}")]
        layout = meta.get("carn_mobile.layout")
        checks.append(StructuralCheck("layout", layout == request.layout, f"metadata layout {layout}"))
        channels_at = 3 if request.layout == "NHWC" else 1
        shape = info["input_shape"]
        checks.append(StructuralCheck("input shape", len(shape) == 4 and shape[channels_at] == 3,
                                      f"{shape} ({request.layout})"))
        allowed = 0 if request.layout == "NHWC" else 2
        checks.append(StructuralCheck("TRANSPOSE", info["transposes"] <= allowed and info["body_transposes"] == 0,
                                      f"{info['transposes']} in the graph, {info['body_transposes']} inside its body"))
        checks.append(StructuralCheck("DEPTH_TO_SPACE", info["op_counts"].get("DEPTH_TO_SPACE", 0) > 0,
                                      "PixelShuffle as the builtin DEPTH_TO_SPACE"))
        checks.append(StructuralCheck("GPU delegate ops", info["gpu_compatible"],
                                      "all supported" if info["gpu_compatible"]
                                      else f"outside the set: {info['gpu_unsupported']}"))
        if request.precision_row.weight_dtype == "float16":
            ok = info["weight_types"] == ["FLOAT16"]
            checks.append(StructuralCheck("weights dtype", ok, f"conv weights {info['weight_types']}"))
        if request.precision_row.quantized:
            ok = info["weight_types"] == ["INT8"]
            checks.append(StructuralCheck("weights dtype", ok, f"conv weights {info['weight_types']}"))
            checks.append(StructuralCheck("integer body", not info["float_ops"],
                                          "every op int8 (float32 only at the I/O)" if not info["float_ops"]
                                          else f"float ops {info['float_ops']}"))
            io = [info["input_type"], info["output_type"]]
            want = ["INT8", "INT8"] if self.int8_io else ["FLOAT32", "FLOAT32"]
            checks.append(StructuralCheck("I/O dtype", io == want, f"input {io[0]}, output {io[1]}"))
        ok = meta.get("carn_mobile.scale") == str(request.scale)
        checks.append(StructuralCheck("metadata scale", ok, f"carn_mobile.scale = {meta.get('carn_mobile.scale')}"))
        return checks

    def versions(self) -> dict[str, str | None]:
        return {name: version_of(name) for name in ("litert-torch", "ai-edge-litert", "ai-edge-quantizer")}


def _float16_weights(data: bytes) -> bytes:
    quantizer = require("ai_edge_quantizer.quantizer", "litert", "fp16 LiteRT exports")
    recipe = [{"regex": ".*", "operation": "*", "algorithm_key": "float_casting",
               "op_config": {"weight_tensor_config": {"num_bits": 16, "dtype": "FLOAT", "granularity": "TENSORWISE"},
                             "compute_precision": "FLOAT", "explicit_dequantize": True, "skip_checks": False}}]
    q = quantizer.Quantizer(bytearray(data))
    q.load_quantization_recipe(recipe)
    return bytes(q.quantize().quantized_model)


def _with_metadata(data: bytes, metadata: dict[str, str]) -> bytes:
    """``data`` with a ``carn_mobile`` metadata entry holding ``metadata`` as JSON."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    buffer = schema.BufferT()
    buffer.data = list(json.dumps(metadata, sort_keys=True).encode())
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != METADATA_NAME.encode()] + [entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _root(model: Path | bytes):
    from ai_edge_litert import schema_py_generated as schema

    data = model if isinstance(model, bytes) else Path(model).read_bytes()
    return schema, schema.Model.GetRootAs(data, 0)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``carn_mobile.*`` metadata of a ``.tflite``; ``{}`` if it has none."""
    _, model = _root(Path(path))
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() == METADATA_NAME.encode():
            return json.loads(bytes(model.Buffers(entry.Buffer()).DataAsNumpy()).decode())
    return {}


def analyze(path: str | Path | bytes) -> dict[str, Any]:
    """Ops, TRANSPOSE count, GPU-delegate fit, float ops and I/O of a ``.tflite``'s main subgraph
    (a file, or its bytes)."""
    schema, model = _root(path if isinstance(path, bytes) else Path(path))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    graph = model.Subgraphs(0)
    max_rank, transposes, body_transposes = 0, 0, 0
    inputs = {graph.Inputs(i) for i in range(graph.InputsLength())}
    outputs = {graph.Outputs(i) for i in range(graph.OutputsLength())}
    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    float_ops: list[str] = []  # ops computing on a float activation, the I/O's QUANTIZE / DEQUANTIZE excepted
    constants = {t for t in range(graph.TensorsLength())
                 if model.Buffers(graph.Tensors(t).Buffer()).DataLength() > 0}
    dequantized: dict[int, int] = {}  # output tensor of a DEQUANTIZE -> its (stored) input tensor
    convs: list[int] = []  # weight tensors of the convolutions
    operators = [graph.Operators(i) for i in range(graph.OperatorsLength())]
    codes = [model.OperatorCodes(op.OpcodeIndex()) for op in operators]
    ops = [names.get(max(c.BuiltinCode(), c.DeprecatedBuiltinCode()), "CUSTOM") for c in codes]
    # The edges: the I/O tensors, and in an int8 graph the two sides of its edge QUANTIZE / DEQUANTIZE.
    edge_in, edge_out = set(inputs), set(outputs)
    for op, name in zip(operators, ops, strict=True):
        if name == "QUANTIZE" and op.Inputs(0) in inputs:
            edge_in.add(op.Outputs(0))
        elif name == "DEQUANTIZE" and op.Outputs(0) in outputs:
            edge_out.add(op.Inputs(0))
    for op, name in zip(operators, ops, strict=True):
        tensors = [op.Inputs(j) for j in range(op.InputsLength())] + [op.Outputs(j) for j in range(op.OutputsLength())]
        for t in tensors:
            if t >= 0:
                max_rank = max(max_rank, graph.Tensors(t).ShapeLength())
        if _computes_in_float(graph, op, name, inputs, outputs, constants):
            float_ops.append(name)
        if name == "TRANSPOSE":
            transposes += 1
            at_edge = op.Inputs(0) in edge_in or op.Outputs(0) in edge_out
            body_transposes += 0 if at_edge else 1
        elif name == "DEQUANTIZE":
            dequantized[op.Outputs(0)] = op.Inputs(0)
        elif name in ("CONV_2D", "DEPTHWISE_CONV_2D") and op.InputsLength() > 1:
            convs.append(op.Inputs(1))
    # The dtype a conv's weights are stored in: float16 weights reach it through a DEQUANTIZE.
    weight_types = {type_names.get(graph.Tensors(dequantized.get(t, t)).Type(), "?") for t in convs}
    unsupported = sorted(set(ops) - GPU_DELEGATE_OPS)
    if max_rank > GPU_MAX_RANK:
        unsupported.append(f"rank-{max_rank} tensors")
    signature = model.SignatureDefs(0)
    sig_in = [signature.Inputs(i).Name().decode() for i in range(signature.InputsLength())]
    sig_out = [signature.Outputs(i).Name().decode() for i in range(signature.OutputsLength())]
    first_input = graph.Tensors(graph.Inputs(0))
    return {
        "op_counts": dict(sorted(Counter(ops).items())),
        "ops_total": len(ops),
        "transposes": transposes,
        "body_transposes": body_transposes,
        "max_tensor_rank": max_rank,
        "gpu_compatible": not unsupported,
        "gpu_unsupported": unsupported,
        "gpu_op_table": "carn_mobile.export.target_litert.GPU_DELEGATE_OPS",
        "inputs": sig_in,
        "outputs": sig_out,
        "input_shape": [int(d) for d in first_input.ShapeAsNumpy()],
        "weight_types": sorted(weight_types),
        "float_ops": sorted(set(float_ops)),
        "input_type": type_names.get(first_input.Type(), "?"),
        "output_type": type_names.get(graph.Tensors(graph.Outputs(0)).Type(), "?"),
    }


def _computes_in_float(graph, op, name: str, inputs: set[int], outputs: set[int], constants: set[int]) -> bool:
    """Whether ``op`` reads or writes a float32 activation (a tensor with no constant data),
    the QUANTIZE of a graph input and the DEQUANTIZE of a graph output excepted. In a float
    model every op does; in a full-integer one none should."""
    from ai_edge_litert import schema_py_generated as schema

    if (name == "QUANTIZE" and op.Inputs(0) in inputs) or (name == "DEQUANTIZE" and op.Outputs(0) in outputs):
        return False
    if name == "DEQUANTIZE":  # in the body: something computes in float behind it
        return True
    ends = [op.Inputs(j) for j in range(op.InputsLength())] + [op.Outputs(j) for j in range(op.OutputsLength())]
    return any(t >= 0 and graph.Tensors(t).Type() == schema.TensorType.FLOAT32 and t not in constants
               for t in ends)


def _analyzer_verdict(path: Path) -> str | None:
    """The GPU line of LiteRT's own model analyzer. Recorded, not trusted: in ai-edge-litert 2.3
    it calls a graph with rank-6 tensors and CUMSUM compatible too."""
    try:
        from ai_edge_litert import _pywrap_analyzer_wrapper as analyzer

        text = analyzer.ModelAnalyzer(str(path), True, True)
    except Exception:  # private module; absent or changed in another release
        return None
    return next((line.strip() for line in text.splitlines() if "GPU" in line), None)


def _int8_notes(int8: dict[str, Any], info: dict[str, Any]) -> list[str]:
    if not int8:
        return []
    folded = int8["folded"]
    io = "int8 I/O" if int8["int8_io"] else "float32 I/O (QUANTIZE in, DEQUANTIZE out)"
    body = "every op int8" if not info["float_ops"] else f"float ops left: {info['float_ops']}"
    return [f"int8: {int8['quantizer']}, calibrated on {int8['calibration_patches']} patches; {body}, {io}; "
            f"folded {folded['moves']} float DEPTH_TO_SPACE / TRANSPOSE and {folded['clamp_to_grid']} clamp "
            f"(requantizations kept {folded['requantize_kept']}, dropped {folded['requantize_dropped']})"]


def _op_summary(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {op}" for op, n in sorted(counts.items(), key=lambda kv: -kv[1]))
