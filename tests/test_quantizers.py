"""Every quantizer applies every field of the recipe it is given, or refuses it naming the field.

Each (quantizer, recipe field) pair has a case below: a value other than the quantizer's default
and either the observable change in the quantized model, or the refusal. The completeness test
fails when a field or a quantizer is added without its case. Small CARN-M-shaped networks (16
channels) and 8 built-in calibration patches keep each quantization to a second or two.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from carn_mobile.export import ExportRequest, get_target, list_targets, per_scale_module, plan_exports
from carn_mobile.models import build_model
from carn_mobile.quantization import CalibrationSource, Recipe, RecipeRefused
from carn_mobile.quantization.litert_aeq import AEQ_QUANTIZER
from carn_mobile.quantization.onnx_qdq import QDQ_QUANTIZER
from carn_mobile.quantization.pt2e import PT2E_QUANTIZER
from carn_mobile.quantization.qnn_qdq import QNN_QUANTIZER
from carn_mobile.quantization.recipe import QUANTIZER_FIELDS
from carn_mobile.runtimes import ShapeSpec
from carn_mobile.weights import resolve_weights


@dataclass(frozen=True)
class Case:
    """One recipe field set away from the default: ``check(default, changed)`` sees the change in
    the quantized model, or ``refused`` is the text the refusal must contain."""

    quantizer: str
    field: str
    value: object
    check: Callable | None = None
    refused: str | None = None


# --- what the quantized models look like ------------------------------------------------------


def _onnx_initializers(model) -> dict:
    from onnx import numpy_helper

    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def _onnx_activation_scales(model) -> list[float]:
    """Scales of every QuantizeLinear on an activation (not a weight), in graph order."""
    inits = _onnx_initializers(model)
    return [float(inits[n.input[1]]) for n in model.graph.node
            if n.op_type == "QuantizeLinear" and n.input[0] not in inits]


def _onnx_weight_dequantizers(model) -> list:
    inits = _onnx_initializers(model)
    return [(inits[n.input[0]], inits[n.input[1]]) for n in model.graph.node
            if n.op_type == "DequantizeLinear" and n.input[0] in inits and inits[n.input[0]].ndim == 4]


def _onnx_conv_weight_is_float(model, name: str) -> bool:
    """Whether the conv of module ``name`` reads its float32 weight directly (no DequantizeLinear)."""
    inits = _onnx_initializers(model)
    weight = f"{name}.weight"
    return any(n.op_type == "Conv" and n.input[1] == weight for n in model.graph.node) and \
        inits[weight].dtype == np.float32


def _onnx_output_scale(model) -> float:
    """Scale of the DequantizeLinear that produces the graph's output (the picture)."""
    inits = _onnx_initializers(model)
    out = model.graph.output[0].name
    (dq,) = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.output[0] == out]
    return float(inits[dq.input[1]])


def _pt2e_activation_scales(graph) -> list[float]:
    return [float(n.args[1]) for n in graph.graph.nodes
            if n.op == "call_function" and "quantize_per_tensor" in str(n.target) and "dequantize" not in str(n.target)
            and isinstance(n.args[1], float)]


def _pt2e_per_channel(graph) -> bool:
    return any("dequantize_per_channel" in str(n.target) for n in graph.graph.nodes if n.op == "call_function")


# Checks shared by the two QDQ ONNX quantizers (the default model first, the changed one second).
def _scales_differ(a, b) -> bool:
    return _onnx_activation_scales(a) != _onnx_activation_scales(b)


def _ranges_narrow(a, b) -> bool:
    return max(_onnx_activation_scales(b)) < max(_onnx_activation_scales(a))


def _weights_per_tensor(a, b) -> bool:
    return all(s.size > 1 for _, s in _onnx_weight_dequantizers(a)) and \
        all(s.size == 1 for _, s in _onnx_weight_dequantizers(b))


