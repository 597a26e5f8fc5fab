"""``carn-export``: per-scale mobile artifacts (ONNX, Core ML, TorchScript-lite, ExecuTorch), parity-gated.

Exit codes: 0 every artifact written and within tolerance; 1 some artifact failed parity
(it was not written); 2 bad options, missing files or a missing optional dependency.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..export import DEFAULT_OUT_DIR, PRECISIONS, ExportResult, list_targets, plan_exports, resolve_weights, run_export
from ..models import list_models
from ..parity import ParityError
from ..runtimes import SHAPE_HELP, parse_shape
from .common import EXIT_ERROR, err_console, exit_with, parse_scales

EXIT_PARITY = 1


def build_parser() -> argparse.ArgumentParser:
    targets = list_targets()
    p = argparse.ArgumentParser(
        prog="carn-export",
        description=(
            "Export one artifact per (model, scale, target) and prove it computes what the PyTorch "
            "model computes. Contract: input 'lr' float32 NCHW RGB in [0,1]; output 'sr' float32 NCHW "
            "RGB in [0,1], scale x larger. A manifest <artifact>.json is written beside each artifact."
        ),
    )
    p.add_argument("--target", required=True, metavar="TARGET",
                   help=f"{', '.join(targets)} or all; several separated by commas")
    p.add_argument("--scale", default="all", help="2, 3, 4, a list such as 2,4, or all (default: all the weights have)")
    p.add_argument("--model", choices=list_models(),
                   help="architecture (default: recorded in the weights file, else carn-m)")
    p.add_argument("--weights", help="checkpoint file or shipped weights name (default: shipped for --model)")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="compute precision (default: fp32; coreml: fp16). fp16: onnx, coreml, executorch")
    p.add_argument("--shape", default="dynamic", help=f"accepted LR sizes: {SHAPE_HELP} (default dynamic)")
    p.add_argument("--image-io", action="store_true",
                   help="coreml only: image input (pixels / 255 in the model) and image output")
    p.add_argument("--out", default=str(DEFAULT_OUT_DIR), metavar="DIR", help="output folder (default ./export)")
    p.add_argument("--force", action="store_true", help="overwrite existing artifacts and manifests")
    p.add_argument("--parity-images", metavar="DIR",
                   help="folder of LR images for the parity check (default: Set5 LR when available)")
    p.add_argument("--verbose", action="store_true", help="show the converters' own console output")
    return p


def parse_targets(text: str) -> list[str]:
    """``"onnx,coreml"`` or ``"all"`` -> target names; ``ValueError`` naming the known ones."""
    known = list_targets()
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    bad = [t for t in names if t != "all" and t not in known]
    if not names or bad:
        raise ValueError(f"unknown target {(bad or [text])[0]!r}; choose from {', '.join(known)}, all")
    return names


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.verbose:
        os.environ["CARN_VERBOSE"] = "1"
    targets = parse_targets(args.target)
    shape = parse_shape(args.shape)
    source = resolve_weights(args.model, args.weights)

    from ..weights import load_model

    model = load_model(source.model, source.name or source.path)
    scales = list(model.scales) if args.scale.strip().lower() == "all" else parse_scales(args.scale)
    jobs, skipped = plan_exports(source, model.scales, targets, scales, args.precision, shape, args.image_io,
                                 args.out, args.force)
    console = Console(highlight=False)
    for s in skipped:
        err_console.print(f"[yellow]skipping {s.target}:[/] {escape(s.reason)}")
    console.print(escape(f"{source.model} from {source.label}: {len(jobs)} artifact(s) -> {Path(args.out).resolve()}"))

    results: list[ExportResult] = []
    failures: list[str] = []
    for job in jobs:
        console.print(f"[bold]{escape(job.artifact.name)}[/] ({job.target.name}, x{job.request.scale}, "
                      f"{job.request.precision}, {job.request.shape.describe()}) ...")
        try:
            result = run_export(job, model, source, force=args.force, parity_images=args.parity_images)
        except ParityError as exc:
            err_console.print(f"[bold red]parity failed:[/] {escape(str(exc))}\n"
                              f"  nothing was written for {escape(job.artifact.name)}")
            failures.append(job.artifact.name)
            continue
        results.append(result)
        parity = result.manifest["parity"]
        console.print(f"  {result.report.headline()} (export {result.export_seconds:.1f} s, "
                      f"parity {parity['seconds']:.1f} s)")
        for note in result.notes:
            console.print(f"  note: {escape(note)}")
    if results:
        console.print(summary_table(results))
    if failures:
        err_console.print(f"[bold red]{len(failures)} artifact(s) failed parity:[/] {escape(', '.join(failures))}")
        return EXIT_PARITY
    return 0


def summary_table(results: Sequence[ExportResult]) -> Table:
    table = Table(title="carn-export")
    for col, justify in (("artifact", "left"), ("size", "right"), ("parity", "left"),
                         ("max abs", "right"), ("min PSNR", "right"), ("export s", "right")):
        table.add_column(col, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for r in results:
        rep = r.report
        psnr = rep.min_psnr_db
        table.add_row(
            escape(str(r.artifact)),
            f"{r.size_bytes / 1e6:.2f} MB",
            rep.status,
            "-" if rep.max_abs is None else f"{rep.max_abs:.1e}",
            "-" if psnr is None else ("inf" if psnr == float("inf") else f"{psnr:.1f} dB"),
            f"{r.export_seconds:.1f}",
        )
    return table


def main(argv: Sequence[str] | None = None) -> None:
    exit_with(_main, argv)


__all__ = ["EXIT_ERROR", "EXIT_PARITY", "build_parser", "main", "parse_targets"]
