"""``carn-upscale``: super-resolve image files, folders and globs with CARN / CARN-M.

Exit codes: 0 every image done (or skipped because its output exists), 1 at least one image
failed (the others were processed), 2 usage or setup error (nothing processed), 130
interrupted. See docs/upscale.md.
"""

from __future__ import annotations

import argparse
import logging
import warnings
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..models import SUPPORTED_SCALES, list_models
from ..upscaling.api import ApproximateTilingWarning, Upscaler
from ..upscaling.backends import available_backends
from ..upscaling.batch import Batch, BatchListener, Job, OutputTarget, check_output_dir, plan, process
from ..upscaling.image import DEFAULT_MAX_PIXELS, FORMATS
from ..upscaling.memory import DEFAULT_MAX_MEMORY, format_bytes, parse_bytes, parse_count
from .common import err_console, exit_with, make_console


def _tile(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid tile size {text!r}: a whole number of LR pixels") from None
    if value < 0:
        raise argparse.ArgumentTypeError("tile size must be >= 0 (0 disables tiling)")
    return value


def _overlap(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid overlap {text!r}: a whole number of LR pixels") from None
    if value < 0:
        raise argparse.ArgumentTypeError("overlap must be >= 0")
    return value


def _size(text: str) -> int:
    try:
        return parse_bytes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _count(text: str) -> int:
    try:
        return parse_count(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _quality(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"quality must be a whole number within 1..100, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="carn-upscale",
        description=(
            "Super-resolve images with CARN / CARN-M. INPUT: files, folders (not recursive) or quoted "
            "globs ('photos/**/*.jpg'). Outputs are <stem>_x<scale>.<ext>, beside explicit files or in -o DIR."
        ),
        epilog="Exit codes: 0 all done or skipped, 1 some images failed, 2 usage error. Details: docs/upscale.md",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or globs")
    p.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="output folder, or a file name (.png/.jpg/.webp) for a single input; default: beside each input file",
    )
    p.add_argument("--scale", type=int, required=True, choices=SUPPORTED_SCALES,
                   help="upscaling factor: 2, 3 or 4 (8 if the model has it)")
    p.add_argument("--model", choices=list_models(), help="architecture (default: from the weights file, else carn-m)")
    p.add_argument("--weights", help="checkpoint file or shipped weights name (default: shipped for --model)")
    p.add_argument("--backend", default="torch", choices=available_backends(), help="inference engine (default torch)")
    p.add_argument(
        "--tile",
        type=_tile,
        metavar="N",
        help="tile the LR image in N x N cores (0: never tile); default: automatic under --max-memory",
    )
    p.add_argument(
        "--overlap",
        type=_overlap,
        metavar="N",
        help="LR pixels read around each tile (default: the receptive field, 21 for CARN/CARN-M: exact)",
    )
    p.add_argument(
        "--max-memory",
        type=_size,
        default=DEFAULT_MAX_MEMORY,
        metavar="SIZE",
        help=f"activation budget of one network call for automatic tiling (default {format_bytes(DEFAULT_MAX_MEMORY)})",
    )
    p.add_argument(
        "--max-pixels",
        type=_count,
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help=f"refuse inputs larger than N pixels, e.g. 50M (default {DEFAULT_MAX_PIXELS // 10**6}M; 0: no limit)",
    )
    p.add_argument(
        "--format",
        choices=tuple(FORMATS),
        help="output format (default: the -o FILE suffix, else the input's if png/jpg/webp, else png)",
    )
    p.add_argument("--quality", type=_quality, default=95, help="JPEG/WebP quality 1..100 (default 95)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs (never an input)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


#: Exit codes of ``carn-upscale`` (2, usage, comes from :func:`carn_mobile.cli.common.run`).
EXIT_OK = 0
EXIT_FAILED = 1  # at least one image failed; the others were processed


def exit_code(batch: Batch) -> int:
    """1 if any job failed, else 0 (skips alone are not failures: re-running resumes)."""
    return EXIT_FAILED if batch.count("failed") else EXIT_OK


class ProgressDisplay(BatchListener):
    """A bar over the images (and one over the tiles of a large image), notes and failures as lines."""

    def __init__(self, bar: Progress, console: Console, show: bool) -> None:
        self.bar, self.console, self.show = bar, console, show
        self.images = bar.add_task("images", total=None)
        self.tiles = None

    def started(self, job: Job, pending: int) -> None:
        self.bar.update(self.images, total=pending)

    def tile(self, job: Job, done: int, total: int) -> None:
        if total > 1 and self.show:
            if self.tiles is None:
                self.tiles = self.bar.add_task("  tiles", total=total)
            self.bar.update(self.tiles, completed=done)

    def finished(self, job: Job) -> None:
        if self.tiles is not None:
            self.bar.remove_task(self.tiles)
            self.tiles = None
        if job.status == "done" and job.report is not None:
            for note in job.report.notes:
                self.console.print(f"[dim]{escape(str(job.src))}:[/] {escape(note)}", markup=True, highlight=False)
        elif job.status == "failed":
            self.console.print(f"[red]failed[/] {escape(str(job.src))}: {escape(job.reason)}", markup=True,
                               highlight=False)
        self.bar.advance(self.images)


def print_summary(batch: Batch, console: Console) -> None:
    """Counts, then the skipped and failed inputs with their reasons."""
    done, skipped, failed = batch.count("done"), batch.count("skipped"), batch.count("failed")
    colour = "red" if failed else ("yellow" if skipped else "green")
    console.print(f"[bold {colour}]done {done}, skipped {skipped}, failed {failed}[/]", markup=True, highlight=False)
    for job in batch.jobs:
        if job.status == "done" and job.report is not None:
            w, h = job.report.output_size
            console.print(f"  done     {job.src} -> {job.dst} ({w}x{h})", highlight=False, markup=False)
    for status in ("skipped", "failed"):
        for job in batch.jobs:
            if job.status == status:
                console.print(f"  {status:<8} {job.src}: {job.reason}", highlight=False, markup=False)


class _NoteHandler(logging.Handler):
    """The upscaler's info messages (e.g. a backend's one-time export into the cache) as notes on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        err_console.print(f"[dim]note:[/] {escape(record.getMessage())}", markup=True, highlight=False)


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    logger = logging.getLogger("carn_mobile.upscaling.cache")  # tiling notes come with each report
    if not any(isinstance(h, _NoteHandler) for h in logger.handlers):
        logger.addHandler(_NoteHandler(logging.INFO))
        logger.setLevel(logging.INFO)
    out = make_console()
    # A UsageError is a ValueError: common.run reports it and exits 2, before anything runs.
    target = OutputTarget.parse(args.output)
    batch = plan(args.inputs, target, args.scale, args.format, args.force)
    if batch.pending:
        check_output_dir(target)
    if not batch.pending:  # nothing to run: don't load the model
        print_summary(batch, out)
        return exit_code(batch)

    tile = "auto" if args.tile is None else (args.tile or None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ApproximateTilingWarning)  # reported below, once
        upscaler = Upscaler(
            args.scale,
            args.model,
            weights=args.weights,
            backend=args.backend,
            tile=tile,
            overlap=args.overlap,
            max_memory=args.max_memory,
            max_pixels=args.max_pixels,
        )
    if not upscaler.exact:
        err_console.print(f"[yellow]warning:[/] --{upscaler.overlap_warning()}", markup=True, highlight=False)
    show = not args.no_progress and len(batch.pending) > 1
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=err_console, disable=not show, transient=False) as bar:
        process(batch, upscaler, quality=args.quality, force=args.force,
                listener=ProgressDisplay(bar, err_console, show))
    print_summary(batch, out)
    return exit_code(batch)


def main(argv: Sequence[str] | None = None) -> None:
    exit_with(_main, argv)
