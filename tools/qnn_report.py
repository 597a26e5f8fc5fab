"""Assemble the qnn report: per scale, precision and SoC, HTP coverage, size, emulator fidelity and
the task-PSNR drops, from the manifests ``carn-export --target qnn`` wrote (nothing is measured
here; every number comes from those exports)::

    python tools/qnn_report.py OUT_DIR EXPORT_DIR [EXPORT_DIR ...]

writes OUT_DIR/table.md (the tables, pasted into the report's README) and OUT_DIR/drops.png (the
drops, per set, scale and precision).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def manifests(folders: list[Path]) -> list[dict]:
    found = [json.loads(p.read_text()) for f in folders for p in sorted(f.glob("*.qnn.onnx.json"))]
    return sorted(found, key=lambda m: (m["precision"], m["scale"]))


def tables(rows: list[dict]) -> list[str]:
    lines = ["| precision | scale | QDQ ONNX | fidelity in the emulator vs its quantized reference: pictures "
             "(min PSNR) / noise | Y-PSNR vs fp32 | task PSNR drop Set5 / Set14 / test image (dB) | gate s |",
             "|---|---|---|---|---|---|---|"]
    for m in rows:
        cases = [c for c in m["parity"]["cases"] if ": " not in c["name"]]  # the artifact's own cases
        pictures = min(c["psnr_db"] for c in cases if not c["name"].startswith("random-"))
        noise = min(c["psnr_db"] for c in cases if c["name"].startswith("random-"))
        quality = m["parity"]["quality"]
        drops = {s["name"]: s for s in quality["sets"]}
        shown = " / ".join(f"{drops[n]['drop_db']:.3f} ({drops[n]['images']})" if n in drops else "-"
                           for n in ("Set5", "Set14", "test-image"))
        lines.append(f"| {m['precision']} | x{m['scale']} | {m['file']['size_bytes'] / 1e6:.2f} MB | "
                     f"{pictures:.1f} dB / {noise:.1f} dB | {quality['min_float_psnr_db']:.1f} dB | {shown} | "
                     f"{m['parity']['seconds']:.0f} |")
    lines += ["", "| precision | scale | SoC | HTP | context model | HTP partitions | on the CPU | "
                  "context binary fidelity: test image / noise | QNN SDK |", "|---|---|---|---|---|---|---|---|---|"]
    for m in rows:
        cases = {c["name"]: c for c in m["parity"]["cases"]}
        for soc in m["export"]["details"]["socs"]:
            cover = soc["coverage"]
            name = m["artifact"] + soc["file_suffix"]
            own = [c for n, c in cases.items() if n.startswith(name + ": ")]
            picture = next(c["psnr_db"] for c in own if c["name"].endswith("test-image"))
            noise = next(c["psnr_db"] for c in own if "random-" in c["name"])
            cpu = ", ".join(cover["cpu_nodes"]) or f"graph I/O only ({len(cover['cpu_io_conversions'])})"
            lines.append(f"| {m['precision']} | x{m['scale']} | {soc['name']} ({soc['marketing_name']}) | "
                         f"{soc['htp_arch']} | {soc['size_bytes'] / 1e6:.2f} MB | {cover['htp_partitions']} | {cpu} | "
                         f"{picture:.1f} / {noise:.1f} dB | {cover['qnn_sdk']} |")
    return lines


def plot(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = ("Set5", "Set14", "test-image")
    labels = [f"x{m['scale']} {m['precision']}" for m in rows]
    fig, ax = plt.subplots(figsize=(8, 4), dpi=120)
    width = 0.8 / len(sets)
    for i, name in enumerate(sets):
        values = [next((s["drop_db"] for s in m["parity"]["quality"]["sets"] if s["name"] == name), 0.0)
                  for m in rows]
        ax.bar([x + i * width for x in range(len(rows))], values, width, label=name)
    for m, x in zip(rows, range(len(rows)), strict=True):
        limit = m["parity"]["quality"]["limits"]["max_task_psnr_drop_db"]
        ax.hlines(limit, x - width / 2, x + 0.8 - width / 2, colors="black", linestyles="dashed")
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(rows))], labels)
    ax.set_ylabel("task PSNR drop vs fp32 (dB)")
    ax.set_title("CARN-M on the HTP emulator, 128x128 LR tiles (dashed: the gate's limit)")
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[-3].strip(), file=sys.stderr)
        return 2
    out, folders = Path(argv[0]), [Path(a) for a in argv[1:]]
    rows = manifests(folders)
    if not rows:
        print(f"no qnn manifests in {', '.join(map(str, folders))}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text("\n".join(tables(rows)) + "\n")
    plot(rows, out / "drops.png")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
