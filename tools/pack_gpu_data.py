"""Pack the training and benchmark images small enough to travel to a lent GPU machine.

The device tool copies the working tree (64 MiB at most) and not ``../shared``. T91 + BSD200 as
PNG are about 60 MB; lossless WebP keeps every pixel (checked here, image by image) in about two
thirds of that. Benchmark sets travel as HR only: ``carn-eval`` makes their LR images with the
MATLAB-exact bicubic, which reproduces the shipped LR files bit for bit.

    python tools/pack_gpu_data.py [--shared ../shared] [--out gpu_data]

The output folder is ignored by git; name it in the device call's ``carry``.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

TRAIN_SETS = ("T91", "BSD200")
BENCHMARK_SETS = ("Set5", "Set14")
LIMIT = 64 << 20


def pack_image(src: Path, dst: Path) -> int:
    """Write ``src`` as lossless WebP at ``dst`` after checking it decodes to the same RGB pixels."""
    with Image.open(src) as im:
        rgb = im.convert("RGB")
    pixels = np.asarray(rgb)
    buf = io.BytesIO()
    rgb.save(buf, "WEBP", lossless=True, quality=100, method=4)
    with Image.open(io.BytesIO(buf.getvalue())) as back:
        if not np.array_equal(np.asarray(back.convert("RGB")), pixels):
            raise SystemExit(f"error: lossless WebP changed the pixels of {src}; keep it as PNG")
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(buf.getvalue())
    return dst.stat().st_size


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shared", default="../shared", help="the shared data folder (default ../shared)")
    p.add_argument("--out", default="gpu_data", help="output folder (default gpu_data)")
    args = p.parse_args(argv)
    shared, out = Path(args.shared), Path(args.out)
    jobs = [(f, out / "train" / name / (f.stem + ".webp"))
            for name in TRAIN_SETS for f in sorted((shared / "data" / "train" / name).glob("*.png"))]
    jobs += [(f, out / "benchmark" / name / "HR" / (f.stem + ".webp"))
             for name in BENCHMARK_SETS for f in sorted((shared / "data" / "benchmark" / name / "HR").glob("*.png"))]
    if not jobs:
        print(f"error: no images under {shared}/data; pass --shared", file=sys.stderr)
        return 2
    before = sum(src.stat().st_size for src, _ in jobs)
    after = 0
    for i, (src, dst) in enumerate(jobs, 1):
        after += pack_image(src, dst)
        print(f"\r{i}/{len(jobs)} images", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    print(f"{len(jobs)} images: {before / 2**20:.1f} MiB of PNG -> {after / 2**20:.1f} MiB of lossless WebP in {out}")
    if after > LIMIT * 0.9:
        print(f"warning: {after / 2**20:.1f} MiB leaves little of the device tool's 64 MiB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
