"""carn-info --environment, the tested ranges, platform limits (Core ML and LiteRT on aarch64) and
the aarch64 check script's own behaviour."""

from __future__ import annotations

import importlib
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from conftest import hide_modules
from packaging.requirements import Requirement

from carn_mobile import environment
from carn_mobile.cli import export as export_cli
from carn_mobile.cli import info as info_cli
from carn_mobile.environment import PackageStatus, capabilities, package_statuses
from carn_mobile.export import plan_exports
from carn_mobile.export.target_coreml import coreml_writer_missing
from carn_mobile.runtimes import UnsupportedPlatformError
from carn_mobile.weights import resolve_weights

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _exit_code(main, *args: str) -> int:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    return int(exc.value.code or 0)


# --- tested ranges ----------------------------------------------------------------------------


def test_every_runtime_extra_has_a_closed_range() -> None:
    # Both ends: the lower one and the upper one are what the tests ran with (docs/platforms.md).
    for extra in ("export", "executorch", "litert", "video"):
        for line in PYPROJECT["optional-dependencies"][extra]:
            ops = {s.operator for s in Requirement(line).specifier}
            assert ">=" in ops and "<" in ops, line
    for line in PYPROJECT["dependencies"]:
        ops = {s.operator for s in Requirement(line).specifier}
        assert ">=" in ops and "<" in ops, line


def test_in_range_reads_the_installed_version_against_the_declared_one() -> None:
    assert PackageStatus("onnx", "export", ">=1.21,<1.24", "1.23.2").in_range is True
    assert PackageStatus("onnx", "export", ">=1.21,<1.24", "1.24.0").in_range is False
    assert PackageStatus("onnx", "export", ">=1.21,<1.24", "1.20.1").in_range is False
    assert PackageStatus("torch", "", ">=2.13,<2.14", "2.13.0+cpu").in_range is True  # a local build tag
    assert PackageStatus("onnx", "export", ">=1.21,<1.24", None).in_range is None


def test_statuses_follow_pyproject_in_both_readings(monkeypatch) -> None:
    installed = {(r.name, r.extra): r.tested for r in package_statuses()}
    # The checkout's pyproject.toml, read as a never-installed source tree reads it.
    monkeypatch.setattr(environment, "requires", lambda name: None)
    from_file = {(r.name, r.extra): r.tested for r in package_statuses()}
    assert installed == from_file
    assert ("onnxruntime", "export") in from_file and all(extra != "dev" for _, extra in from_file)
    onnxruntime = next(line for line in PYPROJECT["optional-dependencies"]["export"] if line.startswith("onnxruntime"))
    assert Requirement(onnxruntime).specifier.contains(from_file[("onnxruntime", "export")].split(",")[0][2:])


def test_environment_lists_packages_and_targets(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "240")
    assert _exit_code(info_cli.main, "--environment") == 0
    out = capsys.readouterr().out
    assert platform.machine() in out and "tested range" in out
    for row in package_statuses():
        assert row.name in out
    for cap in capabilities():
        assert cap.target in out


def test_a_version_outside_the_range_is_called_out(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "240")
    real = environment.version_of
    monkeypatch.setattr(environment, "version_of", lambda name: "0.0.1" if name == "onnx" else real(name))
    assert _exit_code(info_cli.main, "--environment") == 0
    out = capsys.readouterr().out
    assert "outside the tested range" in out and "1 package(s) outside the tested ranges" in out


# --- platform limits --------------------------------------------------------------------------


def test_coreml_without_its_native_writer_fails_in_one_line_and_all_skips_it(tmp_path, monkeypatch, capsys) -> None:
    pytest.importorskip("coremltools")
    # What coremltools' Linux aarch64 wheel is: the Python package without its native libraries.
    hide_modules(monkeypatch, "coremltools.libmilstoragepython")
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    assert "no native BlobWriter" in (coreml_writer_missing() or "")
    assert _exit_code(export_cli.main, "--target", "coreml", "--scale", "2", "--out", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "cannot write Core ML packages" in err and "macOS or Linux x86-64" in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
    jobs, skipped = plan_exports(resolve_weights("carn-m"), (2,), ["all"], [2], out_dir=tmp_path)
    assert "coreml" not in {j.target.name for j in jobs}
    (coreml,) = [s for s in skipped if s.target == "coreml"]
    assert "BlobWriter" in coreml.reason


def test_the_coreml_writer_probe_passes_where_the_libraries_load() -> None:
    pytest.importorskip("coremltools")
    try:
        importlib.import_module("coremltools.libmilstoragepython")
        importlib.import_module("coremltools.libmodelpackage")
    except ImportError:
        pytest.skip("this coremltools has no native libraries (not an x86-64 / macOS wheel)")
    assert coreml_writer_missing() is None


def test_litert_on_aarch64_says_why_not_install_the_extra(tmp_path, monkeypatch, capsys) -> None:
    hide_modules(monkeypatch, "litert_torch")
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    with pytest.raises(UnsupportedPlatformError, match="no Linux aarch64 wheel"):
        from carn_mobile.export import get_target

        get_target("litert").check_available()
    assert _exit_code(export_cli.main, "--target", "litert", "--scale", "2", "--out", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "export LiteRT on x86-64" in err and "pip install" not in err
    # On x86-64 the same missing package is the usual "install the extra" message.
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    assert _exit_code(export_cli.main, "--target", "litert", "--scale", "2", "--out", str(tmp_path / "o")) == 2
    assert 'carn-mobile[litert]' in capsys.readouterr().err


# --- the aarch64 check script -----------------------------------------------------------------


def test_the_arm64_check_refuses_another_architecture_in_one_line() -> None:
    if platform.machine().lower() in ("aarch64", "arm64"):
        pytest.skip("this is an ARM machine")
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "arm64_check.py"), "--no-install"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "not aarch64" in proc.stderr and "--any-arch" in proc.stderr


def test_the_arm64_check_installs_with_the_readme_command() -> None:
    sys.path.insert(0, str(REPO / "tools"))
    try:
        check = importlib.import_module("arm64_check")
    finally:
        sys.path.pop(0)
    ci = (REPO / ".ci" / "run").read_text()
    assert "extract quickstart:install" in ci  # CI and the ARM check install the same way
    assert check.readme_block("quickstart:install").startswith("python3 -m venv .venv")


@pytest.mark.slow
def test_the_arm64_check_runs_its_steps_and_reports(tmp_path) -> None:
    venv = Path(sys.prefix)
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "arm64_check.py"), "--any-arch", "--no-install",
                           "--no-tests", "--venv", str(venv), "--targets", "onnx,torchscript-lite", "--backends",
                           "torch,onnxruntime", "--out", str(tmp_path / "report")],
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    import json

    rows = json.loads((tmp_path / "report" / "summary.json").read_text())["rows"]
    steps = [(r["step"], r["subject"], r["result"]) for r in rows]
    assert ("export", "onnx", "passed") in steps and ("export", "torchscript-lite", "passed") in steps
    assert ("parity", "carn-m_x2_fp32_24x32.onnx", "passed") in steps
    assert {(s, r) for s, subject, r in steps if s == "upscale"} == {("upscale", "passed")}
    assert (tmp_path / "report" / "summary.md").read_text().count("| upscale |") == 2
