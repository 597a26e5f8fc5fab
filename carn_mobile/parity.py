"""Numeric parity, the pure numerics: inputs, comparison against a reference, the report.

The reference is the float32 per-scale PyTorch module for float precisions, and for a quantized
precision the artifact's own quantized model computed literally (its target's
``quantized_reference``). Inputs are real LR images (Set5 when available, centre-cropped to
keep it quick), the built-in procedural test image and random inputs of odd, non-square sizes,
all inside the artifact's accepted shapes. Each output is compared with the reference on [0, 1]
RGB: max abs error and PSNR = 10 log10(1 / MSE).

Tolerances come from the precision table (:mod:`carn_mobile.precision`): float32 artifacts
max abs error <= 1e-4 on every input; float16 artifacts (and 8-bit image outputs) PSNR >= 50 dB
against the float32 reference and max abs error <= 2e-2 on every input.

Which runtime runs the artifact, the structural checks and the quality gate of quantized
precisions belong to the gate (:mod:`carn_mobile.export.gate`); when no runner can execute an
artifact here (Core ML off macOS), its structural checks decide and the report says
``structural-only`` with the reason; no number is made up.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .precision import Tolerance, get_precision, parity_tolerance
from .runtimes import ShapeSpec
from .testimage import natural_test_image

#: Real images are centre-cropped to at most this many LR pixels per side.
REAL_CROP = 64
#: At most this many real images are used (Set5 has five).
MAX_REAL_IMAGES = 5
#: Random input sizes (H, W) for dynamic artifacts: odd, non-square, and a larger even one.
RANDOM_SIZES = ((17, 23), (32, 48))
#: Size of the built-in test image for dynamic artifacts.
TEST_IMAGE_SIZE = (40, 56)

PASSED, FAILED, STRUCTURAL_ONLY = "passed", "failed", "structural-only"


@dataclass(frozen=True)
class ParityPolicy:
    """The tolerances that gate an artifact: the precision table's (:mod:`carn_mobile.precision`),
    unless ``overrides`` names another :class:`~carn_mobile.precision.Tolerance` for a precision."""

    overrides: Mapping[str, Tolerance] = field(default_factory=dict)
    #: Largest task-PSNR drop a quantized artifact may show (``None``: the precision table's).
    max_psnr_drop_db: float | None = None
    #: Benchmark folders (HR/ + LR_bicubic/) for the quantized quality gate (``None``: Set5 and
    #: Set14 from the shared data, where present); the built-in test image is always measured.
    quality_sets: tuple[str, ...] | None = None

    def quality_limits(self, precision: str) -> dict[str, float]:
        """The quality gate of a quantized precision: Y-PSNR floor and largest task-PSNR drop."""
        row = get_precision(precision)
        drop = self.max_psnr_drop_db if self.max_psnr_drop_db is not None else row.max_task_psnr_drop_db
        limits = {"min_float_psnr_db": row.min_float_psnr_db, "max_task_psnr_drop_db": drop}
        return {k: v for k, v in limits.items() if v is not None}

    def limits(self, precision: str, eight_bit_output: bool = False,
               runtime: Tolerance | None = None) -> dict[str, float]:
        """The limits that apply: ``max_abs`` always, ``min_psnr_db`` for lossy artifacts and for an
        8-bit image output (which rounds to 1/255 whatever the precision). ``runtime``: the
        target's own tolerance for ``precision`` (an integer engine that rounds differently), used
        unless this policy overrides the precision."""
        return parity_tolerance(precision, eight_bit_output, self.overrides.get(precision) or runtime).to_json()


DEFAULT_POLICY = ParityPolicy()


@dataclass(frozen=True)
class ParityCase:
    """One parity input: a name saying where it comes from and the LR batch (1, 3, H, W)."""

    name: str
    lr: np.ndarray
    #: Folder a real image came from (``None`` for the built-in and random inputs).
    source: str | None = None

    @property
    def size(self) -> tuple[int, int]:
        return int(self.lr.shape[2]), int(self.lr.shape[3])


@dataclass
class CaseResult:
    name: str
    lr_size: list[int]
    max_abs: float | None
    psnr_db: float | None  # None when the outputs are identical (infinite PSNR) or unavailable
    passed: bool
    error: str | None = None


@dataclass
class StructuralCheck:
    """One structural fact about an artifact checked without running it."""

    name: str
    ok: bool
    detail: str = ""


@dataclass
class ParityReport:
    """Outcome of a parity run; ``status`` is passed, failed or structural-only."""

    status: str
    runner: str | None
    tolerance: dict[str, float]
    cases: list[CaseResult] = field(default_factory=list)
    checks: list[StructuralCheck] = field(default_factory=list)
    reason: str | None = None  # why structural-only, or why it failed before any case ran
    runner_versions: dict[str, str | None] = field(default_factory=dict)
    #: Which inputs were used, in words: real images and their folder, or why there were none.
    inputs: str = ""

    @property
    def passed(self) -> bool:
        return self.status != FAILED

    @property
    def max_abs(self) -> float | None:
        values = [c.max_abs for c in self.cases if c.max_abs is not None]
        return max(values) if values else None

    @property
    def min_psnr_db(self) -> float | None:
        """Lowest PSNR over the cases; ``inf`` when every output matched exactly."""
        if not self.cases or any(c.max_abs is None for c in self.cases):
            return None
        values = [math.inf if c.psnr_db is None else c.psnr_db for c in self.cases]
        return min(values)

    def headline(self) -> str:
        """One line: status and the worst numbers."""
        if self.status == STRUCTURAL_ONLY:
            ok = sum(c.ok for c in self.checks)
            return f"structural-only ({ok}/{len(self.checks)} checks passed): {self.reason}"
        parts = [self.status]
        if self.max_abs is not None:
            parts.append(f"max abs {self.max_abs:.2e}")
        psnr = self.min_psnr_db
        if psnr is not None:
            parts.append("min PSNR inf dB" if math.isinf(psnr) else f"min PSNR {psnr:.1f} dB")
        if self.cases:
            parts.append(f"{sum(c.passed for c in self.cases)}/{len(self.cases)} inputs within tolerance")
        if self.runner:
            parts.append(f"runner {self.runner}")
        return ", ".join(parts)

    def failure_details(self) -> list[str]:
        """Human-readable lines for every failed case and check."""
        lines = [f"{self.reason}"] if self.status == FAILED and self.reason else []
        limits = ", ".join(f"{k} {v:g}" for k, v in self.tolerance.items())
        for c in self.cases:
            if not c.passed:
                size = "x".join(map(str, c.lr_size))
                if c.error:
                    lines.append(f"{c.name} ({size}): {c.error}")
                else:
                    psnr = "inf" if c.psnr_db is None else f"{c.psnr_db:.2f}"
                    lines.append(f"{c.name} ({size}): max abs {c.max_abs:.3e}, PSNR {psnr} dB (limits: {limits})")
        lines += [f"check {c.name}: {c.detail}" for c in self.checks if not c.ok]
        return lines

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"status": self.status, "runner": self.runner, "tolerance": self.tolerance,
                             "inputs": self.inputs}
        if self.reason:
            d["reason"] = self.reason
        if self.cases:
            d["max_abs"] = self.max_abs
            psnr = self.min_psnr_db
            d["min_psnr_db"] = None if psnr is None or math.isinf(psnr) else psnr
            d["identical_outputs"] = self.max_abs == 0.0  # why min_psnr_db is null: infinite
            d["cases"] = [asdict(c) for c in self.cases]
        if self.checks:
            d["checks"] = [asdict(c) for c in self.checks]
        if self.runner_versions:
            d["runner_versions"] = self.runner_versions
        return d


class ParityError(ValueError):
    """An artifact failed its parity check; the message carries the numbers."""

    def __init__(self, message: str, report: ParityReport) -> None:
        super().__init__(message)
        self.report = report


# --- inputs ---------------------------------------------------------------------------------


def default_image_dir(scale: int) -> Path | None:
    """Set5's LR folder for ``scale`` in the shared data (see :func:`carn_mobile.data.shared_data_root`),
    else ``None``."""
    from .data import shared_data_root

    root = shared_data_root()
    folder = root / "data" / "benchmark" / "Set5" / "LR_bicubic" / f"X{scale}" if root else None
    return folder if folder is not None and folder.is_dir() else None


def fit_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` (H, W, C) centre-cropped to ``size``, mirrored out first where it is smaller."""
    h, w = size
    ph, pw = max(0, h - image.shape[0]), max(0, w - image.shape[1])
    if ph or pw:
        image = np.pad(image, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), mode="symmetric")
    top, left = (image.shape[0] - h) // 2, (image.shape[1] - w) // 2
    return image[top : top + h, left : left + w]


