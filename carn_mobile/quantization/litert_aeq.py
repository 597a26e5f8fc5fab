"""The recipe applied to LiteRT: ai-edge-quantizer's static int8, then its float islands folded.

ai-edge-quantizer (AEQ) 0.10 quantizes a converted ``.tflite`` in place: per-channel (or
per-tensor) symmetric int8 weights, asymmetric int8 activations with min/max ranges calibrated
on the recipe's patches in the LiteRT interpreter. It has no int8 rule for two ops CARN's graph
ends with, ``DEPTH_TO_SPACE`` and ``RELU_0_TO_1``, so it leaves them in float between a
``DEQUANTIZE`` and a ``QUANTIZE``. :func:`fold_float_islands` makes them integer again, exactly:

* a ``DEPTH_TO_SPACE`` only moves values, so it runs on the int8 tensor with that tensor's
  scale and zero point; the ``QUANTIZE`` behind it becomes an int8 -> int8 requantization (the
  same arithmetic as dequantize-then-quantize) and disappears where the two grids agree;
* the final ``RELU_0_TO_1`` (the [0, 1] clamp) becomes a requantization onto the 8-bit image
  grid (scale 1/255, zero point -128, whose int8 range *is* [0, 1]): the recipe's output grid.

The graph's input and output stay float32 (a ``QUANTIZE`` in, a ``DEQUANTIZE`` out) unless
``int8_io`` asks for int8 tensors at the edges (the manifest then gives their scale and zero
point). The int8 reference for the parity gate is the quantized file run with LiteRT's
reference kernels (no XNNPACK): what the model means; XNNPACK is what apps run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..runtimes import INPUT_NAME, require
from ..runtimes.quiet import captured_output
from .calibration import CalibrationSet
from .recipe import PERCENTILE, QuantizerSpec, Recipe

#: What this path can apply. Activation ranges: AEQ's own calibration keeps a moving average of
#: each patch's min/max (dominated by the first patches), so the ranges are computed here from
#: every patch, by the recipe's method (global min/max, or the percentile of a histogram, as
#: onnxruntime does) and handed to AEQ, which quantizes with them. CARN-M x4, 64 built-in
#: patches: AEQ's own ranges dropped Set5 by 0.23 dB, Set14 by 0.26 dB. Weights int8 per channel
#: or per tensor; int8 activations for XNNPACK's kernels; no float layers (an op kept float would
#: be an island in the body); the output always lands on the image grid (the folded clamp above).
AEQ_QUANTIZER = QuantizerSpec(
    name="ai-edge-quantizer",
    label="the litert target's quantizer (ai-edge-quantizer, static int8)",
    defaults=Recipe(method="Percentile", percentile=PERCENTILE, per_channel=True, output_grid=True),
    accepts={"method": ("MinMax", "Percentile"), "percentile": None, "per_channel": (True, False),
             "output_grid": (True,), "float_modules": ()},
    weight_types={8: ("int8",)},
    activation_types={8: ("int8",)},
)

#: The converted model's one signature (litert-torch's default name).
SIGNATURE = "serving_default"
#: The 8-bit image grid as an int8 quantization: q = round(v * 255) - 128 covers exactly [0, 1].
IMAGE_GRID = (1.0 / 255.0, -128)


def aeq_recipe(recipe: Recipe) -> list[dict[str, Any]]:
    """AEQ's recipe for ``recipe`` (resolved by :data:`AEQ_QUANTIZER`): every op int8, the graph's
    input and output left float (AEQ then inserts the edge QUANTIZE / DEQUANTIZE)."""
    if not AEQ_QUANTIZER.applies(recipe):
        raise ValueError("aeq_recipe needs a recipe resolved by AEQ_QUANTIZER")
    int8 = {
        "activation_tensor_config": {"num_bits": 8, "symmetric": False, "granularity": "TENSORWISE", "dtype": "INT"},
        "weight_tensor_config": {"num_bits": 8, "symmetric": True, "dtype": "INT",
                                 "granularity": "CHANNELWISE" if recipe.per_channel else "TENSORWISE"},
        "compute_precision": "INTEGER", "explicit_dequantize": False, "skip_checks": False, "min_weight_elements": 0,
    }
    keep_float = {"compute_precision": "FLOAT", "explicit_dequantize": False, "skip_checks": False}
    return [{"regex": ".*", "operation": "*", "algorithm_key": "min_max_uniform_quantize", "op_config": int8},
            *({"regex": ".*", "operation": edge, "algorithm_key": "no_quantize", "op_config": keep_float}
              for edge in ("INPUT", "OUTPUT"))]


def quantize_tflite(data: bytes, recipe: Recipe, calibration: CalibrationSet, nhwc: bool,
                    int8_io: bool = False) -> tuple[bytes, dict[str, Any]]:
    """(int8 ``.tflite`` bytes, details): the float32 model ``data`` quantized with ``recipe`` and
    calibrated on ``calibration``'s patches (fed at their own size; the signature re-sizes)."""
    aeq = require("ai_edge_quantizer.quantizer", "litert", "int8 LiteRT exports")
    samples = []
    for patch in calibration.patches:
        x = np.ascontiguousarray(patch.transpose(0, 2, 3, 1) if nhwc else patch, dtype=np.float32)
        samples.append({INPUT_NAME: x})
    with captured_output():  # progress bars and the interpreter's notes
        quantizer = aeq.Quantizer(bytearray(data))
        quantizer.load_quantization_recipe(aeq_recipe(recipe))
        # AEQ's calibration names the tensors that need a range; the ranges are the recipe's.
        needed = quantizer.calibrate({SIGNATURE: samples[:1]}, num_threads=1)
        ranges = activation_ranges(data, samples, needed, recipe)
        quantized = bytes(quantizer.quantize(ranges, enable_progress_bar=False,
                                             enable_progress_report=False).quantized_model)
    folded, counts = fold_float_islands(quantized, int8_io)
    granularity = "per channel" if recipe.per_channel else "per tensor"
    method = f"percentile {recipe.percentile}" if recipe.method == "Percentile" else "min/max"
    return folded, {"quantizer": f"ai-edge-quantizer static int8 ({method} activation ranges, weights {granularity})",
                    "calibrated_tensors": len(ranges), "folded": counts, "int8_io": int8_io}


