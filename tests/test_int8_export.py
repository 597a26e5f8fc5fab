"""int8 exports for real: ONNX QDQ through the whole gate, carn-parity, and the failure paths.

One int8 artifact (CARN-M x4, built-in calibration, small dynamic range) is exported per module
and shared. The quality gate measures the built-in test image, plus Set5/Set14 when the shared
data is present (CARN_SHARED), like any export.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import quick_parity_settings

from carn_mobile.cli import export as export_cli
from carn_mobile.cli import parity as parity_cli
from carn_mobile.export import export_model, manifest_path, optimized_module, per_scale_module, recheck_artifact
from carn_mobile.export.rewrites import DEFAULT_REWRITES
from carn_mobile.fileio import sha256_file
from carn_mobile.parity import ParityError, ParityPolicy
from carn_mobile.quantization import CalibrationSource
from carn_mobile.runtimes import get_runner, parse_shape
from carn_mobile.weights import load_model


def cli(main: Callable, *args: str) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    return int(exit_info.value.code or 0)


@pytest.fixture(scope="module")
def int8_onnx(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("int8")
    with quick_parity_settings():
        (result,) = export_model("carn-m", targets=["onnx"], scales=[4], precision="int8",
                                 shape=parse_shape("dynamic:8-128"), out_dir=out,
                                 calibration=CalibrationSource(count=16))
    return result


def test_int8_onnx_is_qdq_small_and_gated_on_fidelity_and_quality(int8_onnx) -> None:
    m = int8_onnx.manifest
    assert int8_onnx.artifact.name == "carn-m_x4_int8.onnx" and m["precision"] == "int8"
    assert m["precision_details"]["quantized"] is True
    # Fidelity is measured against the int8 model itself (its QDQ graph run literally).
    parity = m["parity"]
    assert parity["status"] == "passed" and parity["reference"] == "quantized"
    assert parity["tolerance"] == {"max_abs": 0.1, "min_psnr_db": 40.0}
    # Quality: the drop against float32 is measured and bounded.
    quality = parity["quality"]
    assert quality["passed"] and quality["limits"]["max_task_psnr_drop_db"] == 0.1
    assert "test-image" in [s["name"] for s in quality["sets"]]
    assert quality["max_drop_db"] <= 0.1 and quality["min_float_psnr_db"] >= 40.0
    # The recipe and the calibration set travel with the artifact.
    q = m["quantization"]
    assert q["recipe"]["method"] == "Percentile" and q["recipe"]["per_channel"]
    assert q["quantizer"] == "onnxruntime-qdq" and q["recipe"]["percentile"] == 99.999
    assert q["calibration"]["source"] == "built-in procedural images" and q["calibration"]["patches"] == 16
    assert len(q["calibration"]["sha256"]) == 64
    assert "cascade-as-sum" not in m["export"]["rewrites"] and "pad-exit" in m["export"]["rewrites"]
    # Structure: int8 weights behind DequantizeLinear, activations quantized.
    model = onnx.load(str(int8_onnx.artifact))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    assert any(i.data_type == onnx.TensorProto.INT8 for i in model.graph.initializer)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["carn_mobile.precision"] == "int8"
    assert int8_onnx.size_bytes < 0.6 * m["export"]["details"]["float32_size_bytes"]


def test_the_int8_artifact_is_close_to_float32_in_onnxruntime(int8_onnx) -> None:
    module = per_scale_module(load_model("carn-m"), 4)
    run = get_runner("onnxruntime").load(int8_onnx.artifact)
    import torch

    from carn_mobile.testimage import natural_test_image

    lr = np.ascontiguousarray(natural_test_image(40, 56, seed=3).transpose(2, 0, 1)[None])

    with torch.no_grad():
        ref = module(torch.from_numpy(lr)).numpy()
    out = run(lr)
    assert out.shape == ref.shape == (1, 3, 160, 224)
    assert 35.0 < 10 * np.log10(1 / np.mean((out - ref) ** 2)) < 80.0  # lossy, but a picture


def test_carn_parity_rechecks_an_int8_artifact_against_its_recipe(int8_onnx, capsys) -> None:
    with quick_parity_settings():
        result = recheck_artifact(int8_onnx.artifact)
        assert result.passed and result.quality is not None and result.quality.passed
        assert cli(parity_cli.main, str(int8_onnx.artifact)) == 0
    assert "quality passed" in capsys.readouterr().out


def test_an_int8_artifact_with_a_wrong_scale_fails_the_quality_gate(int8_onnx, tmp_path: Path, capsys) -> None:
    """A DequantizeLinear with twice its scale is a consistent (if wrong) int8 model: its own
    literal reference agrees with the runtime, so fidelity passes and the quality gate against
    float32 is what catches it."""
    model = onnx.load(str(int8_onnx.artifact))
    inits = {i.name: i for i in model.graph.initializer}
    dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] not in inits]
    victim = dq[len(dq) // 2]  # an activation in the middle of the body
    doubled = onnx.numpy_helper.to_array(inits[victim.input[1]]) * 2
    model.graph.initializer.append(onnx.numpy_helper.from_array(doubled.astype(np.float32), "doubled_scale"))
    victim.input[1] = "doubled_scale"
    broken = tmp_path / int8_onnx.artifact.name
    onnx.save(model, str(broken))
    manifest = json.loads(manifest_path(int8_onnx.artifact).read_text())
    manifest["file"]["sha256"] = sha256_file(broken)  # as if exported so: only the numbers can tell
    manifest_path(broken).write_text(json.dumps(manifest))
    with quick_parity_settings():
        assert cli(parity_cli.main, str(broken)) == 1
    captured = capsys.readouterr()
    assert "quality failed" in captured.out and "task PSNR drop" in captured.err


def test_an_impossible_psnr_bound_fails_the_export_and_writes_nothing(tmp_path: Path) -> None:
    with quick_parity_settings(), pytest.raises(ParityError, match="int8 quality gate.*task PSNR drop"):
        export_model("carn-m", targets=["onnx"], scales=[4], precision="int8", shape=parse_shape("dynamic:8-96"),
                     out_dir=tmp_path, calibration=CalibrationSource(count=8),
                     policy=ParityPolicy(max_psnr_drop_db=0.0, quality_sets=()))
    assert list(tmp_path.iterdir()) == []


def test_the_cli_exits_1_when_int8_misses_the_psnr_bound(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("CARN_SHARED", str(tmp_path / "no-shared-data"))  # only the built-in test image
    with quick_parity_settings():
        code = cli(export_cli.main, "--target", "onnx", "--scale", "4", "--precision", "int8", "--shape",
                   "dynamic:8-96", "--calibration-images", "8", "--max-psnr-drop", "0", "--out", str(tmp_path / "o"))
    assert code == 1
    err = capsys.readouterr().err
    assert "failed the int8 quality gate" in err and "nothing was written" in err
    assert not (tmp_path / "o").exists() or list((tmp_path / "o").iterdir()) == []


@pytest.mark.parametrize(("args", "message"), [
    (["--target", "torchscript-lite", "--precision", "int8"], "torchscript-lite supports fp32 only, not int8"),
    (["--target", "onnx", "--precision", "int8", "--calibration", "/nonexistent/train"], "does not exist"),
    (["--target", "onnx", "--precision", "int8", "--calibration-images", "2"], "too few; use at least 8"),
    (["--target", "onnx", "--calibration", "/tmp"], "apply to a quantized --precision only (int8, w8a16)"),
    (["--target", "onnx", "--max-psnr-drop", "0.1"],
     "--max-psnr-drop applies to a quantized --precision only (int8, w8a16)"),
    (["--target", "onnx", "--precision", "int8", "--max-psnr-drop", "-1"], "non-negative"),
])
def test_int8_usage_errors_exit_2_in_one_line(args, message, tmp_path: Path, capsys) -> None:
    assert cli(export_cli.main, *args, "--scale", "4", "--out", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err
    assert message in " ".join(err.split()) and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_int8_rewrites_follow_the_recipe_and_stay_exact() -> None:
    from carn_mobile.quantization import Recipe

    chosen = Recipe().rewrites(DEFAULT_REWRITES)
    assert "cascade-as-sum" not in chosen and "pad-exit" in chosen and "dense-groups" not in chosen
    import torch

    for scale in (2, 3, 4):
        module = per_scale_module(load_model("carn-m"), scale)
        rewritten, applied = optimized_module(module, chosen)
        assert set(applied) == set(chosen)
        x = torch.rand(1, 3, 19, 27)
        with torch.no_grad():
            assert torch.allclose(module(x), rewritten(x), atol=2e-6)


def test_an_older_manifest_is_rechecked_only_if_its_recipe_is_what_was_applied(int8_onnx, tmp_path: Path) -> None:
    copy = tmp_path / int8_onnx.artifact.name
    copy.write_bytes(int8_onnx.artifact.read_bytes())
    manifest = json.loads(manifest_path(int8_onnx.artifact).read_text())
    del manifest["quantization"]["quantizer"]  # as the previous version wrote them
    manifest_path(copy).write_text(json.dumps(manifest))
    with quick_parity_settings():
        assert recheck_artifact(copy).passed  # onnxruntime applied every recorded field then too
    manifest["quantization"]["recipe"] |= {"method": "Histogram", "percentile": None}  # never applied by onnxruntime
    manifest_path(copy).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="before carn-mobile recorded the applied recipe.*export it again"):
        recheck_artifact(copy)


def test_a_manifest_without_its_recipe_is_refused(int8_onnx, tmp_path: Path) -> None:
    copy = tmp_path / int8_onnx.artifact.name
    copy.write_bytes(int8_onnx.artifact.read_bytes())
    manifest = json.loads(manifest_path(int8_onnx.artifact).read_text())
    del manifest["quantization"]
    manifest_path(copy).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="has no quantization recipe"):
        recheck_artifact(copy)
