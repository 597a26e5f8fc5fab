"""Speed of the web page's runtimes against native ones, same image, machine and threads, one run.

For every site given (each one precision: fp32, fp16, int8) and each of its WebAssembly models
(LiteRT.js, ONNX Runtime Web), per scale:

* the page's untiled model (``carnWeb.runTensor``) and its own tiled upscale of a PNG of the same
  image (what a user waits for), on a cross-origin isolated page (threads), and the untiled model
  again on a page served without the isolation headers (one thread: what the headers buy);
* the same file natively, in the engine the browser runs compiled to WebAssembly (onnxruntime,
  or ai-edge-litert's XNNPACK): the ratio is the cost of WebAssembly itself;
* native onnxruntime fp32 on the same scale (from an fp32 site given), the yardstick the page is
  held to.

Median of ``repeats`` runs after one warm-up each. WebGPU is not timed: headless Chromium here
has only a software adapter (its numbers are checked in the browser tests, not its speed).
"""

from __future__ import annotations

import re
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .browser import Browser, BrowserError, find_tools
from .runtimes import WEB_RUNTIMES
from .serve import serving
from .site import read_site_json

#: Whether the page offers WebGPU (it does only where the browser gives it an adapter).
WEBGPU_OFFERED = "document.querySelector('#backend option[value^=webgpu]') !== null"
#: The issue's case: a 320x180 LR input (x2 -> 640x360, x4 -> 1280x720).
DEFAULT_LR = (180, 320)
#: The native engine each runtime compiles to WebAssembly.
NATIVE_ENGINES = {"ort": "onnxruntime", "litert": "ai-edge-litert (XNNPACK)"}


@dataclass(frozen=True)
class WebBenchRow:
    """One model of one site on one WebAssembly page, against native runs of this machine."""

    scale: int
    precision: str
    runtime: str  # "ort" or "litert"
    build: str  # the WebAssembly build that ran, as the page's status line names it
    threads: int  # threads the page's runtime ran with
    isolated: bool  # whether the page was cross-origin isolated (COOP/COEP sent)
    lr: tuple[int, int]
    page_ms: float  # the page's untiled model
    native_ms: float  # the same file in its native engine, same threads
    reference_ms: float | None  # native onnxruntime fp32 at this scale (None: no fp32 site given)
    tiled_ms: float | None  # the page's tiled upscale of a PNG (isolated page only)
    tiles: int | None
    tile: int | None

    @property
    def wasm_cost(self) -> float:
        """Page time over the same file's native time: what WebAssembly costs that engine."""
        return self.page_ms / self.native_ms

    @property
    def vs_reference(self) -> float | None:
        """Page time over native onnxruntime fp32: 2.0 is the page's goal."""
        return None if self.reference_ms is None else self.page_ms / self.reference_ms

    def to_json(self) -> dict[str, Any]:
        def r(v: float | None, digits: int = 1) -> float | None:
            return None if v is None else round(v, digits)

        return {"scale": self.scale, "precision": self.precision, "runtime": self.runtime, "build": self.build,
                "threads": self.threads, "cross_origin_isolated": self.isolated, "lr": list(self.lr),
                "page_model_ms": r(self.page_ms), "native_same_file_ms": r(self.native_ms),
                "native_engine": NATIVE_ENGINES[self.runtime], "wasm_cost": r(self.wasm_cost, 2),
                "native_onnxruntime_fp32_ms": r(self.reference_ms),
                "vs_native_onnxruntime_fp32": r(self.vs_reference, 2),
                "page_tiled_ms": r(self.tiled_ms), "page_tiles": self.tiles, "page_tile": self.tile}


def _median_ms(fn: Callable[[], float | None], repeats: int) -> float:
    fn()  # warm-up: first-run allocation, kernel selection, a LiteRT.js compile for the size
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        reported = fn()
        times.append(reported if reported is not None else (time.perf_counter() - start) * 1000)
    return statistics.median(times)


