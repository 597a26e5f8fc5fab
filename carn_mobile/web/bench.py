"""Speed of the web page's runtimes against native onnxruntime, same image, machine and threads.

For each scale: the untiled model on one LR image in native onnxruntime (Python), then for each
WebAssembly runtime the site carries (LiteRT.js, ONNX Runtime Web) the page's untiled model
(``carnWeb.runTensor``) and its own tiled upscale of a PNG of the same image (what a user waits
for), and the untiled model once more on a page served without the cross-origin isolation
headers (one thread: what the headers buy). Median of ``repeats`` runs after one warm-up each.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .browser import Browser, BrowserError, find_tools
from .serve import serving
from .site import read_site_json

#: Whether the page offers WebGPU (it does only where the browser gives it an adapter).
WEBGPU_OFFERED = "document.querySelector('#backend option[value^=webgpu]') !== null"
#: The issue's case: a 320x180 LR input (x2 -> 640x360, x4 -> 1280x720).
DEFAULT_LR = (180, 320)


@dataclass(frozen=True)
class WebBenchRow:
    """One scale on one runtime of the page (WebAssembly), against native onnxruntime."""

    scale: int
    runtime: str  # "ort" or "litert"
    build: str  # the WebAssembly build that ran, as the page's status line names it
    threads: int  # threads the page's runtime ran with
    isolated: bool  # whether the page was cross-origin isolated (COOP/COEP sent)
    lr: tuple[int, int]
    native_ms: float
    page_model_ms: float
    page_tiled_ms: float | None  # the page's tiled upscale of a PNG (only for the isolated page)
    tiles: int | None
    tile: int | None

    @property
    def ratio(self) -> float:
        """Page (untiled model) time over native time: 1.0 is as fast as native."""
        return self.page_model_ms / self.native_ms

    def to_json(self) -> dict[str, Any]:
        return {"scale": self.scale, "runtime": self.runtime, "build": self.build, "threads": self.threads,
                "cross_origin_isolated": self.isolated, "lr": list(self.lr), "native_ms": round(self.native_ms, 1),
                "page_model_ms": round(self.page_model_ms, 1), "ratio_model": round(self.ratio, 2),
                "page_tiled_ms": None if self.page_tiled_ms is None else round(self.page_tiled_ms, 1),
                "page_tiles": self.tiles, "page_tile": self.tile}


def _median_ms(fn: Callable[[], float | None], repeats: int) -> float:
    fn()  # warm-up: first-run allocation and kernel selection
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        reported = fn()
        times.append(reported if reported is not None else (time.perf_counter() - start) * 1000)
    return statistics.median(times)


#: The page's description of what ran, for the row (read after a run).
_STATUS = "document.getElementById('status').textContent"


def bench_site(
    site: str | Path,
    threads: int,
    scales: Sequence[int] | None = None,
    lr_size: tuple[int, int] = DEFAULT_LR,
    repeats: int = 3,
    on_step: Callable[[str], None] | None = None,
    unisolated: bool = True,
) -> tuple[list[WebBenchRow], dict[str, Any]]:
    """Measure every scale and WebAssembly runtime of ``site`` (or ``scales``) in one run.

    Per scale: native onnxruntime on the site's ONNX model, then per runtime the page's untiled
    model and its tiled upscale of a PNG; with ``unisolated`` the untiled model again on a page
    served without the cross-origin isolation headers (what threads depend on).
    """
    import onnxruntime as ort
    from PIL import Image

    from ..testimage import natural_test_image_uint8

    folder = Path(site)
    info = read_site_json(folder)
    tools, why = find_tools()
    if tools is None:
        raise BrowserError(f"cannot benchmark in a browser: {why}")
    models = [m for m in info["models"] if (scales is None or m["scale"] in scales) and "wasm" in m["tile"]]
    if not models:
        raise ValueError(f"{folder} has no model for scale(s) {', '.join(map(str, scales or []))}")
    onnx = {m["scale"]: folder / m["file"] for m in info["models"] if m["runtime"] == "ort"}
    missing = sorted({m["scale"] for m in models} - set(onnx))
    if missing:
        raise ValueError(f"{folder} has no ONNX model for x{missing[0]} to time native onnxruntime with; bench a "
                         "site exported with --web-runtime auto or ort")
    step = on_step or (lambda _text: None)
    h, w = lr_size
    pixels = natural_test_image_uint8(h, w, seed=0)
    lr = np.ascontiguousarray(pixels.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255)
    native = {}
    for scale in sorted({m["scale"] for m in models}):
        step(f"x{scale}: native onnxruntime")
        native[scale] = _native_ms(onnx[scale], lr, threads, repeats)
    rows: list[WebBenchRow] = []
    with tempfile.TemporaryDirectory() as tmp, Browser(tools) as browser:
        png = Path(tmp) / f"bench_{w}x{h}.png"
        Image.fromarray(pixels).save(png)
        for isolated in (True, False) if unisolated else (True,):
            with serving(folder, isolate=isolated) as url:
                state = browser.open(f"{url}index.html?threads={threads}")
                if state["state"] != "ready":
                    raise BrowserError(f"the page did not start: {state['error']}")
                for m in models:
                    scale, runtime = int(m["scale"]), m["runtime"]
                    where = "isolated" if isolated else "not cross-origin isolated"
                    step(f"x{scale}: the page on {runtime} ({where}): untiled model"
                         + (", tiled PNG" if isolated else ""))
                    page_model = _median_ms(lambda s=scale, r=runtime: browser.run_tensor(s, lr, runtime=r)[1], repeats)
                    tiled, last = (_tiled_ms(browser, png, scale, runtime, repeats) if isolated else (None, {}))
                    if not last:  # what ran: one tiled run gives the page's own status line
                        last = _upscale(browser, png, scale, runtime)
                    rows.append(WebBenchRow(scale, runtime, _build_of(last["status"]), _threads_of(last["status"]),
                                            bool(state["isolated"]), (h, w), native[scale], page_model, tiled,
                                            last.get("tiles") if isolated else None,
                                            last.get("tile") if isolated else None))
        about = {"browser": f"Chromium {browser.version}", "threads_asked": threads,
                 "runtimes": {r: info[r]["version"] for r in info["runtimes"]}, "backends": info["backends"],
                 "onnxruntime": ort.__version__, "webgpu": browser.evaluate(WEBGPU_OFFERED),
                 "features": browser.evaluate("carnWeb.features")}
    return rows, about


def _native_ms(model_file: Path, lr: np.ndarray, threads: int, repeats: int) -> float:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
    return _median_ms(lambda: (session.run(None, {"lr": lr}), None)[1], repeats)


def _upscale(browser: Browser, png: Path, scale: int, runtime: str) -> dict[str, Any]:
    reply = browser.upscale(png, scale, backend=f"wasm:{runtime}")
    if reply["state"] != "done":
        raise BrowserError(f"the page failed: {reply['error']}")
    return reply


def _tiled_ms(browser: Browser, png: Path, scale: int, runtime: str, repeats: int) -> tuple[float, dict[str, Any]]:
    last: dict[str, Any] = {}

    def tiled() -> float:
        last.update(_upscale(browser, png, scale, runtime))
        return float(last["ms"])

    return _median_ms(tiled, repeats), last


def _build_of(status: str) -> str:
    """'WebAssembly relaxed SIMD' or 'WebAssembly SIMD', from the page's status line."""
    return "relaxed SIMD" if "relaxed SIMD" in status else "SIMD"


