"""``carn-upscale``: super-resolve image and video files, folders and globs with CARN / CARN-M.

Exit codes: 0 every input done (or skipped because its output exists), 1 at least one input
failed (the others were processed), 2 usage or setup error (nothing processed), 130
interrupted. See docs/upscale.md and docs/video.md.
"""

from __future__ import annotations

import argparse
import logging
import warnings
from collections.abc import Callable, Sequence
from typing import TypeVar

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..models import SUPPORTED_SCALES, list_models
from ..upscaling.api import ApproximateTilingWarning, Upscaler
from ..upscaling.backends import available_backends
from ..upscaling.batch import Batch, BatchListener, Job, OutputTarget, check_output_dir, plan, process
from ..upscaling.image import DEFAULT_MAX_PIXELS, FORMATS
from ..upscaling.memory import DEFAULT_MAX_MEMORY, format_bytes, parse_bytes, parse_count
from ..upscaling.video import VideoOptions, VideoReport, parse_seconds
from ..upscaling.video_io import DEFAULT_CRF, MAX_CRF, check_encoder
from .common import err_console, exit_with, make_console

T = TypeVar("T")


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


def _arg(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type from a parser whose ValueError message is meant for the user."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def _int_within(what: str, low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise ValueError(f"{what} must be a whole number within {low}..{high}, got {text!r}")
        return value

    return _arg(parse)


_size = _arg(parse_bytes)
_count = _arg(parse_count)
_seconds = _arg(parse_seconds)
_quality = _int_within("quality", 1, 100)
_crf = _int_within("crf", 0, MAX_CRF)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="carn-upscale",
        description=(
            "Super-resolve images and videos with CARN / CARN-M. INPUT: files, folders (not recursive) or "
            "quoted globs ('photos/**/*.jpg'). Outputs are <stem>_x<scale>.<ext>, beside explicit files or in -o DIR. "
            "A video (recognised by probing) keeps its audio, subtitles, timestamps and rotation."
        ),
        epilog="Exit codes: 0 all done or skipped, 1 some inputs failed, 2 usage error. "
               "Details: docs/upscale.md, docs/video.md",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image or video files, folders or globs")
    p.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="output folder, or a file name (.png/.jpg/.webp; .mp4/.mkv/.mov/.webm/... for a video) for a single "
             "input; default: beside each input file",
    )
    p.add_argument("--scale", type=int, required=True, choices=SUPPORTED_SCALES,
                   help="upscaling factor: 2, 3 or 4 (8 if the model has it)")
    p.add_argument("--model", choices=list_models(), help="architecture (default: from the weights file, else carn-m)")
    p.add_argument("--weights", help="checkpoint file or shipped weights name (default: shipped for --model)")
    p.add_argument("--backend", choices=available_backends(),
                   help="inference engine (default: torch for fp32, the fastest installed one for --precision)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "int8"),
                   help="fp32 (default); int8 runs a quality-gated int8 export (ExecuTorch where installed), "
                        "fp16 a float16 one; both are made once into the cache")
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
    video = p.add_argument_group("video")
    video.add_argument("--codec", metavar="ENCODER",
                       help="video encoder, e.g. libx264, libx265, libvpx-vp9 (default: H.264 for .mp4/.mov/.mkv, "
                            "VP9 for .webm)")
    video.add_argument("--crf", type=_crf, default=DEFAULT_CRF,
                       help=f"constant rate factor, lower is better: 0..51 for x264/x265, 0..{MAX_CRF} for VP9/AV1 "
                            f"(default {DEFAULT_CRF})")
    video.add_argument("--start", type=_seconds, metavar="T", help="start at T (seconds or [HH:]MM:SS[.ms])")
    video.add_argument("--duration", type=_seconds, metavar="T", help="take T of the clip from --start")
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
        self.images = bar.add_task("inputs", total=None, fps="")
        self.tiles = None
        self.frames = None

    def started(self, job: Job, pending: int) -> None:
        self.bar.update(self.images, total=pending)

    def tile(self, job: Job, done: int, total: int) -> None:
        if total > 1 and self.show:
            if self.tiles is None:
                self.tiles = self.bar.add_task("  tiles", total=total, fps="")
            self.bar.update(self.tiles, completed=done)

    def frame(self, job: Job, done: int, total: int | None, elapsed: float) -> None:
        if not self.show:
            return
        if self.frames is None:
            self.frames = self.bar.add_task("  frames", total=total, fps="")
        fps = f"{done / elapsed:.2f} fps" if elapsed > 0 else ""
        self.bar.update(self.frames, completed=done, total=max(total or 0, done) or None, fps=fps)

    def finished(self, job: Job) -> None:
        if self.tiles is not None:
            self.bar.remove_task(self.tiles)
            self.tiles = None
        if self.frames is not None:
            self.bar.remove_task(self.frames)
            self.frames = None
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
            extra = f"; {job.report.summary()}" if isinstance(job.report, VideoReport) else ""
            console.print(f"  done     {job.src} -> {job.dst} ({w}x{h}{extra})", highlight=False, markup=False)
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
        logger.propagate = False  # a converter's logging.basicConfig would print each note twice
    out = make_console()
    # A UsageError is a ValueError: common.run reports it and exits 2, before anything runs.
    if args.codec is not None:
        check_encoder(args.codec)  # a misspelt encoder is a usage error, found before any work
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
            precision=args.precision,
            tile=tile,
            overlap=args.overlap,
            max_memory=args.max_memory,
            max_pixels=args.max_pixels,
        )
    if not upscaler.exact:
        err_console.print(f"[yellow]warning:[/] --{upscaler.overlap_warning()}", markup=True, highlight=False)
    videos = any(job.kind == "video" for job in batch.pending)
    show = not args.no_progress and (len(batch.pending) > 1 or videos)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[fps]}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console, disable=not show, transient=False) as bar:
        process(batch, upscaler, quality=args.quality, force=args.force,
                listener=ProgressDisplay(bar, err_console, show),
                video=VideoOptions(codec=args.codec, crf=args.crf, start=args.start, duration=args.duration))
    print_summary(batch, out)
    return exit_code(batch)


def main(argv: Sequence[str] | None = None) -> None:
    exit_with(_main, argv)
