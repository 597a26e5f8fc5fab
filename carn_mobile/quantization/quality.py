"""The quality half of the int8 gate: how much an int8 artifact loses against float32.

Two measures, both pure functions of the outputs. On the parity images (real LR crops and
the built-in test image; random inputs are no pictures) the artifact's output is compared
with the float32 reference on the Y channel. On benchmark sets with HR (Set5 and Set14 when
the shared data is present, and always the built-in test image) the task PSNR of the
artifact and of float32 are taken against HR under the paper's protocol; the drop is their
difference, per set.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import BenchmarkSet, shared_data_root
from ..imresize import bicubic_downscale
from ..metrics import evaluate_pair, psnr, to_uint8
from ..runtimes import ShapeSpec
from ..testimage import natural_test_image_uint8

#: Benchmark sets measured when the shared data has them.
QUALITY_SETS = ("Set5", "Set14")
#: HR side of the built-in test image used as a task-PSNR set of its own.
TEST_IMAGE_HR = 384


@dataclass
class SetDrop:
    """Task PSNR (Y, paper protocol) of float32 and of the artifact on one set."""

    name: str
    images: int
    float_psnr_db: float
    quantized_psnr_db: float
    cropped: bool = False  # images were cropped to the artifact's accepted shapes

    @property
    def drop_db(self) -> float:
        return self.float_psnr_db - self.quantized_psnr_db


@dataclass
class QualityReport:
    """Both quality measures and whether they are within the limits."""

    min_float_psnr_db: float | None  # lowest Y-PSNR vs float32 over the parity images
    sets: list[SetDrop] = field(default_factory=list)
    limits: dict[str, float] = field(default_factory=dict)

    @property
    def max_drop_db(self) -> float | None:
        return max((s.drop_db for s in self.sets), default=None)

    @property
    def failures(self) -> list[str]:
        out = []
        floor = self.limits.get("min_float_psnr_db")
        if floor is not None and self.min_float_psnr_db is not None and self.min_float_psnr_db < floor:
            out.append(f"Y-PSNR against float32 {self.min_float_psnr_db:.2f} dB < {floor:g} dB")
        limit = self.limits.get("max_task_psnr_drop_db")
        for s in self.sets:
            if limit is not None and s.drop_db > limit:
                out.append(f"{s.name}: task PSNR drop {s.drop_db:.3f} dB > {limit:g} dB "
                           f"({s.float_psnr_db:.3f} -> {s.quantized_psnr_db:.3f} dB)")
        return out

    @property
    def passed(self) -> bool:
        return not self.failures

    def headline(self) -> str:
        drops = ", ".join(f"{s.name} {s.drop_db:+.3f}" for s in self.sets)
        y = "-" if self.min_float_psnr_db is None else f"{self.min_float_psnr_db:.1f} dB"
        return f"quality {'passed' if self.passed else 'failed'}: Y-PSNR vs fp32 {y}; task PSNR drop {drops} dB"

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "limits": self.limits, "min_float_psnr_db": self.min_float_psnr_db,
                "max_drop_db": self.max_drop_db,
                "sets": [asdict(s) | {"drop_db": round(s.drop_db, 4)} for s in self.sets]}

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> QualityReport:
        """The report a manifest's ``parity.quality`` record holds (:meth:`to_json`)."""
        fields = ("name", "images", "float_psnr_db", "quantized_psnr_db", "cropped")
        sets = [SetDrop(**{k: s[k] for k in fields if k in s}) for s in record.get("sets", [])]
        return cls(record.get("min_float_psnr_db"), sets, dict(record.get("limits", {})))


def y_psnr(output: np.ndarray, reference: np.ndarray, scale: int) -> float:
    """Y-PSNR (8-bit, border ``scale`` cropped) of an NCHW [0, 1] output against another."""
    a, b = (to_uint8(x[0].transpose(1, 2, 0)) for x in (output, reference))
    return psnr(a, b, crop=scale, y_channel=True)