def _threads_of(status: str) -> int:
    import re

    found = re.search(r"(\d+) threads?\)", status)
    return int(found.group(1)) if found else 0


_LABELS = {"ort": "ONNX Runtime Web", "litert": "LiteRT.js"}


def markdown(rows: Sequence[WebBenchRow], about: dict[str, Any], machine: str) -> str:
    """The recorded report's table."""
    versions = ", ".join(f"{_LABELS[r]} {v}" for r, v in about["runtimes"].items())
    f = about["features"] or {}
    lines = [
        "# The web page's runtimes in headless Chromium vs native onnxruntime",
        "",
        machine,
        f"{about['browser']}; {versions}; native onnxruntime {about['onnxruntime']} (CPU execution provider), "
        f"{about['threads_asked']} threads asked of both. Browser WebAssembly: SIMD yes, relaxed SIMD "
        f"{'yes' if f.get('relaxedSimd') else 'no'}. Median of the runs after a warm-up, one run of "
        "`carn-web bench`.",
        "",
        "| model | runtime | WebAssembly build | isolated | threads | native ms | page, untiled ms | ratio "
        "| page, tiled PNG ms | tiles (tile px) |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        h, w = r.lr
        tiled = "-" if r.page_tiled_ms is None else f"{r.page_tiled_ms:.0f}"
        tiles = "-" if r.tiles is None else f"{r.tiles} ({r.tile})"
        lines.append(f"| x{r.scale} ({w}x{h} -> {w * r.scale}x{h * r.scale}) | {_LABELS[r.runtime]} | {r.build} | "
                     f"{'yes' if r.isolated else 'no'} | {r.threads} | {r.native_ms:.0f} | {r.page_model_ms:.0f} | "
                     f"{r.ratio:.2f}x | {tiled} | {tiles} |")
    webgpu = ("offered by the page (an adapter exists: a software one here, so checked for numbers, not timed)"
              if about["webgpu"] else "no adapter in this browser, so not offered and not measured")
    lines += ["", f"WebGPU: {webgpu}. Default runtime per backend in this site: "
              + ", ".join(f"{b} -> {_LABELS[r]}" for b, r in about["backends"].items()) + ".", ""]
    return "\n".join(lines)