def _output_off_grid(a, b) -> bool:
    return _onnx_output_scale(a) == pytest.approx(1 / 255) != _onnx_output_scale(b)


CASES = [
    # onnxruntime quantize_static: applies every field.
    Case("onnxruntime-qdq", "method", "MinMax", check=_scales_differ),
    Case("onnxruntime-qdq", "percentile", 99.0, check=_ranges_narrow),
    Case("onnxruntime-qdq", "per_channel", False, check=_weights_per_tensor),
    Case("onnxruntime-qdq", "weight_type", "uint8",
         check=lambda a, b: {w.dtype for w, _ in _onnx_weight_dequantizers(a)} == {np.dtype(np.int8)}
         and {w.dtype for w, _ in _onnx_weight_dequantizers(b)} == {np.dtype(np.uint8)}),
    Case("onnxruntime-qdq", "activation_type", "int8",
         check=lambda a, b: {_zero_point_types(a), _zero_point_types(b)} == {"uint8", "int8"}),
    Case("onnxruntime-qdq", "output_grid", False, check=_output_off_grid),
    Case("onnxruntime-qdq", "float_modules", {"net.exit": "test"},
         check=lambda a, b: not _onnx_conv_weight_is_float(a, "net.exit")
         and _onnx_conv_weight_is_float(b, "net.exit")),
    # PT2E with XNNPACK's quantizer: what its int8 kernels and torchao's observers allow.
    Case("pt2e-xnnpack", "method", "MinMax",
         check=lambda a, b: _pt2e_activation_scales(a) != _pt2e_activation_scales(b)),
    Case("pt2e-xnnpack", "percentile", 99.0, refused="percentile applies to calibration method Percentile only"),
    Case("pt2e-xnnpack", "per_channel", False, check=lambda a, b: _pt2e_per_channel(a) and not _pt2e_per_channel(b)),
    Case("pt2e-xnnpack", "weight_type", "uint8", refused="weight_type 'uint8'; it applies: int8 (for int8)"),
    Case("pt2e-xnnpack", "activation_type", "uint8", refused="activation_type 'uint8'; it applies: int8 (for int8)"),
    Case("pt2e-xnnpack", "output_grid", True, refused="output_grid True; it applies: False (for int8)"),
    Case("pt2e-xnnpack", "float_modules", {"net.exit": "test"},
         check=lambda a, b: _pt2e_quantized_convs(b) == _pt2e_quantized_convs(a) - 1),
    # onnxruntime's QNN QDQ config: what the HTP takes (symmetric int8 weights, unsigned
    # activations, nothing left in float on the CPU).
    Case("onnxruntime-qnn", "method", "MinMax", check=_scales_differ),
    Case("onnxruntime-qnn", "percentile", 99.0, check=_ranges_narrow),
    Case("onnxruntime-qnn", "per_channel", False, check=_weights_per_tensor),
    Case("onnxruntime-qnn", "weight_type", "uint8", refused="weight_type 'uint8'; it applies: int8 (for int8)"),
    Case("onnxruntime-qnn", "activation_type", "int8", refused="activation_type 'int8'; it applies: uint8 (for int8)"),
    Case("onnxruntime-qnn", "output_grid", False, check=_output_off_grid),
    Case("onnxruntime-qnn", "float_modules", {"net.exit": "test"},
         refused="float_modules ['net.exit']; it applies: none"),
    # ai-edge-quantizer's static int8 with the recipe's ranges: XNNPACK's int8 types, every op integer.
    Case("ai-edge-quantizer", "method", "MinMax",
         check=lambda a, b: sorted(_tflite_activation_scales(b)) != sorted(_tflite_activation_scales(a))),
    Case("ai-edge-quantizer", "percentile", 99.0,
         check=lambda a, b: np.median(_tflite_activation_scales(b)) < np.median(_tflite_activation_scales(a))),
    Case("ai-edge-quantizer", "per_channel", False,
         check=lambda a, b: 1 not in _tflite_weight_scale_sizes(a) and _tflite_weight_scale_sizes(b) == {1}),
    Case("ai-edge-quantizer", "weight_type", "uint8", refused="weight_type 'uint8'; it applies: int8 (for int8)"),
    Case("ai-edge-quantizer", "activation_type", "uint8",
         refused="activation_type 'uint8'; it applies: int8 (for int8)"),
    Case("ai-edge-quantizer", "output_grid", False, refused="output_grid False; it applies: True (for int8)"),
    Case("ai-edge-quantizer", "float_modules", {"net.exit": "test"},
         refused="float_modules ['net.exit']; it applies: none"),
]


