"""``carn-convert``: turn a CARN/CARN-M checkpoint (e.g. the authors' .pth) into safetensors."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..fileio import sha256_file
from ..models import count_params, list_models
from ..weights import load_model, save_weights
from .common import exit_with


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="carn-convert",
        description="Check a checkpoint against a model (strict) and save it as safetensors.",
    )
    p.add_argument("src", help="checkpoint: .pth/.pt (read with weights_only) or .safetensors")
    p.add_argument("dst", help="output .safetensors file")
    p.add_argument("--model", choices=list_models(), help="architecture (default: from the weights file, else carn-m)")
    p.add_argument("--force", action="store_true", help="overwrite DST if it exists")
    return p


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if not args.dst.endswith(".safetensors"):
        raise ValueError(f"destination must end in .safetensors, got {args.dst}")
    model = load_model(args.model, args.src)
    out = save_weights(model, args.dst, arch=model.arch, force=args.force, source_sha256=sha256_file(args.src))
    summary = f"{model.arch}, scales {list(model.scales)}, {count_params(model):,} params"
    print(f"{out}: {summary}, sha256 {sha256_file(out)}")
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    exit_with(_main, argv)