def bench_sites(
    sites: Sequence[str | Path],
    threads: int,
    scales: Sequence[int] | None = None,
    lr_size: tuple[int, int] = DEFAULT_LR,
    repeats: int = 3,
    on_step: Callable[[str], None] | None = None,
    unisolated: bool = True,
    profile: bool = False,
) -> tuple[list[WebBenchRow], dict[str, Any]]:
    """Measure every WebAssembly model of every site in ``sites`` (at ``scales``, default all) in
    one run; ``unisolated`` times each untiled model again without cross-origin isolation;
    ``profile`` adds, for each ONNX Runtime Web model, its per-layer-kind kernel time in the page
    against native onnxruntime's on the same file (``about["profiles"]``)."""
    from PIL import Image

    from ..testimage import natural_test_image_uint8

    folders = [Path(s) for s in sites]
    infos = {folder: read_site_json(folder) for folder in folders}
    tools, why = find_tools()
    if tools is None:
        raise BrowserError(f"cannot benchmark in a browser: {why}")
    chosen = {folder: [m for m in info["models"] if (scales is None or m["scale"] in scales) and "wasm" in m["tile"]]
              for folder, info in infos.items()}
    if not any(chosen.values()):
        raise ValueError(f"no site has a WebAssembly model for scale(s) {', '.join(map(str, scales or []))}")
    step = on_step or (lambda _text: None)
    h, w = lr_size
    pixels = natural_test_image_uint8(h, w, seed=0)
    lr = np.ascontiguousarray(pixels.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255)
    native: dict[tuple[Path, str], float] = {}
    for folder, models in chosen.items():
        for m in models:
            step(f"x{m['scale']} {infos[folder]['precision']}: {NATIVE_ENGINES[m['runtime']]} natively, same file")
            native[folder, m["file"]] = _native_ms(folder / m["file"], m["runtime"], lr, threads, repeats)
    # The yardstick: native onnxruntime on an fp32 site's ONNX model, one of the files timed above.
    reference: dict[int, float] = {}
    for folder, models in chosen.items():
        for m in models if infos[folder]["precision"] == "fp32" else []:
            if m["runtime"] == "ort":
                reference.setdefault(m["scale"], native[folder, m["file"]])
    rows: list[WebBenchRow] = []
    with tempfile.TemporaryDirectory() as tmp, Browser(tools) as browser:
        png = Path(tmp) / f"bench_{w}x{h}.png"
        Image.fromarray(pixels).save(png)
        webgpu = False
        for folder, models in chosen.items():
            precision = infos[folder]["precision"]
            for isolated in (True, False) if unisolated else (True,):
                with serving(folder, isolate=isolated) as url:
                    state = browser.open(f"{url}index.html?threads={threads}")
                    if state["state"] != "ready":
                        raise BrowserError(f"{folder.name}: the page did not start: {state['error']}")
                    webgpu = webgpu or bool(browser.evaluate(WEBGPU_OFFERED))
                    for m in models:
                        scale, runtime = int(m["scale"]), m["runtime"]
                        where = "isolated" if isolated else "not cross-origin isolated"
                        step(f"x{scale} {precision}: the page on {WEB_RUNTIMES[runtime].label} ({where})")
                        page = _median_ms(lambda s=scale, r=runtime: browser.run_tensor(s, lr, runtime=r)[1], repeats)
                        tiled, last = (_tiled_ms(browser, png, scale, runtime, repeats) if isolated else (None, {}))
                        if not last:  # what ran: one tiled run gives the page's own status line
                            last = _upscale(browser, png, scale, runtime)
                        rows.append(WebBenchRow(
                            scale, precision, runtime, _build_of(last["status"]), _threads_of(last["status"]),
                            bool(state["isolated"]), (h, w), page, native[folder, m["file"]], reference.get(scale),
                            tiled, last.get("tiles") if isolated else None, last.get("tile") if isolated else None))
        profiles = []
        for folder, models in chosen.items() if profile else ():
            for m in (m for m in models if m["runtime"] == "ort"):
                step(f"x{m['scale']} {infos[folder]['precision']}: per-kernel profile, page and native onnxruntime")
                profiles.append(_profile(browser, folder, infos[folder], m, lr, threads, repeats))
        versions = {r: info[r]["version"] for info in infos.values() for r in info["runtimes"]}
        about = {"browser": f"Chromium {browser.version}", "threads_asked": threads, "runtimes": versions,
                 "sites": {str(f): {"precision": i["precision"], "backends": i["backends"]} for f, i in infos.items()},
                 "native": _native_versions(), "webgpu": webgpu, "features": browser.evaluate("carnWeb.features"),
                 "profiles": profiles}
    return rows, about


