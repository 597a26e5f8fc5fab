"""How cost grows with the work: latency and peak memory from 640x360 to 3840x2160 output.

Every size is run through :class:`carn_mobile.Upscaler` (what ``carn-upscale`` runs) per
backend, untiled and with the default tile, so the tiling overhead is measured where it
applies. A convolutional network's work is linear in pixels; the report puts each latency
against the line through the backend's smallest untiled point and names the sizes where a
runtime leaves it (cache or memory effects) by more than :data:`LINEAR_SLACK`.
"""

from __future__ import annotations

import gc
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ..sizes import WxH
from .machine import describe_machine
from .memory import current_rss_mb, peak_memory_mb
from .timing import measure

#: Output sizes of the default sweep: 360p to 4K UHD.
SWEEP_SIZES: tuple[WxH, ...] = (WxH(640, 360), WxH(1280, 720), WxH(1920, 1080), WxH(2560, 1440), WxH(3840, 2160))
#: Measured / linear above this ratio counts as leaving linear scaling.
LINEAR_SLACK = 1.15


@dataclass
class SweepSettings:
    """What to sweep: CARN-M x4 in the torch and onnxruntime backends by default."""

    model: str = "carn-m"
    scale: int = 4
    sizes: Sequence[WxH] = SWEEP_SIZES
    backends: Sequence[str] = ("torch", "onnxruntime")
    threads: int = 2
    runs: int = 2
    warmup: int = 1
    notes: list[str] = field(default_factory=list)


def default_tile(upscaler) -> int:
    """The core tile ``carn-upscale`` picks for an image too big for the default memory budget."""
    from ..upscaling.memory import auto_tile

    huge = 1 << 16
    side = auto_tile(upscaler.backend.config, upscaler.scale, huge, huge, upscaler.overlap, upscaler.max_memory)
    assert side is not None
    return side


def run_sweep(settings: SweepSettings, progress: Callable[[str], None] | None = None) -> dict:
    """Measure every (backend, size, tiled/untiled); returns the report (see docs/benchmark.md)."""
    from ..upscaling import Upscaler

    say = progress or (lambda _m: None)
    torch.set_num_threads(settings.threads)
    report: dict = {"kind": "sweep", "machine": describe_machine(settings.threads),
                    "settings": {"model": settings.model, "scale": settings.scale, "threads": settings.threads,
                                 "runs": settings.runs, "warmup": settings.warmup,
                                 "sizes": [str(WxH(*s)) for s in settings.sizes],
                                 "backends": list(settings.backends)},
                    "rows": [], "linear": [], "notes": list(settings.notes)}
    report["baseline_rss_mb"] = round(current_rss_mb(), 1)
    previous = os.environ.get("CARN_CACHE_DIR")
    with tempfile.TemporaryDirectory(prefix="carn-sweep-") as tmp:
        os.environ["CARN_CACHE_DIR"] = tmp  # artifacts exported for this sweep, not the user's cache
        try:
            for backend in settings.backends:
                say(f"{backend}: preparing")
                probe = Upscaler(settings.scale, settings.model, backend=backend, tile=None)  # exports once
                tile, limit = default_tile(probe), getattr(probe.backend, "max_side", None)
                del probe
                for size in settings.sizes:
                    hr = WxH(*size)
                    lr = np.random.default_rng(0).integers(
                        0, 256, (round(hr.height / settings.scale), round(hr.width / settings.scale), 3), np.uint8)
                    for mode in ("untiled", "tiled"):
                        row = {"backend": backend, "output": str(hr), "mode": mode,
                               "megapixels": round(hr.width * hr.height / 1e6, 3),
                               "tile": tile if mode == "tiled" else None}
                        if mode == "untiled" and limit and max(lr.shape[:2]) > limit:
                            report["rows"].append(dict(row, status="skipped",
                                                       reason=f"LR side above the artifact's {limit}"))
                            continue
                        say(f"{backend} {hr} {mode}")
                        made: list = []
                        gc.collect()
                        peak, method = peak_memory_mb(partial(_fresh_first_call, settings, backend,
                                                              tile if mode == "tiled" else None, lr, made))
                        upscaler = made.pop()
                        calls = len(upscaler.plan(*lr.shape[:2]).tiles)
                        lat = measure(partial(upscaler.upscale, lr), settings.runs, settings.warmup)
                        del upscaler
                        report["rows"].append(dict(row, status="ok", tiles=calls, latency_ms=lat.to_json(),
                                                   peak_mem_mb=round(peak, 1), peak_mem_method=method))
        finally:
            if previous is None:
                os.environ.pop("CARN_CACHE_DIR", None)
            else:
                os.environ["CARN_CACHE_DIR"] = previous
    report["linear"] = linear_fit(report["rows"])
    return report


def _fresh_first_call(settings: SweepSettings, backend: str, tile: int | None, lr: np.ndarray, made: list) -> None:
    """Create an upscaler and run it once, keeping it in ``made``: a fresh engine per point, so
    its arenas are allocated inside the measured window (not left over from a larger point)."""
    from ..upscaling import Upscaler

    made.append(Upscaler(settings.scale, settings.model, backend=backend, tile=tile))
    made[0].upscale(lr)


