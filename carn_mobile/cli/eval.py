"""``carn-eval``: PSNR/SSIM of a model on benchmark folders, the paper's protocol."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from ..evaluate import evaluate, results_table
from ..fileio import atomic_output, check_writable
from ..models import list_models, parse_scales
from ..weights import load_model
from .common import exit_with, make_console


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="carn-eval",
        description="Evaluate on benchmark folders (DIR/HR and optional DIR/LR_bicubic/X{s}).",
    )
    p.add_argument(
        "--model", choices=list_models(), help="architecture (default: from the weights file, else carn-m)"
    )
    p.add_argument("--weights", help="checkpoint file or shipped weights name (default: shipped for --model)")
    p.add_argument("--scale", default="all", help="2, 3, 4, a list such as 2,4, or all (default: all the weights have)")
    p.add_argument("--data", nargs="+", required=True, metavar="DIR", help="benchmark folders")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--per-image", action="store_true", help="include per-image scores in the JSON")
    p.add_argument("--force", action="store_true", help="overwrite the JSON file if it exists")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    parse_scales(args.scale)  # a malformed spec fails before the weights are read
    if args.json:
        check_writable(Path(args.json), args.force)  # fail before minutes of evaluation
    model = load_model(args.model, args.weights)
    scales = parse_scales(args.scale, available=model.scales)
    results = evaluate(model, args.data, scales, model.arch, progress=not args.no_progress)
    make_console().print(results_table(results))
    if args.json:
        payload = {"results": [r.to_json(per_image=args.per_image) for r in results]}
        with atomic_output(args.json, force=args.force) as tmp:
            tmp.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    exit_with(_main, argv)
