"""Assemble the int8 report: per target and scale, size, fidelity, PSNR drop and latency ratio.

Reads the manifests that ``carn-export --target all --precision int8 --scale all`` wrote and the
JSON of ``carn-bench --precisions fp32,int8`` (same machine, one run), and writes a Markdown
table (nothing is measured here; every number comes from those two runs)::

    python tools/int8_report.py EXPORT_DIR BENCH.json OUT.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from carn_mobile.export import artifact_backends

#: Target -> the bench backend that runs its artifacts, as the targets declare it.
TARGET_BACKEND = {target: backend for backend, target in artifact_backends().items()}


def bench_rows(bench: dict) -> dict[tuple[str, int, str], dict]:
    return {(r["backend"], r["scale"], r.get("precision")): r for r in bench["rows"] if r.get("status") == "ok"}


def table(export_dir: Path, bench: dict) -> list[str]:
    rows = bench_rows(bench)
    lines = ["| target | scale | int8 size | of fp32 | fidelity vs int8 reference (max abs, min PSNR) "
             "| Y-PSNR vs fp32 | task PSNR drop Set5 / Set14 / test image (dB) | int8 ms | fp32 ms | speed-up |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for path in sorted(export_dir.glob("*_int8*.json")):
        m = json.loads(path.read_text())
        target, scale = m["target"], m["scale"]
        backend = TARGET_BACKEND.get(target, target)
        q8, f32 = rows.get((backend, scale, "int8")), rows.get((backend, scale, "fp32"))
        parity, quality = m["parity"], m["parity"]["quality"]
        drops = {s["name"]: s["drop_db"] for s in quality["sets"]}
        size = m["file"]["size_bytes"]
        ratio = f"{q8['size_bytes'] / f32['size_bytes']:.0%}" if q8 and f32 else "-"
        lat = (f"{q8['latency_ms']['median']:.0f} | {f32['latency_ms']['median']:.0f} | "
               f"{f32['latency_ms']['median'] / q8['latency_ms']['median']:.2f}x") if q8 and f32 else "- | - | -"
        lines.append(
            f"| {target} | x{scale} | {size / 1e6:.2f} MB | {ratio} | {parity['max_abs']:.1e}, "
            f"{parity['min_psnr_db']:.1f} dB | {quality['min_float_psnr_db']:.1f} dB | "
            f"{drops.get('Set5', float('nan')):.3f} / {drops.get('Set14', float('nan')):.3f} / "
            f"{drops.get('test-image', float('nan')):.3f} | {lat} |")
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    export_dir, bench_path, out = Path(argv[0]), Path(argv[1]), Path(argv[2])
    bench = json.loads(bench_path.read_text())
    m = bench["machine"]
    text = [f"Machine: {m['cpu']} ({m['arch']}, {m['usable_cores']} usable cores), {m['os']}; torch {m['torch']}; "
            f"{m['threads']} threads; int8 dot-product instructions: {', '.join(m.get('int8_instructions', []))}.",
            "", *table(export_dir, bench), ""]
    out.write_text("\n".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
