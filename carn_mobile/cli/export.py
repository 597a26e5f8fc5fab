"""``carn-export``: per-scale mobile artifacts, parity-gated (a shell over :func:`carn_mobile.export.export_model`).

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

from ..export import (
    DEFAULT_OUT_DIR,
    REWRITES,
    ExportIncomplete,
    ExportListener,
    ExportResult,
    export_model,
    get_target,
    list_targets,
    parse_rewrites,
)
from ..models import list_models
from ..parity import ParityPolicy
from ..precision import get_precision, list_precisions, quantized_precisions
from ..quantization import CALIBRATION_METHODS, CalibrationSource, Recipe
from ..quantization.calibration import DEFAULT_COUNT
from ..runtimes import SHAPE_HELP, parse_shape
from .common import EXIT_ERROR, err_console, exit_with, make_console

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
    p.add_argument("--precision", choices=list_precisions(),
                   help="precision (default: each target's own). " + "; ".join(
                       f"{p}: {', '.join(t for t in targets if p in get_target(t).precisions)}"
                       for p in list_precisions()))
    p.add_argument("--shape", default="dynamic", help=f"accepted LR sizes: {SHAPE_HELP} (default dynamic)")
    p.add_argument("--image-io", action="store_true",
                   help=", ".join(t for t in targets if get_target(t).supports_image_io)
                   + " only: image input (pixels / 255 in the model) and image output")
    p.add_argument("--out", default=str(DEFAULT_OUT_DIR), metavar="DIR", help="output folder (default ./export)")
    p.add_argument("--force", action="store_true", help="overwrite existing artifacts and manifests")
    p.add_argument("--parity-images", metavar="DIR",
                   help="folder of LR images for the parity check (default: Set5 LR when available)")
    p.add_argument("--verbose", action="store_true", help="show the converters' own console output")
    graph = p.add_mutually_exclusive_group()
    graph.add_argument("--no-optimize", action="store_true",
                       help="export the plain graph: none of the exact rewrites (" + ", ".join(REWRITES) + ")")
    graph.add_argument("--rewrites", metavar="LIST",
                       help="comma-separated rewrites to apply instead of all of them (default), or none")
    for name in targets:  # each target's own options, as it declares them
        target = get_target(name)
        if target.options:
            group = p.add_argument_group(f"{name} target")
            for option in target.options:
                if option.switch:
                    group.add_argument(option.flag, dest=option.dest, action="store_true", default=None,
                                       help=option.help)
                else:
                    group.add_argument(option.flag, dest=option.dest, choices=option.choices,
                                       metavar=option.metavar, help=option.help)
    int8 = p.add_argument_group(f"quantized precisions (--precision {'|'.join(quantized_precisions())})")
    int8.add_argument("--calibration", metavar="DIR",
                      help="folder of training-style images (searched recursively) for calibration patches; "
                           "default: built-in procedural images. Never an evaluation set")
    int8.add_argument("--calibration-images", type=int, metavar="N",
                      help=f"number of calibration patches (default {DEFAULT_COUNT})")
    int8.add_argument("--calibration-method", choices=CALIBRATION_METHODS,
                      help="activation range estimator (default: each target's quantizer's measured best: "
                           + "; ".join(f"{t} {get_target(t).quantizer.defaults.method}" for t in targets
                                       if get_target(t).quantizer) + "); a quantizer refuses one it cannot apply")
    int8.add_argument("--max-psnr-drop", type=float, metavar="DB",
                      help="fail a quantized export whose task PSNR drops more than this against float32 "
                           "(default: the precision's, " + ", ".join(
                               f"{p} {get_precision(p).max_task_psnr_drop_db:g} dB" for p in quantized_precisions())
                           + "; Set5/Set14 when present and the built-in test image)")
    return p


def target_options(args: argparse.Namespace) -> dict[str, dict[str, str]]:
    """Per-target options from the command line (only those given), by the targets' declarations."""
    options: dict[str, dict[str, str]] = {}
    for name in list_targets():
        given = {o.dest: getattr(args, o.dest) for o in get_target(name).options if getattr(args, o.dest) is not None}
        if given:
            options[name] = given
    return options


