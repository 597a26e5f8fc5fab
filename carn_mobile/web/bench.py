"""Speed of the web page against native onnxruntime, same model, same machine, same threads.

For each scale: the untiled model on one LR image in native onnxruntime (Python) and in the
page's ONNX Runtime Web (``carnWeb.runTensor``), and the page's own tiled upscale of a PNG of
the same image (what a user waits for). Median of ``repeats`` runs after one warm-up each.
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
WEBGPU_OFFERED = "document.querySelector('#backend option[value=webgpu]') !== null"
#: The issue's case: a 320x180 LR input (x2 -> 640x360, x4 -> 1280x720).
DEFAULT_LR = (180, 320)


@dataclass(frozen=True)
class WebBenchRow:
    scale: int
    lr: tuple[int, int]
    native_ms: float
    page_model_ms: float
    page_tiled_ms: float
    tiles: int
    tile: int

    @property
    def ratio(self) -> float:
        """Page (untiled model) time over native time: 1.0 is as fast as native."""
        return self.page_model_ms / self.native_ms

    def to_json(self) -> dict[str, Any]:
        return {"scale": self.scale, "lr": list(self.lr), "native_ms": round(self.native_ms, 1),
                "page_model_ms": round(self.page_model_ms, 1), "page_tiled_ms": round(self.page_tiled_ms, 1),
                "page_tiles": self.tiles, "page_tile": self.tile, "ratio_model": round(self.ratio, 2),
                "ratio_tiled": round(self.page_tiled_ms / self.native_ms, 2)}


def _median_ms(fn: Callable[[], float | None], repeats: int) -> float:
    fn()  # warm-up: first-run allocation and kernel selection
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        reported = fn()
        times.append(reported if reported is not None else (time.perf_counter() - start) * 1000)
    return statistics.median(times)


def bench_site(
    site: str | Path,
    threads: int,
    scales: Sequence[int] | None = None,
    lr_size: tuple[int, int] = DEFAULT_LR,
    repeats: int = 3,
    on_step: Callable[[str], None] | None = None,
) -> tuple[list[WebBenchRow], dict[str, Any]]:
    """Measure every scale of ``site`` (or ``scales``); rows and what ran them (browser, versions)."""
    import onnxruntime as ort
    from PIL import Image

    from ..testimage import natural_test_image_uint8

    folder = Path(site)
    info = read_site_json(folder)
    tools, why = find_tools()
    if tools is None:
        raise BrowserError(f"cannot benchmark in a browser: {why}")
    models = [m for m in info["models"] if scales is None or m["scale"] in scales]
    if not models:
        raise ValueError(f"{folder} has no model for scale(s) {', '.join(map(str, scales or []))}")
    step = on_step or (lambda _text: None)
    h, w = lr_size
    pixels = natural_test_image_uint8(h, w, seed=0)
    lr = np.ascontiguousarray(pixels.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255)
    rows: list[WebBenchRow] = []
    with tempfile.TemporaryDirectory() as tmp, serving(folder) as url, Browser(tools) as browser:
        png = Path(tmp) / f"bench_{w}x{h}.png"
        Image.fromarray(pixels).save(png)
        state = browser.open(f"{url}index.html?threads={threads}")
        if state["state"] != "ready":
            raise BrowserError(f"the page did not start: {state['error']}")
        for m in models:
            step(f"x{m['scale']}: native onnxruntime, the page's untiled model, the page's tiled upscale")
            rows.append(_bench_model(browser, folder / m["file"], m, lr, png, threads, repeats))
        about = {"browser": f"Chromium {browser.version}", "threads_in_page": state["threads"],
                 "cross_origin_isolated": state["isolated"], "ort_web": info["ort"]["version"],
                 "onnxruntime": ort.__version__, "webgpu": browser.evaluate(WEBGPU_OFFERED)}
    return rows, about


def _bench_model(browser: Browser, model_file: Path, model: dict[str, Any], lr: np.ndarray, png: Path,
                 threads: int, repeats: int) -> WebBenchRow:
    import onnxruntime as ort

    scale = int(model["scale"])
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
    native = _median_ms(lambda: (session.run(None, {model["input"]: lr}), None)[1], repeats)
    page_model = _median_ms(lambda: browser.run_tensor(scale, lr)[1], repeats)
    last: dict[str, Any] = {}

    def tiled() -> float:
        reply = browser.upscale(png, scale)
        if reply["state"] != "done":
            raise BrowserError(f"the page failed: {reply['error']}")
        last.update(reply)
        return float(reply["ms"])

    page_tiled = _median_ms(tiled, repeats)
    return WebBenchRow(scale, tuple(lr.shape[2:]), native, page_model, page_tiled, int(last["tiles"]),
                       int(last["tile"]))


def markdown(rows: Sequence[WebBenchRow], about: dict[str, Any], machine: str) -> str:
    """The recorded report's table."""
    lines = [
        "# ONNX Runtime Web in headless Chromium vs native onnxruntime",
        "",
        machine,
        f"{about['browser']}, ONNX Runtime Web {about['ort_web']} (WebAssembly SIMD, "
        f"{about['threads_in_page']} threads, cross-origin isolated: {about['cross_origin_isolated']}); "
        f"native onnxruntime {about['onnxruntime']}, CPU execution provider. Median of the runs after a warm-up.",
        "",
        "| model | LR -> HR | native ms | page, untiled model ms | ratio | page, tiled PNG ms | tiles (tile px) |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        h, w = r.lr
        lines.append(f"| x{r.scale} | {w}x{h} -> {w * r.scale}x{h * r.scale} | {r.native_ms:.0f} | "
                     f"{r.page_model_ms:.0f} | {r.ratio:.2f}x | {r.page_tiled_ms:.0f} | {r.tiles} ({r.tile}) |")
    webgpu = ("offered by the page (an adapter exists) but not measured here" if about["webgpu"]
              else "no adapter in this browser, so not offered and not measured")
    lines += ["", f"WebGPU: {webgpu}.", ""]
    return "\n".join(lines)
