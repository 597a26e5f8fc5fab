"""``carn-upscale``: super-resolve image files, folders and globs with CARN / CARN-M.

Exit codes: 0 every image done (or skipped because its output exists), 1 at least one image
failed (the others were processed), 2 usage or setup error (nothing processed), 130
interrupted. See docs/upscale.md.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Sequence

from rich.console import Console

from ..models import list_models
from ..upscale.api import ApproximateTilingWarning, Upscaler
from ..upscale.backends import available_backends
from ..upscale.batch import OutputTarget, check_output_dir, plan, print_summary, run
from ..upscale.imageio import DEFAULT_MAX_PIXELS, FORMATS
from ..upscale.memory import DEFAULT_MAX_MEMORY, format_size, parse_count, parse_size
from .common import err_console, exit_with


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
        return parse_size(text)
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
    p.add_argument("--scale", type=int, required=True, choices=(2, 3, 4), help="upscaling factor")
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
        help=f"activation budget of one network call for automatic tiling (default {format_size(DEFAULT_MAX_MEMORY)})",
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


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    out = Console(highlight=False, soft_wrap=True)
    # A UsageError is a ValueError: common.run reports it and exits 2, before anything runs.
    target = OutputTarget.parse(args.output)
    batch = plan(args.inputs, target, args.scale, args.format, args.force)
    if batch.pending:
        check_output_dir(target)
    if not batch.pending:  # nothing to run: don't load the model
        print_summary(batch, out)
        return batch.exit_code()

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
    run(batch, upscaler, quality=args.quality, force=args.force, console=err_console, progress=not args.no_progress)
    print_summary(batch, out)
    return batch.exit_code()


def main(argv: Sequence[str] | None = None) -> None:
    exit_with(_main, argv)
