"""Benchmark evaluation with the paper's protocol.

SR output is clamped to [0, 1] and rounded to uint8, then PSNR/SSIM are computed on the
Y channel (BT.601, as MATLAB's ``rgb2ycbcr``) with ``scale`` border pixels cropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .data import BenchmarkSet
from .metrics import evaluate_pair, to_uint8


@dataclass
class EvalResult:
    """Mean PSNR/SSIM of one model on one dataset at one scale."""

    model: str
    scale: int
    dataset: str
    images: int
    psnr: float
    ssim: float
    per_image: list[dict] = field(default_factory=list)

    def to_json(self, per_image: bool = False) -> dict:
        d = asdict(self)
        if not per_image:
            d.pop("per_image")
        return d


@torch.no_grad()
def super_resolve(model: nn.Module, lr: np.ndarray, scale: int) -> np.ndarray:
    """Upscale one uint8 RGB image (H, W, 3) with ``model``; returns uint8 RGB (sH, sW, 3)."""
    device = next(model.parameters()).device  # evaluation also runs on a training GPU
    x = torch.from_numpy(np.ascontiguousarray(lr)).permute(2, 0, 1)[None].float().div_(255.0).to(device)
    y = model(x, scale)[0].clamp_(0.0, 1.0).permute(1, 2, 0).cpu().numpy()
    return to_uint8(y)


def evaluate_dataset(model: nn.Module, dataset: BenchmarkSet, scale: int, model_name: str, progress=None) -> EvalResult:
    """Evaluate ``model`` on every image of ``dataset`` at ``scale``.

    ``progress`` is an optional callable invoked once per image with its name.
    """
    rows = []
    for pair in dataset.pairs(scale):
        sr = super_resolve(model, pair.lr, scale)
        p, s = evaluate_pair(sr, pair.hr, scale)
        rows.append({"image": pair.name, "psnr": p, "ssim": s, "lr_generated": pair.lr_generated})
        if progress is not None:
            progress(pair.name)
    return EvalResult(
        model=model_name,
        scale=scale,
        dataset=dataset.name,
        images=len(rows),
        psnr=float(np.mean([r["psnr"] for r in rows])),
        ssim=float(np.mean([r["ssim"] for r in rows])),
        per_image=rows,
    )


def evaluate(
    model: nn.Module,
    data_dirs: Sequence[str | Path],
    scales: Iterable[int],
    model_name: str,
    progress: bool = True,
) -> list[EvalResult]:
    """Evaluate on several benchmark folders and scales, with a progress bar per dataset."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .console import make_console

    sets = [BenchmarkSet(d) for d in data_dirs]
    scales = list(scales)
    results = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    # Progress goes to stderr: stdout carries the results table (and may be piped).
    with Progress(*columns, console=make_console(stderr=True), disable=not progress, transient=False) as bar:
        for ds in sets:
            task = bar.add_task(f"{model_name} {ds.name}", total=len(ds) * len(scales))

            def step(_name: str, task=task) -> None:
                bar.advance(task)

            for s in scales:
                results.append(evaluate_dataset(model, ds, s, model_name, progress=step))
    return results


def results_table(results: Sequence[EvalResult]):
    """A paper-style table: one row per dataset, one PSNR/SSIM column per scale."""
    from rich.table import Table

    scales = sorted({r.scale for r in results})
    models = sorted({r.model for r in results})
    table = Table(title="PSNR (dB) / SSIM, Y channel, border = scale")
    table.add_column("model")
    table.add_column("dataset")
    for s in scales:
        table.add_column(f"x{s}", justify="right")
    for m in models:
        for ds in dict.fromkeys(r.dataset for r in results if r.model == m):
            cells = []
            for s in scales:
                hit = [r for r in results if r.model == m and r.dataset == ds and r.scale == s]
                cells.append(f"{hit[0].psnr:.2f} / {hit[0].ssim:.4f}" if hit else "-")
            table.add_row(m, ds, *cells)
    return table
