"""Each export target for real, its parity gate, manifests, carn-parity and the failure paths.

Artifacts are exported once per module (small inputs, CARN-M's shipped weights) and shared by
the tests; tests that corrupt or overwrite work on copies in their own folders.
"""

from __future__ import annotations

import json
import shutil
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import hide_modules, quick_parity_settings

from carn_mobile.cli import export as export_cli
from carn_mobile.cli import parity as parity_cli
from carn_mobile.export import (
    ExportResult,
    export_model,
    get_target,
    manifest_path,
    optimized_module,
    per_scale_module,
    recheck_artifact,
    run,
)
from carn_mobile.export.wrapper import weight_counts
from carn_mobile.fileio import sha256_file
from carn_mobile.runtimes import MissingDependencyError, get_runner
from carn_mobile.weights import get_weights, load_model

ON_MACOS = sys.platform == "darwin"
SHIPPED_SHA = get_weights("carn-m").sha256


def cli(main: Callable, *args: str) -> int:
    """Run a console script's ``main`` in-process and return its exit code."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    return int(exit_info.value.code or 0)


@pytest.fixture(scope="module", autouse=True)
def quick_parity():
    """Keep the module fast on two shared cores (conftest.quick_parity_settings)."""
    with quick_parity_settings():
        yield


@pytest.fixture(scope="module")
def exported(quick_parity, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., ExportResult]:
    """``exported(target, scale, **options)``: export once per module, then reuse."""
    out = tmp_path_factory.mktemp("export")
    cache: dict[tuple, ExportResult] = {}

    def get(target: str, scale: int = 4, **options) -> ExportResult:
        needs(target)
        key = (target, scale, tuple(sorted(options.items())))
        if key not in cache:
            (cache[key],) = export_model("carn-m", targets=[target], scales=[scale], out_dir=out, **options)
        return cache[key]

    return get


def needs(target: str) -> None:
    """Skip the calling test (only it) when ``target``'s converter is not installed."""
    try:
        get_target(target).check_available()
    except MissingDependencyError as exc:
        pytest.skip(str(exc))


def copy_artifact(result: ExportResult, folder: Path) -> Path:
    """Copy an artifact and its manifest into ``folder``; returns the copied artifact."""
    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / result.artifact.name
    if result.artifact.is_dir():
        shutil.copytree(result.artifact, dst)
    else:
        shutil.copy2(result.artifact, dst)
    shutil.copy2(manifest_path(result.artifact), manifest_path(dst))
    return dst


def assert_common_manifest(result: ExportResult, target: str, scale: int, precision: str) -> dict:
    m = json.loads(manifest_path(result.artifact).read_text())
    assert (m["model"], m["scale"], m["target"], m["precision"]) == ("carn-m", scale, target, precision)
    assert m["contract"]["input"]["name"] == "lr" and m["contract"]["output"]["name"] == "sr"
    assert m["weights"] == {"model": "carn-m", "name": "carn-m", "sha256": SHIPPED_SHA,
                            "license": get_weights("carn-m").license}
    assert m["file"]["sha256"] == sha256_file(result.artifact)
    assert m["file"]["size_bytes"] == result.size_bytes > 100_000
    assert m["versions"]["torch"] and m["versions"]["carn_mobile"]
    assert m["export"]["seconds"] > 0
    return m


def assert_numeric_parity(result: ExportResult, max_abs: float | None = None, min_psnr: float | None = None) -> None:
    rep = result.report
    assert rep.status == "passed"
    names = [c.name for c in rep.cases]
    assert {"test-image", "random-17x23"} <= set(names)
    assert all(c.passed for c in rep.cases)
    if max_abs is not None:
        assert rep.max_abs <= max_abs
    if min_psnr is not None:
        assert rep.min_psnr_db >= min_psnr


# --- each target ----------------------------------------------------------------------------