def _nchw(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)


def _dynamic_sizes(shape: ShapeSpec, wanted: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    lo, hi = shape.bounds
    sizes = [(min(max(h, lo), hi), min(max(w, lo), hi)) for h, w in wanted]
    return list(dict.fromkeys(sizes))


def parity_inputs(
    scale: int,
    shape: ShapeSpec,
    image_dir: str | Path | None = None,
    max_real: int | None = None,
    seed: int = 0,
) -> list[ParityCase]:
    """Inputs for a parity run, all inside ``shape``.

    ``image_dir`` is a folder of LR images (default: Set5 at ``scale`` when available), of
    which the first ``max_real`` (default :data:`MAX_REAL_IMAGES`) are used.
    Dynamic shapes get centre crops of at most :data:`REAL_CROP` pixels per side, the test
    image and two random sizes; fixed and enumerated shapes get every input at each size.
    """
    from .data import IMAGE_SUFFIXES, load_rgb

    folder = Path(image_dir) if image_dir is not None else default_image_dir(scale)
    real: list[tuple[str, np.ndarray]] = []
    if folder is not None:
        if not folder.is_dir():
            raise FileNotFoundError(f"parity image folder {folder} does not exist")
        limit = MAX_REAL_IMAGES if max_real is None else max_real
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
        label = folder.parent.parent.name if folder.parent.name == "LR_bicubic" else folder.name
        # Set5's LR files are named like baby'x4'.png; the label drops that suffix.
        real = [(f"{label}/{p.stem.removesuffix(f'x{scale}')}", load_rgb(p).astype(np.float32) / 255.0)
                for p in files]
    where = str(folder) if folder is not None else None
    rng = np.random.default_rng(seed)
    cases: list[ParityCase] = []
    if shape.kind == "dynamic":
        lo, hi = shape.bounds
        for name, image in real:
            size = (min(image.shape[0], REAL_CROP, hi), min(image.shape[1], REAL_CROP, hi))
            size = (max(size[0], lo), max(size[1], lo))
            cases.append(ParityCase(name, _nchw(fit_image(image, size)), where))
        (th, tw), = _dynamic_sizes(shape, [TEST_IMAGE_SIZE])
        cases.append(ParityCase("test-image", _nchw(natural_test_image(th, tw, seed))))
        for h, w in _dynamic_sizes(shape, RANDOM_SIZES):
            cases.append(ParityCase(f"random-{h}x{w}", rng.random((1, 3, h, w), dtype=np.float32)))
        return cases
    for h, w in shape.sizes:
        for name, image in real:
            cases.append(ParityCase(name, _nchw(fit_image(image, (h, w))), where))
        cases.append(ParityCase("test-image", _nchw(natural_test_image(h, w, seed))))
        cases.append(ParityCase(f"random-{h}x{w}", rng.random((1, 3, h, w), dtype=np.float32)))
    return cases


def describe_inputs(cases: Sequence[ParityCase]) -> str:
    """Which inputs a parity run used, for reports: the real images' folder, or that there were none."""
    real = [c for c in cases if c.source]
    other = len(cases) - len(real)
    if real:
        folders = sorted({c.source for c in real if c.source})
        return f"{len(real)} real LR crops from {', '.join(folders)}; {other} built-in/random"
    return (f"no real images (Set5 not found: set CARN_SHARED or pass --parity-images); "
            f"{other} built-in/random")


def quantize_to_uint8_levels(lr: np.ndarray) -> np.ndarray:
    """Round an input to the 256 levels an 8-bit image can carry (for image-input artifacts)."""
    return (np.rint(np.clip(lr, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


# --- comparison -----------------------------------------------------------------------------


#: What parity compares with: the float32 PyTorch module, or (quantized precisions) a function
#: computing the quantized reference on NCHW float32 arrays.
Reference = nn.Module | Callable[[np.ndarray], np.ndarray]


@torch.no_grad()
def reference_output(reference: Reference, lr: np.ndarray) -> np.ndarray:
    """The reference output for one input."""
    x = np.ascontiguousarray(lr, dtype=np.float32)
    if not isinstance(reference, nn.Module):
        return np.asarray(reference(x), dtype=np.float32)
    return reference(torch.from_numpy(x)).float().numpy()


def compare(output: np.ndarray, reference: np.ndarray) -> tuple[float, float | None]:
    """(max abs error, PSNR in dB on [0, 1] data); PSNR is ``None`` for identical arrays."""
    diff = output.astype(np.float64) - reference.astype(np.float64)
    mse = float(np.mean(diff * diff))
    return float(np.max(np.abs(diff))), (None if mse == 0.0 else 10.0 * math.log10(1.0 / mse))


def within(limits: dict[str, float], max_abs: float, psnr_db: float | None) -> bool:
    if not math.isfinite(max_abs) or max_abs > limits["max_abs"]:
        return False
    if "min_psnr_db" in limits and psnr_db is not None and psnr_db < limits["min_psnr_db"]:
        return False
    return True


def run_cases(run: Callable[[np.ndarray], np.ndarray], reference: Reference, cases: Sequence[ParityCase],
              limits: dict[str, float], image_io: bool = False) -> list[CaseResult]:
    """Run ``run`` (a loaded artifact) and ``reference`` on every case and compare them under ``limits``.

    ``image_io``: the artifact takes an 8-bit image, so every input is first rounded to its levels.
    A case whose run raises, or returns another shape, fails with the reason.
    """
    results = []
    for case in cases:
        lr = quantize_to_uint8_levels(case.lr) if image_io else case.lr
        expected = reference_output(reference, lr)
        try:
            out = run(lr)
        except Exception as exc:
            results.append(CaseResult(case.name, list(case.size), None, None, False, one_line(exc)))
            continue
        if out.shape != expected.shape:
            error = f"output shape {tuple(out.shape)}, expected {tuple(expected.shape)}"
            results.append(CaseResult(case.name, list(case.size), None, None, False, error))
            continue
        max_abs, psnr = compare(out, expected)
        results.append(CaseResult(case.name, list(case.size), max_abs, psnr, within(limits, max_abs, psnr)))
    return results


def one_line(exc: BaseException) -> str:
    """``"TypeName: first line of the message"``: an exception as one line of a report."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