#: Histogram bins per tensor for the Percentile method (onnxruntime's HistogramCalibrater: 2048).
HISTOGRAM_BINS = 2048


def activation_ranges(data: bytes, samples: list[dict[str, np.ndarray]], needed: dict[str, Any],
                      recipe: Recipe) -> dict[str, dict[str, np.ndarray]]:
    """AEQ's range records (``{tensor name: {"min", "max"}}``) for the tensors ``needed`` names,
    from every sample run through the float32 model ``data``: global min/max (``MinMax``) or the
    recipe's percentile of each tail (``Percentile``: a second pass fills a histogram over the
    min/max range). Two tensors are [0, 1] whatever the samples hold: the input, and with the
    recipe's output grid the picture tensor (:func:`picture_tensor`)."""
    interpreter_mod = require("ai_edge_litert.interpreter", "litert", "int8 LiteRT exports")
    interpreter = interpreter_mod.Interpreter(model_content=bytes(data), experimental_preserve_all_tensors=True)
    (entry,) = interpreter.get_input_details()
    index = {t["name"]: t["index"] for t in interpreter.get_tensor_details()}
    missing = sorted(set(needed) - set(index))
    if missing:
        raise ValueError(f"ai-edge-quantizer asked for ranges of tensors the model lacks: {missing[:3]}")
    shape: tuple[int, ...] = ()

    def tensors(sample: dict[str, np.ndarray]):
        nonlocal shape
        x = sample[INPUT_NAME]
        if x.shape != shape:
            interpreter.resize_tensor_input(entry["index"], list(x.shape))
            interpreter.allocate_tensors()
            shape = x.shape
        interpreter.set_tensor(entry["index"], x)
        interpreter.invoke()
        for name in needed:
            yield name, interpreter.get_tensor(index[name])

    low = {name: np.inf for name in needed}
    high = {name: -np.inf for name in needed}
    with captured_output():
        for sample in samples:
            for name, values in tensors(sample):
                low[name], high[name] = min(low[name], float(values.min())), max(high[name], float(values.max()))
        if recipe.method == "Percentile":
            counts = {name: np.zeros(HISTOGRAM_BINS, np.int64) for name in needed}
            for sample in samples:
                for name, values in tensors(sample):
                    span = (low[name], high[name]) if high[name] > low[name] else (low[name], low[name] + 1e-6)
                    counts[name] += np.histogram(values, HISTOGRAM_BINS, span)[0]
            for name in needed:
                low[name], high[name] = _percentile_range(counts[name], low[name], high[name], recipe.percentile)
    # The input is a picture in [0, 1] by contract: its range is that, not what the patches held
    # (a brighter pixel than any patch's would be clipped), and 8-bit pictures land on the grid.
    # With the output grid the picture is rounded once, at the exit conv, onto 1/255 steps.
    pinned = {name for name in needed if index[name] == entry["index"]}
    if recipe.output_grid:
        picture = picture_tensor(data)
        if picture not in needed:
            raise ValueError(f"ai-edge-quantizer asked for no range of the picture tensor {picture!r}")
        pinned.add(picture)
    for name in pinned:
        low[name], high[name] = 0.0, 1.0
    shaped = {name: np.asarray(needed[name]["min"]).shape for name in needed}
    return {name: {"min": np.full(shaped[name], low[name], np.float32),
                   "max": np.full(shaped[name], high[name], np.float32)} for name in needed}