def linear_fit(rows: Sequence[dict]) -> list[dict]:
    """Per row, its latency against the line through its backend's smallest untiled point."""
    ok = [r for r in rows if r["status"] == "ok"]
    out = []
    for backend in dict.fromkeys(r["backend"] for r in ok):
        base = min((r for r in ok if r["backend"] == backend and r["mode"] == "untiled"),
                   key=lambda r: r["megapixels"], default=None)
        if base is None:
            continue
        ms_per_mp = base["latency_ms"]["median"] / base["megapixels"]
        for r in (r for r in ok if r["backend"] == backend):
            expected = ms_per_mp * r["megapixels"]
            ratio = r["latency_ms"]["median"] / expected
            out.append({"backend": backend, "output": r["output"], "mode": r["mode"],
                        "expected_ms": round(expected, 1), "ratio": round(ratio, 3),
                        "linear": ratio <= LINEAR_SLACK})
    return out


def tiling_overhead(rows: Sequence[dict]) -> list[dict]:
    """Tiled / untiled latency per backend and size where both ran."""
    ok = {(r["backend"], r["output"], r["mode"]): r for r in rows if r["status"] == "ok"}
    out = []
    for (backend, output, mode), r in ok.items():
        other = ok.get((backend, output, "untiled"))
        if mode == "tiled" and other:
            out.append({"backend": backend, "output": output, "tiles": r["tiles"],
                        "overhead": round(r["latency_ms"]["median"] / other["latency_ms"]["median"] - 1, 3)})
    return out


def sweep_markdown(report: dict) -> str:
    """The sweep as Markdown: one row per measurement, then where scaling stops being linear."""
    from .report import machine_sentence

    s = report["settings"]
    lines = ["# carn-bench --sweep", "", machine_sentence(report["machine"]),
             f"{s['model']} x{s['scale']}; {s['runs']} timed runs after {s['warmup']} warm-up per point; "
             "latency is wall-clock per image through the Upscaler (uint8 in and out); peak memory is the "
             "resident-set growth from creating a fresh upscaler (loading its engine) through its first call: "
             f"what that image size costs, arenas included (process at {report['baseline_rss_mb']:.0f} MB "
             "before the first).", "",
             "| backend | output | MP | mode | tiles | median ms | ms per MP | vs linear | peak MB |",
             "|---|---|---|---|---|---|---|---|---|"]
    fit = {(f["backend"], f["output"], f["mode"]): f for f in report["linear"]}
    for r in report["rows"]:
        if r["status"] != "ok":
            lines.append(f"| {r['backend']} | {r['output']} | {r['megapixels']} | {r['mode']} | - | "
                         f"skipped: {r['reason']} | | | |")
            continue
        f = fit.get((r["backend"], r["output"], r["mode"]))
        med = r["latency_ms"]["median"]
        lines.append(f"| {r['backend']} | {r['output']} | {r['megapixels']} | {r['mode']} | {r['tiles']} | "
                     f"{med:.0f} | {med / r['megapixels']:.0f} | {f['ratio']:.2f}x | {r['peak_mem_mb']:.0f} |"
                     if f else f"| {r['backend']} | {r['output']} | {r['megapixels']} | {r['mode']} | "
                     f"{r['tiles']} | {med:.0f} | {med / r['megapixels']:.0f} | - | {r['peak_mem_mb']:.0f} |")
    off = [f for f in report["linear"] if not f["linear"]]
    lines += ["", "## Where scaling leaves the line", ""]
    lines += ([f"- {f['backend']} {f['mode']} at {f['output']}: {f['ratio']:.2f}x the linear expectation "
               f"({f['expected_ms']:.0f} ms)" for f in off]
              or [f"- none: every point within {LINEAR_SLACK:.2f}x of linear in pixels"])
    lines += ["", "## Tiling overhead at the default tile", ""]
    lines += [f"- {t['backend']} {t['output']}: {t['tiles']} tile(s), {t['overhead']:+.1%}"
              for t in tiling_overhead(report["rows"])]
    if report["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


def plot_sweep(report: dict, path: Path) -> None:
    """Latency and peak memory against output megapixels, per backend, tiled and untiled,
    with each backend's linear-in-pixels expectation dashed."""
    from .plots import _pyplot

    plt = _pyplot()
    ok = [r for r in report["rows"] if r["status"] == "ok"]
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fit = report["linear"]
    for i, backend in enumerate(dict.fromkeys(r["backend"] for r in ok)):
        color = colors[i % len(colors)]
        for mode, marker, style in (("untiled", "o", "-"), ("tiled", "s", ":")):
            pts = sorted((r for r in ok if r["backend"] == backend and r["mode"] == mode),
                         key=lambda r: r["megapixels"])
            if not pts:
                continue
            mp = [r["megapixels"] for r in pts]
            label = f"{backend} {mode}" + (f" (tile {pts[0]['tile']})" if mode == "tiled" else "")
            ax_t.plot(mp, [r["latency_ms"]["median"] / 1e3 for r in pts], marker=marker, linestyle=style,
                      color=color, label=label)
            ax_m.plot(mp, [r["peak_mem_mb"] for r in pts], marker=marker, linestyle=style, color=color, label=label)
        line = sorted({(next(r["megapixels"] for r in ok if r["output"] == f["output"]), f["expected_ms"])
                       for f in fit if f["backend"] == backend})
        if line:
            ax_t.plot([p for p, _ in line], [e / 1e3 for _, e in line], linestyle="--", color=color, alpha=0.5,
                      label=f"{backend} linear in pixels")
    s = report["settings"]
    for ax, ylabel in ((ax_t, "latency, median (s)"), (ax_m, "peak memory: load + first call (MB)")):
        ax.set_xlabel("output megapixels")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
    ax_t.legend(fontsize=7)
    ax_m.legend(fontsize=7)
    fig.suptitle(f"{s['model']} x{s['scale']}, {report['machine']['cpu']}, {s['threads']} threads")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