def _native_ms(model_file: Path, runtime: str, lr: np.ndarray, threads: int, repeats: int) -> float:
    """The file in its native engine on this machine, ``threads`` threads, NCHW float32 in."""
    if runtime == "ort":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
        return _median_ms(lambda: (session.run(None, {"lr": lr}), None)[1], repeats)
    from ai_edge_litert.interpreter import Interpreter

    from ..export.target_litert import read_metadata
    from ..runtimes.runner_litert import signature_call

    run = signature_call(Interpreter(model_path=str(model_file), num_threads=threads),
                         read_metadata(model_file).get("carn_mobile.layout") == "NHWC")
    return _median_ms(lambda: (run(lr), None)[1], repeats)


def _profile(browser: Browser, folder: Path, info: dict[str, Any], model: dict[str, Any], lr: np.ndarray,
             threads: int, repeats: int) -> dict[str, Any]:
    """Per layer kind: the page's ONNX Runtime Web kernels (its profiler, logged to the console)
    against native onnxruntime's, same file, input and threads."""
    import json

    from ..bench.profile import ort_kinds, profile_onnxruntime
    from ..models import build_model

    channels = build_model(info["model"]).config.channels
    native = profile_onnxruntime(folder / model["file"], lr, threads, repeats, channels)
    with serving(folder) as url:
        browser.open(f"{url}index.html?threads={threads}&profile=1")
        for _ in range(repeats + 1):
            browser.run_tensor(model["scale"], lr, runtime="ort")
        browser.call("console")  # drop what the page logged so far
        browser.evaluate(f"carnWeb.endProfiling({model['scale']}).then(() => true)")
        lines = browser.call("console")["lines"]
    events = []
    for line in lines:
        text = line.split(": ", 1)[-1].strip().rstrip(",")
        if text.startswith('{"cat"'):
            events.append(json.loads(text))
    page = ort_kinds(events, channels)
    if not page:
        raise BrowserError("ONNX Runtime Web logged no kernel times (its profiler output changed?)")
    kinds = sorted(set(native) | set(page), key=lambda k: -(page[k].ms if k in page else 0.0))
    return {"scale": model["scale"], "precision": info["precision"], "lr": list(lr.shape[2:]),
            "kinds": [{"kind": k, "calls": (page.get(k) or native[k]).calls,
                       "native_ms": round(native[k].ms, 2) if k in native else None,
                       "page_ms": round(page[k].ms, 2) if k in page else None} for k in kinds]}


def _native_versions() -> dict[str, str | None]:
    from ..runtimes import version_of

    return {"onnxruntime": version_of("onnxruntime"), "ai-edge-litert": version_of("ai-edge-litert")}


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
    """'relaxed SIMD' or 'SIMD', from the page's status line."""
    return "relaxed SIMD" if "relaxed SIMD" in status else "SIMD"


def _threads_of(status: str) -> int:
    found = re.search(r"(\d+) threads?,", status)
    return int(found.group(1)) if found else 0