#: Ops that only move values (an int8 tensor keeps its grid through them).
_MOVES = ("DEPTH_TO_SPACE", "TRANSPOSE")
#: Ops between the exit conv and the output: moves and the [0, 1] clamp.
_PICTURE_OPS = (*_MOVES, "RELU_0_TO_1")


def picture_tensor(data: bytes) -> str:
    """The name of the last computed tensor in the float32 model ``data`` (the exit conv's output
    in an optimized graph): the one behind the graph's output through shuffles and the clamp,
    which the output grid puts on 1/255 steps (the requantization onto the image grid then has
    nothing left to do)."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    graph, names = model.subgraphs[0], _op_names(model)
    producer = {int(t): op for op in graph.operators for t in op.outputs}
    tensor = int(graph.outputs[0])
    while tensor in producer and names[producer[tensor].opcodeIndex] in _PICTURE_OPS:
        tensor = int(producer[tensor].inputs[0])
    return graph.tensors[tensor].name.decode()


def _percentile_range(counts: np.ndarray, low: float, high: float, percentile: float) -> tuple[float, float]:
    """The values below which ``100 - percentile`` % and ``percentile`` % of the histogram lie."""
    cumulative = np.cumsum(counts) / max(int(counts.sum()), 1)
    edges = np.linspace(low, high, len(counts) + 1)
    tail = (100.0 - percentile) / 100.0
    first = int(np.searchsorted(cumulative, tail, side="right"))
    last = int(np.searchsorted(cumulative, 1.0 - tail, side="left"))
    # A tensor that never goes below zero (after a ReLU) keeps 0 exactly: its zero point stays exact.
    return (0.0 if low >= 0 else float(edges[first])), float(edges[min(last + 1, len(counts))])


def _op_names(model) -> dict[int, str]:
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    return {i: names.get(max(c.builtinCode, c.deprecatedBuiltinCode), "CUSTOM")
            for i, c in enumerate(model.operatorCodes)}


def _opcode(model, name: str) -> int:
    """The index of builtin ``name`` among the model's operator codes (added when missing)."""
    from ai_edge_litert import schema_py_generated as schema

    code = getattr(schema.BuiltinOperator, name)
    for i, c in enumerate(model.operatorCodes):
        if max(c.builtinCode, c.deprecatedBuiltinCode) == code:
            return i
    entry = schema.OperatorCodeT()
    entry.builtinCode, entry.deprecatedBuiltinCode, entry.version = code, min(code, 127), 1
    model.operatorCodes.append(entry)
    return len(model.operatorCodes) - 1