def quantization_options(args: argparse.Namespace) -> dict:
    """``export_model`` keywords for the int8 options given (none when none was)."""
    options: dict = {}
    if args.calibration is not None or args.calibration_images is not None:
        options["calibration"] = CalibrationSource(
            folder=Path(args.calibration) if args.calibration else None,
            count=args.calibration_images if args.calibration_images is not None else DEFAULT_COUNT)
    if args.calibration_method is not None:
        options["recipe"] = Recipe(method=args.calibration_method)
    if args.max_psnr_drop is not None:
        if not args.max_psnr_drop >= 0:
            raise ValueError(f"--max-psnr-drop must be a non-negative number of dB, got {args.max_psnr_drop}")
        if args.precision is None or not get_precision(args.precision).quantized:
            raise ValueError(f"--max-psnr-drop applies to a quantized --precision only "
                             f"({', '.join(quantized_precisions())})")
        options["policy"] = ParityPolicy(max_psnr_drop_db=args.max_psnr_drop)
    return options


def parse_targets(text: str) -> list[str]:
    """``"onnx,coreml"`` or ``"all"`` -> target names; ``ValueError`` naming the known ones."""
    known = list_targets()
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    bad = [t for t in names if t != "all" and t not in known]
    if not names or bad:
        raise ValueError(f"unknown target {(bad or [text])[0]!r}; choose from {', '.join(known)}, all")
    return names


class ConsoleListener(ExportListener):
    """Prints each step of :func:`~carn_mobile.export.export_model` as it happens."""

    def __init__(self, console: Console, out_dir: str) -> None:
        self.console, self.out_dir = console, out_dir

    def planned(self, weights, jobs, skipped) -> None:
        for s in skipped:
            err_console.print(f"[yellow]skipping {s.target}:[/] {escape(s.reason)}")
        self.console.print(escape(f"{weights.arch} from {weights.label}: {len(jobs)} artifact(s) -> "
                                  f"{Path(self.out_dir).resolve()}"))

    def started(self, job) -> None:
        rewrites = ", ".join(job.request.rewrites) or "none (plain graph)"
        self.console.print(f"[bold]{escape(job.artifact.name)}[/] ({job.target.name}, x{job.request.scale}, "
                           f"{job.request.precision}, {job.request.shape.describe()}; rewrites: {rewrites}) ...")

    def finished(self, result: ExportResult) -> None:
        parity = result.manifest["parity"]
        self.console.print(f"  {escape(result.report.headline())} (export {result.export_seconds:.1f} s, "
                           f"parity {parity['seconds']:.1f} s)")
        self.console.print(f"  parity inputs: {escape(result.report.inputs)}")
        for note in result.notes:
            self.console.print(f"  note: {escape(note)}")

    def failed(self, job, error) -> None:
        err_console.print(f"[bold red]parity failed:[/] {escape(str(error))}\n"
                          f"  nothing was written for {escape(job.outputs[0].name)}")

    def bundle_finished(self, bundle, manifest) -> None:
        self.console.print(f"[bold]{escape(str(bundle))}[/]: {len(manifest['members'])} model(s) in place")
        for note in manifest["export"]["notes"]:
            self.console.print(f"  note: {escape(note)}")


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.verbose:
        os.environ["CARN_VERBOSE"] = "1"
    console = make_console()
    try:
        results = export_model(
            args.model, args.weights, parse_targets(args.target), args.scale, args.precision,
            parse_shape(args.shape), args.image_io, args.out, args.force, parity_images=args.parity_images,
            listener=ConsoleListener(console, args.out), keep_going=True, target_options=target_options(args),
            rewrites=() if args.no_optimize else parse_rewrites(args.rewrites) if args.rewrites else None,
            **quantization_options(args),
        )  # fmt: skip
    except ExportIncomplete as exc:
        if exc.results:
            console.print(summary_table(exc.results))
        err_console.print(f"[bold red]{escape(str(exc))}[/]")
        return EXIT_PARITY
    console.print(summary_table(results))
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
