"""Planning, naming, the per-scale wrapper and atomic commits of exports (no conversions)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from carn_mobile.export import (
    HalfPrecision,
    artifact_filename,
    get_target,
    list_targets,
    per_scale_module,
    plan_exports,
    read_manifest,
)
from carn_mobile.export.staging import staged_pair
from carn_mobile.export.wrapper import count_conv_calls, weight_counts
from carn_mobile.fileio import OutputExistsError
from carn_mobile.models import build_model
from carn_mobile.runtimes import ShapeSpec, parse_shape
from carn_mobile.weights import WeightsError, load_model, resolve_weights


@pytest.fixture(scope="module")
def shipped():
    return resolve_weights("carn-m")


def test_targets_are_discovered_in_listing_order() -> None:
    assert list_targets() == ["onnx", "ort", "web", "coreml", "torchscript-lite", "executorch", "litert", "qnn"]
    assert get_target("ONNX").suffix == ".onnx"
    known = "known targets: onnx, ort, web, coreml, torchscript-lite, executorch, litert, qnn, all"
    with pytest.raises(ValueError, match=known):
        get_target("tflite")


def test_artifact_names_spell_out_model_scale_precision_and_shape() -> None:
    dyn = ShapeSpec(max_side=256)
    assert artifact_filename("carn-m", 4, "fp32", ".onnx", dyn) == "carn-m_x4_fp32.onnx"
    assert artifact_filename("carn", 2, "fp16", ".mlpackage", parse_shape("64x96"), True) == \
        "carn_x2_fp16_64x96_image.mlpackage"
    assert artifact_filename("carn-m", 3, "fp16", ".mlpackage", parse_shape("enumerated:8x8,9x9")) == \
        "carn-m_x3_fp16_enum2.mlpackage"


def test_plan_all_uses_each_targets_default_precision_and_range(shipped, tmp_path: Path) -> None:
    jobs, skipped = plan_exports(shipped, (2, 3, 4), ["all"], [2, 4], out_dir=tmp_path)
    available = [t for t in list_targets() if t not in {s.target for s in skipped}]
    # One job per scale and part: the web target has a part (a member) per runtime its page carries.
    assert len(jobs) == 2 * sum(len(get_target(t).parts()) for t in available)
    by_target = {(j.target.name, j.request.scale): j for j in jobs}
    assert by_target[("onnx", 2)].artifact == tmp_path / "carn-m_x2_fp32.onnx"
    assert by_target[("onnx", 2)].request.shape.bounds == (8, 1024)
    if "coreml" in available:
        assert by_target[("coreml", 4)].request.precision == "fp16"
    if "executorch" in available:
        assert by_target[("executorch", 4)].request.shape.bounds == (8, 256)
    meta = by_target[("onnx", 2)].request.metadata
    assert meta["carn_mobile.scale"] == "2" and meta["carn_mobile.weights_sha256"] == shipped.sha256


def test_plan_all_skips_targets_that_cannot_do_the_options(shipped, tmp_path: Path) -> None:
    jobs, skipped = plan_exports(shipped, (2, 3, 4), ["all"], [4], precision="fp16", out_dir=tmp_path)
    reasons = {s.target: s.reason for s in skipped}
    assert "torchscript-lite" in reasons and "fp32 only" in reasons["torchscript-lite"]
    assert all(j.request.precision == "fp16" for j in jobs)
    jobs, skipped = plan_exports(shipped, (2, 3, 4), ["all"], [4], image_io=True, out_dir=tmp_path)
    assert {j.target.name for j in jobs} <= {"coreml"}


def test_plan_refuses_existing_outputs_before_any_work(shipped, tmp_path: Path) -> None:
    (tmp_path / "carn-m_x4_fp32.onnx.json").write_text("{}")
    with pytest.raises(OutputExistsError, match="carn-m_x4_fp32.onnx.json"):
        plan_exports(shipped, (2, 3, 4), ["onnx"], [4], out_dir=tmp_path)
    jobs, _ = plan_exports(shipped, (2, 3, 4), ["onnx"], [4], out_dir=tmp_path, force=True)
    assert len(jobs) == 1


def test_plan_rejects_scales_and_precisions_it_cannot_serve(shipped, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no x2 branch"):
        plan_exports(shipped, (4,), ["onnx"], [2], out_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown precision"):
        plan_exports(shipped, (4,), ["onnx"], [4], precision="int4", out_dir=tmp_path)
    with pytest.raises(ValueError, match="torchscript-lite supports fp32 only, not int8"):
        plan_exports(shipped, (4,), ["torchscript-lite"], [4], precision="int8", out_dir=tmp_path)
    jobs, skipped = plan_exports(shipped, (4,), ["all"], [4], precision="int8", out_dir=tmp_path)
    assert "onnx" in {j.target.name for j in jobs} and "torchscript-lite" in {s.target for s in skipped}
    assert all(j.request.quantization is not None for j in jobs)


def test_weights_resolution(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="no shipped weights named 'carn'"):
        resolve_weights("carn")
    with pytest.raises(WeightsError, match="are a carn-m model, not carn"):
        resolve_weights("carn", "carn-m")
    with pytest.raises(WeightsError, match="does not exist"):
        resolve_weights("carn-m", tmp_path / "nope.pth")


def test_per_scale_module_keeps_one_branch_and_clamps() -> None:
    model = load_model("carn-m")
    module = per_scale_module(model, 3)
    assert module.scale == 3 and not any(k.startswith("net.upsample.up2") for k in module.state_dict())
    trainable, total = weight_counts(module)
    assert trainable == 303_427 and total == trainable + 24
    assert count_conv_calls(module) == 44  # one x3 upsampling conv (x4 has two)
    x = torch.rand(1, 3, 10, 12) * 4 - 2  # out-of-range input drives the output out of range
    with torch.no_grad():
        y = module(x)
        assert y.shape == (1, 3, 30, 36) and y.min() >= 0.0 and y.max() <= 1.0
        assert torch.allclose(y, model(x, 3).clamp(0, 1), atol=1e-6)
        half = HalfPrecision(module)(x.clamp(0, 1))
        assert half.dtype == torch.float32 and torch.allclose(half, module(x.clamp(0, 1)), atol=2e-2)
    with pytest.raises(ValueError, match="no x8 branch"):
        per_scale_module(model, 8)
    with pytest.raises(ValueError, match=r"no x2 branch \(they have x4\)"):
        per_scale_module(build_model("carn-m", scale=4), 2)


def test_staged_pair_commits_both_or_neither(tmp_path: Path) -> None:
    artifact, manifest = tmp_path / "a.onnx", tmp_path / "a.onnx.json"
    with pytest.raises(RuntimeError):
        with staged_pair(artifact, manifest) as (ta, tm):
            ta.write_bytes(b"model")
            tm.write_text("{}")
            raise RuntimeError("parity failed")
    assert list(tmp_path.iterdir()) == []

    with staged_pair(artifact, manifest) as (ta, tm):
        ta.write_bytes(b"model")
        tm.write_text("{}")
    assert artifact.read_bytes() == b"model" and manifest.read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx", "a.onnx.json"]


def test_staged_pair_takes_the_artifact_back_if_the_manifest_cannot_be_committed(tmp_path: Path) -> None:
    artifact, manifest = tmp_path / "b.pte", tmp_path / "b.pte.json"
    with pytest.raises(OutputExistsError):
        with staged_pair(artifact, manifest) as (ta, tm):
            ta.write_bytes(b"model")
            tm.write_text("{}")
            manifest.write_text("appeared meanwhile")  # someone else wrote the manifest
    assert not artifact.exists() and manifest.read_text() == "appeared meanwhile"


def test_read_manifest_rejects_foreign_json(tmp_path: Path) -> None:
    artifact = tmp_path / "m.onnx"
    with pytest.raises(FileNotFoundError, match="no manifest"):
        read_manifest(artifact)
    (tmp_path / "m.onnx.json").write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="not a carn-mobile export manifest"):
        read_manifest(artifact)