SPECS = {spec.name: spec for spec in (QDQ_QUANTIZER, PT2E_QUANTIZER, QNN_QUANTIZER, AEQ_QUANTIZER)}


def _tflite_tensors(data: bytes) -> list:
    from ai_edge_litert.tools import flatbuffer_utils

    return flatbuffer_utils.read_model_from_bytearray(bytearray(data)).subgraphs[0].tensors


def _tflite_activation_scales(data: bytes) -> list[float]:
    """Scales of the int8 activations (tensors without constant data)."""
    return [float(t.quantization.scale[0]) for t in _tflite_tensors(data)
            if t.buffer == 0 and t.quantization is not None and t.quantization.scale is not None]


def _tflite_weight_scale_sizes(data: bytes) -> set[int]:
    """How many scales each int8 4-D constant (a conv weight) has: its output channels, or 1."""
    return {len(t.quantization.scale) for t in _tflite_tensors(data)
            if t.buffer != 0 and t.type == 9 and len(t.shape) == 4 and t.quantization is not None}


def _zero_point_types(model) -> str:
    inits = _onnx_initializers(model)
    types = {str(inits[n.input[2]].dtype) for n in model.graph.node
             if n.op_type == "QuantizeLinear" and n.input[0] not in inits}
    assert len(types) == 1, types
    return types.pop()


def _pt2e_quantized_convs(graph) -> int:
    return sum(1 for n in graph.graph.nodes if n.op == "call_function" and "conv2d" in str(n.target)
               and isinstance(n.args[1], torch.fx.Node) and "dequantize" in str(n.args[1].target))


def test_every_quantizer_has_a_case_for_every_recipe_field() -> None:
    quantizers = {get_target(t).quantizer.name for t in list_targets() if get_target(t).quantizer}
    assert quantizers == set(SPECS)
    covered = {(c.quantizer, c.field) for c in CASES}
    assert covered == {(q, f) for q in quantizers for f in QUANTIZER_FIELDS}
    for case in CASES:  # each case sets a value other than the quantizer's default
        spec = SPECS[case.quantizer]
        assert getattr(spec.resolve(Recipe(), "int8"), case.field) != case.value, case


# --- quantizing the small network -------------------------------------------------------------


@pytest.fixture(scope="module")
def small():
    net = build_model("carn-m", channels=16, scales=(2,)).eval()
    return per_scale_module(net, 2), CalibrationSource(count=8, patch=8).for_scale(2)


@pytest.fixture(scope="module")
def float_onnx(small, tmp_path_factory) -> Path:
    import onnx

    from carn_mobile.export.target_onnx import onnx_model

    module, _ = small
    model, _ = onnx_model(module, ExportRequest("carn-m", 2, "fp32", ShapeSpec(max_side=64)))
    path = tmp_path_factory.mktemp("quantizers") / "float.onnx"
    onnx.save(model, str(path))
    return path


