"""The recipe applied to ONNX: static QDQ quantization with ``onnxruntime.quantization``.

The float32 graph is pre-processed (``quant_pre_process``: symbolic shapes, basic fusions),
calibrated on the recipe's patches and rewritten as QuantizeLinear/DequantizeLinear pairs
around int8 weights (``quantize_static``, QDQ format). ONNX Runtime fuses those pairs into
integer kernels (QLinearConv, QLinearAdd) when it loads the graph.

The int8 reference for the parity gate is the same QDQ graph run with every graph
optimization off: each Q/DQ pair is then executed literally in float, which is what the
quantized model *means*; the optimized session is what an app runs.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..runtimes import INPUT_NAME, OUTPUT_NAME, require
from ..runtimes.quiet import captured_output
from .calibration import CalibrationSet
from .recipe import PERCENTILE, QuantizerSpec, Recipe

#: Recipe type -> onnxruntime's ``QuantType`` member, and the ONNX tensor type it stores. 16-bit
#: Q/DQ needs opset 21 (or onnxruntime's com.microsoft ops, which ``quantize_static`` then uses).
QUANT_TYPES = {"uint8": "QUInt8", "int8": "QInt8", "uint16": "QUInt16", "int16": "QInt16"}
ONNX_TENSOR_TYPES = {"uint8": "UINT8", "int8": "INT8", "uint16": "UINT16", "int16": "INT16"}

#: What ``quantize_static`` can apply: every field of the recipe (its defaults: the measured table
#: in :mod:`.recipe`).
QDQ_QUANTIZER = QuantizerSpec(
    name="onnxruntime-qdq",
    label="the onnx target's quantizer (onnxruntime quantize_static, QDQ)",
    defaults=Recipe(method="Percentile", percentile=PERCENTILE, per_channel=True, output_grid=True),
    accepts={"method": ("MinMax", "Percentile", "Entropy"), "percentile": None, "per_channel": (True, False),
             "output_grid": (True, False), "float_modules": None},
    weight_types={8: ("int8", "uint8")},
    activation_types={8: ("uint8", "int8"), 16: ("uint16", "int16")},
)


def float_nodes(model, recipe: Recipe) -> dict[str, str]:
    """ONNX node name -> reason, for the nodes whose weights belong to a float module of the recipe."""
    out: dict[str, str] = {}
    initializers = {i.name for i in model.graph.initializer}
    for node in model.graph.node:
        for name in node.input:
            if name in initializers and name.endswith(".weight"):
                reason = recipe.keeps_float(name.removesuffix(".weight"))
                if reason:
                    out[node.name] = reason
    return out


#: Memory the calibration may hold at once: onnxruntime keeps every intermediate tensor of a
#: chunk of patches (64 patches of 48 px at once took 5.5 GB), so patches go in chunks.
CALIBRATION_BYTES = 1.5e9


#: Ops between the exit conv and the output that only move values (the tail of every CARN graph).
_TAIL_OPS = ("Clip", "DepthToSpace", "Slice", "Identity")


def output_grid_tensors(model) -> list[str]:
    """The tensors from the exit conv's output to the graph output (through the clamp, depth-to-
    space and channel slice). They hold the picture itself, so they are quantized on the 8-bit
    image grid, scale 1/255 and zero point 0, instead of a calibrated range: values outside
    [0, 1] are clamped by the graph anyway, and the step of a calibrated range (about 1.4/255)
    would add its own rounding to every output pixel (0.06 dB at x2, measured).
    """
    producers = {out: node for node in model.graph.node for out in node.output}
    tensors, name = [], model.graph.output[0].name
    while name in producers:
        node = producers[name]
        tensors.append(name)
        if node.op_type == "Conv":
            return tensors
        if node.op_type not in _TAIL_OPS:
            break
        name = node.input[0]
    return []  # not the graph shape this rule is for: the calibrated ranges stay


def output_grid_overrides(model, recipe: Recipe) -> dict[str, list[dict[str, Any]]]:
    """``TensorQuantOverrides`` putting the output tensors (:func:`output_grid_tensors`) on the
    activation type's image grid: [0, 1] in 2**bits - 1 steps, the zero point at the type's lowest
    level (0 for unsigned types, -2**(bits-1) for signed ones). Empty unless the recipe asks."""
    if not recipe.output_grid:
        return {}
    dtype = np.dtype(recipe.activation_type)
    levels = 2 ** (8 * dtype.itemsize) - 1
    low = np.array(np.iinfo(dtype).min, dtype)
    return {name: [{"scale": np.array(1.0 / levels, dtype=np.float32), "zero_point": low}]
            for name in output_grid_tensors(model)}


def quantize_onnx(float_model: Path, out: Path, recipe: Recipe, calibration: CalibrationSet) -> dict[str, Any]:
    """Write the int8 QDQ form of ``float_model`` (dynamic H/W) to ``out``; returns details for the manifest."""
    onnx = require("onnx", "export", "int8 ONNX")
    quantization = require("onnxruntime.quantization", "export", "int8 ONNX")
    if not QDQ_QUANTIZER.applies(recipe):
        raise ValueError("quantize_onnx needs a recipe resolved by QDQ_QUANTIZER")
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source = onnx.load(str(float_model))
    with tempfile.TemporaryDirectory(prefix="carn-int8-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        with captured_output():
            quant_pre_process(str(float_model), str(pre), skip_symbolic_shape=False)
        prepared = onnx.load(str(pre))
        excluded = float_nodes(prepared, recipe)
        grid = output_grid_overrides(prepared, recipe)
        reader = Reader(calibration)
        with captured_output():
            quantization.quantize_static(
                str(pre), str(out), reader,
                quant_format=quantization.QuantFormat.QDQ,
                per_channel=recipe.per_channel,
                activation_type=getattr(quantization.QuantType, QUANT_TYPES[recipe.activation_type]),
                weight_type=getattr(quantization.QuantType, QUANT_TYPES[recipe.weight_type]),
                calibrate_method=getattr(quantization.CalibrationMethod, recipe.method),
                nodes_to_exclude=list(excluded),
                extra_options={"CalibPercentile": recipe.percentile or PERCENTILE, "CalibTensorRangeSymmetric": False,
                               "CalibStridedMinMax": calibration_chunk(calibration, len(prepared.graph.node)),
                               "TensorQuantOverrides": grid},
            )  # fmt: skip
    counts = finish_quantized(out, source)
    return {"float_nodes": excluded, "output_grid_tensors": sorted(grid),
            "quantized_convs": counts.get("Conv", 0) - len(excluded), "float_convs": len(excluded),
            "ops": counts}


def finish_quantized(out: Path, source) -> dict[str, int]:
    """Give the quantized model at ``out`` the description and metadata of its float ``source``
    (onnxruntime's quantizers keep neither), check it, save it; returns its op counts."""
    onnx = require("onnx", "export", "int8 ONNX")
    model = onnx.load(str(out))
    model.doc_string = source.doc_string
    del model.metadata_props[:]
    for prop in source.metadata_props:
        model.metadata_props.add(key=prop.key, value=prop.value)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(out))
    counts: dict[str, int] = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