def _grid(tensor) -> tuple[float, int]:
    """A tensor's (scale, zero point), the scale as the file stores it (float32)."""
    q = tensor.quantization
    return float(np.float32(q.scale[0])), int(q.zeroPoint[0])


def _set_grid(tensor, grid: tuple[float, int]) -> None:
    from ai_edge_litert import schema_py_generated as schema

    q = schema.QuantizationParametersT()
    q.scale, q.zeroPoint, q.quantizedDimension = [float(np.float32(grid[0]))], [int(grid[1])], 0
    tensor.quantization = q


def fold_float_islands(data: bytes, int8_io: bool = False) -> tuple[bytes, dict[str, int]]:
    """``data`` with every float ``DEPTH_TO_SPACE`` / ``TRANSPOSE`` / ``RELU_0_TO_1`` made integer
    (see the module docstring), and with int8 graph I/O when ``int8_io``; raises ``ValueError``
    when a float op is left. Returns the bytes and what was folded."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    from ..export.target_litert import analyze  # here: that module imports this one

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    graph = _Graph(model)
    int8 = schema.TensorType.INT8
    counts = {"moves": 0, "clamp_to_grid": 0, "requantize_dropped": 0}
    # 1. DEQUANTIZE -> DEPTH_TO_SPACE / TRANSPOSE / RELU_0_TO_1: the op reads the int8 tensor; a move
    #    keeps its grid (the QUANTIZE behind it is now an int8 -> int8 requantization), a clamp is step 2.
    for dq in graph.ops("DEQUANTIZE"):
        source, floated = graph.io(dq)
        users = graph.consumers(floated)
        if graph.tensor(source).type != int8 or not users or any(graph.name(u) not in _PICTURE_OPS for u in users):
            continue
        for user in users:
            user.inputs[0] = source
            if graph.name(user) in _MOVES:
                out = graph.tensor(user.outputs[0])
                out.type = int8
                _set_grid(out, _grid(graph.tensor(source)))
                counts["moves"] += 1
        graph.remove(dq)
    # 2. RELU_0_TO_1 of an int8 tensor: a requantization onto the image grid, whose int8 range is
    #    [0, 1]; a float output gets a DEQUANTIZE behind it.
    for clamp in graph.ops("RELU_0_TO_1"):
        source, out = graph.io(clamp)
        if graph.tensor(source).type != int8:
            continue
        clamp.opcodeIndex = graph.opcode("QUANTIZE")
        if out in graph.outputs and not int8_io:
            on_grid = graph.add_tensor(graph.tensor(out), int8, IMAGE_GRID, suffix=b"/int8")
            clamp.outputs = [on_grid]
            graph.insert_after(clamp, "DEQUANTIZE", on_grid, out)
        else:
            graph.tensor(out).type = int8
            _set_grid(graph.tensor(out), IMAGE_GRID)
        counts["clamp_to_grid"] += 1
    # 3. A requantization between equal grids does nothing: its readers read its input.
    for q in graph.ops("QUANTIZE"):
        source, target = graph.io(q)
        if graph.tensor(source).type == int8 and _grid(graph.tensor(source)) == _grid(graph.tensor(target)):
            graph.replace_tensor(target, source)
            graph.remove(q)
            counts["requantize_dropped"] += 1
    counts["requantize_kept"] = sum(1 for q in graph.ops("QUANTIZE") if graph.tensor(graph.io(q)[0]).type == int8)
    if int8_io:  # the edge QUANTIZE / DEQUANTIZE go: the graph and its signature take and give int8
        for op in graph.ops("QUANTIZE") + graph.ops("DEQUANTIZE"):
            source, target = graph.io(op)
            if source in graph.inputs:
                graph.replace_tensor(source, target)
                graph.remove(op)
            elif target in graph.outputs:
                graph.replace_tensor(target, source)
                graph.remove(op)
    folded = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    left = analyze(folded)["float_ops"]  # the litert target's own rule, which its structural check applies
    if left:
        raise ValueError(f"float ops left in the int8 LiteRT graph after folding: {left}")
    return folded, counts


class _Graph:
    """The main subgraph of a flatbuffer ``ModelT``, with the edits the fold needs."""

    def __init__(self, model) -> None:
        self.model, self.graph = model, model.subgraphs[0]
        self.names = _op_names(model)

    @property
    def inputs(self) -> list[int]:
        return [int(i) for i in self.graph.inputs]

    @property
    def outputs(self) -> list[int]:
        return [int(i) for i in self.graph.outputs]

    def name(self, op) -> str:
        return self.names[op.opcodeIndex]

    def ops(self, name: str) -> list:
        return [op for op in self.graph.operators if self.name(op) == name]

    @staticmethod
    def io(op) -> tuple[int, int]:
        return int(op.inputs[0]), int(op.outputs[0])

    def tensor(self, index: int):
        return self.graph.tensors[index]

    def consumers(self, tensor: int) -> list:
        return [op for op in self.graph.operators if tensor in [int(i) for i in op.inputs]]

    def opcode(self, name: str) -> int:
        index = _opcode(self.model, name)
        self.names = _op_names(self.model)
        return index

    def remove(self, op) -> None:
        self.graph.operators.remove(op)

    def add_tensor(self, like, dtype: int, grid: tuple[float, int], suffix: bytes) -> int:
        from ai_edge_litert import schema_py_generated as schema

        tensor = schema.TensorT()
        tensor.name = (like.name or b"t") + suffix
        tensor.shape, tensor.shapeSignature, tensor.type, tensor.buffer = like.shape, like.shapeSignature, dtype, 0
        _set_grid(tensor, grid)
        self.graph.tensors.append(tensor)
        return len(self.graph.tensors) - 1

    def insert_after(self, op, name: str, source: int, target: int) -> None:
        from ai_edge_litert import schema_py_generated as schema

        new = schema.OperatorT()
        new.opcodeIndex, new.inputs, new.outputs = self.opcode(name), [source], [target]
        self.graph.operators.insert(self.graph.operators.index(op) + 1, new)

    def replace_tensor(self, old: int, new: int) -> None:
        """Every reader of ``old`` (ops, the graph's inputs and outputs, the signature) reads ``new``."""
        for op in self.graph.operators:
            op.inputs = [new if int(i) == old else int(i) for i in op.inputs]
        self.graph.inputs = [new if i == old else i for i in self.inputs]
        self.graph.outputs = [new if i == old else i for i in self.outputs]
        for signature in self.model.signatureDefs or []:
            for entry in [*signature.inputs, *signature.outputs]:
                if int(entry.tensorIndex) == old:
                    entry.tensorIndex = new


def tflite_reference(path: Path, nhwc: bool) -> Callable[[np.ndarray], np.ndarray]:
    """The int8 reference: the quantized ``.tflite`` at ``path`` run with LiteRT's reference
    kernels (no XNNPACK delegate), NCHW float32 in and out like every runner."""
    from ..runtimes.runner_litert import signature_call

    interpreter_mod = require("ai_edge_litert.interpreter", "litert", "the int8 LiteRT reference")
    calls: list = []

    def run(lr: np.ndarray) -> np.ndarray:
        if not calls:  # made at the first call, after the runner loaded the file
            interpreter = interpreter_mod.Interpreter(
                model_path=str(path), experimental_op_resolver_type=interpreter_mod.OpResolverType.BUILTIN_REF)
            calls.append(signature_call(interpreter, nhwc))
        return calls[0](lr)

    return run
