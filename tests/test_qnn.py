"""The qnn target: Qualcomm's HTP, proven in onnxruntime-qnn's emulator (Linux x86-64).

The exports are of the shipped CARN-M at a small fixed tile (32x32 LR) with the built-in test
image as the only quality set, so each runs in well under a minute in the emulator; the
full-size figures (128x128, Set5/Set14) are in benchmarks/qnn/.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from carn_mobile.export import export_model, get_target, plan_exports
from carn_mobile.export.target_qnn import HtpCompileError, QnnTarget
from carn_mobile.parity import ParityPolicy
from carn_mobile.runtimes import MissingDependencyError, ShapeSpec, UnsupportedPlatformError, parse_shape
from carn_mobile.runtimes.qnn import DEFAULT_SOCS, SOCS, coverage, emulator_unavailable, get_soc
from carn_mobile.weights import resolve_weights

pytest.importorskip("onnxruntime_qnn", reason="the qnn extra (onnxruntime-qnn) is not installed")
needs_emulator = pytest.mark.skipif(emulator_unavailable() is not None, reason=str(emulator_unavailable()))

TILE = parse_shape("32x32")
#: Quality on the built-in test image only: the emulator is slow and Set5/Set14 are the report's.
QUICK = ParityPolicy(quality_sets=())


def _export(tmp_path: Path, precision: str = "int8", socs: str | None = None, max_drop: float | None = None):
    options = {"qnn": {"socs": socs}} if socs else None
    policy = ParityPolicy(quality_sets=(), max_psnr_drop_db=max_drop)
    (result,) = export_model("carn-m", targets=["qnn"], scales=[2], precision=precision, shape=TILE,
                             out_dir=tmp_path, policy=policy, target_options=options)
    return result


# --- the SoC table and the options ------------------------------------------------------------


def test_socs_are_named_as_users_know_them_and_unknown_ones_are_listed() -> None:
    soc = get_soc(" SM8650 ")
    assert (soc.name, soc.marketing, soc.soc_model, soc.htp_arch) == ("sm8650", "Snapdragon 8 Gen 3", 57, 75)
    assert set(DEFAULT_SOCS) <= set(SOCS) and len(DEFAULT_SOCS) == 3
    with pytest.raises(ValueError, match=r"unknown SoC 'sm9999'; use one of sm8450 \(Snapdragon 8 Gen 1\)"):
        get_soc("sm9999")


def test_an_unknown_soc_exits_2_listing_the_known_ones(tmp_path, capsys) -> None:
    from carn_mobile.cli import export as export_cli

    with pytest.raises(SystemExit) as exit_info:
        export_cli.main(["--target", "qnn", "--soc", "sm8650,sm9999", "--scale", "2", "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "unknown SoC 'sm9999'" in err and "sm8750 (Snapdragon 8 Elite)" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_fixed_shapes_only_and_quantized_precisions_only(tmp_path) -> None:
    shipped = resolve_weights("carn-m")
    (job,) = plan_exports(shipped, (2, 3, 4), ["qnn"], [4], out_dir=tmp_path)[0]
    assert job.request.shape == ShapeSpec(kind="fixed", sizes=((128, 128),))  # the default tile
    assert job.request.precision == "int8" and job.request.quantization.quantizer == "onnxruntime-qnn"
    assert job.artifact.name == "carn-m_x4_int8_128x128.qnn.onnx"
    assert [p.name for p in job.companions] == [f"carn-m_x4_int8_128x128.qnn.onnx.{s}_ctx.onnx" for s in DEFAULT_SOCS]
    with pytest.raises(ValueError, match="one fixed input size .* pass --shape HxW"):
        plan_exports(shipped, (2, 3, 4), ["qnn"], [4], shape=parse_shape("dynamic:16-256"), out_dir=tmp_path)
    with pytest.raises(ValueError, match="qnn supports int8, w8a16 only, not fp16"):
        plan_exports(shipped, (2, 3, 4), ["qnn"], [4], precision="fp16", out_dir=tmp_path)
    # "all" exports float unless told otherwise: the quantized-only target waits for --precision.
    _, skipped = plan_exports(shipped, (2, 3, 4), ["all"], [4], out_dir=tmp_path)
    assert "pass --precision int8 or w8a16" in {s.target: s.reason for s in skipped}["qnn"]
    jobs, _ = plan_exports(shipped, (2, 3, 4), ["all"], [4], precision="w8a16", out_dir=tmp_path)
    assert {j.target.name for j in jobs} == {"onnx", "qnn"}  # the targets whose runtimes run 16-bit QDQ


def test_qnn_files_are_routed_to_the_htp_by_their_longest_ending() -> None:
    from carn_mobile.export import target_for_path

    assert target_for_path("carn-m_x4_int8_128x128.qnn.onnx").name == "qnn"
    assert target_for_path("carn-m_x4_int8_128x128.qnn.onnx.sm8650_ctx.onnx").name == "qnn"
    assert target_for_path("carn-m_x4_int8.onnx").name == "onnx"


def test_missing_extra_and_platform_without_emulator_are_one_line(monkeypatch) -> None:
    import carn_mobile.runtimes.qnn as qnn

    monkeypatch.setitem(sys.modules, "onnxruntime_qnn", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "\.\[qnn\]"'):
        get_target("qnn").check_available()
    monkeypatch.undo()
    monkeypatch.setattr(qnn, "EMULATOR_PLATFORMS", set())
    with pytest.raises(UnsupportedPlatformError, match="has no HTP emulator") as exc:
        get_target("qnn").check_available()
    assert "\n" not in str(exc.value)
    _, skipped = plan_exports(resolve_weights("carn-m"), (2, 3, 4), ["all"], [2], precision="int8")
    assert "has no HTP emulator" in {s.target: s.reason for s in skipped}["qnn"]


# --- coverage: every compute op on the HTP ----------------------------------------------------


def _graph_with(op: str, path: Path) -> Path:
    """A tiny QDQ graph: input quantize, ``op`` between a dequantize and a quantize, output dequantize."""
    import onnx
    from onnx import TensorProto, helper

    scale = helper.make_tensor("s", TensorProto.FLOAT, [], [1 / 255])
    zero = helper.make_tensor("z", TensorProto.UINT8, [], [0])
    nodes = [helper.make_node("QuantizeLinear", ["lr", "s", "z"], ["q0"], name="in_q"),
             helper.make_node("DequantizeLinear", ["q0", "s", "z"], ["d0"], name="mid_dq"),
             helper.make_node(op, ["d0"], ["e"], name="the_op"),
             helper.make_node("QuantizeLinear", ["e", "s", "z"], ["q1"], name="mid_q"),
             helper.make_node("DequantizeLinear", ["q1", "s", "z"], ["sr"], name="out_dq")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("lr", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("sr", TensorProto.FLOAT, [1, 3, 8, 8])], [scale, zero])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


@needs_emulator
def test_an_op_off_the_htp_fails_the_export_in_one_line_unless_allowed(tmp_path) -> None:
    import onnx

    soc = get_soc("sm8650")
    # Mish is taken by the HTP only in float: its quantize/dequantize pair stays on the CPU.
    graph = _graph_with("Mish", tmp_path / "mish.onnx")
    with pytest.raises(HtpCompileError) as refused:
        QnnTarget().compile_for(graph, soc)
    message = str(refused.value)
    assert "sm8650: DequantizeLinear mid_dq, QuantizeLinear mid_q would run on the CPU" in message
    assert "--allow-cpu-fallback" in message and "\n" not in message
    data, cover = QnnTarget(allow_cpu_fallback=True).compile_for(graph, soc)
    assert not cover.full and cover.cpu_nodes == ("DequantizeLinear mid_dq", "QuantizeLinear mid_q")
    assert cover.io_conversions == ("QuantizeLinear in_q", "DequantizeLinear out_dq")
    assert coverage(onnx.load_from_string(data)).to_json()["soc_model"] == 57
    # An op the EP takes nowhere: no context at all, said in one line naming the op.
    with pytest.raises(HtpCompileError, match=r"sm8650: the QNN EP put no node on the HTP \(ops: Erf\)"):
        QnnTarget().compile_for(_graph_with("Erf", tmp_path / "erf.onnx"), soc)


# --- the export, gated in the emulator ---------------------------------------------------------


@needs_emulator
@pytest.mark.slow
def test_int8_export_gates_the_artifact_and_every_context_binary_in_the_emulator(tmp_path) -> None:
    from carn_mobile.export.recheck import recheck_artifact

    result = _export(tmp_path)
    artifact = tmp_path / "carn-m_x2_int8_32x32.qnn.onnx"
    contexts = [tmp_path / f"{artifact.name}.{s}_ctx.onnx" for s in DEFAULT_SOCS]
    assert result.artifact == artifact and all(p.is_file() for p in contexts)
    manifest = json.loads((tmp_path / f"{artifact.name}.json").read_text())
    assert manifest["parity"]["runner"] == "qnn-htp" and manifest["parity"]["reference"] == "quantized"
    ran = [c["name"] for c in manifest["parity"]["cases"]]
    for path in contexts:  # each binary ran a picture and noise in the emulator
        assert f"{path.name}: test-image" in ran and f"{path.name}: random-32x32" in ran
    assert manifest["parity"]["quality"]["passed"]
    details = manifest["export"]["details"]
    assert [s["name"] for s in details["socs"]] == list(DEFAULT_SOCS)
    for soc in details["socs"]:  # which table entry and which QNN version each binary was built for
        table = get_soc(soc["name"])
        assert soc["soc_model"] == table.soc_model and soc["htp_arch"] == f"v{table.htp_arch}"
        assert soc["coverage"]["htp_partitions"] == 1 and soc["coverage"]["cpu_nodes"] == []
        assert soc["coverage"]["soc_model"] == table.soc_model and soc["coverage"]["qnn_sdk"].startswith("v2.")
    assert manifest["versions"]["qnn-sdk"] and manifest["versions"]["onnxruntime-qnn"]
    assert set(manifest["companions"]) == {p.name for p in contexts}

    checked = recheck_artifact(artifact, policy=QUICK)
    assert checked.passed and len(checked.report.cases) == len(ran)
    damaged = bytearray(contexts[1].read_bytes())
    damaged[-100] ^= 0xFF
    contexts[1].write_bytes(bytes(damaged))
    checked = recheck_artifact(artifact, policy=QUICK)
    assert not checked.passed
    assert any(c.name == f"companion {contexts[1].name}" and not c.ok for c in checked.report.checks)


@needs_emulator
@pytest.mark.slow
def test_w8a16_runs_16_bit_activations_on_the_htp(tmp_path) -> None:
    import onnx
    from onnx import numpy_helper

    # A 32x32 tile leaves 60x60 pixels to score: one rounding flip moves its PSNR by hundredths of a
    # dB, so the drop bound is the report's business (benchmarks/qnn/), not this test's.
    _export(tmp_path, "w8a16", socs="sm8750", max_drop=0.5)
    artifact = tmp_path / "carn-m_x2_w8a16_32x32.qnn.onnx"
    model = onnx.load(str(artifact))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    zero_points = {str(inits[n.input[2]].dtype) for n in model.graph.node
                   if n.op_type == "QuantizeLinear" and n.input[0] not in inits}
    assert zero_points == {"uint16"}
    manifest = json.loads((tmp_path / f"{artifact.name}.json").read_text())
    assert manifest["quantization"]["recipe"]["activation_type"] == "uint16"
    assert manifest["precision_details"]["activation_bits"] == 16
    pictures = [c for c in manifest["parity"]["cases"] if not c["name"].endswith("random-32x32")]
    # 16-bit activations: pictures match the quantized reference far more closely than int8's 40 dB.
    assert min(c["psnr_db"] for c in pictures) > 60
    assert [s["name"] for s in manifest["export"]["details"]["socs"]] == ["sm8750"]


@needs_emulator
def test_a_failed_gate_leaves_nothing_behind(tmp_path) -> None:
    from carn_mobile.parity import ParityError
    from carn_mobile.precision import Tolerance

    impossible = ParityPolicy(quality_sets=(), overrides={"int8": Tolerance(max_abs=1e-9, min_psnr_db=200.0)})
    with pytest.raises(ParityError, match="failed parity"):
        export_model("carn-m", targets=["qnn"], scales=[2], precision="int8", shape=TILE, out_dir=tmp_path,
                     policy=impossible, target_options={"qnn": {"socs": "sm8650"}})
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@needs_emulator
def test_the_emulator_session_never_falls_back_to_the_cpu_silently(tmp_path) -> None:
    # onnxruntime's Python session rebuilds itself on the CPU EP after an EP failure unless told
    # not to (seen here: a released QNN session broke a live one); a number measured that way
    # would not be the HTP's.
    from carn_mobile.runtimes.qnn import htp_session

    session = htp_session(_graph_with("Sin", tmp_path / "sin.onnx"))
    assert session._enable_fallback is False
    assert session.get_providers()[0] == "QNNExecutionProvider"
    out = session.run(None, {"lr": np.full((1, 3, 8, 8), 0.5, np.float32)})[0]
    assert out.shape == (1, 3, 8, 8) and np.isfinite(out).all()