def qdq_reference(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """The int8 reference: the QDQ graph at ``path`` executed literally (no graph optimization).

    The session is made at the first call, after parity has loaded the artifact in its runner
    (a corrupt file is then a failed check, not a crash here).
    """
    ort = require("onnxruntime", "export", "the int8 reference")
    sessions: list = []

    def run(lr: np.ndarray) -> np.ndarray:
        if not sessions:
            options = ort.SessionOptions()
            options.log_severity_level = 3
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            sessions.append(ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]))
        (sr,) = sessions[0].run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(lr, dtype=np.float32)})
        return np.asarray(sr, dtype=np.float32)

    return run


def calibration_chunk(calibration: CalibrationSet, nodes: int) -> int:
    """Patches per calibration chunk: a divisor of their count (onnxruntime's requirement) whose
    intermediate tensors (about 64 float channels per node) fit :data:`CALIBRATION_BYTES`."""
    count = len(calibration.patches)
    per_patch = nodes * 64 * 4 * calibration.patches[0].shape[2] * calibration.patches[0].shape[3]
    most = max(1, int(CALIBRATION_BYTES // per_patch))
    return max(d for d in range(1, count + 1) if count % d == 0 and d <= most)


class Reader:
    """``CalibrationDataReader`` over a calibration set, in chunks (duck-typed: ``get_next``,
    ``rewind``, ``set_range`` and ``len`` as onnxruntime's strided calibration calls them)."""

    def __init__(self, calibration: CalibrationSet) -> None:
        self.patches = calibration.patches
        self.index, self.end = 0, len(self.patches)

    def __len__(self) -> int:
        return len(self.patches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self.index, self.end = start_index, min(end_index, len(self.patches))

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.index >= self.end:
            return None
        self.index += 1
        return {INPUT_NAME: self.patches[self.index - 1]}

    def rewind(self) -> None:
        self.index, self.end = 0, len(self.patches)