@dataclass(frozen=True)
class QualityPair:
    """One HR image and its LR, uint8 RGB."""

    lr: np.ndarray
    hr: np.ndarray


def quality_sets(scale: int, folders: Sequence[str | Path] | None = None,
                 shape: ShapeSpec | None = None) -> dict[str, list[QualityPair]]:
    """Set name -> pairs at ``scale``: ``folders`` (default Set5/Set14 where the shared data has
    them) and always the built-in test image, made large enough for every size ``shape`` accepts."""
    if folders is None:
        root = shared_data_root()
        bench = root / "data" / "benchmark" if root else None
        folders = [bench / n for n in QUALITY_SETS if bench is not None and (bench / n / "HR").is_dir()]
    sets = {}
    for folder in folders:
        dataset = BenchmarkSet(folder)
        sets[dataset.name] = [QualityPair(p.lr, p.hr) for p in dataset.pairs(scale)]
    height = width = TEST_IMAGE_HR
    if shape is not None and shape.kind != "dynamic":
        height = max(height, max(h for h, _ in shape.sizes) * scale)
        width = max(width, max(w for _, w in shape.sizes) * scale)
    hr = natural_test_image_uint8(height, width, seed=1)
    hr = hr[: hr.shape[0] - hr.shape[0] % scale, : hr.shape[1] - hr.shape[1] % scale]
    sets["test-image"] = [QualityPair(bicubic_downscale(hr, scale), hr)]
    return sets


def fit_pair(pair: QualityPair, scale: int, shape: ShapeSpec) -> tuple[QualityPair, bool] | None:
    """``pair`` centre-cropped to an LR size ``shape`` accepts (and ``True`` if cropped), or
    ``None`` when the image is smaller than every accepted size."""
    h, w = pair.lr.shape[:2]
    if shape.kind == "dynamic":
        lo, hi = shape.bounds
        if min(h, w) < lo:
            return None
        th, tw = min(h, hi), min(w, hi)
    else:
        fits = [(sh, sw) for sh, sw in shape.sizes if sh <= h and sw <= w]
        if not fits:
            return None
        th, tw = max(fits, key=lambda s: s[0] * s[1])
    if (th, tw) == (h, w):
        return pair, False
    top, left = (h - th) // 2, (w - tw) // 2
    lr = pair.lr[top:top + th, left:left + tw]
    hr = pair.hr[top * scale:(top + th) * scale, left * scale:(left + tw) * scale]
    return QualityPair(lr, hr), True


@torch.no_grad()
def measure_quality(
    run: Callable[[np.ndarray], np.ndarray],
    reference: nn.Module,
    scale: int,
    shape: ShapeSpec,
    parity_images: Sequence[np.ndarray],
    sets: dict[str, list[QualityPair]],
    limits: dict[str, float],
) -> QualityReport:
    """Run the artifact (``run``: NCHW float32 -> NCHW float32) and ``reference`` on everything."""

    def both(lr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.ascontiguousarray(lr, dtype=np.float32)
        return run(x), reference(torch.from_numpy(x)).numpy()

    ys = [y_psnr(*both(lr), scale) for lr in parity_images]
    report = QualityReport(min(ys) if ys else None, limits=dict(limits))
    for name, pairs in sets.items():
        float_psnr, quant_psnr, cropped = [], [], False
        for pair in pairs:
            fitted = fit_pair(pair, scale, shape)
            if fitted is None:
                continue
            pair, was_cropped = fitted
            cropped |= was_cropped
            lr = np.ascontiguousarray(pair.lr.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255.0)
            quantized, expected = both(lr)
            for out, into in ((expected, float_psnr), (quantized, quant_psnr)):
                into.append(evaluate_pair(to_uint8(out[0].transpose(1, 2, 0)), pair.hr, scale)[0])
        if float_psnr:
            report.sets.append(SetDrop(name, len(float_psnr), float(np.mean(float_psnr)), float(np.mean(quant_psnr)),
                                       cropped))
    return report
