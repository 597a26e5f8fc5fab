"""The recipe applied for Qualcomm's HTP (the phone's NPU): QDQ ONNX made with onnxruntime's QNN tools.

The float32 graph goes through ``qnn_preprocess_model`` (the graph fusions the HTP wants), then
``get_qnn_qdq_config`` builds the static quantization config: the HTP's own constraints on
scales and types come from it (tensor-level overrides), the recipe's choices on top of it
(calibration method and percentile, per-channel weights, the output on the image grid). The
result is an ordinary QDQ graph; the QNN execution provider compiles it for one SoC.

What the HTP takes, and therefore what the quantizer offers: symmetric int8 weights (per
channel), unsigned activations of 8 or 16 bits (``int8`` / ``w8a16``). A module kept in float
would leave the NPU for the CPU, so ``float_modules`` is refused.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

from ..runtimes import require
from ..runtimes.quiet import captured_output
from .calibration import CalibrationSet
from .onnx_qdq import QUANT_TYPES, Reader, calibration_chunk, finish_quantized, output_grid_overrides
from .recipe import PERCENTILE, QuantizerSpec, Recipe

#: The HTP's types; the recipe fields it applies (defaults as for onnxruntime's CPU QDQ, whose
#: measurements in :mod:`.recipe` hold for the same graph; the emulator's task-PSNR drops are in
#: docs/qnn.md).
QNN_QUANTIZER = QuantizerSpec(
    name="onnxruntime-qnn",
    label="the qnn target's quantizer (onnxruntime's QNN QDQ config)",
    defaults=Recipe(method="Percentile", percentile=PERCENTILE, per_channel=True, output_grid=True),
    accepts={"method": ("MinMax", "Percentile", "Entropy"), "percentile": None, "per_channel": (True, False),
             "output_grid": (True, False), "float_modules": ()},
    weight_types={8: ("int8",)},
    activation_types={8: ("uint8",), 16: ("uint16",)},
)


def quantize_for_htp(float_model: Path, out: Path, recipe: Recipe, calibration: CalibrationSet) -> dict[str, Any]:
    """Write the HTP-ready QDQ form of ``float_model`` to ``out``; returns details for the manifest."""
    onnx = require("onnx", "qnn", "the qnn target")
    quantization = require("onnxruntime.quantization", "qnn", "the qnn target")
    from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config, qnn_preprocess_model

    if not QNN_QUANTIZER.applies(recipe):
        raise ValueError("quantize_for_htp needs a recipe resolved by QNN_QUANTIZER")
    source = onnx.load(str(float_model))
    bare = copy.deepcopy(source)
    # onnxruntime 1.32's qnn_preprocess_model fails on a model that has metadata; it is put back below.
    del bare.metadata_props[:]
    with tempfile.TemporaryDirectory(prefix="carn-qnn-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        with captured_output():
            # It saves its input with external data along the way, so it gets a copy.
            changed = qnn_preprocess_model(copy.deepcopy(bare), str(pre))
        if not changed:
            onnx.save(bare, str(pre))
        prepared = onnx.load(str(pre))
        grid = output_grid_overrides(prepared, recipe)
        qtype = quantization.QuantType
        with captured_output():
            config = get_qnn_qdq_config(
                str(pre), Reader(calibration),
                calibrate_method=getattr(quantization.CalibrationMethod, recipe.method),
                activation_type=getattr(qtype, QUANT_TYPES[recipe.activation_type]),
                weight_type=getattr(qtype, QUANT_TYPES[recipe.weight_type]),
                per_channel=recipe.per_channel,
                init_overrides=grid or None,
                stride=calibration_chunk(calibration, len(prepared.graph.node)),
            )  # fmt: skip
            config.extra_options["CalibPercentile"] = recipe.percentile or PERCENTILE
            quantization.quantize(str(pre), str(out), config)
    counts = finish_quantized(out, source)
    return {"quantized_convs": counts.get("Conv", 0), "output_grid_tensors": sorted(grid), "ops": counts}