def test_onnx_fp32_artifact(exported) -> None:
    onnx = pytest.importorskip("onnx")
    r = exported("onnx", 4)
    assert r.artifact.name == "carn-m_x4_fp32.onnx"
    m = assert_common_manifest(r, "onnx", 4, "fp32")
    assert_numeric_parity(r, max_abs=1e-4)
    assert {"random-32x48"} <= {c.name for c in r.report.cases}
    assert m["parity"]["max_abs"] <= 1e-4 and m["parity"]["runner"] == "onnxruntime"

    model = onnx.load(str(r.artifact))
    onnx.checker.check_model(model, full_check=True)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert "DepthToSpace" in {n.op_type for n in model.graph.node}
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims[:2]] == [1, 3] and all(d.dim_param for d in dims[2:])
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["carn_mobile.model"] == "carn-m" and meta["carn_mobile.scale"] == "4"
    assert meta["carn_mobile.weights_sha256"] == SHIPPED_SHA and "Namhyuk Ahn" in meta["carn_mobile.license"]
    # Only the x4 branch: more than its trainable weights, less than the multi-scale model's.
    stored = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    assert 294_147 <= stored < 414_787

    sr = run(r.artifact, np.full((1, 3, 19, 13), 0.5, dtype=np.float32))
    assert sr.shape == (1, 3, 76, 52) and 0.0 <= sr.min() and sr.max() <= 1.0


def test_onnx_fp16_artifact_is_half_the_size(exported) -> None:
    r = exported("onnx", 2, precision="fp16")
    assert r.artifact.name == "carn-m_x2_fp16.onnx"
    assert_common_manifest(r, "onnx", 2, "fp16")
    assert_numeric_parity(r, max_abs=2e-2, min_psnr=50.0)
    assert r.report.tolerance == {"max_abs": 2e-2, "min_psnr_db": 50.0}
    # float16 weights of the x2 branch only, as rewritten (the exit conv before the shuffle has 4x its weights)
    x2_weights = weight_counts(optimized_module(per_scale_module(load_model("carn-m"), 2))[0])[0]
    assert x2_weights == 257_027 + (12 * 256 - 3 * 64) * 9 + (12 - 3)  # exit: 3x64 -> 12x256 filters
    assert 2 * x2_weights < r.size_bytes < 2.2 * x2_weights


def test_torchscript_lite_artifact(exported) -> None:
    r = exported("torchscript-lite", 4)
    assert r.artifact.suffix == ".ptl"
    m = assert_common_manifest(r, "torchscript-lite", 4, "fp32")
    assert_numeric_parity(r, max_abs=1e-4)
    optimised = m["export"]["details"]["optimize_for_mobile"]
    expected_note = "optimize_for_mobile applied" if optimised else "optimize_for_mobile skipped"
    assert any(n.startswith(expected_note) for n in m["export"]["notes"])
    with zipfile.ZipFile(r.artifact) as z:
        extra = [n for n in z.namelist() if n.endswith("extra/carn_mobile.json")]
        assert extra and json.loads(z.read(extra[0]))["carn_mobile.scale"] == "4"


def test_coreml_fp16_artifact(exported) -> None:
    pytest.importorskip("coremltools")
    from carn_mobile.mlprogram import load_program

    r = exported("coreml", 4)
    assert r.artifact.name == "carn-m_x4_fp16.mlpackage" and r.artifact.is_dir()
    m = assert_common_manifest(r, "coreml", 4, "fp16")
    checks = {c["name"]: c for c in m["parity"]["checks"]}
    assert all(c["ok"] for c in checks.values())
    assert {"ML program", "conv count", "weight precision", "weights of this scale only", "input shapes",
            "io names", "input type", "output type", "metadata"} <= set(checks)
    # Measured parity on every OS: Core ML predict on macOS, the NumPy reference executor elsewhere.
    assert m["parity"]["status"] == "passed" and m["parity"]["min_psnr_db"] >= 50
    assert m["parity"]["runner"] == ("coreml-predict" if ON_MACOS else "coreml-reference")
    assert len(m["parity"]["cases"]) >= 3

    info = load_program(r.artifact)  # loads only ML programs
    assert info.spec_version >= 7
    assert set(info.weight_elements()) == {"float16"}
    (inp,), (out,) = info.inputs, info.outputs
    assert inp.description_dtype == out.description_dtype == "FLOAT32"
    assert tuple(inp.shape_bounds[2:]) == ((8, 1024), (8, 1024))
    meta = info.description
    assert meta["license"].startswith("MIT") and meta["author"] and meta["version"] and meta["short_description"]
    assert "[0, 1]" in meta["input_descriptions"]["lr"] and "4H" in meta["output_descriptions"]["sr"]
    assert info.metadata["carn_mobile.weights_sha256"] == SHIPPED_SHA