def _quantize(quantizer: str, recipe: Recipe, small, float_onnx: Path, tmp_path: Path, precision: str = "int8"):
    module, calibration = small
    if quantizer in ("onnxruntime-qdq", "onnxruntime-qnn"):
        import onnx

        from carn_mobile.quantization.onnx_qdq import quantize_onnx

        out = tmp_path / f"q{len(list(tmp_path.iterdir()))}.onnx"
        if quantizer == "onnxruntime-qnn":
            pytest.importorskip("onnxruntime.quantization.execution_providers.qnn")
            from carn_mobile.quantization.qnn_qdq import quantize_for_htp

            quantize_for_htp(float_onnx, out, QNN_QUANTIZER.resolve(recipe, precision), calibration)
        else:
            quantize_onnx(float_onnx, out, QDQ_QUANTIZER.resolve(recipe, precision), calibration)
        return onnx.load(str(out))
    if quantizer == "ai-edge-quantizer":
        pytest.importorskip("ai_edge_quantizer")
        from carn_mobile.export.target_litert import LiteRTTarget
        from carn_mobile.quantization.litert_aeq import quantize_tflite

        float_tflite = tmp_path / f"f{len(list(tmp_path.iterdir()))}.tflite"
        LiteRTTarget("NHWC").export(module, ExportRequest("carn-m", 2, "fp32", ShapeSpec(max_side=64),
                                                          layout="NHWC"), float_tflite)
        # Larger patches than the others use: with 8x8 ones the 99.999th percentile is every tensor's maximum.
        wider = CalibrationSource(count=8, patch=32).for_scale(2)
        data, _ = quantize_tflite(float_tflite.read_bytes(), AEQ_QUANTIZER.resolve(recipe, precision), wider,
                                  nhwc=True)
        return data
    pytest.importorskip("executorch.backends.xnnpack.quantizer.xnnpack_quantizer")
    from carn_mobile.quantization.pt2e import quantize_pt2e

    example = torch.rand(1, 3, 16, 16)
    dims = ExportRequest("carn-m", 2, "fp32", ShapeSpec(max_side=64)).export_dims()
    converted, _ = quantize_pt2e(module, example, dims, calibration, PT2E_QUANTIZER.resolve(recipe))
    return converted


@pytest.fixture(scope="module")
def defaults(small, float_onnx, tmp_path_factory) -> dict:
    """Each quantizer's model with the default recipe (made on first use)."""
    made: dict = {}
    folder = tmp_path_factory.mktemp("defaults")

    def get(quantizer: str):
        if quantizer not in made:
            made[quantizer] = _quantize(quantizer, Recipe(), small, float_onnx, folder)
        return made[quantizer]

    return get


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.quantizer}-{c.field}")
def test_the_quantizer_applies_or_refuses_the_field(case: Case, small, float_onnx, defaults, tmp_path) -> None:
    spec = SPECS[case.quantizer]
    recipe = Recipe(**{case.field: case.value})
    if case.refused is not None:
        with pytest.raises(RecipeRefused) as refusal:
            spec.resolve(recipe)
        message = str(refusal.value)
        assert case.refused in message and "\n" not in message
        return
    assert getattr(spec.resolve(recipe), case.field) == case.value  # what the manifest records: applied
    changed = _quantize(case.quantizer, recipe, small, float_onnx, tmp_path)
    assert case.check(defaults(case.quantizer), changed), f"{case.field}={case.value!r} changed nothing"


@pytest.mark.parametrize("quantizer", ["onnxruntime-qdq", "onnxruntime-qnn"])
def test_w8a16_stores_int8_weights_and_16_bit_activations(quantizer, small, float_onnx, tmp_path) -> None:
    spec = SPECS[quantizer]
    recipe = spec.resolve(Recipe(), "w8a16")
    assert (recipe.weight_type, recipe.activation_type) == ("int8", "uint16")
    model = _quantize(quantizer, Recipe(), small, float_onnx, tmp_path, precision="w8a16")
    assert _zero_point_types(model) == "uint16"
    assert {w.dtype for w, _ in _onnx_weight_dequantizers(model)} == {np.dtype(np.int8)}
    assert _onnx_output_scale(model) == pytest.approx(1 / 65535)  # the output grid at 16 bits
    with pytest.raises(RecipeRefused, match="activation_type 'uint8'; it applies: uint16"):
        spec.resolve(Recipe(activation_type="uint8"), "w8a16")
    with pytest.raises(RecipeRefused, match="no 16-bit activations, which w8a16 needs"):
        PT2E_QUANTIZER.resolve(Recipe(), "w8a16")


