"""Parity policy, inputs, comparison and report logic, and the gate's runner rule, with fake runners
(no exports)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from carn_mobile import parity
from carn_mobile.export import ExportRequest, Target, check_artifact, open_artifact
from carn_mobile.parity import (
    DEFAULT_POLICY,
    FAILED,
    PASSED,
    STRUCTURAL_ONLY,
    ParityCase,
    StructuralCheck,
    compare,
    parity_inputs,
)
from carn_mobile.runtimes import Runner, RunnerUnavailable, ShapeSpec, parse_shape
from carn_mobile.testimage import natural_test_image, natural_test_image_uint8


class Halve(nn.Module):
    """A stand-in reference: ``x2`` nearest-neighbour upscaling of half the input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(x * 0.5, scale_factor=2, mode="nearest")


class FakeRunner(Runner):
    name = "fake"
    target = "fake"
    suffix = ".fake"

    def __init__(self, error: float = 0.0, fail_load: bool = False, unavailable: bool = False) -> None:
        self.error = error
        self.fail_load = fail_load
        self.unavailable = unavailable

    def load(self, path):
        if self.unavailable:
            raise RunnerUnavailable("cannot serve it here")
        if self.fail_load:
            raise RuntimeError("truncated file")
        ref = Halve()

        def run(lr: np.ndarray) -> np.ndarray:
            out = ref(torch.from_numpy(lr)).numpy()
            out = out.copy()
            out[..., 0, 0] += self.error  # one bad pixel per channel
            return out

        return run


class FakeTarget(Target):
    """A target without registered runners: the tests hand the gate theirs."""

    name = "fake"
    suffix = ".fake"
    runners = ()

    def __init__(self, checks: list[StructuralCheck] | None = None) -> None:
        self.checks = checks or []

    def export(self, module, request, out):
        raise NotImplementedError

    def structural_check(self, path, request, module) -> list[StructuralCheck]:
        return list(self.checks)


CASES = [ParityCase("random", np.random.default_rng(0).random((1, 3, 9, 11), dtype=np.float32))]


def gate(precision: str, cases=CASES, runners=None, checks=None):
    """The gate's parity report for a fake artifact, against ``Halve`` as the float reference."""
    request = ExportRequest("carn-m", 2, precision, ShapeSpec())
    result = check_artifact(FakeTarget(checks), Path("x.fake"), request, Halve(), Halve(), cases, runners=runners)
    assert result.quality is None  # a float precision has no quality gate
    return result.report


# --- policy and comparison ------------------------------------------------------------------


def test_policy_limits() -> None:
    assert DEFAULT_POLICY.limits("fp32") == {"max_abs": 1e-4}
    assert DEFAULT_POLICY.limits("fp16") == {"max_abs": 2e-2, "min_psnr_db": 50.0}
    assert DEFAULT_POLICY.limits("fp32", eight_bit_output=True)["min_psnr_db"] == 50.0


def test_compare_reports_max_abs_and_psnr() -> None:
    a = np.zeros((1, 3, 4, 4), dtype=np.float32)
    assert compare(a, a) == (0.0, None)
    b = a + 0.01
    max_abs, psnr = compare(b, a)
    assert max_abs == pytest.approx(0.01, rel=1e-5) and psnr == pytest.approx(40.0, abs=1e-3)


# --- inputs ---------------------------------------------------------------------------------


def test_dynamic_inputs_include_test_image_and_odd_non_square_random(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parity, "default_image_dir", lambda scale: None)
    cases = parity_inputs(4, ShapeSpec(max_side=256))
    names = [c.name for c in cases]
    assert names == ["test-image", "random-17x23", "random-32x48"]
    assert all(c.lr.dtype == np.float32 and c.lr.flags["C_CONTIGUOUS"] for c in cases)
    assert all(0.0 <= c.lr.min() and c.lr.max() <= 1.0 for c in cases)


def test_dynamic_inputs_stay_inside_the_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parity, "default_image_dir", lambda scale: None)
    spec = ShapeSpec(min_side=20, max_side=30)
    assert all(spec.accepts(c.size) for c in parity_inputs(2, spec))


def test_real_images_are_cropped_and_labelled(set5_dir: Path) -> None:
    cases = parity_inputs(3, ShapeSpec(max_side=1024), set5_dir / "LR_bicubic" / "X3")
    real = [c for c in cases if c.name.startswith("Set5/")]
    assert {c.name for c in real} == {"Set5/baby", "Set5/bird", "Set5/butterfly", "Set5/head", "Set5/woman"}
    assert all(max(c.size) <= parity.REAL_CROP for c in real)