def test_coreml_enumerated_shapes_with_image_io(exported) -> None:
    pytest.importorskip("coremltools")
    from carn_mobile.mlprogram import load_program
    from carn_mobile.runtimes import parse_shape

    r = exported("coreml", 3, shape=parse_shape("enumerated:32x32,24x40"), image_io=True)
    assert r.artifact.name == "carn-m_x3_fp16_enum2_image.mlpackage"
    assert r.report.passed and all(c.ok for c in r.report.checks)
    assert r.manifest["parity"]["status"] == "passed" and r.manifest["parity"]["min_psnr_db"] >= 50
    (inp,), (out,) = (info := load_program(r.artifact)).inputs, info.outputs
    assert (inp.kind, inp.color_layout, out.kind, out.color_layout) == ("image", "RGB", "image", "RGB")
    assert {tuple(s[2:]) for s in inp.shape_choices} == {(32, 32), (24, 40)}
    assert r.manifest["contract"]["input"]["type"] == "image"


def test_executorch_artifact(exported) -> None:
    pytest.importorskip("executorch")
    from carn_mobile.runtimes import parse_shape

    r = exported("executorch", 4, shape=parse_shape("dynamic:64"))
    assert r.artifact.name == "carn-m_x4_fp32.pte"
    m = assert_common_manifest(r, "executorch", 4, "fp32")
    assert_numeric_parity(r, max_abs=1e-4)
    details = m["export"]["details"]
    assert details["delegated_partitions"] >= 1 and 0 < details["planned_memory_bytes"] < 2**30
    assert m["shape"] == {"kind": "dynamic", "min_side": 8, "max_side": 64}

    # Outputs are copied out of the method's memory: a second run must not change the first result.
    load = get_runner("executorch").load(r.artifact)
    a_in = np.random.default_rng(1).random((1, 3, 9, 12), dtype=np.float32)
    a = load(a_in)
    a_again = a.copy()
    load(np.zeros((1, 3, 9, 12), dtype=np.float32))
    assert np.array_equal(a, a_again) and a.shape == (1, 3, 36, 48)

    from executorch.runtime import Runtime

    program = Runtime.get().load_program(r.artifact)
    assert program.load_method("scale").execute([]) == [4]


# --- carn-parity ------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["onnx", "torchscript-lite", "coreml", "executorch"])
def test_carn_parity_passes_on_fresh_artifacts(exported, target: str, capsys: pytest.CaptureFixture) -> None:
    if target == "coreml":
        pytest.importorskip("coremltools")
    if target == "executorch":
        pytest.importorskip("executorch")
        from carn_mobile.runtimes import parse_shape

        r = exported(target, 4, shape=parse_shape("dynamic:64"))
    else:
        r = exported(target, 4)
    assert cli(parity_cli.main, str(r.artifact)) == 0
    out = capsys.readouterr().out
    assert "passed" in out and "structural-only" not in out


def test_flipped_onnx_weights_fail_parity_numerically(exported, tmp_path: Path, capsys) -> None:
    onnx = pytest.importorskip("onnx")
    artifact = copy_artifact(exported("onnx", 4), tmp_path)
    biggest = max(onnx.load(str(artifact)).graph.initializer, key=lambda t: len(t.raw_data))
    data = bytearray(artifact.read_bytes())
    start = data.find(biggest.raw_data[:256])
    assert start > 0
    for i in range(start + 1000, start + 1400, 4):  # sign bits of 100 float32 weights
        data[i + 3] ^= 0x80
    artifact.write_bytes(bytes(data))

    assert cli(parity_cli.main, str(artifact)) == 1
    assert "parity failed" in capsys.readouterr().err
    # Even with the manifest's checksum updated to match, the numbers give it away.
    manifest = json.loads(manifest_path(artifact).read_text())
    manifest["file"]["sha256"] = sha256_file(artifact)
    manifest_path(artifact).write_text(json.dumps(manifest))
    report = recheck_artifact(artifact).report
    assert report.status == "failed" and report.max_abs > 1e-3
    assert all(c.ok for c in report.checks)