def test_a_quantizer_refuses_a_hand_made_recipe_it_did_not_resolve(small, float_onnx, tmp_path) -> None:
    from carn_mobile.quantization.onnx_qdq import quantize_onnx

    with pytest.raises(ValueError, match="resolved by QDQ_QUANTIZER"):
        quantize_onnx(float_onnx, tmp_path / "q.onnx", Recipe(method="MinMax"), small[1])
    assert not (tmp_path / "q.onnx").exists()


# --- the refusal before any work, and what the plan records -----------------------------------


def test_a_method_the_quantizer_cannot_apply_is_refused_before_any_work(tmp_path, capsys) -> None:
    from carn_mobile.cli import export as export_cli

    with pytest.raises(SystemExit) as exit_info:
        export_cli.main(["--target", "executorch", "--precision", "int8", "--calibration-method", "Entropy",
                         "--scale", "4", "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "calibration method (--calibration-method) 'Entropy'; it applies: MinMax, Histogram" in err
    assert "Traceback" not in err and not (tmp_path / "o").exists()


def test_all_targets_skip_the_quantizer_that_refuses_and_plan_what_each_applies(tmp_path) -> None:
    shipped = resolve_weights("carn-m")
    jobs, skipped = plan_exports(shipped, (2, 3, 4), ["all"], [4], precision="int8",
                                 recipe=Recipe(method="Entropy"), out_dir=tmp_path)
    by_target = {j.target.name: j.request.quantization for j in jobs}
    assert "executorch" not in by_target and by_target["onnx"].recipe.method == "Entropy"
    assert by_target["onnx"].quantizer == "onnxruntime-qdq" and by_target["onnx"].recipe.complete
    (refused,) = [s for s in skipped if s.target == "executorch"]
    assert "'Entropy'" in refused.reason
    jobs, _ = plan_exports(shipped, (2, 3, 4), ["onnx", "executorch"], [4], precision="int8", out_dir=tmp_path)
    applied = {j.target.name: j.request.quantization.recipe for j in jobs}
    assert applied["onnx"].method == "Percentile" and applied["executorch"].method == "Histogram"
    assert applied["onnx"].activation_type == "uint8" and applied["executorch"].activation_type == "int8"
    # The rewrite fields are the pipeline's, the same for every quantizer.
    assert all("cascade-as-sum" not in j.request.rewrites and "pad-exit" in j.request.rewrites for j in jobs)
    jobs, _ = plan_exports(shipped, (2, 3, 4), ["onnx", "executorch"], [4], precision="int8", out_dir=tmp_path,
                           recipe=Recipe(skip_rewrites={}, add_rewrites=()))
    assert all("cascade-as-sum" in j.request.rewrites and "pad-exit" not in j.request.rewrites for j in jobs)


def test_a_precision_whose_bit_widths_a_quantizer_lacks_is_refused(monkeypatch) -> None:
    from dataclasses import replace

    from carn_mobile import precision as table

    monkeypatch.setitem(table.PRECISIONS, "w4a8", replace(table.INT8, name="w4a8", weight_bits=4))
    for spec in (QDQ_QUANTIZER, PT2E_QUANTIZER):
        with pytest.raises(RecipeRefused, match="has no 4-bit weights, which w4a8 needs"):
            spec.resolve(Recipe(), "w4a8")
    with pytest.raises(ValueError, match="fp16 is not a quantized precision"):
        QDQ_QUANTIZER.resolve(Recipe(), "fp16")