def markdown(rows: Sequence[WebBenchRow], about: dict[str, Any], machine: str) -> str:
    """The recorded report: the table, then what it says about the goal and the defaults."""
    versions = ", ".join(f"{WEB_RUNTIMES[r].label} {v}" for r, v in about["runtimes"].items())
    native = ", ".join(f"{k} {v}" for k, v in about["native"].items() if v)
    f = about["features"] or {}
    lines = [
        "# The web page's runtimes in headless Chromium vs native runtimes",
        "",
        machine,
        f"{about['browser']}; {versions}; native {native} (CPU), {about['threads_asked']} threads asked of all. "
        f"Browser WebAssembly: SIMD yes, relaxed SIMD {'yes' if f.get('relaxedSimd') else 'no'}. Median of the runs "
        "after a warm-up, one run of `carn-web bench`. *page / native*: the page over the same file in the engine "
        "it compiles to WebAssembly (the cost of WebAssembly); *vs ORT fp32*: the page over native onnxruntime "
        "fp32 at the same scale (the goal: 2x or less).",
        "",
        "| model | precision | runtime | WebAssembly | isolated | threads | page ms | native, same file ms "
        "| page / native | vs ORT fp32 | page, tiled PNG ms | tiles (tile px) |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        h, w = r.lr
        tiled = "-" if r.tiled_ms is None else f"{r.tiled_ms:.0f}"
        tiles = "-" if r.tiles is None else f"{r.tiles} ({r.tile})"
        vs = "-" if r.vs_reference is None else f"{r.vs_reference:.2f}x"
        lines.append(f"| x{r.scale} ({w}x{h} -> {w * r.scale}x{h * r.scale}) | {r.precision} | "
                     f"{WEB_RUNTIMES[r.runtime].label} | {r.build} | {'yes' if r.isolated else 'no'} | {r.threads} | "
                     f"{r.page_ms:.0f} | {r.native_ms:.0f} ({NATIVE_ENGINES[r.runtime]}) | {r.wasm_cost:.2f}x | {vs} | "
                     f"{tiled} | {tiles} |")
    references = sorted({(r.scale, r.reference_ms) for r in rows if r.reference_ms is not None})
    if references:
        lines += ["", "Native onnxruntime fp32 (the yardstick): "
                  + ", ".join(f"x{s} {ms:.0f} ms" for s, ms in references) + "."]
    for p in about.get("profiles", []):
        h, w = p["lr"]
        page_total = sum(k["page_ms"] or 0 for k in p["kinds"])
        native_total = sum(k["native_ms"] or 0 for k in p["kinds"])
        lines += ["", f"## Where the time goes: x{p['scale']} {p['precision']}, ONNX Runtime Web vs native onnxruntime "
                  f"(LR {w}x{h})", "",
                  f"Sum of kernel medians: page {page_total:.0f} ms, native {native_total:.0f} ms "
                  f"({page_total / max(native_total, 1e-9):.2f}x).", "",
                  "| layer kind | ops (page) | native ms | page ms | page / native | share of the page |",
                  "|---|---:|---:|---:|---:|---:|"]
        for k in p["kinds"]:
            ratio = (f"{k['page_ms'] / k['native_ms']:.2f}x" if k["page_ms"] is not None and k["native_ms"]
                     else "-")
            share = f"{(k['page_ms'] or 0) / max(page_total, 1e-9):.0%}"
            fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
            lines.append(f"| {k['kind']} | {k['calls']} | {fmt(k['native_ms'])} | {fmt(k['page_ms'])} | {ratio} | "
                         f"{share} |")
    webgpu = ("offered by the page (an adapter exists: a software one here, so checked for numbers in the browser "
              "tests, not timed)" if about["webgpu"] else "no adapter in this browser, so not offered and not timed")
    lines += ["", f"WebGPU: {webgpu}.", "", "The sites and the runtime each runs per backend:"]
    lines += [f"- `{name}` ({s['precision']}): " + ", ".join(f"{b} -> {WEB_RUNTIMES[r].label}"
                                                            for b, r in s["backends"].items())
              for name, s in about["sites"].items()]
    lines.append("")
    return "\n".join(lines)