def test_fixed_and_enumerated_shapes_use_exactly_those_sizes(set5_dir: Path) -> None:
    folder = set5_dir / "LR_bicubic" / "X4"
    fixed = parity_inputs(4, parse_shape("70x90"), folder)  # wider than some Set5 LR images: mirrored
    assert {c.size for c in fixed} == {(70, 90)} and len(fixed) == 7
    enum = parity_inputs(4, parse_shape("enumerated:16x16,24x40"), folder)
    assert {c.size for c in enum} == {(16, 16), (24, 40)}


def test_missing_image_folder_is_an_error() -> None:
    with pytest.raises(FileNotFoundError):
        parity_inputs(2, ShapeSpec(max_side=64), "/nonexistent/folder")


# --- built-in test image --------------------------------------------------------------------


def test_natural_test_image_is_deterministic_and_has_structure() -> None:
    a = natural_test_image(48, 64)
    assert a.shape == (48, 64, 3) and a.dtype == np.float32 and 0.0 <= a.min() and a.max() <= 1.0
    assert np.array_equal(a, natural_test_image(48, 64))
    assert not np.array_equal(a, natural_test_image(48, 64, seed=1))
    grad = np.abs(np.diff(a, axis=1)).mean(axis=2)
    assert grad.max() > 0.3  # hard edges
    assert np.median(grad) < 0.05  # mostly smooth
    assert a.std(axis=(0, 1)).min() > 0.05  # colourful, not flat
    assert natural_test_image_uint8(5, 7).dtype == np.uint8
    with pytest.raises(ValueError):
        natural_test_image(0, 5)


# --- the gate ---------------------------------------------------------------------------------


def test_matching_runner_passes_and_reports_inf_psnr() -> None:
    report = gate("fp32", runners=[FakeRunner()])
    assert report.status == PASSED and report.max_abs == 0.0 and math.isinf(report.min_psnr_db)
    assert report.to_json()["min_psnr_db"] is None  # JSON has no infinity: null, never a made-up number


def test_out_of_tolerance_runner_fails_with_numbers() -> None:
    report = gate("fp32", runners=[FakeRunner(error=1e-3)])
    assert report.status == FAILED and report.max_abs == pytest.approx(1e-3, rel=1e-3)
    details = "\n".join(report.failure_details())
    assert "max abs 1.000e-03" in details and "limits: max_abs 0.0001" in details


def test_fp16_policy_tolerates_small_errors_but_not_wild_pixels() -> None:
    ok = gate("fp16", runners=[FakeRunner(error=1e-3)])
    assert ok.status == PASSED
    big = [ParityCase("random", np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32))]
    wild = gate("fp16", big, runners=[FakeRunner(error=0.1)])
    assert wild.status == FAILED and wild.min_psnr_db > 50  # the mean hides it, max abs catches it


def test_unloadable_artifact_is_a_failure_not_a_crash() -> None:
    report = gate("fp32", runners=[FakeRunner(fail_load=True)])
    assert report.status == FAILED and "truncated file" in report.reason and report.runner == "fake"


def test_failed_structural_check_fails_even_with_perfect_numbers() -> None:
    bad = [StructuralCheck("sha256", False, "differs")]
    report = gate("fp32", runners=[FakeRunner()], checks=bad)
    assert report.status == FAILED and "check sha256: differs" in report.failure_details()


def test_without_runner_structural_checks_decide_and_say_so() -> None:
    ok = [StructuralCheck("loads", True)]
    report = gate("fp16", checks=ok)
    assert report.status == STRUCTURAL_ONLY and report.cases == [] and "no runner" in report.reason
    assert report.to_json()["status"] == "structural-only" and "max_abs" not in report.to_json()
    bad = [StructuralCheck("loads", False, "corrupt")]
    assert gate("fp16", checks=bad).status == FAILED
    with pytest.raises(RunnerUnavailable):
        gate("fp16")


def test_one_runner_rule_takes_the_first_that_loads_and_says_which_were_skipped() -> None:
    first, second = FakeRunner(unavailable=True), FakeRunner(error=1e-3)
    opened = open_artifact("x.fake", FakeTarget(), [first, second])
    assert opened.runner is second and "cannot serve it here" in opened.skipped[0]
    report = gate("fp16", runners=[first, second])
    assert report.status == PASSED and report.reason.startswith("ran in fake;")
    with pytest.raises(RunnerUnavailable, match="cannot serve it here"):
        open_artifact("x.fake", FakeTarget(), [first])