def test_truncated_pte_fails_parity(exported, tmp_path: Path, capsys) -> None:
    pytest.importorskip("executorch")
    from carn_mobile.runtimes import parse_shape

    artifact = copy_artifact(exported("executorch", 4, shape=parse_shape("dynamic:64")), tmp_path)
    artifact.write_bytes(artifact.read_bytes()[: artifact.stat().st_size // 2])
    assert cli(parity_cli.main, str(artifact)) == 1
    err = capsys.readouterr().err
    assert "cannot load" in err and "sha256" in err


def test_altered_ptl_fails_parity(exported, tmp_path: Path) -> None:
    artifact = copy_artifact(exported("torchscript-lite", 4), tmp_path)
    data = bytearray(artifact.read_bytes())
    middle = len(data) // 2
    for i in range(middle, middle + 400, 4):
        data[i + 3] ^= 0x80
    artifact.write_bytes(bytes(data))
    assert cli(parity_cli.main, str(artifact)) == 1


def test_changed_mlpackage_fails_parity(exported, tmp_path: Path, capsys) -> None:
    pytest.importorskip("coremltools")
    artifact = copy_artifact(exported("coreml", 4), tmp_path / "weights")
    weight_file = next(artifact.rglob("weight.bin"))
    data = bytearray(weight_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weight_file.write_bytes(bytes(data))
    assert cli(parity_cli.main, str(artifact)) == 1
    assert "sha256 matches manifest" in capsys.readouterr().err

    broken = copy_artifact(exported("coreml", 4), tmp_path / "spec")
    spec_file = next(broken.rglob("model.mlmodel"))
    spec_file.write_bytes(spec_file.read_bytes()[:100])
    report = recheck_artifact(broken).report
    assert report.status == "failed"
    assert not {c.name: c.ok for c in report.checks}["package loads"]


def test_carn_parity_with_other_weights_fails(exported, tmp_path: Path) -> None:
    from carn_mobile.models import build_model
    from carn_mobile.weights import save_weights

    other = tmp_path / "random_init.safetensors"
    save_weights(build_model("carn-m").eval(), other, arch="carn-m")
    r = exported("torchscript-lite", 4)
    assert cli(parity_cli.main, str(r.artifact), "--weights", str(other)) == 1


def test_carn_parity_needs_the_manifest(exported, tmp_path: Path, capsys) -> None:
    artifact = copy_artifact(exported("torchscript-lite", 4), tmp_path)
    manifest_path(artifact).unlink()
    assert cli(parity_cli.main, str(artifact)) == 2
    assert "no manifest" in capsys.readouterr().err
    assert cli(parity_cli.main, str(tmp_path / "missing.onnx")) == 2


# --- carn-export: overwrite, failure, usage errors ------------------------------------------------


def test_existing_artifact_is_kept_without_force(exported, tmp_path: Path, capsys) -> None:
    artifact = copy_artifact(exported("torchscript-lite", 4), tmp_path)
    before = sha256_file(artifact), manifest_path(artifact).read_text()
    args = ["--target", "torchscript-lite", "--scale", "4", "--out", str(tmp_path)]
    assert cli(export_cli.main, *args) == 2
    assert "--force" in capsys.readouterr().err
    assert (sha256_file(artifact), manifest_path(artifact).read_text()) == before
    assert cli(export_cli.main, *args, "--force") == 0
    assert manifest_path(artifact).read_text() != before[1]  # a new manifest (new timestamp, timings)
    assert sorted(p.name for p in tmp_path.iterdir()) == [artifact.name, manifest_path(artifact).name]


def test_failed_parity_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    runner = type(get_runner("lite-interpreter"))
    real_load = runner.load

    def drifting_load(self, path):
        run_artifact = real_load(self, path)
        return lambda lr: run_artifact(lr) + 1e-3

    monkeypatch.setattr(runner, "load", drifting_load)
    out = tmp_path / "out"
    assert cli(export_cli.main, "--target", "torchscript-lite", "--scale", "4", "--out", str(out)) == 1
    err = capsys.readouterr().err
    assert "failed parity" in err and "max abs 1.000e-03" in err and "nothing was written" in err
    assert not out.exists() or list(out.iterdir()) == []


def test_a_full_disk_is_one_line_naming_the_folder_and_the_artifact(tmp_path: Path, monkeypatch, capsys) -> None:
    import errno

    from carn_mobile.export import get_target

    target = type(get_target("torchscript-lite"))

    def full_disk(self, module, request, out):
        out.write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(target, "export", full_disk)
    out = tmp_path / "out"
    assert cli(export_cli.main, "--target", "torchscript-lite", "--scale", "4", "--out", str(out)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "Errno" not in err
    assert f"no space left on device in {out} while writing carn-m_x4_fp32.ptl" in " ".join(err.split())
    assert list(out.iterdir()) == []


def test_a_later_export_removes_what_a_killed_one_left(tmp_path: Path, capsys) -> None:
    import subprocess

    proc = subprocess.Popen(["true"])
    proc.wait()
    out = tmp_path / "out"
    leftover = out / f".carn-m_x4_fp32.ptl.carn-{proc.pid}-q1w2.tmp"  # as kill -9 leaves it
    (leftover / "carn-m_x4_fp32.ptl").mkdir(parents=True)
    assert cli(export_cli.main, "--target", "torchscript-lite", "--scale", "4", "--shape", "24x32",
               "--out", str(out)) == 0
    assert not leftover.exists()
    assert sorted(p.name for p in out.iterdir()) == ["carn-m_x4_fp32_24x32.ptl", "carn-m_x4_fp32_24x32.ptl.json"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--target", "tflite"], "unknown target 'tflite'"),
        (["--target", "onnx", "--shape", "64by64"], "unusable shape spec"),
        (["--target", "onnx", "--image-io"], "--image-io applies to coreml only"),
        (["--target", "torchscript-lite", "--precision", "fp16"], "supports fp32 only"),
        (["--target", "onnx", "--model", "carn"], "no shipped weights named 'carn'"),
        (["--target", "onnx", "--scale", "5"], "scales must be among 2, 3, 4"),
    ],
)
def test_usage_errors_exit_2_with_a_clear_message(args, message, tmp_path: Path, capsys) -> None:
    if "onnx" in args and "--image-io" in args:
        needs("onnx")  # the option is checked against the installed target
    assert cli(export_cli.main, *args, "--out", str(tmp_path / "out")) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_scale_missing_from_the_weights(tmp_path: Path, capsys) -> None:
    from carn_mobile.weights import load_model, save_weights

    needs("onnx")
    x4_only = tmp_path / "carn_m_x4.safetensors"
    save_weights(load_model("carn-m").single_scale(4), x4_only, arch="carn-m")
    assert cli(export_cli.main, "--target", "onnx", "--scale", "2", "--weights", str(x4_only),
               "--out", str(tmp_path / "out")) == 2
    assert "the weights have no x2 branch (they have x4)" in capsys.readouterr().err


def test_missing_optional_dependency_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys) -> None:
    hide_modules(monkeypatch, "executorch")
    assert cli(export_cli.main, "--target", "executorch", "--out", str(tmp_path)) == 2
    assert 'pip install "carn-mobile[executorch]"' in capsys.readouterr().err

    from carn_mobile.export import plan_exports
    from carn_mobile.weights import resolve_weights

    jobs, skipped = plan_exports(resolve_weights("carn-m"), (2, 3, 4), ["all"], [4], out_dir=tmp_path)
    assert "executorch" not in {j.target.name for j in jobs}
    reasons = {s.target: s.reason for s in skipped}
    assert set(reasons) == {"executorch", "qnn"} and "carn-mobile[executorch]" in reasons["executorch"]
    assert "quantized artifacts only" in reasons["qnn"]  # "all" without --precision: float targets


def test_flipped_mlpackage_weights_fail_parity_numerically(exported, tmp_path: Path) -> None:
    # The checksum is made to match, so only the reference executor's numbers can catch it.
    pytest.importorskip("coremltools")
    from carn_mobile.fileio import sha256_file

    artifact = copy_artifact(exported("coreml", 4), tmp_path)
    weight_file = next(artifact.rglob("weight.bin"))
    data = bytearray(weight_file.read_bytes())
    # Inside the largest blob's data: each blob starts with 64 bytes of metadata (sentinel 0xDEADBEEF).
    starts = [i for i in range(0, len(data) - 3, 64) if data[i : i + 4] == b"\xef\xbe\xad\xde"] + [len(data)]
    begin = max(zip(starts[:-1], starts[1:], strict=True), key=lambda pair: pair[1] - pair[0])[0] + 64
    for i in range(begin, begin + 4000, 2):  # sign bits of 2000 fp16 weights (little-endian)
        data[i + 1] ^= 0x80
    weight_file.write_bytes(bytes(data))
    manifest = json.loads(manifest_path(artifact).read_text())
    manifest["file"]["sha256"] = sha256_file(artifact)
    manifest_path(artifact).write_text(json.dumps(manifest))
    report = recheck_artifact(artifact).report
    assert report.status == "failed" and report.max_abs > 1e-2
