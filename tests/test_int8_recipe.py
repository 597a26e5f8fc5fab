"""The int8 building blocks: recipe, calibration data, built-in images and the quality measures."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_shared
from PIL import Image

from carn_mobile.precision import get_precision
from carn_mobile.quantization import CalibrationError, CalibrationSource, Quantization, Recipe
from carn_mobile.quantization.onnx_qdq import QDQ_QUANTIZER
from carn_mobile.quantization.pt2e import PT2E_QUANTIZER
from carn_mobile.quantization.quality import QualityPair, fit_pair, measure_quality, quality_sets, y_psnr
from carn_mobile.quantization.synthetic import calibration_image
from carn_mobile.runtimes import parse_shape

# --- recipe -----------------------------------------------------------------------------------


def test_the_recipe_names_its_choices_and_round_trips_through_a_manifest() -> None:
    recipe = QDQ_QUANTIZER.resolve(Recipe(float_modules={"net.exit": "measured: rejected by a backend"}))
    assert recipe.keeps_float("net.exit") and recipe.keeps_float("net.exit.conv")
    assert recipe.keeps_float("net.exits") is None and recipe.keeps_float("net.entry") is None
    assert Recipe.from_json(recipe.to_json()) == recipe
    # Unset fields take the quantizer's measured defaults: onnxruntime's and XNNPACK's differ.
    onnx = QDQ_QUANTIZER.resolve(Recipe())
    assert onnx.method == "Percentile" and onnx.percentile == 99.999 and onnx.activation_type == "uint8"
    pte = PT2E_QUANTIZER.resolve(Recipe())
    assert pte.method == "Histogram" and pte.percentile is None and pte.activation_type == "int8"
    assert onnx.per_channel and pte.per_channel and not pte.output_grid
    with pytest.raises(ValueError, match="unknown calibration method 'MSE'; use one of MinMax, Percentile, Entropy"):
        Recipe(method="MSE")
    with pytest.raises(ValueError, match="recipe is incomplete"):
        Recipe.from_json({"method": "MinMax"})
    with pytest.raises(ValueError, match="recipe is incomplete"):
        Recipe.from_json(Recipe().to_json())  # an unresolved recipe is not what any artifact applied


def test_int8_is_a_quantized_row_of_the_precision_table() -> None:
    row = get_precision("int8")
    assert row.quantized and row.lossy and row.compute_dtype == "int8"
    assert row.max_task_psnr_drop_db == 0.1 and row.min_float_psnr_db is not None
    assert not get_precision("fp16").quantized and get_precision("fp16").max_task_psnr_drop_db is None


# --- calibration ------------------------------------------------------------------------------


def test_built_in_calibration_is_deterministic_per_seed_and_shaped_like_lr_patches() -> None:
    a = CalibrationSource(count=8, patch=16).for_scale(3)
    b = CalibrationSource(count=8, patch=16).for_scale(3)
    c = CalibrationSource(count=8, patch=16, seed=1).for_scale(3)
    assert a.sha256 == b.sha256 != c.sha256
    assert len(a.patches) == 8 and all(p.shape == (1, 3, 16, 16) and p.dtype == np.float32 for p in a.patches)
    assert all(0.0 <= p.min() and p.max() <= 1.0 for p in a.patches)
    record = a.to_json()
    assert record["source"] == "built-in procedural images" and record["degradation"] == "MATLAB bicubic"
    assert record["patches"] == 8 and record["scale"] == 3 and record["sha256"] == a.sha256


def test_the_built_in_images_are_detailed_deterministic_pictures() -> None:
    img = calibration_image(64, 80, seed=3)
    assert img.shape == (64, 80, 3) and img.dtype == np.uint8
    assert np.array_equal(img, calibration_image(64, 80, seed=3))
    assert not np.array_equal(img, calibration_image(64, 80, seed=4))
    edges = np.abs(np.diff(img.astype(np.int16), axis=1)).max(axis=-1)
    assert (edges > 96).mean() > 0.002  # hard edges, not a smooth gradient
    with pytest.raises(ValueError, match="at least 8x8"):
        calibration_image(4, 80, seed=0)


def _save(folder, name: str, size: tuple[int, int], seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / name)


def test_a_folder_gives_bicubic_patches_from_its_images_recursively(tmp_path) -> None:
    _save(tmp_path / "a", "one.png", (70, 90), 1)
    _save(tmp_path / "b", "two.png", (64, 64), 2)
    _save(tmp_path / "b", "tiny.png", (20, 20), 3)  # too small for a 16-px patch at x4: not used
    source = CalibrationSource(tmp_path, count=9, patch=16)
    cal = source.for_scale(4)
    assert len(cal.patches) == 9 and cal.images == 2 and cal.source == str(tmp_path)
    assert cal.sha256 == CalibrationSource(tmp_path, count=9, patch=16).for_scale(4).sha256
    assert cal.sha256 != CalibrationSource(tmp_path, count=9, patch=16, seed=5).for_scale(4).sha256


@pytest.mark.parametrize("case", ["missing", "empty", "unreadable", "too-small", "too-few", "evaluation-set"])
def test_bad_calibration_sources_fail_with_what_to_do(tmp_path, case: str) -> None:
    folder = tmp_path / "train"
    expected = {"missing": "does not exist", "empty": "holds no images", "unreadable": "cannot be read",
                "too-small": "no image in .* is at least 64x64", "too-few": "too few; use at least 8",
                "evaluation-set": "is an evaluation set"}[case]
    count = 3 if case == "too-few" else 8
    if case == "empty":
        folder.mkdir()
    elif case == "unreadable":
        _save(folder, "good.png", (80, 80))
        (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    elif case == "too-small":
        _save(folder, "small.png", (40, 40))
    elif case == "too-few":
        _save(folder, "good.png", (80, 80))
    elif case == "evaluation-set":
        folder = tmp_path / "Set14" / "HR"
        _save(folder, "good.png", (80, 80))
    with pytest.raises(CalibrationError, match=expected):
        CalibrationSource(folder, count=count, patch=16).for_scale(4)


def test_training_images_calibrate_deterministically(tmp_path) -> None:
    train = require_shared("data", "train")
    a = CalibrationSource(train, count=8).for_scale(4)
    assert a.images == 8 and a.sha256 == CalibrationSource(train, count=8).for_scale(4).sha256
    quantization = Quantization.for_quantizer(QDQ_QUANTIZER, "int8", calibration=CalibrationSource(train, count=8))
    assert quantization.to_json(4)["calibration"]["sha256"] == a.sha256


# --- quality ----------------------------------------------------------------------------------


def test_fit_pair_crops_lr_and_hr_together_to_an_accepted_size() -> None:
    lr = np.arange(10 * 12 * 3, dtype=np.uint8).reshape(10, 12, 3)
    hr = np.repeat(np.repeat(lr, 2, axis=0), 2, axis=1)
    pair = QualityPair(lr, hr)
    fitted, cropped = fit_pair(pair, 2, parse_shape("dynamic:4-8"))
    assert cropped and fitted.lr.shape == (8, 8, 3) and fitted.hr.shape == (16, 16, 3)
    assert np.array_equal(fitted.hr[::2, ::2], fitted.lr)  # the same region
    assert fit_pair(pair, 2, parse_shape("dynamic:4-64")) == (pair, False)
    assert fit_pair(pair, 2, parse_shape("11x11")) is None  # larger than the image
    assert fit_pair(pair, 2, parse_shape("6x5"))[0].lr.shape == (6, 5, 3)


def test_quality_sets_always_hold_the_built_in_test_image_big_enough_for_the_shape() -> None:
    sets = quality_sets(4, folders=[])
    assert list(sets) == ["test-image"] and sets["test-image"][0].hr.shape == (384, 384, 3)
    big = quality_sets(4, folders=[], shape=parse_shape("120x200"))["test-image"][0]
    assert big.lr.shape == (120, 200, 3) and big.hr.shape == (480, 800, 3)


def _identity_x2(x: np.ndarray) -> np.ndarray:
    return np.repeat(np.repeat(x, 2, axis=2), 2, axis=3)


class _Nearest:
    """A stand-in float32 reference: nearest-neighbour x2 (the gate only compares outputs)."""

    def __call__(self, x):
        import torch

        return torch.from_numpy(_identity_x2(x.numpy()))


def test_the_quality_gate_passes_an_artifact_equal_to_float32_and_fails_a_degraded_one() -> None:
    sets = quality_sets(2, folders=[])
    pictures = [np.random.default_rng(0).random((1, 3, 24, 24), dtype=np.float32)]
    limits = {"min_float_psnr_db": 40.0, "max_task_psnr_drop_db": 0.1}
    same = measure_quality(_identity_x2, _Nearest(), 2, parse_shape("dynamic:1024"), pictures, sets, limits)
    assert same.passed and same.max_drop_db == 0.0 and same.sets[0].name == "test-image"

    def noisy(x: np.ndarray) -> np.ndarray:
        out = _identity_x2(x)
        return np.clip(out + np.random.default_rng(1).normal(0, 0.02, out.shape), 0, 1).astype(np.float32)

    worse = measure_quality(noisy, _Nearest(), 2, parse_shape("dynamic:1024"), pictures, sets, limits)
    assert not worse.passed and worse.max_drop_db > 0.1
    assert any("test-image: task PSNR drop" in f for f in worse.failures)
    assert any("Y-PSNR against float32" in f for f in worse.failures)
    assert worse.to_json()["passed"] is False


def test_y_psnr_is_infinite_for_identical_outputs() -> None:
    x = np.random.default_rng(0).random((1, 3, 16, 16), dtype=np.float32)
    assert y_psnr(x, x, 2) == float("inf")
