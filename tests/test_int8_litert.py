"""int8 LiteRT: ai-edge-quantizer's static int8 with the recipe's ranges, float islands folded,
gated in the interpreter's XNNPACK kernels against its reference kernels and on quality.

One CARN-M x4 NHWC artifact (16 built-in calibration patches, small dynamic range) is exported
per module; the quality gate measures the built-in test image, plus Set5/Set14 where the shared
data is. (x2 needs real training images to calibrate, like every int8 target: docs/int8.md.)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import quick_parity_settings

from carn_mobile.cli import export as export_cli
from carn_mobile.cli import parity as parity_cli
from carn_mobile.export import export_model, get_target, manifest_path
from carn_mobile.quantization import CalibrationSource
from carn_mobile.runtimes import MissingDependencyError, get_runner, parse_shape

try:
    get_target("litert").check_available()
except MissingDependencyError as exc:
    pytest.skip(str(exc), allow_module_level=True)


def cli(main: Callable, *args: str) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    return int(exit_info.value.code or 0)


def export_int8(out: Path, **options) -> Path:
    with quick_parity_settings():
        (result,) = export_model("carn-m", targets=["litert"], scales=[4], precision="int8",
                                 shape=parse_shape("dynamic:8-96"), out_dir=out,
                                 calibration=CalibrationSource(count=16),
                                 target_options={"litert": {"layout": "nhwc", **options}})
    return result.artifact


@pytest.fixture(scope="module")
def int8_tflite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_int8(tmp_path_factory.mktemp("litert-int8"))


def manifest(artifact: Path) -> dict:
    return json.loads(manifest_path(artifact).read_text())


def test_every_op_is_integer_and_the_manifest_says_how(int8_tflite: Path) -> None:
    m = manifest(int8_tflite)
    details = m["export"]["details"]
    assert details["weight_types"] == ["INT8"] and details["float_ops"] == []
    assert (details["input_type"], details["output_type"]) == ("FLOAT32", "FLOAT32")
    ops = details["op_counts"]
    # The float32 I/O: one QUANTIZE in and one DEQUANTIZE out; the shuffles are int8 ops now.
    assert ops["DEQUANTIZE"] == 1 and ops["DEPTH_TO_SPACE"] >= 1 and "RELU_0_TO_1" not in ops
    assert details["int8"]["folded"]["moves"] == ops["DEPTH_TO_SPACE"]  # NHWC: the shuffles, no transposes
    assert details["int8"]["folded"]["clamp_to_grid"] == 1
    assert "pad-exit" not in m["export"]["rewrites"]  # its SLICE would hold the size
    q = m["quantization"]
    assert q["quantizer"] == "ai-edge-quantizer" and q["recipe"]["method"] == "Percentile"
    assert q["recipe"]["float_modules"] == {} and q["recipe"]["output_grid"] is True
    assert m["parity"]["status"] == "passed" and m["parity"]["reference"] == "quantized"
    assert m["parity"]["quality"]["passed"] and m["parity"]["quality"]["max_drop_db"] <= 0.1


def test_the_runner_resizes_and_the_output_is_on_the_8_bit_grid(int8_tflite: Path) -> None:
    """One stored size serves every size (resize_tensor_input), and the picture comes out rounded
    to 1/255 steps in [0, 1]: the clamp became the requantization onto the image grid."""
    runner = get_runner("litert")
    run = runner.load(int8_tflite)
    rng = np.random.default_rng(3)
    for h, w in ((9, 31), (40, 24)):
        out = run(rng.random((1, 3, h, w), dtype=np.float32) * 1.2 - 0.1)  # out-of-range input too
        assert out.shape == (1, 3, 4 * h, 4 * w)
        levels = out * 255
        assert out.min() >= 0 and out.max() <= 1 and np.abs(levels - np.rint(levels)).max() < 1e-3


def test_int8_io_takes_and_gives_int8_with_the_same_numbers(int8_tflite: Path, tmp_path: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    integer = export_int8(tmp_path, int8_io=True)
    details = manifest(integer)["export"]["details"]
    assert (details["input_type"], details["output_type"]) == ("INT8", "INT8") and details["float_ops"] == []
    it = Interpreter(str(integer))
    (scale, zero) = it.get_output_details()[0]["quantization"]
    assert scale == pytest.approx(1 / 255) and zero == -128  # output + 128 is the 8-bit picture
    # Same calibration, same recipe: the int8-I/O model computes what the float-I/O one does.
    x = np.random.default_rng(5).random((1, 3, 20, 28), dtype=np.float32)
    a, b = get_runner("litert").load(int8_tflite)(x), get_runner("litert").load(integer)(x)
    assert np.array_equal(a, b)
    with quick_parity_settings():  # the re-check knows the edges it was exported with
        assert cli(parity_cli.main, str(integer)) == 0


def test_nchw_keeps_its_two_edge_transposes_beside_the_edge_quantize(tmp_path: Path) -> None:
    """With the contract's NCHW I/O the graph transposes at the edges, which in int8 sit inside the
    edge QUANTIZE / DEQUANTIZE: still edges, not float or body ops."""
    with quick_parity_settings():
        (result,) = export_model("carn-m", targets=["litert"], scales=[4], precision="int8",
                                 shape=parse_shape("dynamic:8-64"), out_dir=tmp_path,
                                 calibration=CalibrationSource(count=16))
    details = manifest(result.artifact)["export"]["details"]
    assert (details["transposes"], details["body_transposes"]) == (2, 0) and details["float_ops"] == []


def test_carn_parity_rechecks_it(int8_tflite: Path, capsys) -> None:
    with quick_parity_settings():
        assert cli(parity_cli.main, str(int8_tflite)) == 0
    assert "passed" in capsys.readouterr().out


def test_a_wrong_scale_fails_the_quality_gate(int8_tflite: Path, tmp_path: Path, capsys) -> None:
    """Doubling a conv's weight scales in the body keeps the model consistent (its reference
    kernels agree with XNNPACK), so the quality gate against float32 must catch it. (An
    activation's scale would not do: its producer and readers share it, so values survive.)"""
    from ai_edge_litert.tools import flatbuffer_utils

    from carn_mobile.fileio import sha256_file

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(int8_tflite.read_bytes()))
    graph = model.subgraphs[0]
    body = [t for t in graph.tensors if t.buffer != 0 and t.type == 9 and len(t.shape) == 4]  # int8 weights
    victim = body[len(body) // 2]
    victim.quantization.scale = [s * 2 for s in victim.quantization.scale]
    broken = tmp_path / int8_tflite.name
    broken.write_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
    record = manifest(int8_tflite)
    record["file"]["sha256"] = sha256_file(broken)
    manifest_path(broken).write_text(json.dumps(record))
    with quick_parity_settings():
        assert cli(parity_cli.main, str(broken)) == 1
    assert "quality failed" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "message"), [
    (["--int8-io"], "--int8-io applies to --precision int8 only, not fp32"),
    (["--precision", "int8", "--calibration-method", "Entropy"],
     "cannot apply the recipe's calibration method (--calibration-method) 'Entropy'; it applies: MinMax, Percentile"),
    (["--precision", "int8", "--rewrites", "pad-exit"], "the litert target cannot take the pad-exit rewrite"),
])
def test_usage_errors_exit_2_in_one_line(args: list[str], message: str, tmp_path: Path, capsys) -> None:
    assert cli(export_cli.main, "--target", "litert", "--scale", "2", *args, "--out", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err
    assert message in " ".join(err.split()) and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_a_float_op_the_fold_does_not_know_is_refused(tmp_path: Path) -> None:
    """Handed a float model, the fold finds float ops everywhere and says so instead of writing it."""
    from carn_mobile.quantization.litert_aeq import fold_float_islands

    (result,) = export_model("carn-m", targets=["litert"], scales=[2], shape=parse_shape("dynamic:8-64"),
                             out_dir=tmp_path)
    with pytest.raises(ValueError, match="float ops left in the int8 LiteRT graph after folding: .*CONV_2D"):
        fold_float_islands(result.artifact.read_bytes())
